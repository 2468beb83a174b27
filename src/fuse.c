/* fuse.c: merge a LoRA/DoRA adapter into a model's weights and write a new model directory, as
 * mlx_lm.fuse does (FORMATS.md §3.7). Runtime LoRA is the normal way to use an adapter
 * (DESIGN.md decision 1); this exists for export and to measure what merging costs.
 *
 * For every adapted module P (layer l, projection m) with base weight W [out, in]:
 *   W  = dequantize(P.weight, P.scales, P.biases) rounded to the scale dtype (mlx-lm's
 *        mx.dequantize result dtype), or the dense weight as stored;
 *   Δ  = (s·Bᵀ)·Aᵀ in float32, rounded to that dtype (`.astype(weight.dtype)`);
 *   W' = W + Δ rounded to that dtype; DoRA: W'' = (m / ||W + Δ||_row) ⊙ W' (the factor loaded
 *        with the adapter, computed in float32 before rounding);
 *   then, unless dequantizing, re-quantized from scratch with the module's own bits and group
 *   size (new scales and biases, same scale dtype; MLX's CPU quantizer, loam_quantize).
 * With dequantize, every quantized weight (adapted or not, embeddings and lm_head included)
 * is written dequantized in its scale dtype, its .scales/.biases are dropped, and config.json
 * loses both "quantization" and "quantization_config" (mlx-lm 0.x pops only "quantization";
 * a leftover quantization_config would make loaders expect packed weights). Every other tensor
 * is copied byte for byte.
 *
 * Output directory, like mlx_lm's save(): shards of at most 5 GiB filled greedily in tensor-name
 * order ("model.safetensors", or "model-0000i-of-0000n.safetensors"), each with metadata
 * {"format": "mlx"}; "model.safetensors.index.json" always (metadata.total_size = bytes of all
 * tensors, metadata.total_parameters = logical parameters with a quantized weight counted as
 * packed * 32 / bits, weight_map sorted; indent 4); config.json with the top-level keys sorted,
 * "_name_or_path" and "vision_config" dropped, "quantization_config" set to a copy of
 * "quantization" when that exists, indent 4 and ASCII-only like Python's json.dump (integral
 * numbers are written as integers: cJSON keeps no number text); every other regular file of the
 * model directory (tokenizer files, generation_config.json, chat template, *.py, README) copied.
 * Everything is written into "OUT.tmp.<pid>", which is renamed to OUT at the end: OUT is either
 * complete or untouched. OUT must not exist or be an empty directory.
 *
 * Peak memory: the adapter, plus for one adapted module its re-quantized words and scales (the
 * float rows are produced and quantized one row at a time per thread). Copied tensors stream
 * from the mapped model files.
 *
 * Refused: a lora_bias (PEFT) adapter (LOAM_E_UNSUPPORTED: a Linear without a bias would need
 * one), quantization modes other than affine, an adapted layer whose shapes differ from layer
 * 0's (the adapter geometry is per projection, not per layer).
 */
#define _POSIX_C_SOURCE 200809L
#include "convert.h"
#include "json.h"
#include "lora.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <omp.h>
#include <sys/stat.h>
#include <unistd.h>

#define SHARD_MAX_BYTES (5ull << 30)

loam_fuse_params loam_fuse_params_default(void) {
    loam_fuse_params p;
    memset(&p, 0, sizeof p);
    return p;
}

// ---- the model's matrices ---------------------------------------------------------------------

typedef struct fmat {
    char *prefix;      /* module path P: tensors P.weight (P.scales, P.biases) */
    loam__qmat qm;     /* view for dequantization */
    loam_dtype wdtype; /* dtype of the float weight: scale dtype, or the dense dtype */
    bool quantized;
    int32_t layer; /* adapted (layer, mod), or layer -1 */
    int mod;
    /* re-quantized output, produced on the first of its three tensors' fills */
    void *wq, *sc, *bi;
    int pending; /* fills still to come from the cache */
} fmat;

typedef enum { OUT_COPY, OUT_QW, OUT_QS, OUT_QB, OUT_FLOAT } out_kind;

typedef struct out_tensor {
    const char *name; /* borrowed from the model directory */
    loam_dtype dtype;
    int32_t n_dims;
    int64_t shape[LOAM_MAX_DIMS];
    uint64_t n_bytes;
    uint64_t n_params;
    out_kind kind;
    const void *data; /* OUT_COPY */
    int32_t mod_idx;  /* the others */
    struct fuse_ctx *ctx;
} out_tensor;

typedef struct fuse_ctx {
    const loam_fuse_params *p;
    loam_modeldir *md;
    cJSON *config;
    loam__numkinds kinds; /* config's numbers that were floats in config.json */
    loam__adapter *ad;
    fmat *mods;
    int32_t n_mods;
    int32_t (*slot)[LOAM__N_MOD]; /* (n_layer) index into mods of each projection, or -1 */
    int32_t n_layer;
    out_tensor *outs;
    size_t n_outs;
    uint64_t jobs_total, jobs_done;
    char *tmp; /* OUT.tmp.<pid> */
    bool tmp_created;
} fuse_ctx;

static const char *dtype_nm(loam_dtype t) {
    const char *s = loam_dtype_name(t);
    return s ? s : "?";
}

static bool is_float_dtype(loam_dtype t) {
    return t == LOAM_DTYPE_F32 || t == LOAM_DTYPE_F16 || t == LOAM_DTYPE_BF16;
}

static inline float round_to(loam_dtype t, float v) {
    if (t == LOAM_DTYPE_BF16)
        return loam__bf16_to_f32(loam__f32_to_bf16(v));
    if (t == LOAM_DTYPE_F16)
        return loam__f16_to_f32(loam__f32_to_f16(v));
    return v;
}

static bool ends_with(const char *s, const char *suffix, size_t *stem) {
    size_t n = strlen(s), k = strlen(suffix);
    if (n <= k || strcmp(s + n - k, suffix) != 0)
        return false;
    *stem = n - k;
    return true;
}

/* bits and group size of module P from config.quantization (FORMATS.md §2.2). */
static loam_status module_qformat(const cJSON *q, const char *prefix, loam_dtype sdt,
                                  loam_qformat *fmt, loam_err *err) {
    const cJSON *ov = cJSON_GetObjectItemCaseSensitive(q, prefix);
    const cJSON *src = q;
    double bits = 4, gs = 64; /* affine defaults, also for null / missing per-layer keys */
    if (ov) {
        if (!cJSON_IsObject(ov))
            return loam__fail(err, LOAM_E_FORMAT,
                              "config.json: quantization[\"%.80s\"] is not an object but %s.scales "
                              "exists",
                              prefix, prefix);
        src = ov;
    }
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(src, "bits");
    const cJSON *g = cJSON_GetObjectItemCaseSensitive(src, "group_size");
    const cJSON *mo = cJSON_GetObjectItemCaseSensitive(src, "mode");
    if (mo && !cJSON_IsNull(mo) && (!cJSON_IsString(mo) || strcmp(mo->valuestring, "affine")))
        return loam__fail(err, LOAM_E_UNSUPPORTED,
                          "config.json: quantization mode of %.80s is not affine", prefix);
    if (cJSON_IsNumber(b))
        bits = b->valuedouble;
    else if (b && !cJSON_IsNull(b))
        return loam__fail(err, LOAM_E_FORMAT, "config.json: quantization bits of %.80s", prefix);
    if (cJSON_IsNumber(g))
        gs = g->valuedouble;
    else if (g && !cJSON_IsNull(g))
        return loam__fail(err, LOAM_E_FORMAT, "config.json: quantization group_size of %.80s",
                          prefix);
    if (bits != floor(bits) || gs != floor(gs) || bits < 1 || bits > 8 || gs < 1 || gs > 1024)
        return loam__fail(err, LOAM_E_FORMAT,
                          "config.json: quantization of %.80s: bits %g, "
                          "group_size %g",
                          prefix, bits, gs);
    fmt->bits = (int32_t)bits;
    fmt->group_size = (int32_t)gs;
    fmt->scale_dtype = sdt;
    return LOAM_OK;
}

/* Finds every matrix of the model: quantized (P.scales present) or dense 2-D float P.weight of
 * a layer projection. */
static loam_status find_matrices(fuse_ctx *c, const cJSON *q, loam_err *err) {
    size_t n = loam_modeldir_n_tensors(c->md);
    c->mods = loam__calloc(n ? n : 1, sizeof *c->mods);
    if (!c->mods)
        return loam__fail(err, LOAM_E_NOMEM, "fuse: out of memory");
    loam_status s;
    for (size_t i = 0; i < n; i++) {
        loam_tensor t;
        if ((s = loam_modeldir_tensor(c->md, i, &t, NULL)))
            return loam__fail(err, s, "fuse: tensor %zu of the model unreadable", i);
        size_t stem;
        if (ends_with(t.name, ".scales", &stem)) {
            fmat *fm = &c->mods[c->n_mods];
            if (!(fm->prefix = loam__strndup(t.name, stem)))
                return loam__fail(err, LOAM_E_NOMEM, "fuse: out of memory");
            c->n_mods++;
            fm->layer = -1;
            fm->quantized = true;
            if (!q)
                return loam__fail(err, LOAM_E_FORMAT,
                                  "fuse: tensor '%.100s' but config.json has no quantization",
                                  t.name);
            char name[512];
            loam_tensor w, b;
            snprintf(name, sizeof name, "%s.weight", fm->prefix);
            if ((s = loam_modeldir_find(c->md, name, &w, err)))
                return s;
            snprintf(name, sizeof name, "%s.biases", fm->prefix);
            if ((s = loam_modeldir_find(c->md, name, &b, err)))
                return s;
            if (!is_float_dtype(t.dtype) || t.n_dims != 2 || w.dtype != LOAM_DTYPE_U32 ||
                w.n_dims != 2 || b.dtype != t.dtype || b.n_dims != 2 || b.shape[0] != t.shape[0] ||
                b.shape[1] != t.shape[1] || w.shape[0] != t.shape[0])
                return loam__fail(err, LOAM_E_FORMAT,
                                  "fuse: %.100s: weight/scales/biases are not an MLX affine "
                                  "triple (U32 [n, k*bits/32], float [n, k/group_size] twice)",
                                  fm->prefix);
            loam_qformat fmt;
            if ((s = module_qformat(q, fm->prefix, t.dtype, &fmt, err)))
                return s;
            int64_t k = t.shape[1] * fmt.group_size;
            if (w.shape[1] * 32 != k * fmt.bits || loam_qformat_check(fmt, k, NULL) != LOAM_OK)
                return loam__fail(err, LOAM_E_FORMAT,
                                  "fuse: %.100s: weight [%lld, %lld] does not fit %d-bit groups "
                                  "of %d with %lld scales per row",
                                  fm->prefix, (long long)w.shape[0], (long long)w.shape[1],
                                  fmt.bits, fmt.group_size, (long long)t.shape[1]);
            fm->qm = (loam__qmat){LOAM_DTYPE_U32, fmt, w.data, t.data, b.data, t.shape[0], k};
            fm->wdtype = t.dtype;
        }
    }
    /* dense projections of the layers */
    for (int32_t l = 0; l < c->n_layer; l++)
        for (int m = 0; m < LOAM__N_MOD; m++) {
            char name[160];
            snprintf(name, sizeof name, "model.layers.%d.%s.scales", l, loam__mod_path[m]);
            loam_tensor t;
            if (loam_modeldir_find(c->md, name, &t, NULL) == LOAM_OK)
                continue;
            snprintf(name, sizeof name, "model.layers.%d.%s.weight", l, loam__mod_path[m]);
            if (loam_modeldir_find(c->md, name, &t, NULL) != LOAM_OK)
                continue;
            if (!is_float_dtype(t.dtype) || t.n_dims != 2)
                return loam__fail(err, LOAM_E_FORMAT, "fuse: tensor '%s' is %s with %d dims", name,
                                  dtype_nm(t.dtype), t.n_dims);
            fmat *fm = &c->mods[c->n_mods++];
            if (!(fm->prefix = loam__strndup(name, strlen(name) - 7)))
                return loam__fail(err, LOAM_E_NOMEM, "fuse: out of memory");
            fm->layer = -1;
            fm->qm = (loam__qmat){t.dtype, {0}, t.data, NULL, NULL, t.shape[0], t.shape[1]};
            fm->wdtype = t.dtype;
        }
    return LOAM_OK;
}

static const loam__qmat *base_weight(void *user, int32_t layer, loam__mod mod) {
    fuse_ctx *c = user;
    if (layer < 0 || layer >= c->n_layer)
        return NULL;
    int32_t i = c->slot[layer][mod];
    return i < 0 ? NULL : &c->mods[i].qm;
}

// ---- computing fused weights ------------------------------------------------------------------

/* Row o of the fused float weight of an adapted module, rounded as mlx-lm does. bo holds r
 * floats of scratch. */
static void fused_row(const fmat *fm, const loam__lora_mod *lm, int64_t o, float *row, float *bo) {
    const int64_t in = fm->qm.k, out = fm->qm.n;
    const loam_dtype t = fm->wdtype;
    loam__qmat_row(&fm->qm, o, row);
    if (!lm) {
        for (int64_t i = 0; i < in; i++)
            row[i] = round_to(t, row[i]);
        return;
    }
    const int32_t r = lm->r;
    for (int32_t j = 0; j < r; j++)
        bo[j] = lm->scale * lm->b[(int64_t)j * out + o];
    const float f = lm->dora ? lm->dora[o] : 1.0f;
    for (int64_t i = 0; i < in; i++) {
        const float *ai = lm->a + i * r;
        float d = 0.0f;
        for (int32_t j = 0; j < r; j++)
            d += bo[j] * ai[j];
        float v = round_to(t, round_to(t, row[i]) + round_to(t, d));
        row[i] = lm->dora ? round_to(t, f * v) : v;
    }
}

static void progress(fuse_ctx *c) {
    c->jobs_done++;
    if (c->p->progress)
        c->p->progress(c->p->user, c->jobs_done, c->jobs_total);
}

static const loam__lora_mod *mod_lora(const fuse_ctx *c, const fmat *fm) {
    return fm->layer < 0 ? NULL : loam__adapter_mod(c->ad, fm->layer, (loam__mod)fm->mod);
}

/* Float output: dst [n, k] in fm->wdtype, fused when adapted, else just dequantized. */
static loam_status fill_float(void *user, void *dst, uint64_t n_bytes, loam_err *err) {
    out_tensor *ot = user;
    fuse_ctx *c = ot->ctx;
    const fmat *fm = &c->mods[ot->mod_idx];
    const loam__lora_mod *lm = mod_lora(c, fm);
    const int64_t n = fm->qm.n, k = fm->qm.k;
    const int32_t r = lm ? lm->r : 0;
    const int n_thr = omp_get_max_threads();
    float *buf = loam__malloc((size_t)n_thr * (size_t)(k + r) * sizeof(float));
    if (!buf)
        return loam__fail(err, LOAM_E_NOMEM, "fuse: out of memory for %s", ot->name);
    (void)n_bytes;
#pragma omp parallel for schedule(dynamic, 16) num_threads(n_thr)
    for (int64_t o = 0; o < n; o++) {
        float *row = buf + (size_t)omp_get_thread_num() * (size_t)(k + r);
        fused_row(fm, lm, o, row, row + k);
        for (int64_t i = 0; i < k; i++)
            loam__store_float(dst, fm->wdtype, (size_t)(o * k + i), row[i]);
    }
    loam__free(buf);
    progress(c);
    return LOAM_OK;
}

/* Re-quantized output of an adapted module: computed once, handed out to its three tensors. */
static loam_status requantize(fuse_ctx *c, fmat *fm, const char *what, loam_err *err) {
    const loam__lora_mod *lm = mod_lora(c, fm);
    const loam_qformat fmt = fm->qm.fmt;
    const int64_t n = fm->qm.n, k = fm->qm.k;
    const size_t wb = (size_t)loam_qweight_bytes(fmt, n, k),
                 sb = (size_t)loam_qscale_bytes(fmt, n, k);
    const size_t row_wb = wb / (size_t)n, row_sb = sb / (size_t)n;
    fm->wq = loam__malloc(wb);
    fm->sc = loam__malloc(sb);
    fm->bi = loam__malloc(sb);
    const int n_thr = omp_get_max_threads();
    float *buf = loam__malloc((size_t)n_thr * (size_t)(k + lm->r) * sizeof(float));
    if (!fm->wq || !fm->sc || !fm->bi || !buf) {
        loam__free(buf);
        return loam__fail(err, LOAM_E_NOMEM, "fuse: out of memory for %s", what);
    }
    int64_t bad_row = -1;
#pragma omp parallel for schedule(dynamic, 16) num_threads(n_thr)
    for (int64_t o = 0; o < n; o++) {
        float *row = buf + (size_t)omp_get_thread_num() * (size_t)(k + lm->r);
        fused_row(fm, lm, o, row, row + k);
        if (loam_quantize(row, 1, k, fmt, (uint8_t *)fm->wq + (size_t)o * row_wb,
                          (uint8_t *)fm->sc + (size_t)o * row_sb,
                          (uint8_t *)fm->bi + (size_t)o * row_sb, NULL) != LOAM_OK) {
#pragma omp critical(loam_fuse_bad_row)
            bad_row = bad_row < 0 || o < bad_row ? o : bad_row;
        }
    }
    loam__free(buf);
    if (bad_row >= 0)
        return loam__fail(err, LOAM_E_RANGE,
                          "fuse: %s: row %lld of the fused weight is not finite in %s", what,
                          (long long)bad_row, dtype_nm(fm->wdtype));
    fm->pending = 3;
    progress(c);
    return LOAM_OK;
}

static loam_status fill_quant(void *user, void *dst, uint64_t n_bytes, loam_err *err) {
    out_tensor *ot = user;
    fuse_ctx *c = ot->ctx;
    fmat *fm = &c->mods[ot->mod_idx];
    if (fm->pending == 0) {
        loam_status s = requantize(c, fm, ot->name, err);
        if (s)
            return s;
    }
    const void *src = ot->kind == OUT_QW ? fm->wq : ot->kind == OUT_QS ? fm->sc : fm->bi;
    memcpy(dst, src, (size_t)n_bytes);
    if (--fm->pending == 0) {
        loam__free(fm->wq);
        loam__free(fm->sc);
        loam__free(fm->bi);
        fm->wq = fm->sc = fm->bi = NULL;
    }
    return LOAM_OK;
}

// ---- JSON files -------------------------------------------------------------------------------

/* name in the temporary directory, as Python's json.dump(indent=4) writes v (kinds: which numbers
 * were floats in the source text, NULL for a tree loam built) */
static loam_status write_json_file(const fuse_ctx *c, const char *name, const cJSON *v,
                                   bool sort_keys, const loam__numkinds *kinds, loam_err *err) {
    char *text = loam__json_dump_py(v, sort_keys, kinds);
    size_t pl = strlen(c->tmp) + strlen(name) + 2;
    char *path = text ? loam__malloc(pl) : NULL;
    if (!path) {
        loam__free(text);
        return loam__fail(err, LOAM_E_NOMEM, "fuse: out of memory writing %s", name);
    }
    snprintf(path, pl, "%s/%s", c->tmp, name);
    loam_status s = loam__write_file_atomic(path, text, strlen(text), err);
    loam__free(path);
    loam__free(text);
    return s;
}

// ---- the output plan --------------------------------------------------------------------------

/* Index into mods of the module whose tensor `name` is (P.weight / P.scales / P.biases), -1. */
static int32_t owner(const fuse_ctx *c, const char *name, int *which) {
    static const char *const suf[3] = {".weight", ".scales", ".biases"};
    for (int s = 0; s < 3; s++) {
        size_t stem;
        if (!ends_with(name, suf[s], &stem))
            continue;
        for (int32_t i = 0; i < c->n_mods; i++)
            if (strlen(c->mods[i].prefix) == stem && strncmp(c->mods[i].prefix, name, stem) == 0) {
                *which = s;
                return i;
            }
    }
    return -1;
}

static loam_status plan_outputs(fuse_ctx *c, bool dequantize, loam_err *err) {
    size_t n = loam_modeldir_n_tensors(c->md);
    c->outs = loam__calloc(n ? n : 1, sizeof *c->outs);
    if (!c->outs)
        return loam__fail(err, LOAM_E_NOMEM, "fuse: out of memory");
    for (size_t i = 0; i < n; i++) {
        loam_tensor t;
        loam_status s = loam_modeldir_tensor(c->md, i, &t, NULL);
        if (s)
            return loam__fail(err, s, "fuse: tensor %zu of the model unreadable", i);
        out_tensor *ot = &c->outs[c->n_outs];
        memset(ot, 0, sizeof *ot);
        ot->ctx = c;
        ot->name = t.name;
        ot->dtype = t.dtype;
        ot->n_dims = t.n_dims;
        memcpy(ot->shape, t.shape, sizeof ot->shape);
        ot->kind = OUT_COPY;
        ot->data = t.data;
        ot->n_bytes = t.n_bytes;
        ot->n_params = t.n_elements;
        int which = -1;
        int32_t mi = owner(c, t.name, &which);
        if (mi >= 0) {
            fmat *fm = &c->mods[mi];
            bool adapted = fm->layer >= 0;
            ot->mod_idx = mi;
            if (fm->quantized && which > 0)
                ot->n_params = 0;
            if (fm->quantized && which == 0)
                ot->n_params = t.n_elements * 32u / (uint64_t)fm->qm.fmt.bits;
            if (fm->quantized && dequantize && which > 0)
                continue; /* scales, biases dropped */
            if ((fm->quantized && dequantize) || (!fm->quantized && adapted)) {
                if (which != 0)
                    continue; /* a dense module has only its weight here */
                ot->kind = OUT_FLOAT;
                ot->dtype = fm->wdtype;
                ot->shape[0] = fm->qm.n;
                ot->shape[1] = fm->qm.k;
                ot->n_params = (uint64_t)fm->qm.n * (uint64_t)fm->qm.k;
                ot->n_bytes = ot->n_params * (uint64_t)(loam_dtype_bits(fm->wdtype) / 8);
                c->jobs_total++;
            } else if (adapted) {
                ot->kind = which == 0 ? OUT_QW : which == 1 ? OUT_QS : OUT_QB;
                if (which == 0)
                    c->jobs_total++;
            }
        }
        c->n_outs++;
    }
    return LOAM_OK;
}

// ---- writing ----------------------------------------------------------------------------------

static loam_status write_shards(fuse_ctx *c, loam_err *err) {
    /* greedy 5 GiB shards in order, as mlx-lm's make_shards */
    size_t *first = loam__calloc(c->n_outs + 2, sizeof *first);
    if (!first)
        return loam__fail(err, LOAM_E_NOMEM, "fuse: out of memory");
    size_t n_shards = 1;
    uint64_t size = 0;
    for (size_t i = 0; i < c->n_outs; i++) {
        if (size > 0 && size + c->outs[i].n_bytes > SHARD_MAX_BYTES) {
            first[n_shards++] = i;
            size = 0;
        }
        size += c->outs[i].n_bytes;
    }
    first[n_shards] = c->n_outs;

    loam_status s = LOAM_OK;
    cJSON *index = cJSON_CreateObject(), *meta = cJSON_CreateObject(), *wmap = cJSON_CreateObject();
    if (!index || !meta || !wmap) {
        cJSON_Delete(index);
        cJSON_Delete(meta);
        cJSON_Delete(wmap);
        loam__free(first);
        return loam__fail(err, LOAM_E_NOMEM, "fuse: out of memory");
    }
    cJSON_AddItemToObject(index, "metadata", meta);
    cJSON_AddItemToObject(index, "weight_map", wmap);
    uint64_t total_size = 0, total_params = 0;
    size_t pl = strlen(c->tmp) + 64;
    char *path = loam__malloc(pl);
    if (!path)
        s = loam__fail(err, LOAM_E_NOMEM, "fuse: out of memory");
    for (size_t sh = 0; sh < n_shards && s == LOAM_OK; sh++) {
        char shard_name[64];
        if (n_shards == 1)
            snprintf(shard_name, sizeof shard_name, "model.safetensors");
        else
            snprintf(shard_name, sizeof shard_name, "model-%05zu-of-%05zu.safetensors", sh + 1,
                     n_shards);
        loam_st_writer *w = NULL;
        if ((s = loam_st_writer_new(&w, err)))
            break;
        s = loam_st_writer_set_metadata(w, "format", "mlx", err);
        for (size_t i = first[sh]; i < first[sh + 1] && s == LOAM_OK; i++) {
            out_tensor *ot = &c->outs[i];
            if (ot->kind == OUT_COPY)
                s = loam_st_writer_add(w, ot->name, ot->dtype, ot->n_dims, ot->shape, ot->data,
                                       err);
            else
                s = loam_st_writer_add_lazy(w, ot->name, ot->dtype, ot->n_dims, ot->shape,
                                            ot->kind == OUT_FLOAT ? fill_float : fill_quant, ot,
                                            err);
            if (s == LOAM_OK && !cJSON_AddStringToObject(wmap, ot->name, shard_name))
                s = loam__fail(err, LOAM_E_NOMEM, "fuse: out of memory");
            total_size += ot->n_bytes;
            total_params += ot->n_params;
        }
        if (s == LOAM_OK) {
            snprintf(path, pl, "%s/%s", c->tmp, shard_name);
            s = loam_st_writer_write(w, path, err);
        }
        loam_st_writer_free(w);
    }
    if (s == LOAM_OK) {
        if (!cJSON_AddNumberToObject(meta, "total_size", (double)total_size) ||
            !cJSON_AddNumberToObject(meta, "total_parameters", (double)total_params))
            s = loam__fail(err, LOAM_E_NOMEM, "fuse: out of memory");
        else
            s = write_json_file(c, "model.safetensors.index.json", index, true, NULL, err);
    }
    loam__free(path);
    loam__free(first);
    cJSON_Delete(index);
    return s;
}

static loam_status write_config(fuse_ctx *c, bool dequantize, loam_err *err) {
    cJSON *cfg = c->config;
    /* removed keys are detached and kept until the file is written: kinds holds node addresses,
     * which a node allocated meanwhile must not take over */
    cJSON *gone = cJSON_CreateArray();
    if (!gone)
        return loam__fail(err, LOAM_E_NOMEM, "fuse: out of memory");
    static const char *const drop_always[] = {"_name_or_path", "vision_config"};
    static const char *const drop_dequant[] = {"quantization", "quantization_config"};
    for (int i = 0; i < 2; i++) {
        cJSON *d = cJSON_DetachItemFromObjectCaseSensitive(cfg, drop_always[i]);
        if (d)
            cJSON_AddItemToArray(gone, d);
    }
    loam_status s = LOAM_OK;
    if (dequantize) {
        for (int i = 0; i < 2; i++) {
            cJSON *d = cJSON_DetachItemFromObjectCaseSensitive(cfg, drop_dequant[i]);
            if (d)
                cJSON_AddItemToArray(gone, d);
        }
    } else {
        const cJSON *q = cJSON_GetObjectItemCaseSensitive(cfg, "quantization");
        if (q) {
            cJSON *copy = cJSON_Duplicate(q, true);
            if (!copy) {
                s = loam__fail(err, LOAM_E_NOMEM, "fuse: out of memory");
            } else {
                cJSON *d = cJSON_DetachItemFromObjectCaseSensitive(cfg, "quantization_config");
                if (d)
                    cJSON_AddItemToArray(gone, d);
                cJSON_AddItemToObject(cfg, "quantization_config", copy);
            }
        }
    }
    if (s == LOAM_OK)
        s = write_json_file(c, "config.json", cfg, true, &c->kinds, err);
    cJSON_Delete(gone);
    return s;
}

/* Copies every other regular file of the model directory (symlinks followed: HF caches). */
static loam_status copy_other_files(fuse_ctx *c, const char *model_dir, loam_err *err) {
    DIR *d = opendir(model_dir);
    if (!d)
        return loam__fail(err, LOAM_E_IO, "fuse: %s: %s", model_dir, strerror(errno));
    loam_status s = LOAM_OK;
    struct dirent *e;
    while (s == LOAM_OK && (e = readdir(d))) {
        const char *nm = e->d_name;
        size_t stem;
        if (nm[0] == '.' || strcmp(nm, "config.json") == 0 ||
            strcmp(nm, "model.safetensors.index.json") == 0 || ends_with(nm, ".safetensors", &stem))
            continue;
        size_t sl = strlen(model_dir) + strlen(nm) + 2, dl = strlen(c->tmp) + strlen(nm) + 2;
        char *src = loam__malloc(sl), *dst = loam__malloc(dl);
        char *data = NULL;
        size_t len = 0;
        struct stat st;
        if (!src || !dst)
            s = loam__fail(err, LOAM_E_NOMEM, "fuse: out of memory");
        else {
            snprintf(src, sl, "%s/%s", model_dir, nm);
            snprintf(dst, dl, "%s/%s", c->tmp, nm);
            if (stat(src, &st) == 0 && S_ISREG(st.st_mode)) {
                s = loam__read_file(src, &data, &len, err);
                if (s == LOAM_OK)
                    s = loam__write_file_atomic(dst, data, len, err);
            }
        }
        loam__free(data);
        loam__free(src);
        loam__free(dst);
    }
    closedir(d);
    return s;
}

/* Removes the temporary directory and the files in it; no heap use (it runs after failures,
 * including failed allocations). */
static void remove_tmp(fuse_ctx *c) {
    if (!c->tmp_created)
        return;
    DIR *d = opendir(c->tmp);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)))
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
                unlinkat(dirfd(d), e->d_name, 0);
        closedir(d);
    }
    rmdir(c->tmp);
}

static bool dir_is_empty(const char *path) {
    DIR *d = opendir(path);
    if (!d)
        return false;
    struct dirent *e;
    bool empty = true;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            empty = false;
            break;
        }
    closedir(d);
    return empty;
}

static void fsync_parent(const char *path) {
    size_t n = strlen(path);
    char *p = loam__malloc(n + 3);
    if (!p)
        return;
    memcpy(p, path, n + 1);
    while (n > 1 && p[n - 1] == '/')
        p[--n] = 0;
    char *slash = strrchr(p, '/');
    if (!slash)
        snprintf(p, n + 3, ".");
    else if (slash == p)
        p[1] = 0;
    else
        *slash = 0;
    int fd = open(p, O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    loam__free(p);
}

// ---- entry point ------------------------------------------------------------------------------

static loam_status fuse(fuse_ctx *c, const char *model_dir, const char *adapter_dir,
                        const char *out_dir, bool dequantize, loam_err *err) {
    loam_status s;
    struct stat st;
    if (stat(out_dir, &st) == 0 && (!S_ISDIR(st.st_mode) || !dir_is_empty(out_dir)))
        return loam__fail(err, LOAM_E_INVAL,
                          "fuse: %s already exists and is not an empty directory", out_dir);
    if ((s = loam_modeldir_open(&c->md, model_dir, err)))
        return s;
    const char *cfg_text = loam_modeldir_config_text(c->md);
    if (!cfg_text)
        return loam__fail(err, LOAM_E_FORMAT, "fuse: %s has no config.json", model_dir);
    if ((s = loam__json_parse(cfg_text, strlen(cfg_text), "config.json", &c->config, err)))
        return s;
    if (!cJSON_IsObject(c->config))
        return loam__fail(err, LOAM_E_FORMAT, "fuse: config.json is not a JSON object");
    if ((s = loam__json_number_kinds(cfg_text, strlen(cfg_text), c->config, &c->kinds, err)))
        return s;
    uint64_t nl;
    if (loam__json_uint(cJSON_GetObjectItemCaseSensitive(c->config, "num_hidden_layers"), &nl) ||
        nl < 1 || nl > 100000)
        return loam__fail(err, LOAM_E_FORMAT,
                          "fuse: config.json: num_hidden_layers missing or "
                          "not a positive integer");
    c->n_layer = (int32_t)nl;
    const cJSON *q = cJSON_GetObjectItemCaseSensitive(c->config, "quantization");
    if (!q) {
        const cJSON *qc = cJSON_GetObjectItemCaseSensitive(c->config, "quantization_config");
        if (qc && cJSON_GetObjectItemCaseSensitive(qc, "quant_method"))
            return loam__fail(err, LOAM_E_UNSUPPORTED,
                              "fuse: config.json: foreign quantization_config (quant_method); "
                              "convert the model to MLX format first");
        q = qc;
    }
    if (q && !cJSON_IsObject(q))
        return loam__fail(err, LOAM_E_FORMAT, "fuse: config.json: quantization is not an object");
    if ((s = find_matrices(c, q, err)))
        return s;

    /* the adapter's view of the model: geometry from layer 0, weights for DoRA */
    c->slot = loam__malloc((size_t)c->n_layer * sizeof *c->slot);
    if (!c->slot)
        return loam__fail(err, LOAM_E_NOMEM, "fuse: out of memory");
    for (int32_t l = 0; l < c->n_layer; l++)
        for (int m = 0; m < LOAM__N_MOD; m++)
            c->slot[l][m] = -1;
    for (int32_t i = 0; i < c->n_mods; i++) {
        const char *p = c->mods[i].prefix;
        for (int32_t l = 0; l < c->n_layer; l++) {
            char pre[48];
            int k = snprintf(pre, sizeof pre, "model.layers.%d.", l);
            if (strncmp(p, pre, (size_t)k) != 0)
                continue;
            for (int m = 0; m < LOAM__N_MOD; m++)
                if (strcmp(p + k, loam__mod_path[m]) == 0)
                    c->slot[l][m] = i;
        }
    }
    loam__lora_base base;
    memset(&base, 0, sizeof base);
    base.n_layer = c->n_layer;
    base.weight = base_weight;
    base.user = c;
    for (int m = 0; m < LOAM__N_MOD; m++)
        if (c->slot[0][m] >= 0) {
            base.in[m] = c->mods[c->slot[0][m]].qm.k;
            base.out[m] = c->mods[c->slot[0][m]].qm.n;
        }
    if ((s = loam__adapter_load(&c->ad, adapter_dir, &base, err)))
        return s;
    for (int32_t l = 0; l < c->n_layer; l++)
        for (int m = 0; m < LOAM__N_MOD; m++) {
            const loam__lora_mod *lm = loam__adapter_mod(c->ad, l, (loam__mod)m);
            if (!lm)
                continue;
            if (lm->bias)
                return loam__fail(err, LOAM_E_UNSUPPORTED,
                                  "fuse: the adapter has a lora_B bias on layer %d %s; a fused "
                                  "Linear without a bias cannot hold it (use it at run time)",
                                  l, loam__mod_path[m]);
            int32_t i = c->slot[l][m];
            if (i < 0 || c->mods[i].qm.k != base.in[m] || c->mods[i].qm.n != base.out[m])
                return loam__fail(err, LOAM_E_UNSUPPORTED,
                                  "fuse: layer %d %s has no weight of layer 0's shape [%lld, %lld]",
                                  l, loam__mod_path[m], (long long)base.out[m],
                                  (long long)base.in[m]);
            c->mods[i].layer = l;
            c->mods[i].mod = m;
        }

    if ((s = plan_outputs(c, dequantize, err)))
        return s;
    size_t ol = strlen(out_dir);
    c->tmp = loam__malloc(ol + 32);
    if (!c->tmp)
        return loam__fail(err, LOAM_E_NOMEM, "fuse: out of memory");
    while (ol > 1 && out_dir[ol - 1] == '/')
        ol--; /* "OUT/" -> "OUT.tmp.<pid>" */
    snprintf(c->tmp, ol + 32, "%.*s.tmp.%ld", (int)ol, out_dir, (long)getpid());
    if (mkdir(c->tmp, 0755) != 0)
        return loam__fail(err, LOAM_E_IO, "fuse: cannot create %s: %s", c->tmp, strerror(errno));
    c->tmp_created = true;
    if ((s = write_shards(c, err)))
        return s;
    if ((s = write_config(c, dequantize, err)))
        return s;
    if ((s = copy_other_files(c, model_dir, err)))
        return s;
    if (rename(c->tmp, out_dir) != 0)
        return loam__fail(err, LOAM_E_IO, "fuse: cannot rename %s to %s: %s", c->tmp, out_dir,
                          strerror(errno));
    c->tmp_created = false;
    fsync_parent(out_dir);
    return LOAM_OK;
}

loam_status loam_fuse(const char *model_dir, const char *adapter_dir, const char *out_dir,
                      const loam_fuse_params *params, loam_err *err) {
    if (!model_dir || !adapter_dir || !out_dir || !*out_dir)
        return loam__fail(err, LOAM_E_INVAL, "fuse: model, adapter and output directories needed");
    loam_fuse_params p = params ? *params : loam_fuse_params_default();
    fuse_ctx c;
    memset(&c, 0, sizeof c);
    c.p = &p;
    loam_status s = fuse(&c, model_dir, adapter_dir, out_dir, p.dequantize, err);
    if (s)
        remove_tmp(&c);
    for (int32_t i = 0; i < c.n_mods; i++) {
        loam__free(c.mods[i].prefix);
        loam__free(c.mods[i].wq);
        loam__free(c.mods[i].sc);
        loam__free(c.mods[i].bi);
    }
    loam__free(c.mods);
    loam__free(c.slot);
    loam__free(c.outs);
    loam__free(c.tmp);
    loam__adapter_free(c.ad);
    cJSON_Delete(c.config);
    loam__numkinds_free(&c.kinds);
    loam_modeldir_close(c.md);
    return s;
}

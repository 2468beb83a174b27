/* lora.c: LoRA / DoRA adapters, loaded from mlx-lm or PEFT directories and applied at run time.
 *
 * Both formats are normalised to one form per (layer, module) (lora.h):
 *   A [in, r] and B [r, out] in float32, a scalar scale, optionally a DoRA factor [out] and a
 *   PEFT lora_B bias [out];  y = W·x + scale·((x·A)·B) (+ scale·bias_B), then y ⊙ dora.
 *
 * mlx-lm (FORMATS.md §3): adapters.safetensors + adapter_config.json
 *   model.layers.{i}.{module}.lora_a  [in, r]      (F32 as trained; F16/BF16 accepted)
 *   model.layers.{i}.{module}.lora_b  [r, out]
 *   model.layers.{i}.{module}.m       [out]        (DoRA magnitude, fine_tune_type "dora")
 *   config: fine_tune_type lora|dora (default lora; "full" is refused), num_layers (default 16;
 *   <= 0 or >= n_layer = every layer; else the LAST num_layers blocks, as mlx-lm's
 *   `layers[-max(num_layers, 0):]`), lora_parameters {rank (default 8), scale (default 20),
 *   keys (block-relative paths like "self_attn.q_proj", or full module paths)}.
 *   Every tensor must belong to a module those settings wrap, with rank == lora_parameters.rank
 *   (mlx-lm's load_adapters refuses anything else). A wrapped module without tensors is left
 *   alone (mlx-lm loads non-strictly: lora_b stays zero, a no-op).
 *
 * PEFT (FORMATS.md §4): adapter_model.safetensors + adapter_config.json
 *   [base_model.model.]model.layers.{i}.{module}.lora_A[.default].weight  [r, in]
 *   [base_model.model.]model.layers.{i}.{module}.lora_B[.default].weight  [out, r]
 *   [base_model.model.]model.layers.{i}.{module}.lora_B[.default].bias    [out]  (lora_bias)
 *   [base_model.model.]model.layers.{i}.{module}.lora_magnitude_vector[.default][.weight] [out]
 *   config: peft_type LORA, r, lora_alpha, use_rslora (scale alpha/sqrt(r), else alpha/r),
 *   rank_pattern / alpha_pattern ({regex: value}; the first key K, in file order, for which
 *   `(.*\.)?(K)$` matches the module name "model.layers.3.self_attn.q_proj" from its start wins,
 *   as PEFT's get_pattern_key; PCRE2 stands in for Python's re), use_dora.
 *   The tensors present define what is adapted; the rank read from A must equal the configured
 *   one. fan_in_fan_out only transposes PEFT's merged delta for Conv1D bases (GPT-2); lora_A and
 *   lora_B are nn.Linear either way, so it changes nothing here.
 *
 * Refused with LOAM_E_UNSUPPORTED, naming the key: full fine-tunes, embedding / lm_head LoRA
 * (lora_embedding_A/B, lora_a on embed_tokens/lm_head), full weights (modules_to_save, trained
 * biases), PEFT types other than LORA, layer_replication, activated LoRA, DoRA with lora_bias.
 * Everything else unexpected (a key that is not an adapter tensor, a layer outside the model,
 * a module the model lacks, a wrong shape or dtype, ranks of A and B that differ, a duplicate)
 * is LOAM_E_FORMAT naming the file and the tensor.
 *
 * DoRA (FORMATS.md §3.5, §4.3): out = (m / ||W + s·(A·B)ᵀ||_row) ⊙ (W·x + s·x·A·B) + bias; the
 * factor m / ||...|| is computed once at load from the base weight (dequantized row by row in
 * float32, the norm accumulated in double). A missing m (mlx-lm keeps its init, m = ||W||_row)
 * uses that init. A zero-norm row gets factor 0: its output is exactly 0 either way.
 *
 * Apply (the hot path): t = scale·(x·A) walks A once in its storage order with r accumulators;
 * y += t·B walks blocks of 16 outputs with the r rows of B streaming. For one row of x and a
 * 4096 → 4096 rank-8 module that is 256 KB of A and B: the cost is reading them, so large
 * modules split the work over OpenMP threads (outside an enclosing parallel region only).
 */
#define _POSIX_C_SOURCE 200809L
#include "lora.h"

#include "json.h"

#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdatomic.h>
#include <sys/stat.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

const char *const loam__mod_path[LOAM__N_MOD] = {
    "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
    "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj",
};

struct loam__adapter {
    const char *format; /* "mlx-lm" or "peft" (static) */
    int32_t n_layer;
    loam__lora_mod *mods; /* (n_layer, LOAM__N_MOD); a == NULL: not adapted */
    float *block;         /* every A, B, DoRA factor and bias, one allocation */
    uint64_t serial;      /* unique in the process: device copies are keyed by it */
};

static _Atomic uint64_t g_adapter_serial;

uint64_t loam__adapter_serial(const loam__adapter *a) {
    return a->serial;
}

// ---- what the files say, before conversion ----------------------------------------------------

typedef enum { FMT_MLX, FMT_PEFT } adapter_fmt;

typedef struct plan_mod {
    loam_tensor a, b, m, bias; /* .data == NULL when absent */
    const char *a_key, *b_key; /* for messages */
    int32_t r;
    float scale;
} plan_mod;

typedef struct loader {
    const loam__lora_base *base;
    adapter_fmt fmt;
    char file_name[32]; /* the safetensors file's name, for messages */
    /* mlx-lm */
    bool dora;
    int32_t rank;
    double scale;
    int32_t first_layer; /* layers [first_layer, n_layer) are wrapped */
    const cJSON *keys;   /* NULL = every module */
    /* PEFT */
    double r_default, alpha_default;
    bool rslora;
    const cJSON *rank_pattern, *alpha_pattern;
    pcre2_code **rank_re, **alpha_re; /* compiled keys of the patterns, in order */
    int n_rank_re, n_alpha_re;
    plan_mod *plan; /* (n_layer, LOAM__N_MOD) */
} loader;

static bool file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

// ---- adapter_config.json ----------------------------------------------------------------------

static const cJSON *obj_get(const cJSON *o, const char *key) {
    return cJSON_GetObjectItemCaseSensitive(o, key);
}

static bool is_set(const cJSON *v) {
    return v && !cJSON_IsNull(v);
}

/* A number field: absent or null gives def; anything but a finite number is an error. */
static loam_status get_number(const cJSON *o, const char *key, double def, double *out,
                              const char *what, loam_err *err) {
    const cJSON *v = obj_get(o, key);
    if (!is_set(v)) {
        *out = def;
        return LOAM_OK;
    }
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return loam__fail(err, LOAM_E_FORMAT, "%s: \"%s\" must be a number", what, key);
    *out = v->valuedouble;
    return LOAM_OK;
}

static loam_status get_bool(const cJSON *o, const char *key, bool *out, const char *what,
                            loam_err *err) {
    const cJSON *v = obj_get(o, key);
    *out = false;
    if (!is_set(v))
        return LOAM_OK;
    if (!cJSON_IsBool(v))
        return loam__fail(err, LOAM_E_FORMAT, "%s: \"%s\" must be true or false", what, key);
    *out = cJSON_IsTrue(v);
    return LOAM_OK;
}

static bool is_whole(double v) {
    return v == floor(v) && fabs(v) < 1e15;
}

static loam_status config_mlx(loader *L, const cJSON *cfg, const char *what, loam_err *err) {
    const cJSON *ft = obj_get(cfg, "fine_tune_type");
    if (is_set(ft)) {
        if (!cJSON_IsString(ft))
            return loam__fail(err, LOAM_E_FORMAT, "%s: \"fine_tune_type\" must be a string", what);
        if (strcmp(ft->valuestring, "full") == 0)
            return loam__fail(err, LOAM_E_UNSUPPORTED,
                              "%s: fine_tune_type \"full\" stores whole weights, not an adapter; "
                              "use the fine-tuned model directory instead",
                              what);
        if (strcmp(ft->valuestring, "dora") == 0)
            L->dora = true;
        else if (strcmp(ft->valuestring, "lora") != 0)
            return loam__fail(err, LOAM_E_FORMAT,
                              "%s: fine_tune_type \"%.40s\" (expected lora, dora or full)", what,
                              ft->valuestring);
    }
    double nl;
    loam_status s = get_number(cfg, "num_layers", 16, &nl, what, err);
    if (s)
        return s;
    if (!is_whole(nl))
        return loam__fail(err, LOAM_E_FORMAT, "%s: num_layers %g is not an integer", what, nl);
    int32_t n_layer = L->base->n_layer;
    L->first_layer = (nl <= 0 || nl >= n_layer) ? 0 : n_layer - (int32_t)nl;

    const cJSON *lp = obj_get(cfg, "lora_parameters");
    double rank = 8, scale = 20;
    if (is_set(lp)) {
        if (!cJSON_IsObject(lp))
            return loam__fail(err, LOAM_E_FORMAT, "%s: \"lora_parameters\" must be an object",
                              what);
        if ((s = get_number(lp, "rank", 8, &rank, what, err)))
            return s;
        if ((s = get_number(lp, "scale", 20, &scale, what, err)))
            return s;
        const cJSON *keys = obj_get(lp, "keys");
        if (is_set(keys)) {
            if (!cJSON_IsArray(keys))
                return loam__fail(err, LOAM_E_FORMAT,
                                  "%s: lora_parameters.keys must be a list of module paths", what);
            for (const cJSON *k = keys->child; k; k = k->next)
                if (!cJSON_IsString(k))
                    return loam__fail(err, LOAM_E_FORMAT,
                                      "%s: lora_parameters.keys must hold strings", what);
            L->keys = keys;
        }
    }
    if (!is_whole(rank) || rank < 1 || rank > 65536)
        return loam__fail(err, LOAM_E_FORMAT, "%s: lora_parameters.rank %g is not in [1, 65536]",
                          what, rank);
    L->rank = (int32_t)rank;
    L->scale = scale;
    return LOAM_OK;
}

static loam_status compile_patterns(const cJSON *pat, const char *field, pcre2_code ***out,
                                    int *n_out, const char *what, loam_err *err) {
    *out = NULL;
    *n_out = 0;
    if (!is_set(pat))
        return LOAM_OK;
    if (!cJSON_IsObject(pat))
        return loam__fail(err, LOAM_E_FORMAT, "%s: \"%s\" must be an object", what, field);
    int n = cJSON_GetArraySize(pat);
    if (n == 0)
        return LOAM_OK;
    pcre2_code **re = loam__calloc((size_t)n, sizeof *re);
    if (!re)
        return loam__fail(err, LOAM_E_NOMEM, "%s: out of memory", what);
    *out = re;
    int i = 0;
    for (const cJSON *e = pat->child; e; e = e->next, i++) {
        if (!cJSON_IsNumber(e) || !isfinite(e->valuedouble))
            return loam__fail(err, LOAM_E_FORMAT, "%s: %s[\"%.60s\"] must be a number", what, field,
                              e->string);
        size_t klen = strlen(e->string);
        char *src = loam__malloc(klen + 16);
        if (!src)
            return loam__fail(err, LOAM_E_NOMEM, "%s: out of memory", what);
        snprintf(src, klen + 16, "(.*\\.)?(%s)$", e->string);
        int ecode;
        PCRE2_SIZE eoff;
        re[i] = pcre2_compile((PCRE2_SPTR)src, PCRE2_ZERO_TERMINATED, PCRE2_ANCHORED | PCRE2_UTF,
                              &ecode, &eoff, NULL);
        loam__free(src);
        *n_out = i + 1;
        if (!re[i]) {
            PCRE2_UCHAR msg[120];
            pcre2_get_error_message(ecode, msg, sizeof msg);
            return loam__fail(err, LOAM_E_FORMAT, "%s: %s key \"%.60s\" is not a valid regex: %s",
                              what, field, e->string, (const char *)msg);
        }
    }
    return LOAM_OK;
}

static void free_patterns(pcre2_code **re, int n) {
    for (int i = 0; i < n; i++)
        pcre2_code_free(re[i]);
    loam__free(re);
}

/* The value of the first pattern matching name, or def. */
static double pattern_value(pcre2_code *const *re, int n, const cJSON *pat, const char *name,
                            double def) {
    const cJSON *e = pat ? pat->child : NULL;
    for (int i = 0; i < n && e; i++, e = e->next) {
        pcre2_match_data *md = pcre2_match_data_create_from_pattern(re[i], NULL);
        if (!md)
            continue;
        int rc = pcre2_match(re[i], (PCRE2_SPTR)name, strlen(name), 0, 0, md, NULL);
        pcre2_match_data_free(md);
        if (rc >= 0)
            return e->valuedouble;
    }
    return def;
}

static loam_status config_peft(loader *L, const cJSON *cfg, const char *what, loam_err *err) {
    const cJSON *pt = obj_get(cfg, "peft_type");
    if (is_set(pt) && (!cJSON_IsString(pt) || strcmp(pt->valuestring, "LORA") != 0))
        return loam__fail(err, LOAM_E_UNSUPPORTED, "%s: peft_type %.40s (only LORA is supported)",
                          what, cJSON_IsString(pt) ? pt->valuestring : "(not a string)");
    if (is_set(obj_get(cfg, "layer_replication")))
        return loam__fail(err, LOAM_E_UNSUPPORTED, "%s: layer_replication is not supported", what);
    if (is_set(obj_get(cfg, "alora_invocation_tokens")))
        return loam__fail(err, LOAM_E_UNSUPPORTED,
                          "%s: activated LoRA (alora_invocation_tokens) is not supported", what);
    loam_status s;
    if ((s = get_number(cfg, "r", 8, &L->r_default, what, err)))
        return s;
    if ((s = get_number(cfg, "lora_alpha", 8, &L->alpha_default, what, err)))
        return s;
    if ((s = get_bool(cfg, "use_rslora", &L->rslora, what, err)))
        return s;
    if ((s = get_bool(cfg, "use_dora", &L->dora, what, err)))
        return s;
    L->rank_pattern = obj_get(cfg, "rank_pattern");
    L->alpha_pattern = obj_get(cfg, "alpha_pattern");
    if ((s = compile_patterns(L->rank_pattern, "rank_pattern", &L->rank_re, &L->n_rank_re, what,
                              err)))
        return s;
    return compile_patterns(L->alpha_pattern, "alpha_pattern", &L->alpha_re, &L->n_alpha_re, what,
                            err);
}

// ---- tensor names -----------------------------------------------------------------------------

/* Parses "model.layers.<N>.<module>." at the start of key. Returns the rest after it, or NULL.
 * *layer is -2 when the layer number is malformed, *mod is LOAM__N_MOD when the module path is
 * not one of ours (then *mod_end marks where the module path would end: at the leaf). */
static const char *parse_prefix(const char *key, int64_t *layer, int *mod) {
    static const char pre[] = "model.layers.";
    if (strncmp(key, pre, sizeof pre - 1) != 0)
        return NULL;
    const char *p = key + sizeof pre - 1;
    int64_t n = 0;
    const char *d = p;
    while (*p >= '0' && *p <= '9') {
        n = n * 10 + (*p - '0');
        p++;
        if (n > 1000000000)
            return NULL;
    }
    if (p == d || *p != '.' || (p - d > 1 && *d == '0'))
        return NULL;
    *layer = n;
    p++;
    *mod = LOAM__N_MOD;
    for (int m = 0; m < LOAM__N_MOD; m++) {
        size_t len = strlen(loam__mod_path[m]);
        if (strncmp(p, loam__mod_path[m], len) == 0 && p[len] == '.') {
            *mod = m;
            return p + len + 1;
        }
    }
    return p;
}

typedef enum { LEAF_NONE, LEAF_A, LEAF_B, LEAF_M, LEAF_BIAS } leaf_kind;

static leaf_kind leaf_mlx(const char *leaf) {
    if (strcmp(leaf, "lora_a") == 0)
        return LEAF_A;
    if (strcmp(leaf, "lora_b") == 0)
        return LEAF_B;
    if (strcmp(leaf, "m") == 0)
        return LEAF_M;
    return LEAF_NONE;
}

static leaf_kind leaf_peft(const char *leaf) {
    static const struct {
        const char *s;
        leaf_kind k;
    } t[] = {
        {"lora_A.weight", LEAF_A},
        {"lora_A.default.weight", LEAF_A},
        {"lora_B.weight", LEAF_B},
        {"lora_B.default.weight", LEAF_B},
        {"lora_B.bias", LEAF_BIAS},
        {"lora_B.default.bias", LEAF_BIAS},
        {"lora_magnitude_vector", LEAF_M},
        {"lora_magnitude_vector.default", LEAF_M},
        {"lora_magnitude_vector.weight", LEAF_M},
        {"lora_magnitude_vector.default.weight", LEAF_M},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (strcmp(leaf, t[i].s) == 0)
            return t[i].k;
    return LEAF_NONE;
}

/* Keys we refuse on purpose (as opposed to keys we do not understand). */
static loam_status refuse_known(const loader *L, const char *key, loam_err *err) {
    if (strstr(key, "lora_embedding_A") || strstr(key, "lora_embedding_B") ||
        ((strstr(key, "embed_tokens.") || strstr(key, "lm_head.")) &&
         (strstr(key, ".lora_a") || strstr(key, ".lora_b") || strstr(key, ".lora_A") ||
          strstr(key, ".lora_B"))))
        return loam__fail(err, LOAM_E_UNSUPPORTED,
                          "%s: tensor '%.120s': LoRA on the embedding or lm_head is not supported",
                          L->file_name, key);
    if (strstr(key, "modules_to_save") || (L->fmt == FMT_PEFT && !strstr(key, "lora_") &&
                                           (strstr(key, ".weight") || strstr(key, ".bias"))))
        return loam__fail(err, LOAM_E_UNSUPPORTED,
                          "%s: tensor '%.120s' is a full weight (modules_to_save or a trained "
                          "bias), not a LoRA delta; not supported",
                          L->file_name, key);
    return LOAM_OK;
}

static bool mlx_wraps(const loader *L, int64_t layer, int mod) {
    if (!L->keys)
        return layer >= L->first_layer;
    char full[96];
    snprintf(full, sizeof full, "model.layers.%lld.%s", (long long)layer, loam__mod_path[mod]);
    for (const cJSON *k = L->keys->child; k; k = k->next) {
        if (layer >= L->first_layer && strcmp(k->valuestring, loam__mod_path[mod]) == 0)
            return true;
        if (strcmp(k->valuestring, full) == 0)
            return true;
    }
    return false;
}

static const char *dims_str(const loam_tensor *t, char *buf, size_t cap) {
    size_t at = 0;
    buf[0] = 0;
    at += (size_t)snprintf(buf + at, cap - at, "[");
    for (int32_t d = 0; d < t->n_dims && at < cap; d++)
        at += (size_t)snprintf(buf + at, cap - at, d ? ", %lld" : "%lld", (long long)t->shape[d]);
    if (at < cap)
        snprintf(buf + at, cap - at, "]");
    return buf;
}

static loam_status classify(loader *L, const loam_tensor *t, loam_err *err) {
    const char *key = t->name;
    const char *k = key;
    if (L->fmt == FMT_PEFT && strncmp(k, "base_model.model.", 17) == 0)
        k += 17;
    loam_status s = refuse_known(L, key, err);
    if (s)
        return s;
    int64_t layer = -1;
    int mod = LOAM__N_MOD;
    const char *leaf = parse_prefix(k, &layer, &mod);
    leaf_kind kind = LEAF_NONE;
    if (leaf && mod < LOAM__N_MOD)
        kind = L->fmt == FMT_MLX ? leaf_mlx(leaf) : leaf_peft(leaf);
    if (leaf && mod == LOAM__N_MOD) {
        /* an adapter leaf on a module path we do not know: a module the model lacks */
        const char *dot = NULL;
        for (const char *q = leaf; *q; q++)
            if (*q == '.' &&
                (L->fmt == FMT_MLX ? leaf_mlx(q + 1) : leaf_peft(q + 1)) != LEAF_NONE) {
                dot = q;
                break;
            }
        if (dot)
            return loam__fail(err, LOAM_E_FORMAT,
                              "%s: tensor '%.120s': the model has no module '%.*s' in its layers",
                              L->file_name, key, (int)(dot - leaf), leaf);
    }
    if (kind == LEAF_NONE)
        return loam__fail(err, LOAM_E_FORMAT, "%s: tensor '%.120s' is not a %s adapter tensor",
                          L->file_name, key, L->fmt == FMT_MLX ? "mlx-lm LoRA" : "PEFT LoRA");
    const loam__lora_base *b = L->base;
    if (layer >= b->n_layer)
        return loam__fail(err, LOAM_E_FORMAT,
                          "%s: tensor '%.120s': layer %lld, but the model has %d layers",
                          L->file_name, key, (long long)layer, b->n_layer);
    if (b->in[mod] <= 0 || b->out[mod] <= 0)
        return loam__fail(err, LOAM_E_FORMAT, "%s: tensor '%.120s': the model has no %s",
                          L->file_name, key, loam__mod_path[mod]);
    if (L->fmt == FMT_MLX && !mlx_wraps(L, layer, mod))
        return loam__fail(err, LOAM_E_FORMAT,
                          "%s: tensor '%.120s': layer %lld %s is not adapted by this "
                          "adapter_config.json (num_layers / lora_parameters.keys)",
                          L->file_name, key, (long long)layer, loam__mod_path[mod]);
    if (kind == LEAF_M && !L->dora)
        return loam__fail(err, LOAM_E_FORMAT,
                          "%s: tensor '%.120s' is a DoRA magnitude but the config is not DoRA "
                          "(%s)",
                          L->file_name, key, L->fmt == FMT_MLX ? "fine_tune_type" : "use_dora");
    if (t->dtype != LOAM_DTYPE_F32 && t->dtype != LOAM_DTYPE_F16 && t->dtype != LOAM_DTYPE_BF16)
        return loam__fail(err, LOAM_E_FORMAT,
                          "%s: tensor '%.120s': dtype %s (expected F32, F16 or BF16)", L->file_name,
                          key, loam_dtype_name(t->dtype));
    int want_dims = (kind == LEAF_A || kind == LEAF_B) ? 2 : 1;
    char sh[96];
    if (t->n_dims != want_dims)
        return loam__fail(err, LOAM_E_FORMAT, "%s: tensor '%.120s': shape %s, expected %d dims",
                          L->file_name, key, dims_str(t, sh, sizeof sh), want_dims);
    plan_mod *pm = &L->plan[layer * LOAM__N_MOD + mod];
    loam_tensor *slot = kind == LEAF_A   ? &pm->a
                        : kind == LEAF_B ? &pm->b
                        : kind == LEAF_M ? &pm->m
                                         : &pm->bias;
    if (slot->data)
        return loam__fail(err, LOAM_E_FORMAT, "%s: tensor '%.120s' duplicates '%.80s'",
                          L->file_name, key, slot->name);
    if (t->n_elements == 0)
        return loam__fail(err, LOAM_E_FORMAT, "%s: tensor '%.120s' is empty", L->file_name, key);
    *slot = *t;
    if (kind == LEAF_A)
        pm->a_key = key;
    if (kind == LEAF_B)
        pm->b_key = key;
    return LOAM_OK;
}

/* Shapes, ranks and scales of one module once all its tensors are known. */
static loam_status check_module(loader *L, int32_t layer, int mod, loam_err *err) {
    plan_mod *pm = &L->plan[layer * LOAM__N_MOD + mod];
    const int64_t in = L->base->in[mod], out = L->base->out[mod];
    char sh[96];
    if (!pm->a.data && !pm->b.data) {
        const char *other = pm->m.data ? pm->m.name : pm->bias.data ? pm->bias.name : NULL;
        if (other)
            return loam__fail(err, LOAM_E_FORMAT, "%s: tensor '%.120s' without its lora A and B",
                              L->file_name, other);
        return LOAM_OK;
    }
    if (!pm->a.data || !pm->b.data)
        return loam__fail(err, LOAM_E_FORMAT, "%s: tensor '%.120s' has no matching lora %s",
                          L->file_name, pm->a.data ? pm->a_key : pm->b_key, pm->a.data ? "B" : "A");
    /* mlx-lm: A [in, r], B [r, out]; PEFT: A [r, in], B [out, r] */
    const bool mlx = L->fmt == FMT_MLX;
    int64_t a_in = mlx ? pm->a.shape[0] : pm->a.shape[1];
    int64_t a_r = mlx ? pm->a.shape[1] : pm->a.shape[0];
    int64_t b_r = mlx ? pm->b.shape[0] : pm->b.shape[1];
    int64_t b_out = mlx ? pm->b.shape[1] : pm->b.shape[0];
    if (a_in != in)
        return loam__fail(err, LOAM_E_FORMAT,
                          "%s: tensor '%.120s': shape %s, but %s has %lld inputs", L->file_name,
                          pm->a_key, dims_str(&pm->a, sh, sizeof sh), loam__mod_path[mod],
                          (long long)in);
    if (b_out != out)
        return loam__fail(err, LOAM_E_FORMAT,
                          "%s: tensor '%.120s': shape %s, but %s has %lld outputs", L->file_name,
                          pm->b_key, dims_str(&pm->b, sh, sizeof sh), loam__mod_path[mod],
                          (long long)out);
    if (a_r != b_r)
        return loam__fail(err, LOAM_E_FORMAT,
                          "%s: tensor '%.120s' has rank %lld but '%.80s' has rank %lld",
                          L->file_name, pm->a_key, (long long)a_r, pm->b_key, (long long)b_r);
    if (a_r < 1 || a_r > 65536)
        return loam__fail(err, LOAM_E_FORMAT, "%s: tensor '%.120s': rank %lld not in [1, 65536]",
                          L->file_name, pm->a_key, (long long)a_r);
    if (pm->m.data && pm->m.shape[0] != out)
        return loam__fail(err, LOAM_E_FORMAT, "%s: tensor '%.120s': shape %s, expected [%lld]",
                          L->file_name, pm->m.name, dims_str(&pm->m, sh, sizeof sh),
                          (long long)out);
    if (pm->bias.data && pm->bias.shape[0] != out)
        return loam__fail(err, LOAM_E_FORMAT, "%s: tensor '%.120s': shape %s, expected [%lld]",
                          L->file_name, pm->bias.name, dims_str(&pm->bias, sh, sizeof sh),
                          (long long)out);
    if (pm->bias.data && L->dora)
        return loam__fail(err, LOAM_E_UNSUPPORTED,
                          "%s: tensor '%.120s': DoRA together with lora_bias is not supported",
                          L->file_name, pm->bias.name);
    pm->r = (int32_t)a_r;
    if (mlx) {
        if (a_r != L->rank)
            return loam__fail(err, LOAM_E_FORMAT,
                              "%s: tensor '%.120s' has rank %lld but lora_parameters.rank is %d",
                              L->file_name, pm->a_key, (long long)a_r, L->rank);
        pm->scale = (float)L->scale;
        return LOAM_OK;
    }
    char name[96];
    snprintf(name, sizeof name, "model.layers.%d.%s", layer, loam__mod_path[mod]);
    double r = pattern_value(L->rank_re, L->n_rank_re, L->rank_pattern, name, L->r_default);
    double alpha =
        pattern_value(L->alpha_re, L->n_alpha_re, L->alpha_pattern, name, L->alpha_default);
    if (r != (double)a_r)
        return loam__fail(err, LOAM_E_FORMAT,
                          "%s: tensor '%.120s' has rank %lld but adapter_config.json says r = %g",
                          L->file_name, pm->a_key, (long long)a_r, r);
    pm->scale = (float)(L->rslora ? alpha / sqrt(r) : alpha / r);
    return LOAM_OK;
}

// ---- conversion and DoRA ----------------------------------------------------------------------

/* dst [rows, cols] = src (rows x cols, or its transpose cols x rows when transpose) in f32. */
static void to_f32(const loam_tensor *t, bool transpose, int64_t rows, int64_t cols, float *dst) {
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++) {
            size_t src = transpose ? (size_t)(j * rows + i) : (size_t)(i * cols + j);
            dst[i * cols + j] = loam__load_float(t->data, t->dtype, src);
        }
}

static loam_status dora_factor(const loam__lora_base *base, int32_t layer, int mod,
                               const loam__lora_mod *lm, const float *m, float *dora,
                               const char *file_name, loam_err *err) {
    const int64_t in = base->in[mod], out = base->out[mod];
    const loam__qmat *W = base->weight ? base->weight(base->user, layer, (loam__mod)mod) : NULL;
    if (!W || W->n != out || W->k != in)
        return loam__fail(err, LOAM_E_FORMAT,
                          "%s: DoRA needs the base weight of layer %d %s [%lld, %lld]", file_name,
                          layer, loam__mod_path[mod], (long long)out, (long long)in);
    const int32_t r = lm->r;
    const float s = lm->scale;
    const int n_thr = omp_get_max_threads();
    /* per thread: one dequantized row of W [in] and column o of B [r] */
    const size_t per = (size_t)in + (size_t)r;
    float *rows = loam__malloc((size_t)n_thr * per * sizeof *rows);
    if (!rows)
        return loam__fail(err, LOAM_E_NOMEM, "%s: out of memory for DoRA", file_name);
#pragma omp parallel for schedule(static) num_threads(n_thr)
    for (int64_t o = 0; o < out; o++) {
        float *row = rows + (size_t)omp_get_thread_num() * per, *bo = row + in;
        loam__qmat_row(W, o, row);
        for (int32_t j = 0; j < r; j++)
            bo[j] = lm->b[(int64_t)j * out + o];
        double ss = 0.0, w2 = 0.0;
        for (int64_t i = 0; i < in; i++) {
            const float *ai = lm->a + i * r;
            float d = 0.0f;
            for (int32_t j = 0; j < r; j++)
                d += ai[j] * bo[j];
            float v = row[i] + s * d;
            ss += (double)v * (double)v;
            w2 += (double)row[i] * (double)row[i];
        }
        /* without m in the file, mlx-lm's init: the row norm of W alone */
        double mo = m ? (double)m[o] : sqrt(w2), norm = sqrt(ss);
        dora[o] = norm > 0.0 ? (float)(mo / norm) : 0.0f;
    }
    loam__free(rows);
    return LOAM_OK;
}

// ---- loading ----------------------------------------------------------------------------------

static loam_status load(loader *L, loam__adapter **out, const char *dir, loam_err *err) {
    const loam__lora_base *base = L->base;
    loam_status s = LOAM_OK;
    char *cfg_text = NULL;
    cJSON *cfg = NULL;
    loam_st *st = NULL;
    loam__adapter *a = NULL;
    float *mvec = NULL;
    size_t dl = strlen(dir);
    char *path = loam__malloc(dl + 64);
    if (!path)
        return loam__fail(err, LOAM_E_NOMEM, "adapter %s: out of memory", dir);

    /* which format: the file present decides (both present: peft_type in the config) */
    snprintf(path, dl + 64, "%s/adapters.safetensors", dir);
    bool has_mlx = file_exists(path);
    snprintf(path, dl + 64, "%s/adapter_model.safetensors", dir);
    bool has_peft = file_exists(path);
    snprintf(path, dl + 64, "%s/adapter_config.json", dir);
    size_t cfg_len = 0;
    if (!has_mlx && !has_peft) {
        snprintf(path, dl + 64, "%s/adapter_model.bin", dir);
        if (file_exists(path))
            s = loam__fail(err, LOAM_E_UNSUPPORTED,
                           "adapter %s: adapter_model.bin is a PyTorch pickle; save the adapter "
                           "as safetensors (PEFT's default)",
                           dir);
        else
            s = loam__fail(err, LOAM_E_NOTFOUND,
                           "adapter %s: no adapters.safetensors (mlx-lm) or "
                           "adapter_model.safetensors (PEFT)",
                           dir);
        goto done;
    }
    if ((s = loam__read_file(path, &cfg_text, &cfg_len, err)))
        goto done;
    if ((s = loam__json_parse(cfg_text, cfg_len, "adapter_config.json", &cfg, err)))
        goto done;
    if (!cJSON_IsObject(cfg)) {
        s = loam__fail(err, LOAM_E_FORMAT, "%s: not a JSON object", path);
        goto done;
    }
    L->fmt = has_peft && (!has_mlx || obj_get(cfg, "peft_type")) ? FMT_PEFT : FMT_MLX;
    s = L->fmt == FMT_MLX ? config_mlx(L, cfg, path, err) : config_peft(L, cfg, path, err);
    if (s)
        goto done;

    snprintf(L->file_name, sizeof L->file_name, "%s",
             L->fmt == FMT_MLX ? "adapters.safetensors" : "adapter_model.safetensors");
    snprintf(path, dl + 64, "%s/%s", dir, L->file_name);
    if ((s = loam_st_open(&st, path, err)))
        goto done;

    const int64_t n_slots = (int64_t)base->n_layer * LOAM__N_MOD;
    L->plan = loam__calloc((size_t)n_slots, sizeof *L->plan);
    if (!L->plan) {
        s = loam__fail(err, LOAM_E_NOMEM, "%s: out of memory", path);
        goto done;
    }
    for (size_t i = 0; i < loam_st_n_tensors(st); i++) {
        loam_tensor t;
        if ((s = loam_st_tensor(st, i, &t))) {
            s = loam__fail(err, s, "%s: tensor %zu unreadable", path, i);
            goto done;
        }
        if ((s = classify(L, &t, err)))
            goto done;
    }
    /* sizes: A, B, dora, bias per adapted module, all 64-bit checked */
    uint64_t n_floats = 0;
    bool any_dora = false;
    for (int32_t l = 0; l < base->n_layer; l++)
        for (int m = 0; m < LOAM__N_MOD; m++) {
            if ((s = check_module(L, l, m, err)))
                goto done;
            const plan_mod *pm = &L->plan[l * LOAM__N_MOD + m];
            if (!pm->a.data)
                continue;
            uint64_t in = (uint64_t)base->in[m], o = (uint64_t)base->out[m], r = (uint64_t)pm->r;
            uint64_t ab, t1, t2;
            if (loam__mul_u64(in + o, r, &ab) || loam__add_u64(n_floats, ab, &t1) ||
                loam__add_u64(t1, (L->dora ? o : 0) + (pm->bias.data ? o : 0), &t2) ||
                t2 > (SIZE_MAX / sizeof(float))) {
                s = loam__fail(err, LOAM_E_FORMAT, "%s: adapter too large", path);
                goto done;
            }
            n_floats = t2;
            any_dora |= L->dora;
        }
    a = loam__calloc(1, sizeof *a);
    if (a) {
        a->serial = ++g_adapter_serial;
        a->mods = loam__calloc((size_t)n_slots, sizeof *a->mods);
    }
    if (a && n_floats)
        a->block = loam__malloc((size_t)n_floats * sizeof(float));
    if (!a || !a->mods || (n_floats && !a->block)) {
        s = loam__fail(err, LOAM_E_NOMEM, "%s: out of memory for %llu adapter floats", path,
                       (unsigned long long)n_floats);
        goto done;
    }
    a->format = L->fmt == FMT_MLX ? "mlx-lm" : "peft";
    a->n_layer = base->n_layer;
    int64_t max_out = 0;
    for (int m = 0; m < LOAM__N_MOD; m++)
        max_out = base->out[m] > max_out ? base->out[m] : max_out;
    if (any_dora && !(mvec = loam__malloc((size_t)max_out * sizeof *mvec))) {
        s = loam__fail(err, LOAM_E_NOMEM, "%s: out of memory", path);
        goto done;
    }
    float *next = a->block;
    for (int32_t l = 0; l < base->n_layer; l++)
        for (int m = 0; m < LOAM__N_MOD; m++) {
            const plan_mod *pm = &L->plan[l * LOAM__N_MOD + m];
            if (!pm->a.data)
                continue;
            loam__lora_mod *lm = &a->mods[l * LOAM__N_MOD + m];
            const int64_t in = base->in[m], o = base->out[m], r = pm->r;
            const bool tr = L->fmt == FMT_PEFT; /* PEFT stores both transposed */
            float *A = next, *B = A + in * r;
            to_f32(&pm->a, tr, in, r, A);
            to_f32(&pm->b, tr, r, o, B);
            next = B + r * o;
            lm->a = A;
            lm->b = B;
            lm->r = (int32_t)r;
            lm->scale = pm->scale;
            if (pm->bias.data) {
                to_f32(&pm->bias, false, 1, o, next);
                lm->bias = next;
                next += o;
            }
            if (L->dora) {
                if (pm->m.data)
                    to_f32(&pm->m, false, 1, o, mvec);
                if ((s = dora_factor(base, l, m, lm, pm->m.data ? mvec : NULL, next, L->file_name,
                                     err)))
                    goto done;
                lm->dora = next;
                next += o;
            }
        }
    *out = a;
    a = NULL;
done:
    loam__adapter_free(a);
    loam__free(mvec);
    loam__free(L->plan);
    loam_st_close(st);
    cJSON_Delete(cfg);
    loam__free(cfg_text);
    loam__free(path);
    return s;
}

loam_status loam__adapter_load(loam__adapter **out, const char *dir, const loam__lora_base *base,
                               loam_err *err) {
    *out = NULL;
    if (!dir || !base || base->n_layer < 1)
        return loam__fail(err, LOAM_E_INVAL, "adapter: no directory or no model geometry");
    loader L;
    memset(&L, 0, sizeof L);
    L.base = base;
    loam_status s = load(&L, out, dir, err);
    free_patterns(L.rank_re, L.n_rank_re);
    free_patterns(L.alpha_re, L.n_alpha_re);
    return s;
}

void loam__adapter_free(loam__adapter *a) {
    if (!a)
        return;
    loam__free(a->block);
    loam__free(a->mods);
    loam__free(a);
}

const loam__lora_mod *loam__adapter_mod(const loam__adapter *a, int32_t layer, loam__mod mod) {
    if (!a || layer < 0 || layer >= a->n_layer || (int)mod < 0 || mod >= LOAM__N_MOD)
        return NULL;
    const loam__lora_mod *lm = &a->mods[layer * LOAM__N_MOD + mod];
    return lm->a ? lm : NULL;
}

const char *loam__adapter_format(const loam__adapter *a) {
    return a ? a->format : NULL;
}

// ---- apply ------------------------------------------------------------------------------------

void loam__lora_down(const loam__lora_mod *mod, const float *x, int64_t m, int64_t in, float *t) {
    const int32_t r = mod->r;
    const float *A = mod->a;
    for (int64_t row = 0; row < m; row++) {
        const float *xr = x + row * in;
        float *tr = t + row * r;
        int32_t j0 = 0;
        /* eight columns of A at a time: a fixed-length inner loop the compiler vectorizes */
        for (; j0 + 8 <= r; j0 += 8) {
            float acc[8] = {0};
            for (int64_t i = 0; i < in; i++) {
                const float xi = xr[i];
                const float *ai = A + i * r + j0;
                for (int k = 0; k < 8; k++)
                    acc[k] += xi * ai[k];
            }
            for (int k = 0; k < 8; k++)
                tr[j0 + k] = mod->scale * acc[k];
        }
        for (int32_t j = j0; j < r; j++) {
            float acc = 0.0f;
            for (int64_t i = 0; i < in; i++)
                acc += xr[i] * A[i * r + j];
            tr[j] = mod->scale * acc;
        }
    }
}

void loam__lora_up(const loam__lora_mod *mod, const float *t, int64_t m, int64_t out, int64_t o0,
                   int64_t o1, float *y) {
    const int32_t r = mod->r;
    const float *B = mod->b;
    for (int64_t row = 0; row < m; row++) {
        const float *tr = t + row * r;
        float *yr = y + row * out;
        int64_t o = o0;
        for (; o + 16 <= o1; o += 16) {
            float acc[16];
            for (int k = 0; k < 16; k++)
                acc[k] = yr[o + k];
            for (int32_t j = 0; j < r; j++) {
                const float tj = tr[j];
                const float *bj = B + (int64_t)j * out + o;
                for (int k = 0; k < 16; k++)
                    acc[k] += tj * bj[k];
            }
            for (int k = 0; k < 16; k++)
                yr[o + k] = acc[k];
        }
        for (; o < o1; o++) {
            float acc = yr[o];
            for (int32_t j = 0; j < r; j++)
                acc += tr[j] * B[(int64_t)j * out + o];
            yr[o] = acc;
        }
        if (mod->bias)
            for (o = o0; o < o1; o++)
                yr[o] += mod->scale * mod->bias[o];
        if (mod->dora)
            for (o = o0; o < o1; o++)
                yr[o] *= mod->dora[o];
    }
}

/* Below this many floats of A and B per call, threads cost more than they save. */
#define LORA_PAR_MIN_FLOATS (1 << 16)

void loam__lora_apply(const loam__lora_mod *mod, const float *x, int64_t m, int64_t in, int64_t out,
                      float *y, float *scratch) {
    const int64_t r = mod->r;
    const int n_thr = omp_in_parallel() ? 1 : omp_get_max_threads();
    if (n_thr <= 1 || (in + out) * r < LORA_PAR_MIN_FLOATS) {
        loam__lora_down(mod, x, m, in, scratch);
        loam__lora_up(mod, scratch, m, out, 0, out, y);
        return;
    }
    /* one row at a time: down is split over the rows of A (partial sums combined in order, so
     * the result does not depend on timing), up over blocks of outputs */
    float part[64 * 8];
    const int n_part = n_thr < 8 ? n_thr : 8;
    for (int64_t row = 0; row < m; row++) {
        const float *xr = x + row * in;
        float *tr = scratch + row * r;
        if (r <= 64) {
#pragma omp parallel num_threads(n_part)
            {
                const int id = omp_get_thread_num(), nt = omp_get_num_threads();
                const int64_t i0 = in * id / nt, i1 = in * (id + 1) / nt;
                loam__lora_mod sub = *mod;
                sub.a = mod->a + i0 * r;
                loam__lora_down(&sub, xr + i0, 1, i1 - i0, part + id * 64);
#pragma omp barrier
#pragma omp single
                for (int64_t j = 0; j < r; j++) {
                    float acc = 0.0f;
                    for (int k = 0; k < nt; k++)
                        acc += part[k * 64 + j];
                    tr[j] = acc;
                }
                const int64_t blocks = (out + 15) / 16;
                const int64_t b0 = blocks * id / nt, b1 = blocks * (id + 1) / nt;
                const int64_t o0 = b0 * 16, o1 = b1 * 16 < out ? b1 * 16 : out;
                if (o0 < o1)
                    loam__lora_up(mod, tr, 1, out, o0, o1, y + row * out);
            }
        } else {
            loam__lora_down(mod, xr, 1, in, tr);
#pragma omp parallel num_threads(n_thr)
            {
                const int id = omp_get_thread_num(), nt = omp_get_num_threads();
                const int64_t blocks = (out + 15) / 16;
                const int64_t b0 = blocks * id / nt, b1 = blocks * (id + 1) / nt;
                const int64_t o0 = b0 * 16, o1 = b1 * 16 < out ? b1 * 16 : out;
                if (o0 < o1)
                    loam__lora_up(mod, tr, 1, out, o0, o1, y + row * out);
            }
        }
    }
}

/* convert.c: `loam quantize` (loam_convert_quantize) and the mlx-lm directory writer shared with
 * synth.c.
 *
 * What mlx_lm.convert -q does, and so what this file does (FORMATS.md §2, mlx_lm/convert.py and
 * utils.py: quantize_model, save_model, make_shards, save_config, save):
 *  1. dtype: --dtype, else config "torch_dtype" (then "dtype", then text_config.dtype; any value
 *     but float16/bfloat16/float32 is ignored), else bf16 (loam's choice where mlx-lm would
 *     keep each tensor's own dtype). Every floating tensor is cast to it first.
 *  2. sanitize: lm_head.weight is dropped when tie_word_embeddings is true, and
 *     *.rotary_emb.inv_freq buffers always (mlx-lm's qwen3/qwen2/llama sanitize()).
 *  3. quantize: mlx-lm quantizes modules that have to_quantized (Linear, Embedding) whose
 *     weight's last dim % group_size == 0. Without the Python model, the rule here is the
 *     shape of that: a 2-D floating tensor named "*.weight" (every Linear/Embedding weight of
 *     Qwen3, Qwen2 and Llama; norms are 1-D, Linear biases are "*.bias"). P.weight becomes
 *     P.weight (U32 [n, k*bits/32]), P.scales, P.biases ([n, k/group_size], the cast dtype),
 *     bit-exact with MLX's CPU quantizer applied to the cast values (loam_quantize).
 *  4. config: "quantization" = "quantization_config" = {"group_size", "bits", "mode":
 *     "affine"}, "_name_or_path" and "vision_config" removed, top-level keys sorted, written as
 *     Python's json.dump(indent=4).
 *  5. save: tensors in parameter order (here: names in natural order, layer 2 before layer 10,
 *     which is how mlx-lm's module order groups them), greedy shards of at most 5 GiB,
 *     model.safetensors or model-%05d-of-%05d.safetensors with metadata {"format": "mlx"},
 *     model.safetensors.index.json {"metadata": {total_size, total_parameters}, "weight_map"
 *     sorted}, where total_parameters counts a quantized weight as packed*32/bits and its scales
 *     and biases as nothing (get_total_parameters).
 *  6. copies tokenizer files, chat templates, generation_config.json and *.py (mlx-lm writes
 *     the tokenizer through save_pretrained, which gives the same files, and adds a README.md
 *     model card, which loam does not).
 * Streaming: every output tensor is a lazy tensor of the safetensors writer, produced from the
 * mapped source while the shard is written; P.weight's fill quantizes rows in parallel
 * (OpenMP) straight into the writer's buffer and keeps P.scales/P.biases for the next two
 * fills, so memory stays about one output tensor.
 */
#define _POSIX_C_SOURCE 200809L
#include "convert.h"

#include "json.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <omp.h>
#include <sys/stat.h>
#include <unistd.h>

// ---- Python-style JSON ------------------------------------------------------------------------

/* Pre-order walk (cJSON keeps document order; nesting is at most 1000 deep): counts number
 * nodes in *n_num and those whose token was a float in *n_fl, storing them when out != NULL. */
static void count_numbers(const cJSON *v, const uint8_t *is_float, size_t n_tok, size_t *n_num,
                          size_t *n_fl, const cJSON **out) {
    if (cJSON_IsNumber(v)) {
        if (*n_num < n_tok && is_float[*n_num]) {
            if (out)
                out[*n_fl] = v;
            (*n_fl)++;
        }
        (*n_num)++;
    }
    for (const cJSON *c = v->child; c; c = c->next)
        count_numbers(c, is_float, n_tok, n_num, n_fl, out);
}

loam_status loam__json_number_kinds(const char *text, size_t len, const cJSON *root,
                                    loam__numkinds *k, loam_err *err) {
    k->floats = NULL;
    k->n = 0;
    /* number tokens of the text, in order: is it a float lexeme? */
    size_t cap = 0, n_tok = 0;
    uint8_t *is_float = NULL;
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        if (c == '"') { /* skip a string */
            for (i++; i < len && text[i] != '"'; i++)
                if (text[i] == '\\')
                    i++;
            continue;
        }
        if (c != '-' && (c < '0' || c > '9'))
            continue;
        int fl = 0;
        for (; i < len && strchr("+-0123456789.eE", text[i]); i++)
            if (text[i] == '.' || text[i] == 'e' || text[i] == 'E')
                fl = 1;
        i--;
        if (n_tok == cap) {
            cap = cap ? cap * 2 : 64;
            uint8_t *g = loam__realloc(is_float, cap);
            if (!g)
                goto nomem;
            is_float = g;
        }
        is_float[n_tok++] = (uint8_t)fl;
    }
    /* number nodes in pre-order (document order) */
    size_t n_num = 0, n_fl = 0;
    count_numbers(root, is_float, n_tok, &n_num, &n_fl, NULL);
    if (n_num != n_tok) {
        loam__free(is_float);
        return loam__fail(err, LOAM_E_FORMAT, "json: %zu numbers in the text but %zu in the tree",
                          n_tok, n_num);
    }
    if (n_fl) {
        k->floats = loam__malloc(n_fl * sizeof *k->floats);
        if (!k->floats)
            goto nomem;
        n_num = 0;
        count_numbers(root, is_float, n_tok, &n_num, &k->n, k->floats);
    }
    loam__free(is_float);
    return LOAM_OK;
nomem:
    loam__free(is_float);
    return loam__fail(err, LOAM_E_NOMEM, "json: out of memory");
}

void loam__numkinds_free(loam__numkinds *k) {
    if (!k)
        return;
    loam__free((void *)k->floats);
    k->floats = NULL;
    k->n = 0;
}

typedef struct {
    char *s;
    size_t n, cap;
    int oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->oom)
        return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->n + n + 1)
            cap *= 2;
        char *g = loam__realloc(b->s, cap);
        if (!g) {
            b->oom = 1;
            return;
        }
        b->s = g;
        b->cap = cap;
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = '\0';
}
static void sb_puts(sbuf *b, const char *s) {
    sb_put(b, s, strlen(s));
}
static void sb_indent(sbuf *b, int depth) {
    for (int i = 0; i < depth; i++)
        sb_put(b, "    ", 4);
}

/* json.dumps(str, ensure_ascii=True) */
static void py_string(sbuf *b, const char *s) {
    sb_put(b, "\"", 1);
    const uint8_t *p = (const uint8_t *)s;
    char tmp[16];
    while (*p) {
        uint32_t c = *p;
        int len = 1;
        if (c >= 0xf0) {
            c = ((c & 7u) << 18) | ((p[1] & 63u) << 12) | ((p[2] & 63u) << 6) | (p[3] & 63u);
            len = 4;
        } else if (c >= 0xe0) {
            c = ((c & 15u) << 12) | ((p[1] & 63u) << 6) | (p[2] & 63u);
            len = 3;
        } else if (c >= 0xc0) {
            c = ((c & 31u) << 6) | (p[1] & 63u);
            len = 2;
        }
        p += len;
        switch (c) {
        case '"':
            sb_puts(b, "\\\"");
            continue;
        case '\\':
            sb_puts(b, "\\\\");
            continue;
        case '\n':
            sb_puts(b, "\\n");
            continue;
        case '\r':
            sb_puts(b, "\\r");
            continue;
        case '\t':
            sb_puts(b, "\\t");
            continue;
        case '\b':
            sb_puts(b, "\\b");
            continue;
        case '\f':
            sb_puts(b, "\\f");
            continue;
        default:
            break;
        }
        if (c < 0x20 || (c > 0x7e && c != 0x7f)) {
            if (c >= 0x10000) {
                uint32_t v = c - 0x10000;
                snprintf(tmp, sizeof tmp, "\\u%04x\\u%04x", 0xd800u + (v >> 10),
                         0xdc00u + (v & 0x3ffu));
            } else {
                snprintf(tmp, sizeof tmp, "\\u%04x", c);
            }
            sb_puts(b, tmp);
        } else {
            char ch = (char)c;
            sb_put(b, &ch, 1);
        }
    }
    sb_put(b, "\"", 1);
}

/* Python's float.__repr__: the shortest digits that read back as the same double, in fixed
 * notation when the decimal exponent is in [-4, 16), else d.ddde±XX; integral values get ".0". */
static void py_float(sbuf *b, double v) {
    char digits[40], out[64];
    if (v == 0.0) {
        sb_puts(b, signbit(v) ? "-0.0" : "0.0");
        return;
    }
    int prec = 0;
    for (; prec < 17; prec++) {
        snprintf(digits, sizeof digits, "%.*e", prec, v);
        if (strtod(digits, NULL) == v)
            break;
    }
    /* digits = [-]d.ddde[+-]XX */
    char *e = strchr(digits, 'e');
    int exp10 = atoi(e + 1);
    *e = '\0';
    char mant[32];
    size_t nm = 0;
    int neg = digits[0] == '-';
    for (char *c = digits + neg; *c; c++)
        if (*c != '.')
            mant[nm++] = *c;
    mant[nm] = '\0';
    size_t o = 0;
    if (neg)
        out[o++] = '-';
    if (exp10 >= -4 && exp10 < 16) {
        if (exp10 < 0) {
            out[o++] = '0';
            out[o++] = '.';
            for (int z = 0; z < -exp10 - 1; z++)
                out[o++] = '0';
            for (size_t i = 0; i < nm; i++)
                out[o++] = mant[i];
        } else {
            size_t int_digits = (size_t)exp10 + 1;
            for (size_t i = 0; i < int_digits; i++)
                out[o++] = i < nm ? mant[i] : '0';
            out[o++] = '.';
            if (nm > int_digits)
                for (size_t i = int_digits; i < nm; i++)
                    out[o++] = mant[i];
            else
                out[o++] = '0';
        }
        out[o] = '\0';
    } else {
        out[o++] = mant[0];
        if (nm > 1) {
            out[o++] = '.';
            for (size_t i = 1; i < nm; i++)
                out[o++] = mant[i];
        }
        snprintf(out + o, sizeof out - o, "e%c%02d", exp10 < 0 ? '-' : '+', abs(exp10));
    }
    sb_puts(b, out);
}

static int is_float_node(const cJSON *v, const loam__numkinds *k) {
    if (!k)
        return 0;
    for (size_t i = 0; i < k->n; i++)
        if (k->floats[i] == v)
            return 1;
    return 0;
}

static int key_cmp(const void *a, const void *b) {
    return strcmp((*(const cJSON *const *)a)->string, (*(const cJSON *const *)b)->string);
}

static void py_value(sbuf *b, const cJSON *v, int depth, int sort, const loam__numkinds *k) {
    char tmp[64];
    if (cJSON_IsNull(v))
        sb_puts(b, "null");
    else if (cJSON_IsTrue(v))
        sb_puts(b, "true");
    else if (cJSON_IsFalse(v))
        sb_puts(b, "false");
    else if (cJSON_IsString(v))
        py_string(b, v->valuestring);
    else if (cJSON_IsNumber(v)) {
        double d = v->valuedouble;
        if (!is_float_node(v, k) && d == floor(d) && fabs(d) < 9.2e18) {
            snprintf(tmp, sizeof tmp, "%lld", (long long)d);
            sb_puts(b, tmp);
        } else {
            py_float(b, d);
        }
    } else if (cJSON_IsArray(v) || cJSON_IsObject(v)) {
        int obj = cJSON_IsObject(v);
        size_t n = 0;
        for (const cJSON *c = v->child; c; c = c->next)
            n++;
        if (n == 0) {
            sb_puts(b, obj ? "{}" : "[]");
            return;
        }
        const cJSON **items = loam__malloc(n * sizeof *items);
        if (!items) {
            b->oom = 1;
            return;
        }
        n = 0;
        for (const cJSON *c = v->child; c; c = c->next)
            items[n++] = c;
        if (obj && sort)
            qsort(items, n, sizeof *items, key_cmp);
        sb_puts(b, obj ? "{\n" : "[\n");
        for (size_t i = 0; i < n; i++) {
            sb_indent(b, depth + 1);
            if (obj) {
                py_string(b, items[i]->string);
                sb_puts(b, ": ");
            }
            py_value(b, items[i], depth + 1, 0, k);
            sb_puts(b, i + 1 < n ? ",\n" : "\n");
        }
        sb_indent(b, depth);
        sb_puts(b, obj ? "}" : "]");
        loam__free(items);
    }
}

char *loam__json_dump_py(const cJSON *v, int sort_top, const loam__numkinds *kinds) {
    sbuf b = {0};
    py_value(&b, v, 0, sort_top, kinds);
    if (b.oom || !b.s) {
        loam__free(b.s);
        return NULL;
    }
    return b.s;
}

// ---- files ------------------------------------------------------------------------------------

static char *path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), n = strlen(name);
    char *p = loam__malloc(a + n + 2);
    if (!p)
        return NULL;
    memcpy(p, dir, a);
    p[a] = '/';
    memcpy(p + a + 1, name, n + 1);
    return p;
}

loam_status loam__copy_file(const char *src, const char *dst, loam_err *err) {
    char *data = NULL;
    size_t len = 0;
    loam_status s = loam__read_file(src, &data, &len, err);
    if (s != LOAM_OK)
        return s;
    s = loam__write_file_atomic(dst, data, len, err);
    loam__free(data);
    return s;
}

/* Creates dir, or accepts an existing empty directory. */
static loam_status make_empty_dir(const char *dir, loam_err *err) {
    if (mkdir(dir, 0755) == 0)
        return LOAM_OK;
    if (errno != EEXIST)
        return loam__fail(err, LOAM_E_IO, "%s: cannot create directory: %s", dir, strerror(errno));
    DIR *d = opendir(dir);
    if (!d)
        return loam__fail(err, LOAM_E_INVAL, "%s: exists and is not a directory", dir);
    struct dirent *e;
    int empty = 1;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            empty = 0;
    closedir(d);
    if (!empty)
        return loam__fail(err, LOAM_E_INVAL, "%s: exists and is not empty", dir);
    return LOAM_OK;
}

// ---- the directory writer ---------------------------------------------------------------------

typedef struct {
    const loam__out_tensor *t;
    uint64_t *done, total;
    loam_progress_fn progress;
    void *user;
} fill_wrap;

static loam_status wrapped_fill(void *user, void *dst, uint64_t n_bytes, loam_err *err) {
    fill_wrap *w = (fill_wrap *)user;
    loam_status s = w->t->fill(w->t->user, dst, n_bytes, err);
    if (s != LOAM_OK)
        return s;
    *w->done += n_bytes;
    if (w->progress && !w->progress(w->user, *w->done, w->total))
        return loam__fail(err, LOAM_E_CANCELLED, "cancelled");
    return LOAM_OK;
}

static int name_cmp(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

loam_status loam__write_mlx_dir(const char *dir, const loam__out_tensor *t, size_t n,
                                const cJSON *config, const loam__numkinds *kinds,
                                const char *format, uint64_t max_shard_bytes,
                                loam_progress_fn progress, void *user, loam_err *err) {
    loam_status s = make_empty_dir(dir, err);
    if (s != LOAM_OK)
        return s;
    if (n == 0)
        return loam__fail(err, LOAM_E_INVAL, "%s: no tensors to write", dir);
    size_t *shard_of = loam__calloc(n, sizeof *shard_of);
    fill_wrap *wraps = loam__calloc(n, sizeof *wraps);
    const char **sorted = loam__calloc(n, sizeof *sorted);
    char *path = NULL, *text = NULL;
    cJSON *index = NULL;
    loam_st_writer *w = NULL;
    if (!shard_of || !wraps || !sorted) {
        s = loam__fail(err, LOAM_E_NOMEM, "%s: out of memory", dir);
        goto fail;
    }
    /* greedy shards, as make_shards: a new one when this tensor would pass the limit */
    size_t n_shards = 1;
    uint64_t shard_bytes = 0, total = 0, total_params = 0;
    for (size_t i = 0; i < n; i++) {
        if (shard_bytes > 0 && shard_bytes + t[i].n_bytes > max_shard_bytes) {
            n_shards++;
            shard_bytes = 0;
        }
        shard_bytes += t[i].n_bytes;
        shard_of[i] = n_shards - 1;
        total += t[i].n_bytes;
        total_params += t[i].n_params;
    }
    uint64_t done = 0;
    char fname[64];
    index = cJSON_CreateObject();
    cJSON *meta = cJSON_AddObjectToObject(index, "metadata");
    cJSON *wmap = cJSON_AddObjectToObject(index, "weight_map");
    if (!meta || !cJSON_AddNumberToObject(meta, "total_size", (double)total) ||
        !cJSON_AddNumberToObject(meta, "total_parameters", (double)total_params) || !wmap) {
        s = loam__fail(err, LOAM_E_NOMEM, "%s: out of memory", dir);
        goto fail;
    }
    for (size_t sh = 0; sh < n_shards; sh++) {
        if (n_shards == 1)
            snprintf(fname, sizeof fname, "model.safetensors");
        else
            snprintf(fname, sizeof fname, "model-%05zu-of-%05zu.safetensors", sh + 1, n_shards);
        s = loam_st_writer_new(&w, err);
        if (s != LOAM_OK)
            goto fail;
        s = loam_st_writer_set_metadata(w, "format", format, err);
        for (size_t i = 0; s == LOAM_OK && i < n; i++) {
            if (shard_of[i] != sh)
                continue;
            wraps[i] = (fill_wrap){&t[i], &done, total, progress, user};
            s = loam_st_writer_add_lazy(w, t[i].name, t[i].dtype, t[i].n_dims, t[i].shape,
                                        wrapped_fill, &wraps[i], err);
        }
        if (s != LOAM_OK)
            goto fail;
        path = path_join(dir, fname);
        if (!path) {
            s = loam__fail(err, LOAM_E_NOMEM, "%s: out of memory", dir);
            goto fail;
        }
        s = loam_st_writer_write(w, path, err);
        if (s != LOAM_OK)
            goto fail;
        loam__free(path);
        path = NULL;
        loam_st_writer_free(w);
        w = NULL;
    }
    /* index: weight_map sorted by name */
    for (size_t i = 0; i < n; i++)
        sorted[i] = t[i].name;
    qsort(sorted, n, sizeof *sorted, name_cmp);
    for (size_t j = 0; j < n; j++) {
        size_t i = 0;
        while (t[i].name != sorted[j])
            i++;
        if (n_shards == 1)
            snprintf(fname, sizeof fname, "model.safetensors");
        else
            snprintf(fname, sizeof fname, "model-%05zu-of-%05zu.safetensors", shard_of[i] + 1,
                     n_shards);
        if (!cJSON_AddStringToObject(wmap, t[i].name, fname)) {
            s = loam__fail(err, LOAM_E_NOMEM, "%s: out of memory", dir);
            goto fail;
        }
    }
    text = loam__json_dump_py(index, 0, NULL);
    path = path_join(dir, "model.safetensors.index.json");
    if (!text || !path) {
        s = loam__fail(err, LOAM_E_NOMEM, "%s: out of memory", dir);
        goto fail;
    }
    s = loam__write_file_atomic(path, text, strlen(text), err);
    if (s != LOAM_OK)
        goto fail;
    loam__free(text);
    loam__free(path);
    text = loam__json_dump_py(config, 1, kinds);
    path = path_join(dir, "config.json");
    if (!text || !path) {
        s = loam__fail(err, LOAM_E_NOMEM, "%s: out of memory", dir);
        goto fail;
    }
    s = loam__write_file_atomic(path, text, strlen(text), err);
fail:
    loam_st_writer_free(w);
    cJSON_Delete(index);
    loam__free(text);
    loam__free(path);
    loam__free(sorted);
    loam__free(wraps);
    loam__free(shard_of);
    return s;
}

// ---- loam quantize ----------------------------------------------------------------------------

loam_convert_params loam_convert_params_default(void) {
    loam_convert_params p;
    memset(&p, 0, sizeof p);
    p.bits = 4;
    p.group_size = 64;
    p.dtype = LOAM_DTYPE_INVALID;
    p.max_shard_bytes = (uint64_t)5 << 30;
    return p;
}

enum { OUT_CAST, OUT_QWEIGHT, OUT_QSCALES, OUT_QBIASES };

/* What one output tensor is made from. The three outputs of a quantized weight share `q`. */
typedef struct qcache {
    const void *key; /* data of the source whose scales/biases are held, or NULL */
    uint8_t *scales, *biases;
    size_t cap;
} qcache;

typedef struct job {
    int kind;
    loam_tensor src;
    loam_dtype dtype; /* output dtype (float casts, scales/biases) */
    loam_qformat fmt;
    int n_threads;
    qcache *cache;
} job;

static int is_float(loam_dtype t) {
    return t == LOAM_DTYPE_F32 || t == LOAM_DTYPE_F16 || t == LOAM_DTYPE_BF16;
}

/* Source element i as float32 after the cast to `to` (what MLX quantizes). */
static inline float cast_elem(const loam_tensor *src, size_t i, loam_dtype to) {
    float v = loam__load_float(src->data, src->dtype, i);
    if (to == LOAM_DTYPE_BF16)
        return loam__bf16_to_f32(loam__f32_to_bf16(v));
    if (to == LOAM_DTYPE_F16)
        return loam__f16_to_f32(loam__f32_to_f16(v));
    return v;
}

/* Quantizes src into wq (may be NULL: then only scales/biases) and the cache. */
static loam_status quantize_tensor(const job *j, uint8_t *wq, loam_err *err) {
    const loam_tensor *src = &j->src;
    const int64_t n = src->shape[0], k = src->shape[1];
    const loam_qformat f = j->fmt;
    size_t sb = (size_t)loam_qscale_bytes(f, n, k);
    qcache *c = j->cache;
    if (sb > c->cap) {
        loam__free(c->scales);
        loam__free(c->biases);
        c->scales = loam__malloc(sb);
        c->biases = loam__malloc(sb);
        c->cap = c->scales && c->biases ? sb : 0;
        if (!c->cap)
            return loam__fail(err, LOAM_E_NOMEM, "out of memory (%zu bytes)", 2 * sb);
    }
    c->key = NULL;
    const size_t row_bytes = (size_t)k * (size_t)f.bits / 8u, srow = sb / (size_t)n;
    int nt = j->n_threads > 0 ? j->n_threads : omp_get_max_threads();
    float *rows = loam__malloc((size_t)nt * (size_t)k * sizeof(float));
    uint8_t *tmp = wq ? NULL : loam__malloc((size_t)nt * row_bytes);
    if (!rows || (!wq && !tmp)) {
        loam__free(rows);
        loam__free(tmp);
        return loam__fail(err, LOAM_E_NOMEM, "out of memory");
    }
    int64_t bad_row = -1;
#pragma omp parallel num_threads(nt)
    {
        int t = omp_get_thread_num();
        float *row = rows + (size_t)t * (size_t)k;
#pragma omp for schedule(static)
        for (int64_t r = 0; r < n; r++) {
            for (int64_t i = 0; i < k; i++)
                row[i] = cast_elem(src, (size_t)(r * k + i), j->dtype);
            uint8_t *dst = wq ? wq + (size_t)r * row_bytes : tmp + (size_t)t * row_bytes;
            if (loam_quantize(row, 1, k, f, dst, c->scales + (size_t)r * srow,
                              c->biases + (size_t)r * srow, NULL) != LOAM_OK) {
#pragma omp critical
                if (bad_row < 0 || r < bad_row)
                    bad_row = r;
            }
        }
    }
    loam__free(rows);
    loam__free(tmp);
    if (bad_row >= 0)
        return loam__fail(err, LOAM_E_FORMAT, "row %lld has a value that is not finite",
                          (long long)bad_row);
    c->key = src->data;
    return LOAM_OK;
}

static loam_status fill_out(void *user, void *dst, uint64_t n_bytes, loam_err *err) {
    const job *j = (const job *)user;
    switch (j->kind) {
    case OUT_CAST: {
        if (j->src.dtype == j->dtype || !is_float(j->src.dtype)) {
            memcpy(dst, j->src.data, (size_t)n_bytes);
            return LOAM_OK;
        }
        for (uint64_t i = 0; i < j->src.n_elements; i++)
            loam__store_float(dst, j->dtype, (size_t)i, cast_elem(&j->src, (size_t)i, j->dtype));
        return LOAM_OK;
    }
    case OUT_QWEIGHT:
        return quantize_tensor(j, (uint8_t *)dst, err);
    default: {
        if (j->cache->key != j->src.data) { /* filled out of order: quantize again */
            loam_status s = quantize_tensor(j, NULL, err);
            if (s != LOAM_OK)
                return s;
        }
        memcpy(dst, j->kind == OUT_QSCALES ? j->cache->scales : j->cache->biases, (size_t)n_bytes);
        return LOAM_OK;
    }
    }
}

static loam_dtype dtype_from_name(const char *s) {
    if (!s)
        return LOAM_DTYPE_INVALID;
    if (strcmp(s, "bfloat16") == 0)
        return LOAM_DTYPE_BF16;
    if (strcmp(s, "float16") == 0)
        return LOAM_DTYPE_F16;
    if (strcmp(s, "float32") == 0)
        return LOAM_DTYPE_F32;
    return LOAM_DTYPE_INVALID;
}

static const char *json_str(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* Natural order: digit runs compare as numbers ("layers.2." before "layers.10."). */
static int natural_cmp(const char *a, const char *b) {
    while (*a && *b) {
        if (*a >= '0' && *a <= '9' && *b >= '0' && *b <= '9') {
            const char *ea = a, *eb = b;
            while (*ea == '0')
                ea++;
            while (*eb == '0')
                eb++;
            size_t la = 0, lb = 0;
            while (ea[la] >= '0' && ea[la] <= '9')
                la++;
            while (eb[lb] >= '0' && eb[lb] <= '9')
                lb++;
            if (la != lb)
                return la < lb ? -1 : 1;
            int c = memcmp(ea, eb, la);
            if (c)
                return c;
            a = ea + la;
            b = eb + lb;
            continue;
        }
        if (*a != *b)
            return (unsigned char)*a < (unsigned char)*b ? -1 : 1;
        a++;
        b++;
    }
    return *a ? 1 : *b ? -1 : 0;
}

static int tensor_natural_cmp(const void *a, const void *b) {
    return natural_cmp(((const loam_tensor *)a)->name, ((const loam_tensor *)b)->name);
}

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* Files copied next to the weights: tokenizer, chat template, generation config, code. */
static int copied_file(const char *name) {
    static const char *const exact[] = {"generation_config.json",
                                        "special_tokens_map.json",
                                        "vocab.json",
                                        "merges.txt",
                                        "added_tokens.json",
                                        "vocab.txt",
                                        "tokenizer.model"};
    for (size_t i = 0; i < sizeof exact / sizeof exact[0]; i++)
        if (strcmp(name, exact[i]) == 0)
            return 1;
    return strncmp(name, "tokenizer", 9) == 0 || strncmp(name, "chat_template", 13) == 0 ||
           ends_with(name, ".py") || ends_with(name, ".tiktoken") || ends_with(name, ".jinja");
}

static loam_status copy_side_files(const char *src, const char *dst, loam_err *err) {
    DIR *d = opendir(src);
    if (!d)
        return loam__fail(err, LOAM_E_IO, "%s: cannot list: %s", src, strerror(errno));
    loam_status s = LOAM_OK;
    struct dirent *e;
    while (s == LOAM_OK && (e = readdir(d)) != NULL) {
        if (!copied_file(e->d_name) || strcmp(e->d_name, "config.json") == 0)
            continue;
        char *from = path_join(src, e->d_name), *to = path_join(dst, e->d_name);
        struct stat st;
        if (!from || !to)
            s = loam__fail(err, LOAM_E_NOMEM, "out of memory");
        else if (stat(from, &st) == 0 && S_ISREG(st.st_mode))
            s = loam__copy_file(from, to, err);
        loam__free(from);
        loam__free(to);
    }
    closedir(d);
    return s;
}

/* The quantization dict of mlx-lm's quantize_model, keys in its order. */
static cJSON *quant_dict(int32_t bits, int32_t group_size) {
    cJSON *q = cJSON_CreateObject();
    if (!q || !cJSON_AddNumberToObject(q, "group_size", group_size) ||
        !cJSON_AddNumberToObject(q, "bits", bits) ||
        !cJSON_AddStringToObject(q, "mode", "affine")) {
        cJSON_Delete(q);
        return NULL;
    }
    return q;
}

loam_status loam_convert_quantize(const char *src_dir, const char *dst_dir,
                                  const loam_convert_params *params, loam_err *err) {
    loam_convert_params p = params ? *params : loam_convert_params_default();
    loam_qformat fmt = {p.bits, p.group_size, LOAM_DTYPE_BF16};
    loam_status s = loam_qformat_check(fmt, p.group_size, err);
    if (s != LOAM_OK)
        return s;
    if (!src_dir || !dst_dir)
        return loam__fail(err, LOAM_E_INVAL, "quantize: NULL directory");
    if (p.dtype != LOAM_DTYPE_INVALID && !is_float(p.dtype))
        return loam__fail(err, LOAM_E_INVAL, "quantize: dtype must be F32, F16 or BF16");
    if (p.max_shard_bytes == 0)
        p.max_shard_bytes = (uint64_t)5 << 30;

    loam_modeldir *md = NULL;
    cJSON *config = NULL;
    loam__numkinds kinds = {0};
    loam_tensor *src = NULL;
    job *jobs = NULL;
    loam__out_tensor *out = NULL;
    qcache cache = {0};
    s = loam_modeldir_open(&md, src_dir, err);
    if (s != LOAM_OK)
        return s;
    const char *ctext = loam_modeldir_config_text(md);
    if (!ctext) {
        s = loam__fail(err, LOAM_E_FORMAT, "%s: no config.json", src_dir);
        goto done;
    }
    s = loam__json_parse(ctext, strlen(ctext), "config.json", &config, err);
    if (s != LOAM_OK)
        goto done;
    s = loam__json_number_kinds(ctext, strlen(ctext), config, &kinds, err);
    if (s != LOAM_OK)
        goto done;
    if (cJSON_GetObjectItemCaseSensitive(config, "quantization")) {
        s = loam__fail(err, LOAM_E_UNSUPPORTED, "%s: config.json: the model is already quantized",
                       src_dir);
        goto done;
    }
    /* 1. dtype */
    loam_dtype dt = p.dtype;
    if (dt == LOAM_DTYPE_INVALID)
        dt = dtype_from_name(json_str(config, "torch_dtype"));
    if (dt == LOAM_DTYPE_INVALID)
        dt = dtype_from_name(json_str(config, "dtype"));
    if (dt == LOAM_DTYPE_INVALID)
        dt = dtype_from_name(
            json_str(cJSON_GetObjectItemCaseSensitive(config, "text_config"), "dtype"));
    if (dt == LOAM_DTYPE_INVALID)
        dt = LOAM_DTYPE_BF16;
    fmt.scale_dtype = dt;
    int tied = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(config, "tie_word_embeddings"));

    /* 2. the source tensors kept, in natural name order */
    size_t n_src = loam_modeldir_n_tensors(md), n_keep = 0;
    src = loam__calloc(n_src ? n_src : 1, sizeof *src);
    jobs = loam__calloc(3 * n_src + 1, sizeof *jobs);
    out = loam__calloc(3 * n_src + 1, sizeof *out);
    if (!src || !jobs || !out) {
        s = loam__fail(err, LOAM_E_NOMEM, "quantize: out of memory");
        goto done;
    }
    for (size_t i = 0; i < n_src; i++) {
        loam_tensor t;
        s = loam_modeldir_tensor(md, i, &t, NULL);
        if (s != LOAM_OK)
            goto done;
        if ((tied && strcmp(t.name, "lm_head.weight") == 0) ||
            strstr(t.name, "rotary_emb.inv_freq"))
            continue;
        if (t.dtype == LOAM_DTYPE_U32 && ends_with(t.name, ".weight")) {
            s = loam__fail(err, LOAM_E_UNSUPPORTED,
                           "%s: tensor '%s' is U32: the model looks "
                           "quantized already",
                           src_dir, t.name);
            goto done;
        }
        src[n_keep++] = t;
    }
    qsort(src, n_keep, sizeof *src, tensor_natural_cmp);

    /* 3. the output tensors */
    size_t n_out = 0;
    for (size_t i = 0; i < n_keep; i++) {
        const loam_tensor *t = &src[i];
        size_t nlen = strlen(t->name);
        if (nlen >= 240) {
            s = loam__fail(err, LOAM_E_FORMAT, "%s: tensor name '%.60s...' is too long", src_dir,
                           t->name);
            goto done;
        }
        int quant = is_float(t->dtype) && t->n_dims == 2 && ends_with(t->name, ".weight") &&
                    t->shape[1] > 0 && t->shape[1] % p.group_size == 0 && t->shape[0] > 0;
        if (!quant) {
            job *j = &jobs[n_out];
            *j = (job){OUT_CAST, *t, is_float(t->dtype) ? dt : t->dtype, fmt, p.n_threads, &cache};
            loam__out_tensor *o = &out[n_out++];
            snprintf(o->name, sizeof o->name, "%s", t->name);
            o->dtype = j->dtype;
            o->n_dims = t->n_dims;
            memcpy(o->shape, t->shape, sizeof o->shape);
            o->n_bytes = t->n_elements * (uint64_t)loam_dtype_bits(j->dtype) / 8u;
            o->n_params = t->n_elements;
            o->fill = fill_out;
            o->user = j;
            continue;
        }
        const int64_t n = t->shape[0], k = t->shape[1];
        char base[256];
        snprintf(base, sizeof base, "%.*s", (int)(nlen - 7), t->name); /* without ".weight" */
        for (int part = 0; part < 3; part++) {
            job *j = &jobs[n_out];
            *j = (job){part == 0 ? OUT_QWEIGHT : part == 1 ? OUT_QSCALES : OUT_QBIASES,
                       *t,
                       dt,
                       fmt,
                       p.n_threads,
                       &cache};
            loam__out_tensor *o = &out[n_out++];
            snprintf(o->name, sizeof o->name, "%.240s.%s", base,
                     part == 0   ? "weight"
                     : part == 1 ? "scales"
                                 : "biases");
            o->n_dims = 2;
            o->shape[0] = n;
            if (part == 0) {
                o->dtype = LOAM_DTYPE_U32;
                o->shape[1] = k * p.bits / 32;
                o->n_bytes = loam_qweight_bytes(fmt, n, k);
                o->n_params = t->n_elements; /* packed * 32 / bits */
            } else {
                o->dtype = dt;
                o->shape[1] = k / p.group_size;
                o->n_bytes = loam_qscale_bytes(fmt, n, k);
                o->n_params = 0;
            }
            o->fill = fill_out;
            o->user = j;
        }
    }
    /* 4. config */
    cJSON_DeleteItemFromObjectCaseSensitive(config, "_name_or_path");
    cJSON_DeleteItemFromObjectCaseSensitive(config, "vision_config");
    cJSON *q1 = quant_dict(p.bits, p.group_size), *q2 = quant_dict(p.bits, p.group_size);
    if (!q1 || !q2 || !cJSON_AddItemToObject(config, "quantization", q1)) {
        cJSON_Delete(q1);
        cJSON_Delete(q2);
        s = loam__fail(err, LOAM_E_NOMEM, "quantize: out of memory");
        goto done;
    }
    cJSON_DeleteItemFromObjectCaseSensitive(config, "quantization_config");
    if (!cJSON_AddItemToObject(config, "quantization_config", q2)) {
        cJSON_Delete(q2);
        s = loam__fail(err, LOAM_E_NOMEM, "quantize: out of memory");
        goto done;
    }

    /* 5. shards, index, config; 6. side files */
    s = loam__write_mlx_dir(dst_dir, out, n_out, config, &kinds, "mlx", p.max_shard_bytes,
                            p.progress, p.progress_user, err);
    if (s == LOAM_OK)
        s = copy_side_files(src_dir, dst_dir, err);
done:
    loam__free(cache.scales);
    loam__free(cache.biases);
    loam__free(out);
    loam__free(jobs);
    loam__free(src);
    loam__numkinds_free(&kinds);
    cJSON_Delete(config);
    loam_modeldir_close(md);
    return s;
}

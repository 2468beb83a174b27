/* cmd_inspect.c: `loam inspect PATH [--json]`, what is inside a safetensors file, a model
 * directory or an adapter directory.
 *
 * PATH kinds:
 *   - a file: opened with loam_st_open; a config.json next to it, if any, supplies the
 *     architecture and quantization facts;
 *   - an adapter directory: adapters.safetensors (mlx-lm) or adapter_model.safetensors (PEFT),
 *     each with adapter_config.json (FORMATS.md §3, §4);
 *   - otherwise a model directory, opened with loam_modeldir_open (FORMATS.md §2).
 *
 * Facts reported (text, or one JSON object with --json):
 *   - shards: file, tensors, bytes, header bytes, __metadata__;
 *   - config highlights: architecture, layers, hidden size, heads, KV heads, head_dim (given or
 *     hidden/heads), vocab, FFN size, tied embeddings, RoPE theta and scaling, max positions;
 *   - quantization (config "quantization", else "quantization_config"): mode, bits, group size,
 *     per-layer overrides (dicts or false), and which weights are quantized: P.weight (U32)
 *     with a sibling P.scales. Their bits come from the override of P if any (missing fields
 *     take the mode's defaults: affine 64/4, mxfp4 32/4, nvfp4 16/4, mxfp8 32/8), else from
 *     the top level;
 *   - parameters counted as mlx-lm's get_total_parameters: a quantized weight counts
 *     packed_elements * 32 / bits, its scales and biases count 0, everything else its elements.
 *     When a quantized weight's bits are unknown the total is reported as unknown;
 *   - adapters: format, fine-tune type, rank, scale (mlx-lm: given; PEFT: alpha/r, or
 *     alpha/sqrt(r) with rsLoRA), DoRA, configured keys/target modules, and from the tensors:
 *     the adapted layers, block-relative module keys and ranks.
 * Exit status: 0 ok, 1 for any unreadable or malformed input (one line on stderr naming the
 * file and the problem), 2 for usage errors. Uses only loam.h, cJSON and libc.
 */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"

#include <cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define CMD "inspect"

// ---- small helpers ----------------------------------------------------------------------------

/* Prints the error with control bytes made visible, so it stays one line. */
static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int fail(const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    for (char *p = msg; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f) *p = '?';
    return cli_error(CMD, "%s", msg);
}

static int is_file(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

static char *path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    p[a] = '/';
    memcpy(p + a + 1, name, b + 1);
    return p;
}

static const char *base_name(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

/* Reads a small JSON file and parses it; 0 on success, else prints the error and returns 1. */
static int load_json(const char *path, cJSON **out) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return fail("%s: cannot open: %s", path, strerror(errno));
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n + 4096 + 1 > cap) {
            cap = cap ? 2 * cap : 65536;
            if (cap > ((size_t)64 << 20)) {
                free(buf);
                fclose(f);
                return fail("%s: larger than 64 MiB", path);
            }
            char *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                fclose(f);
                return fail("%s: out of memory", path);
            }
            buf = nb;
        }
        size_t k = fread(buf + n, 1, cap - n - 1, f);
        n += k;
        if (k == 0) break;
    }
    int rd_err = ferror(f);
    fclose(f);
    if (rd_err) {
        free(buf);
        return fail("%s: read error", path);
    }
    buf[n] = '\0';
    const char *end = NULL;
    *out = cJSON_ParseWithLengthOpts(buf, n + 1, &end, 1);
    size_t at = end ? (size_t)(end - buf) : 0;
    free(buf);
    if (!*out) return fail("%s: invalid JSON near byte %zu", path, at);
    if (!cJSON_IsObject(*out)) {
        cJSON_Delete(*out);
        *out = NULL;
        return fail("%s: not a JSON object", path);
    }
    return 0;
}

/* Config lookups; a key missing at the top level is also looked up in "text_config"
 * (multimodal configs nest the language model there). */
static const cJSON *cfg_get(const cJSON *cfg, const char *key) {
    if (!cfg) return NULL;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (v) return v;
    const cJSON *tc = cJSON_GetObjectItemCaseSensitive(cfg, "text_config");
    return cJSON_IsObject(tc) ? cJSON_GetObjectItemCaseSensitive(tc, key) : NULL;
}

/* 1 and *out when key is an integer, 0 when absent or null, -1 (error printed) otherwise. */
static int cfg_int(const cJSON *cfg, const char *key, const char *file, int64_t *out) {
    const cJSON *v = cfg_get(cfg, key);
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsNumber(v) || floor(v->valuedouble) != v->valuedouble ||
        fabs(v->valuedouble) > 9007199254740991.0) {
        fail("%s: %s is not an integer", file, key);
        return -1;
    }
    *out = (int64_t)v->valuedouble;
    return 1;
}

static int cfg_num(const cJSON *cfg, const char *key, const char *file, double *out) {
    const cJSON *v = cfg_get(cfg, key);
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsNumber(v)) {
        fail("%s: %s is not a number", file, key);
        return -1;
    }
    *out = v->valuedouble;
    return 1;
}

static int cfg_bool(const cJSON *cfg, const char *key, const char *file, int *out) {
    const cJSON *v = cfg_get(cfg, key);
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsBool(v)) {
        fail("%s: %s is not true or false", file, key);
        return -1;
    }
    *out = cJSON_IsTrue(v);
    return 1;
}

static int cfg_str(const cJSON *cfg, const char *key, const char *file, const char **out) {
    const cJSON *v = cfg_get(cfg, key);
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsString(v)) {
        fail("%s: %s is not a string", file, key);
        return -1;
    }
    *out = v->valuestring;
    return 1;
}

static cJSON *json_u64(uint64_t v) {
    char b[24];
    snprintf(b, sizeof b, "%" PRIu64, v);
    return cJSON_CreateRaw(b);
}

static void format_shape(char *buf, size_t cap, const loam_tensor *t) {
    size_t k = 0;
    buf[0] = '\0';
    k += (size_t)snprintf(buf, cap, "[");
    for (int32_t d = 0; d < t->n_dims && k < cap; d++)
        k += (size_t)snprintf(buf + k, cap - k, "%s%" PRId64, d ? ", " : "", t->shape[d]);
    if (k < cap) snprintf(buf + k, cap - k, "]");
}

/* Names may hold any UTF-8, including control characters: show those escaped. */
static void print_name(const char *s, int width) {
    int n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p < 0x20 || *p == 0x7f) n += printf("\\x%02x", *p);
        else {
            putchar(*p);
            if ((*p & 0xc0) != 0x80) n++;
        }
    }
    for (; n < width; n++) putchar(' ');
}

/* 4.61 GB (bytes, powers of 1000) or 8.19 B (parameters: thousand, million, billion) */
static void human(char *buf, size_t cap, double v, int bytes) {
    static const char *pb[] = {"B", "KB", "MB", "GB", "TB", "PB"};
    static const char *pp[] = {"", "K", "M", "B", "T", "Q"};
    int i = 0;
    while (v >= 1000.0 && i < 5) {
        v /= 1000.0;
        i++;
    }
    const char *u = bytes ? pb[i] : pp[i];
    if (i) snprintf(buf, cap, "%.2f %s", v, u);
    else snprintf(buf, cap, "%.0f%s%s", v, *u ? " " : "", u);
}

// ---- what we collect --------------------------------------------------------------------------

typedef struct row {
    loam_tensor t;
    size_t shard;
    int quant;       /* 1: quantized weight; 2: scales/biases of a quantized module; 0: plain */
    int64_t bits;    /* quantized weight: bits, 0 when unknown */
    int64_t group_size;
    const char *mode;
    uint64_t params; /* logical parameters (valid when params_known) */
    int params_known;
} row;

typedef enum { KIND_FILE, KIND_MODEL, KIND_ADAPTER } kind_t;

typedef struct insp {
    const char *path;
    kind_t kind;
    loam_modeldir *md;
    loam_st *st;
    size_t n_shards;
    const loam_st *shard[1]; /* for KIND_FILE / KIND_ADAPTER; KIND_MODEL asks md */
    row *rows;               /* (n_rows) sorted by name */
    size_t n_rows;
    cJSON *config;           /* parsed config.json, or NULL */
    char *config_path;
    cJSON *acfg;             /* adapter_config.json */
    char *acfg_path;
    const char *adapter_format; /* "mlx-lm" or "peft" */
    const char *adapter_file;
} insp;

static const loam_st *shard_at(const insp *in, size_t i) {
    return in->kind == KIND_MODEL ? loam_modeldir_shard(in->md, i) : in->shard[0];
}

static int cmp_row(const void *a, const void *b) {
    return strcmp(((const row *)a)->t.name, ((const row *)b)->t.name);
}

static row *find_row(const insp *in, const char *name) {
    size_t lo = 0, hi = in->n_rows;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(in->rows[mid].t.name, name);
        if (c == 0) return &in->rows[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

static int collect_rows(insp *in) {
    size_t n = in->kind == KIND_MODEL ? loam_modeldir_n_tensors(in->md) : loam_st_n_tensors(in->st);
    in->rows = calloc(n + 1, sizeof *in->rows);
    if (!in->rows) return fail("%s: out of memory", in->path);
    for (size_t i = 0; i < n; i++) {
        row *r = &in->rows[i];
        loam_status s = in->kind == KIND_MODEL ? loam_modeldir_tensor(in->md, i, &r->t, &r->shard)
                                               : loam_st_tensor(in->st, i, &r->t);
        if (s != LOAM_OK) return fail("%s: tensor %zu: %s", in->path, i, loam_status_str(s));
        r->params = r->t.n_elements;
        r->params_known = 1;
    }
    in->n_rows = n;
    qsort(in->rows, n, sizeof *in->rows, cmp_row);
    return 0;
}

// ---- quantization -----------------------------------------------------------------------------

typedef struct qinfo {
    const cJSON *dict;  /* the quantization object, or NULL */
    const char *key;    /* "quantization" or "quantization_config" */
    const char *mode;   /* top-level mode (default "affine") */
    int64_t bits, group_size; /* 0 when absent */
    const char *foreign; /* quant_method of a foreign config, or NULL */
    size_t n_quantized;
} qinfo;

static void mode_defaults(const char *mode, int64_t *gs, int64_t *bits) {
    if (!strcmp(mode, "mxfp4")) *gs = 32, *bits = 4;
    else if (!strcmp(mode, "nvfp4")) *gs = 16, *bits = 4;
    else if (!strcmp(mode, "mxfp8")) *gs = 32, *bits = 8;
    else *gs = 64, *bits = 4;
}

static int is_reserved_qkey(const char *k) {
    return !strcmp(k, "group_size") || !strcmp(k, "bits") || !strcmp(k, "mode") ||
           !strcmp(k, "quant_method");
}

/* Reads bits/group_size/mode of a quantization dict; missing fields stay as given. */
static int read_qdict(const cJSON *d, const char *file, const char *what, const char **mode,
                      int64_t *bits, int64_t *gs) {
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(d, "mode");
    if (m && !cJSON_IsNull(m)) {
        if (!cJSON_IsString(m)) return fail("%s: %s.mode is not a string", file, what);
        *mode = m->valuestring;
    }
    const char *keys[2] = {"bits", "group_size"};
    int64_t *dst[2] = {bits, gs};
    for (int i = 0; i < 2; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(d, keys[i]);
        if (!v || cJSON_IsNull(v)) continue;
        if (!cJSON_IsNumber(v) || floor(v->valuedouble) != v->valuedouble || v->valuedouble < 1 ||
            v->valuedouble > 1024)
            return fail("%s: %s.%s is not a positive integer", file, what, keys[i]);
        *dst[i] = (int64_t)v->valuedouble;
    }
    return 0;
}

static int analyse_quant(insp *in, qinfo *q) {
    memset(q, 0, sizeof *q);
    q->mode = "affine";
    const char *file = in->config_path;
    if (in->config) {
        const cJSON *d = cfg_get(in->config, "quantization");
        q->key = "quantization";
        if (!d || cJSON_IsNull(d)) {
            d = cfg_get(in->config, "quantization_config");
            q->key = "quantization_config";
        }
        if (d && !cJSON_IsNull(d)) {
            if (!cJSON_IsObject(d)) return fail("%s: %s is not an object", file, q->key);
            q->dict = d;
            const cJSON *qm = cJSON_GetObjectItemCaseSensitive(d, "quant_method");
            if (cJSON_IsString(qm) && strcmp(q->key, "quantization_config") == 0)
                q->foreign = qm->valuestring;
            if (read_qdict(d, file, q->key, &q->mode, &q->bits, &q->group_size)) return 1;
            for (const cJSON *c = d->child; c; c = c->next) {
                if (is_reserved_qkey(c->string)) continue;
                if (cJSON_IsObject(c)) {
                    const char *m = q->mode;
                    int64_t b = 0, g = 0;
                    char what[300];
                    snprintf(what, sizeof what, "%s.%.200s", q->key, c->string);
                    if (read_qdict(c, file, what, &m, &b, &g)) return 1;
                }
            }
        }
    }
    for (size_t i = 0; i < in->n_rows; i++) {
        row *r = &in->rows[i];
        size_t len = strlen(r->t.name);
        if (len < 7 || strcmp(r->t.name + len - 7, ".weight") != 0 || r->t.dtype != LOAM_DTYPE_U32)
            continue;
        char *mod = strdup(r->t.name);
        if (!mod) return fail("%s: out of memory", in->path);
        mod[len - 7] = '\0';
        char *sib = malloc(len + 8);
        if (!sib) {
            free(mod);
            return fail("%s: out of memory", in->path);
        }
        snprintf(sib, len + 8, "%s.scales", mod);
        row *sc = find_row(in, sib);
        if (sc) {
            r->quant = 1;
            q->n_quantized++;
            sc->quant = 2;
            sc->params = 0;
            snprintf(sib, len + 8, "%s.biases", mod);
            row *bi = find_row(in, sib);
            if (bi) {
                bi->quant = 2;
                bi->params = 0;
            }
            const cJSON *ov = q->dict ? cJSON_GetObjectItemCaseSensitive(q->dict, mod) : NULL;
            r->mode = q->mode;
            r->bits = q->dict ? q->bits : 0;
            r->group_size = q->dict ? q->group_size : 0;
            if (cJSON_IsObject(ov)) {
                const char *m = q->mode;
                int64_t db, dg;
                const cJSON *om = cJSON_GetObjectItemCaseSensitive(ov, "mode");
                if (cJSON_IsString(om)) m = om->valuestring;
                else m = "affine"; /* a per-layer dict without mode is affine (FORMATS.md §9.6) */
                mode_defaults(m, &dg, &db);
                r->mode = m;
                r->bits = db;
                r->group_size = dg;
                read_qdict(ov, file, mod, &r->mode, &r->bits, &r->group_size);
            } else if (cJSON_IsFalse(ov)) {
                r->bits = 0; /* the config says "not quantized", yet there are scales */
            }
            if (r->bits > 0 && r->bits <= 32) {
                uint64_t p;
                if (__builtin_mul_overflow(r->t.n_elements, (uint64_t)32, &p)) r->params_known = 0;
                else r->params = p / (uint64_t)r->bits;
            } else {
                r->params_known = 0;
            }
        }
        free(sib);
        free(mod);
    }
    return 0;
}

// ---- config highlights ------------------------------------------------------------------------

typedef struct cinfo {
    const char *arch, *model_type, *torch_dtype;
    int64_t n_layer, n_embd, n_head, n_head_kv, head_dim, n_vocab, n_ff, max_pos;
    int has_layer, has_embd, has_head, has_head_kv, has_head_dim, has_vocab, has_ff, has_max_pos;
    int head_dim_derived, head_kv_derived;
    int tied, has_tied;
    double rope_theta;
    int has_rope_theta;
    const cJSON *rope_scaling; /* object or NULL */
} cinfo;

static int analyse_config(const insp *in, cinfo *c) {
    memset(c, 0, sizeof *c);
    const cJSON *cfg = in->config;
    const char *f = in->config_path;
    if (!cfg) return 0;
    const cJSON *archs = cJSON_GetObjectItemCaseSensitive(cfg, "architectures");
    if (archs && !cJSON_IsNull(archs)) {
        if (!cJSON_IsArray(archs)) return fail("%s: architectures is not a list", f);
        const cJSON *a0 = cJSON_GetArrayItem(archs, 0);
        if (a0 && !cJSON_IsString(a0)) return fail("%s: architectures[0] is not a string", f);
        if (a0) c->arch = a0->valuestring;
    }
    int r;
    if ((r = cfg_str(cfg, "model_type", f, &c->model_type)) < 0) return 1;
    if ((r = cfg_str(cfg, "torch_dtype", f, &c->torch_dtype)) < 0) return 1;
    if (!r && cfg_str(cfg, "dtype", f, &c->torch_dtype) < 0) return 1;
    struct {
        const char *key;
        int64_t *v;
        int *has;
    } ints[] = {
        {"num_hidden_layers", &c->n_layer, &c->has_layer},
        {"hidden_size", &c->n_embd, &c->has_embd},
        {"num_attention_heads", &c->n_head, &c->has_head},
        {"num_key_value_heads", &c->n_head_kv, &c->has_head_kv},
        {"head_dim", &c->head_dim, &c->has_head_dim},
        {"vocab_size", &c->n_vocab, &c->has_vocab},
        {"intermediate_size", &c->n_ff, &c->has_ff},
        {"max_position_embeddings", &c->max_pos, &c->has_max_pos},
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        r = cfg_int(cfg, ints[i].key, f, ints[i].v);
        if (r < 0) return 1;
        *ints[i].has = r;
    }
    if (!c->has_head_kv && c->has_head) {
        c->n_head_kv = c->n_head;
        c->has_head_kv = c->head_kv_derived = 1;
    }
    if (!c->has_head_dim && c->has_embd && c->has_head && c->n_head > 0) {
        c->head_dim = c->n_embd / c->n_head;
        c->has_head_dim = c->head_dim_derived = 1;
    }
    if ((r = cfg_bool(cfg, "tie_word_embeddings", f, &c->tied)) < 0) return 1;
    c->has_tied = r;
    if ((r = cfg_num(cfg, "rope_theta", f, &c->rope_theta)) < 0) return 1;
    c->has_rope_theta = r;
    const cJSON *rp = cfg_get(cfg, "rope_parameters");
    if (!r && cJSON_IsObject(rp)) {
        if ((r = cfg_num(rp, "rope_theta", f, &c->rope_theta)) < 0) return 1;
        c->has_rope_theta = r;
    }
    const cJSON *rs = cfg_get(cfg, "rope_scaling");
    if (rs && !cJSON_IsNull(rs)) {
        if (!cJSON_IsObject(rs)) return fail("%s: rope_scaling is not an object or null", f);
        c->rope_scaling = rs;
    } else if (cJSON_IsObject(rp)) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(rp, "rope_type");
        if (cJSON_IsString(t) && strcmp(t->valuestring, "default") != 0) c->rope_scaling = rp;
    }
    return 0;
}

// ---- adapters ---------------------------------------------------------------------------------

typedef struct ainfo {
    /* from adapter_config.json */
    const char *fine_tune_type;
    int64_t num_layers;
    int64_t rank;
    double scale, alpha, dropout;
    int has_alpha, use_rslora, use_dora, has_patterns;
    const cJSON *keys;           /* mlx-lm lora_parameters.keys, or NULL (default keys) */
    const cJSON *target_modules; /* PEFT: list, string or NULL */
    const char *base_model;
    /* from the tensors */
    int64_t *layers;
    size_t n_layers;
    char **mods;
    size_t n_mods;
    int64_t *ranks;
    size_t n_ranks;
    int dora_tensors;
} ainfo;

static int add_i64(int64_t **v, size_t *n, int64_t x) {
    for (size_t i = 0; i < *n; i++)
        if ((*v)[i] == x) return 0;
    int64_t *nv = realloc(*v, (*n + 1) * sizeof *nv);
    if (!nv) return -1;
    nv[(*n)++] = x;
    *v = nv;
    return 0;
}

static int add_str(char ***v, size_t *n, const char *s, size_t len) {
    for (size_t i = 0; i < *n; i++)
        if (strlen((*v)[i]) == len && !strncmp((*v)[i], s, len)) return 0;
    char **nv = realloc(*v, (*n + 1) * sizeof *nv);
    if (!nv) return -1;
    *v = nv;
    char *d = malloc(len + 1);
    if (!d) return -1;
    memcpy(d, s, len);
    d[len] = '\0';
    nv[(*n)++] = d;
    return 0;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}
static int cmp_strp(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Records module path mod[0..len): its layer index and block-relative key. */
static int note_module(ainfo *a, const char *mod, size_t len) {
    const char *p = NULL;
    for (size_t i = 0; i + 7 <= len; i++)
        if (!strncmp(mod + i, "layers.", 7) && (i == 0 || mod[i - 1] == '.')) p = mod + i + 7;
    if (p && p < mod + len && *p >= '0' && *p <= '9') {
        int64_t layer = 0;
        while (p < mod + len && *p >= '0' && *p <= '9' && layer < 100000000)
            layer = layer * 10 + (*p++ - '0');
        if (p < mod + len && *p == '.') {
            if (add_i64(&a->layers, &a->n_layers, layer)) return -1;
            return add_str(&a->mods, &a->n_mods, p + 1, (size_t)(mod + len - p - 1));
        }
    }
    return add_str(&a->mods, &a->n_mods, mod, len);
}

static int analyse_adapter(insp *in, ainfo *a) {
    memset(a, 0, sizeof *a);
    const cJSON *c = in->acfg;
    const char *f = in->acfg_path;
    int r;
    if (!strcmp(in->adapter_format, "mlx-lm")) {
        a->fine_tune_type = "lora";
        a->num_layers = 16;
        a->rank = 8;
        a->scale = 20.0;
        if (cfg_str(c, "fine_tune_type", f, &a->fine_tune_type) < 0) return 1;
        if (cfg_int(c, "num_layers", f, &a->num_layers) < 0) return 1;
        const cJSON *lp = cJSON_GetObjectItemCaseSensitive(c, "lora_parameters");
        if (lp && !cJSON_IsNull(lp)) {
            if (!cJSON_IsObject(lp)) return fail("%s: lora_parameters is not an object", f);
            if (cfg_int(lp, "rank", f, &a->rank) < 0) return 1;
            if (cfg_num(lp, "scale", f, &a->scale) < 0) return 1;
            if (cfg_num(lp, "dropout", f, &a->dropout) < 0) return 1;
            const cJSON *k = cJSON_GetObjectItemCaseSensitive(lp, "keys");
            if (k && !cJSON_IsNull(k)) {
                if (!cJSON_IsArray(k)) return fail("%s: lora_parameters.keys is not a list", f);
                for (const cJSON *x = k->child; x; x = x->next)
                    if (!cJSON_IsString(x))
                        return fail("%s: lora_parameters.keys holds a non-string", f);
                a->keys = k;
            }
        }
        a->use_dora = !strcmp(a->fine_tune_type, "dora");
    } else {
        const char *pt = "LORA";
        if (cfg_str(c, "peft_type", f, &pt) < 0) return 1;
        if (strcmp(pt, "LORA") != 0) return fail("%s: peft_type is \"%s\", not LORA", f, pt);
        a->fine_tune_type = "lora";
        a->rank = 8;
        a->alpha = 8;
        if (cfg_int(c, "r", f, &a->rank) < 0) return 1;
        if ((r = cfg_num(c, "lora_alpha", f, &a->alpha)) < 0) return 1;
        a->has_alpha = 1;
        if (cfg_bool(c, "use_rslora", f, &a->use_rslora) < 0) return 1;
        if (cfg_bool(c, "use_dora", f, &a->use_dora) < 0) return 1;
        if (cfg_num(c, "lora_dropout", f, &a->dropout) < 0) return 1;
        if (cfg_str(c, "base_model_name_or_path", f, &a->base_model) < 0) return 1;
        if (a->use_dora) a->fine_tune_type = "dora";
        const cJSON *tm = cJSON_GetObjectItemCaseSensitive(c, "target_modules");
        if (tm && !cJSON_IsNull(tm)) {
            if (!cJSON_IsArray(tm) && !cJSON_IsString(tm))
                return fail("%s: target_modules is not a list or a string", f);
            a->target_modules = tm;
        }
        const cJSON *rp = cJSON_GetObjectItemCaseSensitive(c, "rank_pattern");
        const cJSON *ap = cJSON_GetObjectItemCaseSensitive(c, "alpha_pattern");
        a->has_patterns = (cJSON_IsObject(rp) && rp->child) || (cJSON_IsObject(ap) && ap->child);
        if (a->rank <= 0) return fail("%s: r is not positive", f);
        a->scale = a->use_rslora ? a->alpha / sqrt((double)a->rank) : a->alpha / (double)a->rank;
    }
    /* the tensors say which modules are adapted and with which rank */
    static const struct {
        const char *marker;
        int rank_dim; /* dimension holding r, or -1 */
    } mlx_marks[] = {{".lora_a", 1}, {".lora_b", -1}, {".m", -1}},
      peft_marks[] = {{".lora_A.", 0},           {".lora_B.", -1},
                      {".lora_embedding_A", 0},  {".lora_embedding_B", -1},
                      {".lora_magnitude_vector", -1}};
    int mlx = !strcmp(in->adapter_format, "mlx-lm");
    size_t n_marks = mlx ? 3 : 5;
    for (size_t i = 0; i < in->n_rows; i++) {
        const loam_tensor *t = &in->rows[i].t;
        const char *name = t->name;
        if (!mlx && !strncmp(name, "base_model.model.", 17)) name += 17;
        size_t len = strlen(name);
        for (size_t m = 0; m < n_marks; m++) {
            const char *mk = mlx ? mlx_marks[m].marker : peft_marks[m].marker;
            int rd = mlx ? mlx_marks[m].rank_dim : peft_marks[m].rank_dim;
            size_t ml = strlen(mk);
            const char *hit = NULL;
            if (mlx) {
                if (len > ml && !strcmp(name + len - ml, mk)) hit = name + len - ml;
            } else {
                hit = strstr(name, mk);
            }
            if (!hit) continue;
            if (note_module(a, name, (size_t)(hit - name)))
                return fail("%s: out of memory", in->path);
            if (rd >= 0 && t->n_dims > rd && add_i64(&a->ranks, &a->n_ranks, t->shape[rd]))
                return fail("%s: out of memory", in->path);
            if ((mlx && m == 2) || (!mlx && m == 4)) a->dora_tensors = 1;
            break;
        }
    }
    if (a->n_layers) qsort(a->layers, a->n_layers, sizeof *a->layers, cmp_i64);
    if (a->n_mods) qsort(a->mods, a->n_mods, sizeof *a->mods, cmp_strp);
    if (a->n_ranks) qsort(a->ranks, a->n_ranks, sizeof *a->ranks, cmp_i64);
    return 0;
}

static void free_ainfo(ainfo *a) {
    for (size_t i = 0; i < a->n_mods; i++) free(a->mods[i]);
    free(a->mods);
    free(a->layers);
    free(a->ranks);
}

/* "0-15, 20" */
static void format_ranges(char *buf, size_t cap, const int64_t *v, size_t n) {
    size_t k = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n && k < cap;) {
        size_t j = i;
        while (j + 1 < n && v[j + 1] == v[j] + 1) j++;
        int w =
            j > i ? snprintf(buf + k, cap - k, "%s%" PRId64 "-%" PRId64, i ? ", " : "", v[i], v[j])
                  : snprintf(buf + k, cap - k, "%s%" PRId64, i ? ", " : "", v[i]);
        if (w < 0) break;
        k += (size_t)w;
        i = j + 1;
    }
}

// ---- totals -----------------------------------------------------------------------------------

typedef struct totals {
    uint64_t bytes, params;
    int params_known;
    size_t dtype_tensors[LOAM_DTYPE_COUNT];
    uint64_t dtype_bytes[LOAM_DTYPE_COUNT], dtype_elems[LOAM_DTYPE_COUNT];
} totals;

static void sum_totals(const insp *in, totals *t) {
    memset(t, 0, sizeof *t);
    t->params_known = 1;
    for (size_t i = 0; i < in->n_rows; i++) {
        const row *r = &in->rows[i];
        t->bytes += r->t.n_bytes;
        if (r->params_known) t->params += r->params;
        else t->params_known = 0;
        int d = (int)r->t.dtype;
        if (d > 0 && d < LOAM_DTYPE_COUNT) {
            t->dtype_tensors[d]++;
            t->dtype_bytes[d] += r->t.n_bytes;
            t->dtype_elems[d] += r->t.n_elements;
        }
    }
}

// ---- text output ------------------------------------------------------------------------------

static void print_text(const insp *in, const cinfo *c, const qinfo *q, const ainfo *a,
                       const totals *tt) {
    static const char *kinds[] = {"safetensors file", "model directory", "adapter directory"};
    printf("%s: %s", in->path, kinds[in->kind]);
    if (in->kind == KIND_MODEL)
        printf(", %zu shard%s (%s)", in->n_shards, in->n_shards == 1 ? "" : "s",
               loam_modeldir_has_index(in->md) ? "from model.safetensors.index.json"
                                               : "model*.safetensors");
    printf("\n");
    for (size_t s = 0; s < in->n_shards; s++) {
        const loam_st *st = shard_at(in, s);
        printf("  shard %zu: %s, %zu tensors, %" PRIu64 " bytes (header %" PRIu64 ")", s,
               base_name(loam_st_path(st)), loam_st_n_tensors(st), loam_st_file_bytes(st),
               loam_st_header_bytes(st));
        size_t nm = loam_st_n_metadata(st);
        for (size_t m = 0; m < nm; m++) {
            const char *k, *v;
            loam_st_metadata_at(st, m, &k, &v);
            printf("%s", m ? ", " : ", metadata ");
            print_name(k, 0);
            printf("=");
            print_name(v, 0);
        }
        printf("\n");
    }
    if (in->config) {
        printf("config: %s", in->config_path);
        if (c->arch || c->model_type)
            printf(" (%s%s%s%s)", c->arch ? c->arch : "", c->arch && c->model_type ? ", " : "",
                   c->model_type ? "model_type " : "", c->model_type ? c->model_type : "");
        printf("\n ");
        if (c->has_layer) printf(" layers %" PRId64 ",", c->n_layer);
        if (c->has_embd) printf(" hidden %" PRId64 ",", c->n_embd);
        if (c->has_head) printf(" heads %" PRId64 ",", c->n_head);
        if (c->has_head_kv)
            printf(" kv heads %" PRId64 "%s,", c->n_head_kv,
                   c->head_kv_derived ? " (= heads)" : "");
        if (c->has_head_dim)
            printf(" head_dim %" PRId64 "%s,", c->head_dim,
                   c->head_dim_derived ? " (hidden/heads)" : "");
        if (c->has_vocab) printf(" vocab %" PRId64 ",", c->n_vocab);
        if (c->has_ff) printf(" ffn %" PRId64 ",", c->n_ff);
        printf(" tied embeddings %s\n ", c->has_tied ? (c->tied ? "yes" : "no") : "no (default)");
        if (c->has_rope_theta) printf(" rope theta %.10g,", c->rope_theta);
        if (c->rope_scaling) {
            const cJSON *ty = cJSON_GetObjectItemCaseSensitive(c->rope_scaling, "rope_type");
            if (!cJSON_IsString(ty)) ty = cJSON_GetObjectItemCaseSensitive(c->rope_scaling, "type");
            const cJSON *fa = cJSON_GetObjectItemCaseSensitive(c->rope_scaling, "factor");
            printf(" rope scaling %s", cJSON_IsString(ty) ? ty->valuestring : "(no type)");
            if (cJSON_IsNumber(fa)) printf(" factor %g", fa->valuedouble);
            printf(",");
        } else {
            printf(" rope scaling none,");
        }
        if (c->has_max_pos) printf(" max positions %" PRId64 ",", c->max_pos);
        printf(" dtype %s\n", c->torch_dtype ? c->torch_dtype : "(not given)");
    } else if (in->kind != KIND_ADAPTER) {
        printf("config: none\n");
    }
    if (in->kind != KIND_ADAPTER) {
        if (q->dict) {
            printf("quantization: %s", q->mode);
            if (q->foreign) printf(" (foreign quant_method %s)", q->foreign);
            if (q->bits) printf(", %" PRId64 " bits", q->bits);
            if (q->group_size) printf(", group size %" PRId64, q->group_size);
            printf(" (config \"%s\")\n", q->key);
            int first = 1;
            for (const cJSON *o = q->dict->child; o; o = o->next) {
                if (is_reserved_qkey(o->string) || (!cJSON_IsObject(o) && !cJSON_IsFalse(o)))
                    continue;
                printf("%s", first ? "  overrides: " : "; ");
                first = 0;
                print_name(o->string, 0);
                if (cJSON_IsFalse(o)) {
                    printf(" not quantized");
                    continue;
                }
                const char *m = "affine";
                int64_t b, g;
                const cJSON *om = cJSON_GetObjectItemCaseSensitive(o, "mode");
                if (cJSON_IsString(om)) m = om->valuestring;
                mode_defaults(m, &g, &b);
                read_qdict(o, in->config_path, o->string, &m, &b, &g);
                printf(" %s %" PRId64 " bits, group %" PRId64, m, b, g);
            }
            if (!first) printf("\n");
        } else {
            printf("quantization: none in config\n");
        }
        printf("  quantized weights: %zu of %zu tensors (U32 .weight with a sibling .scales)\n",
               q->n_quantized, in->n_rows);
    } else {
        printf("adapter: %s (%s + adapter_config.json)\n", in->adapter_format, in->adapter_file);
        printf("  %s, rank %" PRId64 ", scale %g", a->fine_tune_type, a->rank, a->scale);
        if (a->has_alpha)
            printf(" (lora_alpha %g / %s%" PRId64 "%s)", a->alpha, a->use_rslora ? "sqrt(" : "",
                   a->rank, a->use_rslora ? ")" : "");
        if (!strcmp(in->adapter_format, "mlx-lm")) printf(", num_layers %" PRId64, a->num_layers);
        printf(", dropout %g%s\n", a->dropout,
               a->has_patterns ? ", per-module rank/alpha patterns" : "");
        if (!strcmp(in->adapter_format, "mlx-lm")) {
            printf("  keys: ");
            if (!a->keys) printf("default (every linear layer of the block)");
            for (const cJSON *k = a->keys ? a->keys->child : NULL; k; k = k->next)
                printf("%s%s", k == a->keys->child ? "" : ", ", k->valuestring);
            printf("\n");
        } else {
            printf("  target_modules: ");
            const cJSON *tm = a->target_modules;
            if (!tm) printf("(architecture default)");
            else if (cJSON_IsString(tm)) printf("%s", tm->valuestring);
            else
                for (const cJSON *k = tm->child; k; k = k->next)
                    printf("%s%s", k == tm->child ? "" : ", ",
                           cJSON_IsString(k) ? k->valuestring : "?");
            printf("\n");
            if (a->base_model) printf("  base model: %s\n", a->base_model);
        }
        char ranges[512];
        format_ranges(ranges, sizeof ranges, a->layers, a->n_layers);
        printf("  adapted layers: %zu%s%s%s\n", a->n_layers, a->n_layers ? " (" : "", ranges,
               a->n_layers ? ")" : "");
        printf("  adapted modules:");
        for (size_t i = 0; i < a->n_mods; i++) printf("%s%s", i ? ", " : " ", a->mods[i]);
        printf("%s\n", a->n_mods ? "" : " none");
        printf("  tensor ranks:");
        for (size_t i = 0; i < a->n_ranks; i++) printf("%s%" PRId64, i ? ", " : " ", a->ranks[i]);
        printf("%s%s\n", a->n_ranks ? "" : " none",
               a->n_ranks == 1 && a->ranks[0] != a->rank && !a->has_patterns
                   ? " (differs from the configured rank)"
                   : "");
        if (a->dora_tensors) printf("  DoRA magnitude tensors present\n");
    }

    int w = 4;
    for (size_t i = 0; i < in->n_rows; i++) {
        int l = (int)strlen(in->rows[i].t.name);
        if (l > w) w = l;
    }
    if (w > 80) w = 80;
    printf("\n  %-*s  %-11s %-22s %14s  %5s  %s\n", w, "name", "dtype", "shape", "bytes", "shard",
           "quant");
    for (size_t i = 0; i < in->n_rows; i++) {
        const row *r = &in->rows[i];
        char shape[200];
        format_shape(shape, sizeof shape, &r->t);
        printf("  ");
        print_name(r->t.name, w);
        printf("  %-11s %-22s %14" PRIu64 "  %5zu  ", loam_dtype_name(r->t.dtype), shape,
               r->t.n_bytes, r->shard);
        if (r->quant == 1) {
            if (r->bits) printf("%s %" PRId64 "-bit g%" PRId64, r->mode, r->bits, r->group_size);
            else printf("quantized, bits unknown");
        } else if (r->quant == 2) {
            printf("(quant params)");
        }
        printf("\n");
    }
    char hb[32], hp[32];
    human(hb, sizeof hb, (double)tt->bytes, 1);
    human(hp, sizeof hp, (double)tt->params, 0);
    printf("\ntotals: %zu tensors, ", in->n_rows);
    if (tt->params_known) printf("%" PRIu64 " parameters (%s), ", tt->params, hp);
    else printf("parameters unknown (quantized weights without bits in a config), ");
    printf("%" PRIu64 " bytes of tensor data (%s)\n", tt->bytes, hb);
    for (int d = 1; d < LOAM_DTYPE_COUNT; d++) {
        if (!tt->dtype_tensors[d]) continue;
        printf("  %-11s %6zu tensors %16" PRIu64 " elements %16" PRIu64 " bytes\n",
               loam_dtype_name((loam_dtype)d), tt->dtype_tensors[d], tt->dtype_elems[d],
               tt->dtype_bytes[d]);
    }
}

// ---- JSON output ------------------------------------------------------------------------------

static cJSON *opt_int(int has, int64_t v) {
    return has ? cJSON_CreateNumber((double)v) : cJSON_CreateNull();
}

static int print_json(const insp *in, const cinfo *c, const qinfo *q, const ainfo *a,
                      const totals *tt) {
    static const char *kinds[] = {"file", "model", "adapter"};
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "path", in->path);
    cJSON_AddStringToObject(o, "kind", kinds[in->kind]);
    if (in->kind == KIND_MODEL) cJSON_AddBoolToObject(o, "index", loam_modeldir_has_index(in->md));
    cJSON *shards = cJSON_AddArrayToObject(o, "shards");
    for (size_t s = 0; s < in->n_shards; s++) {
        const loam_st *st = shard_at(in, s);
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "file", base_name(loam_st_path(st)));
        cJSON_AddItemToObject(j, "tensors", json_u64(loam_st_n_tensors(st)));
        cJSON_AddItemToObject(j, "bytes", json_u64(loam_st_file_bytes(st)));
        cJSON_AddItemToObject(j, "header_bytes", json_u64(loam_st_header_bytes(st)));
        cJSON *md = cJSON_AddObjectToObject(j, "metadata");
        for (size_t m = 0; m < loam_st_n_metadata(st); m++) {
            const char *k, *v;
            loam_st_metadata_at(st, m, &k, &v);
            cJSON_AddStringToObject(md, k, v);
        }
        cJSON_AddItemToArray(shards, j);
    }
    if (in->config) {
        cJSON *j = cJSON_AddObjectToObject(o, "config");
        cJSON_AddStringToObject(j, "file", in->config_path);
        cJSON_AddItemToObject(j, "architecture",
                              c->arch ? cJSON_CreateString(c->arch) : cJSON_CreateNull());
        cJSON_AddItemToObject(j, "model_type",
                              c->model_type ? cJSON_CreateString(c->model_type)
                                            : cJSON_CreateNull());
        cJSON_AddItemToObject(j, "num_hidden_layers", opt_int(c->has_layer, c->n_layer));
        cJSON_AddItemToObject(j, "hidden_size", opt_int(c->has_embd, c->n_embd));
        cJSON_AddItemToObject(j, "num_attention_heads", opt_int(c->has_head, c->n_head));
        cJSON_AddItemToObject(j, "num_key_value_heads", opt_int(c->has_head_kv, c->n_head_kv));
        cJSON_AddItemToObject(j, "head_dim", opt_int(c->has_head_dim, c->head_dim));
        cJSON_AddBoolToObject(j, "head_dim_derived", c->head_dim_derived);
        cJSON_AddItemToObject(j, "vocab_size", opt_int(c->has_vocab, c->n_vocab));
        cJSON_AddItemToObject(j, "intermediate_size", opt_int(c->has_ff, c->n_ff));
        cJSON_AddItemToObject(j, "max_position_embeddings", opt_int(c->has_max_pos, c->max_pos));
        cJSON_AddBoolToObject(j, "tie_word_embeddings", c->has_tied && c->tied);
        cJSON_AddItemToObject(j, "rope_theta",
                              c->has_rope_theta ? cJSON_CreateNumber(c->rope_theta)
                                                : cJSON_CreateNull());
        cJSON_AddItemToObject(j, "rope_scaling",
                              c->rope_scaling ? cJSON_Duplicate(c->rope_scaling, 1)
                                              : cJSON_CreateNull());
        cJSON_AddItemToObject(j, "torch_dtype",
                              c->torch_dtype ? cJSON_CreateString(c->torch_dtype)
                                             : cJSON_CreateNull());
    } else {
        cJSON_AddNullToObject(o, "config");
    }
    if (in->kind != KIND_ADAPTER) {
        cJSON *j = cJSON_AddObjectToObject(o, "quantization");
        if (q->dict) {
            cJSON_AddStringToObject(j, "source", q->key);
            cJSON_AddStringToObject(j, "mode", q->mode);
            cJSON_AddItemToObject(j, "bits", opt_int(q->bits != 0, q->bits));
            cJSON_AddItemToObject(j, "group_size", opt_int(q->group_size != 0, q->group_size));
            if (q->foreign) cJSON_AddStringToObject(j, "quant_method", q->foreign);
            cJSON *ov = cJSON_AddObjectToObject(j, "overrides");
            for (const cJSON *x = q->dict->child; x; x = x->next)
                if (!is_reserved_qkey(x->string) && (cJSON_IsObject(x) || cJSON_IsFalse(x)))
                    cJSON_AddItemToObject(ov, x->string, cJSON_Duplicate(x, 1));
        } else {
            cJSON_AddNullToObject(j, "source");
        }
        cJSON *qt = cJSON_AddArrayToObject(j, "quantized_tensors");
        for (size_t i = 0; i < in->n_rows; i++)
            if (in->rows[i].quant == 1)
                cJSON_AddItemToArray(qt, cJSON_CreateString(in->rows[i].t.name));
    } else {
        cJSON *j = cJSON_AddObjectToObject(o, "adapter");
        cJSON_AddStringToObject(j, "format", in->adapter_format);
        cJSON_AddStringToObject(j, "file", in->adapter_file);
        cJSON_AddStringToObject(j, "fine_tune_type", a->fine_tune_type);
        cJSON_AddNumberToObject(j, "rank", (double)a->rank);
        cJSON_AddNumberToObject(j, "scale", a->scale);
        if (a->has_alpha) {
            cJSON_AddNumberToObject(j, "lora_alpha", a->alpha);
            cJSON_AddBoolToObject(j, "use_rslora", a->use_rslora);
            cJSON_AddItemToObject(j, "target_modules",
                                  a->target_modules ? cJSON_Duplicate(a->target_modules, 1)
                                                    : cJSON_CreateNull());
            cJSON_AddBoolToObject(j, "rank_or_alpha_patterns", a->has_patterns);
        } else {
            cJSON_AddNumberToObject(j, "num_layers", (double)a->num_layers);
            cJSON_AddItemToObject(j, "keys",
                                  a->keys ? cJSON_Duplicate(a->keys, 1) : cJSON_CreateNull());
        }
        cJSON_AddNumberToObject(j, "dropout", a->dropout);
        cJSON_AddBoolToObject(j, "use_dora", a->use_dora);
        cJSON *l = cJSON_AddArrayToObject(j, "adapted_layers");
        for (size_t i = 0; i < a->n_layers; i++)
            cJSON_AddItemToArray(l, cJSON_CreateNumber((double)a->layers[i]));
        cJSON *m = cJSON_AddArrayToObject(j, "adapted_modules");
        for (size_t i = 0; i < a->n_mods; i++)
            cJSON_AddItemToArray(m, cJSON_CreateString(a->mods[i]));
        cJSON *r = cJSON_AddArrayToObject(j, "tensor_ranks");
        for (size_t i = 0; i < a->n_ranks; i++)
            cJSON_AddItemToArray(r, cJSON_CreateNumber((double)a->ranks[i]));
        cJSON_AddBoolToObject(j, "dora_tensors", a->dora_tensors);
    }
    cJSON *ts = cJSON_AddArrayToObject(o, "tensors");
    for (size_t i = 0; i < in->n_rows; i++) {
        const row *r = &in->rows[i];
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "name", r->t.name);
        cJSON_AddStringToObject(j, "dtype", loam_dtype_name(r->t.dtype));
        cJSON *sh = cJSON_AddArrayToObject(j, "shape");
        for (int32_t d = 0; d < r->t.n_dims; d++)
            cJSON_AddItemToArray(sh, json_u64((uint64_t)r->t.shape[d]));
        cJSON_AddItemToObject(j, "bytes", json_u64(r->t.n_bytes));
        cJSON_AddItemToObject(j, "shard", json_u64(r->shard));
        cJSON_AddItemToObject(j, "parameters",
                              r->params_known ? json_u64(r->params) : cJSON_CreateNull());
        if (r->quant == 1) {
            cJSON *qq = cJSON_AddObjectToObject(j, "quantized");
            cJSON_AddStringToObject(qq, "mode", r->mode);
            cJSON_AddItemToObject(qq, "bits", opt_int(r->bits != 0, r->bits));
            cJSON_AddItemToObject(qq, "group_size", opt_int(r->group_size != 0, r->group_size));
        }
        cJSON_AddItemToArray(ts, j);
    }
    cJSON *tj = cJSON_AddObjectToObject(o, "totals");
    cJSON_AddItemToObject(tj, "tensors", json_u64(in->n_rows));
    cJSON_AddItemToObject(tj, "parameters",
                          tt->params_known ? json_u64(tt->params) : cJSON_CreateNull());
    cJSON_AddItemToObject(tj, "bytes", json_u64(tt->bytes));
    cJSON *dt = cJSON_AddObjectToObject(tj, "dtypes");
    for (int d = 1; d < LOAM_DTYPE_COUNT; d++) {
        if (!tt->dtype_tensors[d]) continue;
        cJSON *x = cJSON_AddObjectToObject(dt, loam_dtype_name((loam_dtype)d));
        cJSON_AddItemToObject(x, "tensors", json_u64(tt->dtype_tensors[d]));
        cJSON_AddItemToObject(x, "elements", json_u64(tt->dtype_elems[d]));
        cJSON_AddItemToObject(x, "bytes", json_u64(tt->dtype_bytes[d]));
    }
    char *text = cJSON_Print(o);
    cJSON_Delete(o);
    if (!text) return fail("%s: out of memory printing JSON", in->path);
    printf("%s\n", text);
    cJSON_free(text);
    return 0;
}

// ---- opening ----------------------------------------------------------------------------------

static int open_target(insp *in) {
    loam_err e = {LOAM_OK, ""};
    struct stat sb;
    if (stat(in->path, &sb) != 0) return fail("%s: %s", in->path, strerror(errno));
    if (S_ISREG(sb.st_mode)) {
        in->kind = KIND_FILE;
        if (loam_st_open(&in->st, in->path, &e) != LOAM_OK) return fail("%s", e.msg);
        in->shard[0] = in->st;
        in->n_shards = 1;
        /* a config.json next to the file supplies bits and architecture */
        char *dir = strdup(in->path);
        if (!dir) return fail("%s: out of memory", in->path);
        char *slash = strrchr(dir, '/');
        if (slash) *slash = '\0';
        in->config_path = path_join(slash ? (*dir ? dir : "/") : ".", "config.json");
        free(dir);
        if (!in->config_path) return fail("%s: out of memory", in->path);
        if (is_file(in->config_path) && load_json(in->config_path, &in->config)) return 1;
        return 0;
    }
    if (!S_ISDIR(sb.st_mode)) return fail("%s: not a file or directory", in->path);
    char *mlx = path_join(in->path, "adapters.safetensors");
    char *peft = path_join(in->path, "adapter_model.safetensors");
    in->acfg_path = path_join(in->path, "adapter_config.json");
    if (!mlx || !peft || !in->acfg_path) {
        free(mlx);
        free(peft);
        return fail("%s: out of memory", in->path);
    }
    int has_mlx = is_file(mlx), has_peft = is_file(peft);
    if (has_mlx && has_peft) {
        free(mlx);
        free(peft);
        return fail("%s: holds both adapters.safetensors and adapter_model.safetensors", in->path);
    }
    if (has_mlx || has_peft) {
        in->kind = KIND_ADAPTER;
        in->adapter_format = has_mlx ? "mlx-lm" : "peft";
        in->adapter_file = has_mlx ? "adapters.safetensors" : "adapter_model.safetensors";
        loam_status s = loam_st_open(&in->st, has_mlx ? mlx : peft, &e);
        free(mlx);
        free(peft);
        if (s != LOAM_OK) return fail("%s", e.msg);
        in->shard[0] = in->st;
        in->n_shards = 1;
        if (!is_file(in->acfg_path))
            return fail("%s: missing (it describes the adapter)", in->acfg_path);
        return load_json(in->acfg_path, &in->acfg);
    }
    free(mlx);
    free(peft);
    in->kind = KIND_MODEL;
    if (loam_modeldir_open(&in->md, in->path, &e) != LOAM_OK) return fail("%s", e.msg);
    in->n_shards = loam_modeldir_n_shards(in->md);
    const char *text = loam_modeldir_config_text(in->md);
    if (text) {
        in->config_path = path_join(loam_modeldir_path(in->md), "config.json");
        if (!in->config_path) return fail("%s: out of memory", in->path);
        in->config = cJSON_Parse(text); /* validated (strictly) by loam_modeldir_open */
        if (!in->config) return fail("%s: invalid JSON", in->config_path);
    }
    return 0;
}

static void close_target(insp *in) {
    free(in->rows);
    cJSON_Delete(in->config);
    cJSON_Delete(in->acfg);
    free(in->config_path);
    free(in->acfg_path);
    loam_st_close(in->st);
    loam_modeldir_close(in->md);
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: loam inspect PATH [--json]\n"
            "\n"
            "Shows what is inside PATH: a .safetensors file, a model directory (config.json,\n"
            "model*.safetensors, optional model.safetensors.index.json) or an adapter directory\n"
            "(adapters.safetensors or adapter_model.safetensors, with adapter_config.json).\n"
            "Every file is validated; nothing is loaded beyond the headers.\n"
            "\n"
            "Reported: shards and their metadata; config highlights (architecture, layers,\n"
            "hidden size, heads, KV heads, head_dim, vocab, tied embeddings, RoPE); quantization\n"
            "(mode, bits, group size, per-layer overrides, quantized weights); for adapters the\n"
            "format, rank, scale, adapted layers and modules; a tensor table (name, dtype,\n"
            "shape, bytes, shard) and totals (tensors, parameters as mlx-lm counts them, bytes,\n"
            "per dtype).\n"
            "\n"
            "options:\n"
            "  --json      print one JSON object with the same facts\n"
            "  -h, --help  this text\n"
            "\n"
            "Exit status: 0 ok, 1 unreadable or malformed input (one line on stderr), 2 usage.\n");
}

int loam_cmd_inspect(int argc, char **argv) {
    const char *path = NULL;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(argv[i], "--json")) json = 1;
        else if (argv[i][0] == '-' && argv[i][1] != '\0')
            return cli_usage_error(CMD, "unknown option '%s'", argv[i]);
        else if (path)
            return cli_usage_error(CMD, "one PATH only ('%s' and '%s')", path, argv[i]);
        else path = argv[i];
    }
    if (!path) return cli_usage_error(CMD, "missing PATH");
    insp in;
    memset(&in, 0, sizeof in);
    in.path = path;
    cinfo c;
    qinfo q;
    ainfo a;
    totals tt;
    memset(&a, 0, sizeof a);
    memset(&q, 0, sizeof q);
    memset(&c, 0, sizeof c);
    int rc = open_target(&in);
    if (!rc) rc = collect_rows(&in);
    if (!rc) rc = analyse_config(&in, &c);
    if (!rc && in.kind != KIND_ADAPTER) rc = analyse_quant(&in, &q);
    if (!rc && in.kind == KIND_ADAPTER) rc = analyse_adapter(&in, &a);
    if (!rc) {
        sum_totals(&in, &tt);
        if (json) rc = print_json(&in, &c, &q, &a, &tt);
        else print_text(&in, &c, &q, &a, &tt);
        if (fflush(stdout) != 0 && !rc) rc = fail("cannot write the output: %s", strerror(errno));
    }
    free_ainfo(&a);
    close_target(&in);
    return rc ? 1 : 0;
}

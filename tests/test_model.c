/* test_model.c: the model (config.json, weight binding), the paged KV cache, the batched CPU
 * forward pass and the session API (src/model.c, kvcache.c, session.c, cpu/backend_cpu.c).
 *
 * - Tiny random models of every architecture and storage variant are written to a temporary
 *   directory (safetensors writer + loam_quantize), and their logits at every position are
 *   compared with an independent, deliberately plain forward pass in this file (float64, no KV
 *   cache: each position recomputes attention over the whole prefix, weights taken from
 *   loam_dequantize). Relative L2 error over all logits: the scalar reference path within
 *   TOL_REF, the fast path (int8 activations) within TOL_FAST.
 * - Batching: several sequences of different lengths and adapters, interleaved in one call,
 *   give exactly (reference path) / closely (fast path) the logits of decoding each alone;
 *   chunked prefill equals token-by-token; a reset sequence reuses the KV pool correctly.
 * - Error paths: unknown architecture, missing and mis-shaped tensors, unsupported quantization
 *   mode / rope / sliding window, context full, bad positions, sequences and tokens, adapter
 *   mismatch and unloading an adapter in use. A failed decode changes nothing.
 * - The attention kernels (AVX-512, AVX2 where this CPU has them) against the portable one on
 *   random paged caches: head_dim 64 and 128, GQA 1 to 8, 1 to 300 keys.
 * - Hugging Face transformers fixtures (tests/data/models/<case>/, tools/reference/README.md):
 *   every case and variant (base, mlx-lm adapter, PEFT adapter): logits at every position
 *   within TOL_REF (reference path) and TOL_FAST (fast path), and the 8 greedy tokens that
 *   continue the ids, decoded with the KV cache, equal transformers' full recomputes.
 */
#define _POSIX_C_SOURCE 200809L
#include "../src/cpu/attention.h"
#include "../src/cpu/kernels.h"
#include "../src/loam_internal.h"
#include "test.h"

#include <cJSON.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

/* Reference path vs the float64 plain forward: float32 rounding only. */
#define TOL_REF 1e-4
/* Fast path vs the float64 plain forward or transformers: with 4-bit group-64 weights the
 * kernels quantize activations to int8 per group before every matmul (relative error up to
 * 1/254 per element), through 7 matmuls per layer and the head. Measured: 1.5e-2 on the
 * random models here, 1.6e-2 to 2.2e-2 on the nine transformers fixtures (Llama highest);
 * kernels without int8 activations (other bit widths and group sizes) stay near 1e-6. The bound
 * leaves 35% headroom over the worst case and still catches any real bug (a wrong head, rope or
 * adapter term moves the logits by 0.3 to 1.0). */
#define TOL_FAST 3e-2

// ---- random numbers ---------------------------------------------------------------------------

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static float frand(void) { /* uniform in [-1, 1) */
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (float)((double)(g_rng >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

// ---- tiny model specification and writer ------------------------------------------------------

enum { MOD_Q, MOD_K, MOD_V, MOD_O, MOD_GATE, MOD_UP, MOD_DOWN, N_MOD };
static const char *const k_mod[N_MOD] = {"self_attn.q_proj", "self_attn.k_proj",
                                         "self_attn.v_proj", "self_attn.o_proj",
                                         "mlp.gate_proj",    "mlp.up_proj",
                                         "mlp.down_proj"};
#define MAXL 4

typedef struct override {
    const char *path; /* module path */
    int bits, gs;     /* bits 0: stored as float ("false") */
    const char *mode; /* written when not NULL */
} override;

typedef struct tspec {
    const char *arch; /* architectures[0] */
    int n_vocab, n_embd, n_ff, n_layer, n_head, n_kv, head_dim;
    int bits, gs;           /* default quantization; 0 = float weights */
    loam_dtype fdtype;      /* float storage: dense weights, norms, biases, scales */
    bool tied;
    bool qk_norm, qkv_bias, o_bias, mlp_bias;
    const char *rope;       /* extra config members ("\"rope_scaling\": {...}") or NULL */
    double rope_theta;
    const override *ov;     /* per-layer quantization overrides */
    int n_ov;
    const char *skip;       /* tensor name to leave out (error tests) */
    const char *bad_shape;  /* tensor name written with one row too many (error tests) */
    const char *extra;      /* more config members, or NULL */
} tspec;

typedef struct tmodel {
    tspec s;
    /* effective float32 weights, exactly what a correct loader sees */
    float *embed, *head, *out_norm;
    float *w[MAXL][N_MOD], *b[MAXL][N_MOD];
    float *attn_norm[MAXL], *ffn_norm[MAXL], *q_norm[MAXL], *k_norm[MAXL];
    /* rope */
    double inv_freq[256];
    double attn_factor;
} tmodel;

static void mod_dims(const tspec *s, int64_t in[N_MOD], int64_t out[N_MOD]) {
    int64_t q = (int64_t)s->n_head * s->head_dim, kv = (int64_t)s->n_kv * s->head_dim;
    in[MOD_Q] = in[MOD_K] = in[MOD_V] = in[MOD_GATE] = in[MOD_UP] = s->n_embd;
    out[MOD_Q] = q;
    out[MOD_K] = out[MOD_V] = kv;
    in[MOD_O] = q;
    out[MOD_O] = out[MOD_DOWN] = s->n_embd;
    out[MOD_GATE] = out[MOD_UP] = in[MOD_DOWN] = s->n_ff;
}

typedef struct writer {
    loam_st_writer *w;
    void *keep[512];
    int n_keep;
    const tspec *s;
} writer;

static void *keep(writer *w, void *p) {
    LOAM_CHECK(w->n_keep < 512);
    w->keep[w->n_keep++] = p;
    return p;
}

static void add(writer *w, const char *name, loam_dtype dt, int64_t r, int64_t c, void *data) {
    if (w->s->skip && strcmp(name, w->s->skip) == 0) return;
    int64_t shape[2] = {r, c};
    if (w->s->bad_shape && strcmp(name, w->s->bad_shape) == 0) {
        /* one more row than expected: reuse the data of the first rows, twice over */
        size_t row = (size_t)c * (size_t)loam_dtype_bits(dt) / 8;
        if (c < 0) row = (size_t)loam_dtype_bits(dt) / 8;
        size_t n = (size_t)r * row;
        uint8_t *d = keep(w, malloc(n + row));
        memcpy(d, data, n);
        memcpy(d + n, data, row);
        shape[0] = r + 1;
        data = d;
    }
    loam_err e;
    CHECK_OK(loam_st_writer_add(w->w, name, dt, c < 0 ? 1 : 2, shape, data, &e), e);
}

static void quant_of(const tspec *s, const char *path, int *bits, int *gs) {
    *bits = s->bits;
    *gs = s->gs;
    for (int i = 0; i < s->n_ov; i++)
        if (strcmp(s->ov[i].path, path) == 0) {
            *bits = s->ov[i].bits;
            *gs = s->ov[i].gs;
        }
}

/* Random rows x cols matrix for module `path`, stored quantized or float; *eff gets what it
 * dequantizes to. */
static void add_matrix(writer *w, const char *path, int64_t rows, int64_t cols, float **eff) {
    const tspec *s = w->s;
    size_t n = (size_t)rows * (size_t)cols;
    float *f = malloc(n * sizeof(float));
    float amp = 1.7f / sqrtf((float)cols);
    for (size_t i = 0; i < n; i++) f[i] = frand() * amp;
    *eff = malloc(n * sizeof(float));
    int bits, gs;
    quant_of(s, path, &bits, &gs);
    char name[256];
    snprintf(name, sizeof name, "%s.weight", path);
    loam_err e;
    if (bits) {
        loam_qformat fmt = {bits, gs, s->fdtype};
        void *wq = keep(w, malloc(loam_qweight_bytes(fmt, rows, cols)));
        void *sc = keep(w, malloc(loam_qscale_bytes(fmt, rows, cols)));
        void *bi = keep(w, malloc(loam_qscale_bytes(fmt, rows, cols)));
        CHECK_OK(loam_quantize(f, rows, cols, fmt, wq, sc, bi, &e), e);
        CHECK_OK(loam_dequantize(wq, sc, bi, rows, cols, fmt, *eff, &e), e);
        add(w, name, LOAM_DTYPE_U32, rows, cols * bits / 32, wq);
        snprintf(name, sizeof name, "%s.scales", path);
        add(w, name, s->fdtype, rows, cols / gs, sc);
        snprintf(name, sizeof name, "%s.biases", path);
        add(w, name, s->fdtype, rows, cols / gs, bi);
    } else {
        void *d = keep(w, malloc(n * 4));
        for (size_t i = 0; i < n; i++) {
            loam__store_float(d, s->fdtype, i, f[i]);
            (*eff)[i] = loam__load_float(d, s->fdtype, i);
        }
        add(w, name, s->fdtype, rows, cols, d);
    }
    free(f);
}

static void add_vector(writer *w, const char *name, int64_t n, float center, float spread,
                       float **eff) {
    void *d = keep(w, malloc((size_t)n * 4));
    *eff = malloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++) {
        loam__store_float(d, w->s->fdtype, (size_t)i, center + spread * frand());
        (*eff)[i] = loam__load_float(d, w->s->fdtype, (size_t)i);
    }
    add(w, name, w->s->fdtype, n, -1, d);
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    LOAM_CHECK(f != NULL);
    fputs(text, f);
    fclose(f);
}

static void write_config(const tspec *s, const char *dir) {
    char q[4096] = "", buf[8192], path[512];
    if (s->bits) {
        int o = snprintf(q, sizeof q,
                         ",\n  \"quantization\": {\"group_size\": %d, \"bits\": %d, \"mode\": "
                         "\"affine\"",
                         s->gs, s->bits);
        for (int i = 0; i < s->n_ov; i++) {
            if (s->ov[i].bits)
                o += snprintf(q + o, sizeof q - (size_t)o,
                              ", \"%s\": {\"group_size\": %d, \"bits\": %d%s%s%s}",
                              s->ov[i].path, s->ov[i].gs, s->ov[i].bits,
                              s->ov[i].mode ? ", \"mode\": \"" : "",
                              s->ov[i].mode ? s->ov[i].mode : "", s->ov[i].mode ? "\"" : "");
            else
                o += snprintf(q + o, sizeof q - (size_t)o, ", \"%s\": false", s->ov[i].path);
        }
        snprintf(q + o, sizeof q - (size_t)o, "}");
    }
    snprintf(buf, sizeof buf,
             "{\n  \"architectures\": [\"%s\"],\n  \"vocab_size\": %d,\n  \"hidden_size\": %d,\n"
             "  \"intermediate_size\": %d,\n  \"num_hidden_layers\": %d,\n"
             "  \"num_attention_heads\": %d,\n  \"num_key_value_heads\": %d,\n"
             "  \"head_dim\": %d,\n  \"rms_norm_eps\": 1e-06,\n  \"rope_theta\": %.1f,\n"
             "  \"max_position_embeddings\": 4096,\n  \"hidden_act\": \"silu\",\n"
             "  \"tie_word_embeddings\": %s,\n  \"attention_bias\": %s,\n  \"mlp_bias\": %s%s%s%s%s%s\n}\n",
             s->arch, s->n_vocab, s->n_embd, s->n_ff, s->n_layer, s->n_head, s->n_kv, s->head_dim,
             s->rope_theta, s->tied ? "true" : "false", s->o_bias ? "true" : "false",
             s->mlp_bias ? "true" : "false", q, s->rope ? ",\n  " : "", s->rope ? s->rope : "",
             s->extra ? ",\n  " : "", s->extra ? s->extra : "");
    snprintf(path, sizeof path, "%s/config.json", dir);
    write_text(path, buf);
}

/* RoPE frequencies of the plain forward, in float64 from the textbook formulas. */
static void plain_rope(tmodel *M, double factor, int type, double lo, double hi, double orig) {
    int half = M->s.head_dim / 2;
    M->attn_factor = 1.0;
    for (int i = 0; i < half; i++) {
        double f = pow(M->s.rope_theta, -2.0 * i / M->s.head_dim);
        if (type == 1) f /= factor;
        if (type == 2) { /* llama3 */
            double wl = 2 * 3.14159265358979323846 / f;
            if (wl > orig / lo) f /= factor;
            else if (wl >= orig / hi) {
                double sm = (orig / wl - lo) / (hi - lo);
                f = (1 - sm) * f / factor + sm * f;
            }
        }
        M->inv_freq[i] = f;
    }
}

static void build(tmodel *M, const tspec *s, const char *dir) {
    memset(M, 0, sizeof *M);
    M->s = *s;
    mkdir(dir, 0755);
    write_config(s, dir);
    writer w = {.s = s};
    loam_err e;
    CHECK_OK(loam_st_writer_new(&w.w, &e), e);
    add_matrix(&w, "model.embed_tokens", s->n_vocab, s->n_embd, &M->embed);
    if (!s->tied) add_matrix(&w, "lm_head", s->n_vocab, s->n_embd, &M->head);
    add_vector(&w, "model.norm.weight", s->n_embd, 1.0f, 0.2f, &M->out_norm);
    int64_t in[N_MOD], out[N_MOD];
    mod_dims(s, in, out);
    char name[256];
    for (int l = 0; l < s->n_layer; l++) {
        snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", l);
        add_vector(&w, name, s->n_embd, 1.0f, 0.2f, &M->attn_norm[l]);
        snprintf(name, sizeof name, "model.layers.%d.post_attention_layernorm.weight", l);
        add_vector(&w, name, s->n_embd, 1.0f, 0.2f, &M->ffn_norm[l]);
        if (s->qk_norm) {
            snprintf(name, sizeof name, "model.layers.%d.self_attn.q_norm.weight", l);
            add_vector(&w, name, s->head_dim, 1.0f, 0.3f, &M->q_norm[l]);
            snprintf(name, sizeof name, "model.layers.%d.self_attn.k_norm.weight", l);
            add_vector(&w, name, s->head_dim, 1.0f, 0.3f, &M->k_norm[l]);
        }
        for (int m = 0; m < N_MOD; m++) {
            snprintf(name, sizeof name, "model.layers.%d.%s", l, k_mod[m]);
            add_matrix(&w, name, out[m], in[m], &M->w[l][m]);
            bool bias = m <= MOD_V ? s->qkv_bias : m == MOD_O ? s->o_bias : s->mlp_bias;
            if (bias) {
                snprintf(name, sizeof name, "model.layers.%d.%s.bias", l, k_mod[m]);
                add_vector(&w, name, out[m], 0.0f, 0.3f, &M->b[l][m]);
            }
        }
    }
    char path[512];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    CHECK_OK(loam_st_writer_write(w.w, path, &e), e);
    loam_st_writer_free(w.w);
    for (int i = 0; i < w.n_keep; i++) free(w.keep[i]);
    plain_rope(M, 1.0, 0, 0, 0, 0);
}

static void tmodel_free(tmodel *M) {
    free(M->embed);
    free(M->head);
    free(M->out_norm);
    for (int l = 0; l < MAXL; l++) {
        for (int m = 0; m < N_MOD; m++) {
            free(M->w[l][m]);
            free(M->b[l][m]);
        }
        free(M->attn_norm[l]);
        free(M->ffn_norm[l]);
        free(M->q_norm[l]);
        free(M->k_norm[l]);
    }
}

// ---- adapters ---------------------------------------------------------------------------------

typedef struct tadapter {
    int rank;
    float scale;
    float *a[MAXL][N_MOD]; /* (in, r) or NULL */
    float *b[MAXL][N_MOD]; /* (r, out) */
} tadapter;

/* mlx-lm adapter on modules mask (bit m) of layers >= first_layer. */
static void write_adapter(tadapter *A, const tmodel *M, const char *dir, int rank, float scale,
                          unsigned mask, int first_layer) {
    memset(A, 0, sizeof *A);
    A->rank = rank;
    A->scale = scale;
    mkdir(dir, 0755);
    int64_t in[N_MOD], out[N_MOD];
    mod_dims(&M->s, in, out);
    loam_st_writer *w;
    loam_err e;
    CHECK_OK(loam_st_writer_new(&w, &e), e);
    char name[256], keys[512] = "";
    for (int m = 0, o = 0; m < N_MOD; m++)
        if (mask & (1u << m))
            o += snprintf(keys + o, sizeof keys - (size_t)o, "%s\"%s\"", o ? ", " : "", k_mod[m]);
    for (int l = first_layer; l < M->s.n_layer; l++)
        for (int m = 0; m < N_MOD; m++) {
            if (!(mask & (1u << m))) continue;
            size_t na = (size_t)in[m] * (size_t)rank, nb = (size_t)rank * (size_t)out[m];
            A->a[l][m] = malloc(na * sizeof(float));
            A->b[l][m] = malloc(nb * sizeof(float));
            for (size_t i = 0; i < na; i++) A->a[l][m][i] = frand() / sqrtf((float)in[m]);
            for (size_t i = 0; i < nb; i++) A->b[l][m][i] = 0.2f * frand();
            int64_t sa[2] = {in[m], rank}, sb[2] = {rank, out[m]};
            snprintf(name, sizeof name, "model.layers.%d.%s.lora_a", l, k_mod[m]);
            CHECK_OK(loam_st_writer_add(w, name, LOAM_DTYPE_F32, 2, sa, A->a[l][m], &e), e);
            snprintf(name, sizeof name, "model.layers.%d.%s.lora_b", l, k_mod[m]);
            CHECK_OK(loam_st_writer_add(w, name, LOAM_DTYPE_F32, 2, sb, A->b[l][m], &e), e);
        }
    char path[512], cfg[1024];
    snprintf(path, sizeof path, "%s/adapters.safetensors", dir);
    CHECK_OK(loam_st_writer_write(w, path, &e), e);
    loam_st_writer_free(w);
    snprintf(cfg, sizeof cfg,
             "{\"fine_tune_type\": \"lora\", \"num_layers\": %d, \"lora_parameters\": "
             "{\"rank\": %d, \"scale\": %g, \"dropout\": 0.0, \"keys\": [%s]}}\n",
             M->s.n_layer - first_layer, rank, (double)scale, keys);
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    write_text(path, cfg);
}

static void tadapter_free(tadapter *A) {
    for (int l = 0; l < MAXL; l++)
        for (int m = 0; m < N_MOD; m++) {
            free(A->a[l][m]);
            free(A->b[l][m]);
        }
}

// ---- the plain forward (float64, full recompute) -----------------------------------------------

static void p_rmsnorm(double *y, const double *x, const float *w, int n) {
    double ss = 0;
    for (int i = 0; i < n; i++) ss += x[i] * x[i];
    double inv = 1.0 / sqrt(ss / n + 1e-6);
    for (int i = 0; i < n; i++) y[i] = x[i] * inv * w[i];
}

/* y[out] = W x (+ bias) (+ lora) */
static void p_linear(const tmodel *M, const tadapter *A, int l, int m, const double *x,
                     double *y) {
    int64_t in[N_MOD], out[N_MOD];
    mod_dims(&M->s, in, out);
    const float *W = M->w[l][m];
    for (int64_t o = 0; o < out[m]; o++) {
        double s = 0;
        for (int64_t i = 0; i < in[m]; i++) s += W[o * in[m] + i] * x[i];
        y[o] = s;
    }
    if (A && A->a[l][m]) {
        double t[64];
        for (int r = 0; r < A->rank; r++) {
            t[r] = 0;
            for (int64_t i = 0; i < in[m]; i++) t[r] += x[i] * A->a[l][m][i * A->rank + r];
        }
        for (int64_t o = 0; o < out[m]; o++) {
            double s = 0;
            for (int r = 0; r < A->rank; r++) s += t[r] * A->b[l][m][r * out[m] + o];
            y[o] += A->scale * s;
        }
    }
    if (M->b[l][m])
        for (int64_t o = 0; o < out[m]; o++) y[o] += M->b[l][m][o];
}

static void p_rope(const tmodel *M, double *v, int pos) {
    int half = M->s.head_dim / 2;
    for (int i = 0; i < half; i++) {
        double th = pos * M->inv_freq[i], c = cos(th) * M->attn_factor,
               s = sin(th) * M->attn_factor;
        double x1 = v[i], x2 = v[i + half];
        v[i] = x1 * c - x2 * s;
        v[i + half] = x2 * c + x1 * s;
    }
}

/* logits (T, n_vocab) after each prefix of ids[0..T). */
static void plain_forward(const tmodel *M, const tadapter *A, const int *ids, int T,
                          float *logits) {
    const tspec *s = &M->s;
    int E = s->n_embd, hd = s->head_dim, qd = s->n_head * hd, kvd = s->n_kv * hd, F = s->n_ff;
    int rep = s->n_head / s->n_kv;
    double *x = calloc((size_t)T * E, 8), *xn = calloc((size_t)E > (size_t)qd ? E : qd, 8);
    double *q = calloc((size_t)T * qd, 8), *k = calloc((size_t)T * kvd, 8),
           *v = calloc((size_t)T * kvd, 8), *att = calloc((size_t)T * qd, 8);
    double *g = calloc((size_t)F, 8), *u = calloc((size_t)F, 8), *y = calloc((size_t)E, 8),
           *sc = calloc((size_t)T, 8);
    for (int t = 0; t < T; t++)
        for (int i = 0; i < E; i++) x[t * E + i] = M->embed[(size_t)ids[t] * E + i];
    for (int l = 0; l < s->n_layer; l++) {
        for (int t = 0; t < T; t++) {
            p_rmsnorm(xn, x + t * E, M->attn_norm[l], E);
            p_linear(M, A, l, MOD_Q, xn, q + t * qd);
            p_linear(M, A, l, MOD_K, xn, k + t * kvd);
            p_linear(M, A, l, MOD_V, xn, v + t * kvd);
            for (int h = 0; h < s->n_head; h++) {
                if (M->q_norm[l]) p_rmsnorm(q + t * qd + h * hd, q + t * qd + h * hd, M->q_norm[l], hd);
                p_rope(M, q + t * qd + h * hd, t);
            }
            for (int h = 0; h < s->n_kv; h++) {
                if (M->k_norm[l]) p_rmsnorm(k + t * kvd + h * hd, k + t * kvd + h * hd, M->k_norm[l], hd);
                p_rope(M, k + t * kvd + h * hd, t);
            }
        }
        for (int t = 0; t < T; t++)
            for (int h = 0; h < s->n_head; h++) {
                int kh = h / rep;
                double mx = -1e300, sum = 0;
                for (int j = 0; j <= t; j++) {
                    double d = 0;
                    for (int i = 0; i < hd; i++) d += q[t * qd + h * hd + i] * k[j * kvd + kh * hd + i];
                    sc[j] = d / sqrt((double)hd);
                    if (sc[j] > mx) mx = sc[j];
                }
                for (int j = 0; j <= t; j++) sum += (sc[j] = exp(sc[j] - mx));
                for (int i = 0; i < hd; i++) {
                    double o = 0;
                    for (int j = 0; j <= t; j++) o += sc[j] * v[j * kvd + kh * hd + i];
                    att[t * qd + h * hd + i] = o / sum;
                }
            }
        for (int t = 0; t < T; t++) {
            p_linear(M, A, l, MOD_O, att + t * qd, y);
            for (int i = 0; i < E; i++) x[t * E + i] += y[i];
            p_rmsnorm(xn, x + t * E, M->ffn_norm[l], E);
            p_linear(M, A, l, MOD_GATE, xn, g);
            p_linear(M, A, l, MOD_UP, xn, u);
            for (int i = 0; i < F; i++) g[i] = g[i] / (1 + exp(-g[i])) * u[i];
            p_linear(M, A, l, MOD_DOWN, g, y);
            for (int i = 0; i < E; i++) x[t * E + i] += y[i];
        }
    }
    const float *H = s->tied ? M->embed : M->head;
    for (int t = 0; t < T; t++) {
        p_rmsnorm(xn, x + t * E, M->out_norm, E);
        for (int o = 0; o < s->n_vocab; o++) {
            double d = 0;
            for (int i = 0; i < E; i++) d += H[(size_t)o * E + i] * xn[i];
            logits[(size_t)t * s->n_vocab + o] = (float)d;
        }
    }
    free(x), free(xn), free(q), free(k), free(v), free(att), free(g), free(u), free(y), free(sc);
}

// ---- helpers around the API -------------------------------------------------------------------

static char g_tmp[256];

static void tmp_init(void) {
    if (g_tmp[0]) return;
    snprintf(g_tmp, sizeof g_tmp, "/tmp/loam-test-model-XXXXXX");
    LOAM_CHECK(mkdtemp(g_tmp) != NULL);
}

static void rm_rf(const char *path) {
    DIR *d = opendir(path);
    if (d) {
        struct dirent *de;
        while ((de = readdir(d)) != NULL) {
            if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
            char sub[1024];
            snprintf(sub, sizeof sub, "%s/%s", path, de->d_name);
            rm_rf(sub);
        }
        closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

static double rel_l2(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        num += d * d;
        den += (double)b[i] * (double)b[i];
    }
    return sqrt(num / (den > 0 ? den : 1));
}

/* Decodes ids as one sequence (seq 0) in one call, logits at every position into out. */
static loam_status run_seq(loam_model *m, bool reference, int n_batch, int adapter,
                           const int *ids, int T, float *out, loam_err *e) {
    loam_session_params p = loam_session_params_default();
    p.n_ctx = 256;
    p.n_batch = n_batch;
    p.n_logits = T;
    p.reference = reference;
    p.n_threads = 2;
    loam_session *s;
    loam_status st = loam_session_new(&s, m, &p, e);
    if (st != LOAM_OK) return st;
    loam_batch_entry ent[256];
    for (int t = 0; t < T; t++) ent[t] = (loam_batch_entry){0, t, ids[t], adapter, true};
    st = loam_session_decode(s, ent, (size_t)T, e);
    if (st == LOAM_OK) {
        int nv;
        loam_model_info info;
        loam_model_get_info(m, &info);
        nv = info.n_vocab;
        CHECK_EQ_I64(loam_session_n_logits(s), T);
        for (int t = 0; t < T; t++)
            memcpy(out + (size_t)t * nv, loam_session_logits(s, (size_t)t), (size_t)nv * 4);
    }
    loam_session_free(s);
    return st;
}

static const int k_ids[24] = {5, 17, 3, 60, 42, 8, 33, 1, 0, 59, 21, 14,
                              7, 48, 2, 30, 11, 55, 26, 9, 38, 61, 4, 19};

/* The model in dir against the plain forward: reference and fast path, base and adapter. */
static void compare_plain(const tmodel *M, const char *dir, const tadapter *A, const char *adir) {
    loam_model *m = NULL;
    loam_err e;
    CHECK_OK(loam_model_open(&m, dir, NULL, &e), e);
    if (!m) return;
    int T = 24, nv = M->s.n_vocab, id = -1;
    if (A) {
        CHECK_OK(loam_model_load_adapter(m, "a", adir, &e), e);
        id = loam_model_adapter_id(m, "a");
        CHECK(id >= 0);
    }
    float *want = malloc((size_t)T * nv * 4), *got = malloc((size_t)T * nv * 4);
    plain_forward(M, A, k_ids, T, want);
    CHECK_OK(run_seq(m, true, 512, id, k_ids, T, got, &e), e);
    double r_ref = rel_l2(got, want, (size_t)T * nv);
    CHECK(r_ref < TOL_REF);
    CHECK_OK(run_seq(m, false, 512, id, k_ids, T, got, &e), e);
    double r_fast = rel_l2(got, want, (size_t)T * nv);
    CHECK(r_fast < TOL_FAST);
    if (getenv("LOAM_TEST_VERBOSE"))
        fprintf(stderr, "  %s%s: rel L2 reference %.3g, fast %.3g\n", dir, A ? " +lora" : "",
                r_ref, r_fast);
    if (r_ref >= TOL_REF || r_fast >= TOL_FAST)
        fprintf(stderr, "  %s%s: rel L2 reference %.3g, fast %.3g\n", dir, A ? " +lora" : "",
                r_ref, r_fast);
    free(want);
    free(got);
    loam_model_close(m);
}

static tspec qwen3_spec(void) {
    tspec s = {
        .arch = "Qwen3ForCausalLM",
        .n_vocab = 64, .n_embd = 64, .n_ff = 128, .n_layer = 2,
        .n_head = 4, .n_kv = 2, .head_dim = 32,
        .bits = 4, .gs = 32, .fdtype = LOAM_DTYPE_BF16,
        .qk_norm = true, .rope_theta = 1000000.0,
    };
    return s;
}

static void subdir(char *out, size_t cap, const char *name) {
    tmp_init();
    snprintf(out, cap, "%s/%s", g_tmp, name);
}

// ---- tests: forward against the plain float64 forward -----------------------------------------

static void test_qwen3_q4(void) {
    char dir[512], adir[600];
    subdir(dir, sizeof dir, "qwen3_q4");
    tspec s = qwen3_spec();
    tmodel M;
    build(&M, &s, dir);
    compare_plain(&M, dir, NULL, NULL);
    tadapter A;
    snprintf(adir, sizeof adir, "%s/adapter", dir);
    write_adapter(&A, &M, adir, 4, 2.0f, 0x7f, 0);
    compare_plain(&M, dir, &A, adir);
    tadapter_free(&A);
    tmodel_free(&M);
}

static void test_qwen3_bf16_tied_head_dim(void) {
    char dir[512];
    subdir(dir, sizeof dir, "qwen3_bf16");
    tspec s = qwen3_spec();
    s.bits = 0;
    s.tied = true;
    s.n_head = 4, s.head_dim = 24; /* n_head*head_dim = 96 != n_embd */
    s.n_kv = 1;
    tmodel M;
    build(&M, &s, dir);
    compare_plain(&M, dir, NULL, NULL);
    tmodel_free(&M);
}

static void test_qwen2_bias_tied(void) {
    char dir[512], adir[600];
    subdir(dir, sizeof dir, "qwen2");
    tspec s = qwen3_spec();
    s.arch = "Qwen2ForCausalLM";
    s.qk_norm = false;
    s.qkv_bias = true;
    s.head_dim = 16; /* = hidden / heads */
    s.bits = 8, s.gs = 64;
    s.fdtype = LOAM_DTYPE_F16;
    s.tied = true;
    tmodel M;
    build(&M, &s, dir);
    compare_plain(&M, dir, NULL, NULL);
    tadapter A;
    snprintf(adir, sizeof adir, "%s/adapter", dir);
    write_adapter(&A, &M, adir, 8, 20.0f, (1u << MOD_Q) | (1u << MOD_V) | (1u << MOD_DOWN), 1);
    compare_plain(&M, dir, &A, adir);
    tadapter_free(&A);
    tmodel_free(&M);
}

static void test_llama3_rope_biases(void) {
    char dir[512];
    subdir(dir, sizeof dir, "llama3");
    tspec s = qwen3_spec();
    s.arch = "LlamaForCausalLM";
    s.qk_norm = false;
    s.head_dim = 16;
    s.qkv_bias = s.o_bias = s.mlp_bias = true;
    s.rope_theta = 500000.0;
    s.fdtype = LOAM_DTYPE_F32;
    s.bits = 3, s.gs = 32;
    s.rope = "\"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8.0, \"low_freq_factor\": "
             "1.0, \"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 64}";
    tmodel M;
    build(&M, &s, dir);
    plain_rope(&M, 8.0, 2, 1.0, 4.0, 64.0);
    compare_plain(&M, dir, NULL, NULL);
    tmodel_free(&M);
}

static void test_linear_rope_parameters(void) {
    char dir[512];
    subdir(dir, sizeof dir, "linear");
    tspec s = qwen3_spec();
    s.rope_theta = 10000.0;
    /* rope_theta also given in rope_parameters (newer transformers): the top level wins only
     * when both agree, so write the same value */
    s.rope = "\"rope_parameters\": {\"rope_type\": \"linear\", \"factor\": 4.0, \"rope_theta\": "
             "10000.0}";
    tmodel M;
    build(&M, &s, dir);
    plain_rope(&M, 4.0, 1, 0, 0, 0);
    compare_plain(&M, dir, NULL, NULL);
    tmodel_free(&M);
}

static void test_yarn(void) {
    char dir[512];
    subdir(dir, sizeof dir, "yarn");
    tspec s = qwen3_spec();
    s.rope_theta = 10000.0;
    s.rope = "\"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 4.0, "
             "\"original_max_position_embeddings\": 16}";
    tmodel M;
    build(&M, &s, dir);
    /* YaRN (transformers _compute_yarn_parameters), float64 */
    double d = s.head_dim, base = s.rope_theta, ctx = 16, factor = 4;
    double low = floor(d * log(ctx / (32 * 2 * 3.14159265358979323846)) / (2 * log(base)));
    double high = ceil(d * log(ctx / (1 * 2 * 3.14159265358979323846)) / (2 * log(base)));
    if (low < 0) low = 0;
    if (high > d - 1) high = d - 1;
    for (int i = 0; i < s.head_dim / 2; i++) {
        double pf = pow(base, 2.0 * i / d), ramp = (i - low) / (high - low);
        ramp = ramp < 0 ? 0 : ramp > 1 ? 1 : ramp;
        M.inv_freq[i] = (1 / (factor * pf)) * ramp + (1 / pf) * (1 - ramp);
    }
    M.attn_factor = 0.1 * log(factor) + 1.0;
    compare_plain(&M, dir, NULL, NULL);
    tmodel_free(&M);
}

static void test_overrides(void) {
    char dir[512];
    subdir(dir, sizeof dir, "override");
    static const override ov[] = {
        {"model.layers.0.self_attn.v_proj", 6, 64, NULL},
        {"model.layers.0.mlp.down_proj", 5, 32, NULL},
        {"model.layers.1.mlp.gate_proj", 0, 0, NULL},
        {"model.embed_tokens", 2, 32, NULL},
        {"lm_head", 8, 64, NULL},
    };
    tspec s = qwen3_spec();
    s.bits = 4, s.gs = 64;
    s.ov = ov;
    s.n_ov = 5;
    tmodel M;
    build(&M, &s, dir);
    compare_plain(&M, dir, NULL, NULL);
    loam_model *m;
    loam_err e;
    CHECK_OK(loam_model_open(&m, dir, NULL, &e), e);
    loam_model_info info;
    loam_model_get_info(m, &info);
    CHECK(info.mixed);
    CHECK_EQ_I64(info.bits, 4);
    CHECK_EQ_I64(info.group_size, 64);
    loam_model_close(m);
    tmodel_free(&M);
}

// ---- tests: batching, chunking, KV reuse -------------------------------------------------------

typedef struct three {
    char dir[512];
    tmodel M;
    loam_model *m;
    int ida, idb;
} three;

static void three_open(three *t) {
    subdir(t->dir, sizeof t->dir, "batch");
    tspec s = qwen3_spec();
    s.n_kv = 1; /* GQA 4 */
    build(&t->M, &s, t->dir);
    char a[600], b[600];
    tadapter A, B;
    snprintf(a, sizeof a, "%s/ad_a", t->dir);
    snprintf(b, sizeof b, "%s/ad_b", t->dir);
    write_adapter(&A, &t->M, a, 4, 2.0f, 0x7f, 0);
    write_adapter(&B, &t->M, b, 8, 1.0f, (1u << MOD_Q) | (1u << MOD_UP), 1);
    tadapter_free(&A);
    tadapter_free(&B);
    loam_err e;
    t->m = NULL;
    CHECK_OK(loam_model_open(&t->m, t->dir, NULL, &e), e);
    if (!t->m) return;
    CHECK_OK(loam_model_load_adapter(t->m, "a", a, &e), e);
    CHECK_OK(loam_model_load_adapter(t->m, "b", b, &e), e);
    t->ida = loam_model_adapter_id(t->m, "a");
    t->idb = loam_model_adapter_id(t->m, "b");
}

static void three_close(three *t) {
    loam_model_close(t->m);
    tmodel_free(&t->M);
}

/* Three sequences (lengths 24, 9, 17; adapters none, a, b) interleaved in one call, and in
 * pieces over several calls, give the logits of decoding each alone. */
static void batched(bool reference) {
    three t;
    three_open(&t);
    if (!t.m) return;
    int nv = t.M.s.n_vocab;
    int len[3] = {24, 9, 17}, ad[3] = {-1, t.ida, t.idb};
    const int *ids[3] = {k_ids, k_ids + 5, k_ids + 2};
    float *alone[3];
    loam_err e;
    for (int q = 0; q < 3; q++) {
        alone[q] = malloc((size_t)len[q] * nv * 4);
        CHECK_OK(run_seq(t.m, reference, 512, ad[q], ids[q], len[q], alone[q], &e), e);
    }
    loam_session_params p = loam_session_params_default();
    p.n_ctx = 128;
    p.n_seq_max = 4;
    p.n_batch = 7; /* several steps per call, sequences split across steps */
    p.n_logits = 64;
    p.reference = reference;
    p.n_threads = 2;
    loam_session *s;
    CHECK_OK(loam_session_new(&s, t.m, &p, &e), e);
    /* round-robin interleave, sequence ids 3, 0, 2 to show ids are just labels */
    int sid[3] = {3, 0, 2};
    loam_batch_entry ent[64];
    int n = 0, at[3] = {0, 0, 0}, which[64], posn[64];
    for (int round = 0; n < 50; round++)
        for (int q = 0; q < 3; q++)
            if (at[q] < len[q]) {
                which[n] = q;
                posn[n] = at[q];
                ent[n++] = (loam_batch_entry){sid[q], at[q], ids[q][at[q]], ad[q], true};
                at[q]++;
            }
    CHECK_OK(loam_session_decode(s, ent, (size_t)n, &e), e);
    CHECK_EQ_I64(loam_session_n_logits(s), n);
    double worst = 0;
    for (int i = 0; i < n; i++) {
        const float *got = loam_session_logits(s, (size_t)i);
        const float *want = alone[which[i]] + (size_t)posn[i] * nv;
        double r = rel_l2(got, want, (size_t)nv);
        if (r > worst) worst = r;
        if (reference) CHECK(memcmp(got, want, (size_t)nv * 4) == 0);
    }
    CHECK(worst < (reference ? 1e-7 : 1e-5));
    CHECK_EQ_I64(loam_session_seq_len(s, 3), 24);
    CHECK_EQ_I64(loam_session_seq_len(s, 0), 9);
    CHECK_EQ_I64(loam_session_seq_len(s, 2), 17);
    CHECK_EQ_I64(loam_session_seq_len(s, 1), 0);
    CHECK_EQ_I64(loam_session_n_tokens(s), 50);

    /* the same again token by token, one entry per sequence per call (decode style) */
    for (int q = 0; q < 3; q++) loam_session_seq_reset(s, sid[q]);
    CHECK_EQ_I64(loam_session_n_tokens(s), 0);
    for (int q = 0; q < 3; q++) at[q] = 0;
    worst = 0;
    for (int round = 0; round < 24; round++) {
        int k = 0, wq[3];
        for (int q = 0; q < 3; q++)
            if (at[q] < len[q]) {
                wq[k] = q;
                ent[k++] = (loam_batch_entry){sid[q], at[q], ids[q][at[q]], ad[q], true};
            }
        CHECK_OK(loam_session_decode(s, ent, (size_t)k, &e), e);
        for (int i = 0; i < k; i++) {
            int q = wq[i];
            const float *got = loam_session_logits(s, (size_t)i);
            double r = rel_l2(got, alone[q] + (size_t)at[q] * nv, (size_t)nv);
            if (r > worst) worst = r;
            at[q]++;
        }
    }
    CHECK(worst < (reference ? 1e-6 : 1e-5));
    loam_session_free(s);
    for (int q = 0; q < 3; q++) free(alone[q]);
    three_close(&t);
}

static void test_batched_reference(void) { batched(true); }
static void test_batched_fast(void) { batched(false); }

/* A prompt in chunks of n_batch rows equals the prompt token by token; only the rows that
 * ask for logits produce them. */
static void test_chunked_prefill(void) {
    three t;
    three_open(&t);
    if (!t.m) return;
    int nv = t.M.s.n_vocab, T = 24;
    float *whole = malloc((size_t)T * nv * 4), *one = malloc((size_t)T * nv * 4);
    loam_err e;
    for (int ref = 0; ref <= 1; ref++) { /* the reference results stay in `whole` */
        CHECK_OK(run_seq(t.m, ref, 5, t.ida, k_ids, T, whole, &e), e);
        CHECK_OK(run_seq(t.m, ref, 1, t.ida, k_ids, T, one, &e), e);
        if (ref) CHECK(memcmp(whole, one, (size_t)T * nv * 4) == 0);
        CHECK(rel_l2(whole, one, (size_t)T * nv) < 1e-5);
    }
    /* only the last entry wants logits: n_logits 1 is enough */
    loam_session_params p = loam_session_params_default();
    p.n_ctx = 64;
    p.n_batch = 5;
    p.reference = true;
    loam_session *s;
    CHECK_OK(loam_session_new(&s, t.m, &p, &e), e);
    loam_batch_entry ent[24];
    for (int i = 0; i < T; i++) ent[i] = (loam_batch_entry){0, i, k_ids[i], t.ida, i == T - 1};
    CHECK_OK(loam_session_decode(s, ent, (size_t)T, &e), e);
    CHECK_EQ_I64(loam_session_n_logits(s), 1);
    CHECK(loam_session_logits(s, 1) == NULL);
    CHECK(memcmp(loam_session_logits(s, 0), whole + (size_t)(T - 1) * nv, (size_t)nv * 4) == 0);
    loam_session_free(s);
    free(whole);
    free(one);
    three_close(&t);
}

/* After seq_reset the freed blocks serve another sequence with other contents, and a sequence
 * continues correctly when other sequences' blocks were interleaved with its own. */
static void test_kv_reuse(void) {
    three t;
    three_open(&t);
    if (!t.m) return;
    int nv = t.M.s.n_vocab;
    float *want = malloc((size_t)24 * nv * 4);
    loam_err e;
    CHECK_OK(run_seq(t.m, true, 512, -1, k_ids, 24, want, &e), e);
    loam_session_params p = loam_session_params_default();
    p.n_ctx = 100; /* tight: 4 blocks + 2 */
    p.n_seq_max = 3;
    p.n_logits = 16;
    p.reference = true;
    loam_session *s;
    CHECK_OK(loam_session_new(&s, t.m, &p, &e), e);
    loam_batch_entry ent[40];
    /* fill with 2 other sequences of garbage, in small alternating pieces so blocks interleave */
    for (int piece = 0; piece < 4; piece++)
        for (int q = 1; q < 3; q++) {
            for (int i = 0; i < 10; i++)
                ent[i] = (loam_batch_entry){q, piece * 10 + i, (piece * 7 + i * 3 + q) % 64,
                                            q == 1 ? t.ida : -1, false};
            CHECK_OK(loam_session_decode(s, ent, 10, &e), e);
        }
    CHECK_EQ_I64(loam_session_n_tokens(s), 80);
    loam_session_seq_reset(s, 1);
    CHECK_EQ_I64(loam_session_n_tokens(s), 40);
    /* sequence 0 takes the reused blocks, in two calls */
    for (int i = 0; i < 24; i++) ent[i] = (loam_batch_entry){0, i, k_ids[i], -1, true};
    CHECK_OK(loam_session_decode(s, ent, 11, &e), e);
    for (int i = 0; i < 11; i++)
        CHECK(memcmp(loam_session_logits(s, (size_t)i), want + (size_t)i * nv, (size_t)nv * 4) == 0);
    CHECK_OK(loam_session_decode(s, ent + 11, 13, &e), e);
    for (int i = 0; i < 13; i++)
        CHECK(memcmp(loam_session_logits(s, (size_t)i), want + (size_t)(11 + i) * nv,
                     (size_t)nv * 4) == 0);
    /* truncate back to 7 tokens and continue with the same ids: the same logits again */
    CHECK_OK(loam_session_seq_truncate(s, 0, 7, &e), e);
    CHECK_EQ_I64(loam_session_seq_len(s, 0), 7);
    CHECK_EQ_I64(loam_session_n_tokens(s), 47);
    CHECK_OK(loam_session_decode(s, ent + 7, 10, &e), e);
    for (int i = 0; i < 10; i++)
        CHECK(memcmp(loam_session_logits(s, (size_t)i), want + (size_t)(7 + i) * nv,
                     (size_t)nv * 4) == 0);
    CHECK_EQ_I64(loam_session_seq_truncate(s, 0, 18, &e), LOAM_E_RANGE);
    CHECK_EQ_I64(loam_session_seq_truncate(s, 3, 0, &e), LOAM_E_RANGE);
    CHECK_EQ_I64(loam_session_seq_truncate(s, 0, -1, &e), LOAM_E_RANGE);
    CHECK_EQ_I64(loam_session_seq_len(s, 0), 17);
    /* truncating a sequence to 0 releases its adapter like a reset */
    CHECK_OK(loam_session_seq_truncate(s, 2, 0, &e), e);
    CHECK_EQ_I64(loam_session_n_tokens(s), 17);
    for (int i = 0; i < 3; i++) ent[i] = (loam_batch_entry){1, i, k_ids[i], t.ida, false};
    CHECK_OK(loam_session_decode(s, ent, 3, &e), e);
    CHECK_OK(loam_session_seq_truncate(s, 1, 2, &e), e);
    CHECK_EQ_I64(loam_model_unload_adapter(t.m, "a", &e), LOAM_E_BUSY);
    CHECK_OK(loam_session_seq_truncate(s, 1, 0, &e), e);
    CHECK_OK(loam_model_unload_adapter(t.m, "a", &e), e);
    loam_session_free(s);
    free(want);
    three_close(&t);
}

// ---- tests: errors ----------------------------------------------------------------------------

static void test_decode_errors(void) {
    three t;
    three_open(&t);
    if (!t.m) return;
    loam_session_params p = loam_session_params_default();
    p.n_ctx = 40;
    p.n_seq_max = 2;
    p.n_batch = 8;
    p.reference = true;
    loam_session *s;
    loam_err e;
    CHECK_OK(loam_session_new(&s, t.m, &p, &e), e);
    loam_batch_entry ent[48];
    for (int i = 0; i < 48; i++) ent[i] = (loam_batch_entry){0, i, k_ids[i % 24], -1, false};
    CHECK_OK(loam_session_decode(s, ent, 4, &e), e);
    /* wrong position: 5 instead of 4 */
    CHECK_EQ_I64(loam_session_decode(s, ent + 5, 1, &e), LOAM_E_INVAL);
    CHECK(strstr(e.msg, "position 5, expected 4") != NULL);
    /* rewinding is not decoding */
    CHECK_EQ_I64(loam_session_decode(s, ent + 2, 1, &e), LOAM_E_INVAL);
    /* a gap inside one call: nothing is applied, not even the valid prefix */
    loam_batch_entry gap[3] = {ent[4], ent[5], ent[7]};
    CHECK_EQ_I64(loam_session_decode(s, gap, 3, &e), LOAM_E_INVAL);
    CHECK_EQ_I64(loam_session_seq_len(s, 0), 4);
    /* bad sequence, token, adapter */
    loam_batch_entry bad = {2, 0, 1, -1, false};
    CHECK_EQ_I64(loam_session_decode(s, &bad, 1, &e), LOAM_E_RANGE);
    bad = (loam_batch_entry){1, 0, 64, -1, false};
    CHECK_EQ_I64(loam_session_decode(s, &bad, 1, &e), LOAM_E_RANGE);
    bad = (loam_batch_entry){1, 0, -1, -1, false};
    CHECK_EQ_I64(loam_session_decode(s, &bad, 1, &e), LOAM_E_RANGE);
    bad = (loam_batch_entry){1, 0, 1, 9, false};
    CHECK_EQ_I64(loam_session_decode(s, &bad, 1, &e), LOAM_E_INVAL);
    bad = (loam_batch_entry){1, 0, 1, -7, false};
    CHECK_EQ_I64(loam_session_decode(s, &bad, 1, &e), LOAM_E_INVAL);
    /* sequence 0 is bound to the base model: an adapter entry for it is refused */
    loam_batch_entry ad = {0, 4, 1, t.ida, false};
    CHECK_EQ_I64(loam_session_decode(s, &ad, 1, &e), LOAM_E_INVAL);
    CHECK(strstr(e.msg, "adapter") != NULL);
    /* too many logits rows (n_logits = n_seq_max = 2) */
    loam_batch_entry three_out[3] = {{0, 4, 1, -1, true}, {0, 5, 1, -1, true},
                                     {0, 6, 1, -1, true}};
    CHECK_EQ_I64(loam_session_decode(s, three_out, 3, &e), LOAM_E_RANGE);
    /* context full: 40 tokens over all sequences */
    loam_batch_entry fill[40];
    for (int i = 0; i < 36; i++) fill[i] = (loam_batch_entry){1, i, 3, t.idb, false};
    CHECK_OK(loam_session_decode(s, fill, 36, &e), e);
    CHECK_EQ_I64(loam_session_n_tokens(s), 40);
    loam_batch_entry one = {0, 4, 1, -1, true};
    CHECK_EQ_I64(loam_session_decode(s, &one, 1, &e), LOAM_E_RANGE);
    CHECK(strstr(e.msg, "context full") != NULL);
    /* the adapter of sequence 1 cannot be unloaded while the sequence holds it */
    CHECK_EQ_I64(loam_model_unload_adapter(t.m, "b", &e), LOAM_E_BUSY);
    loam_session_seq_reset(s, 1);
    CHECK_EQ_I64(loam_session_decode(s, &one, 1, &e), LOAM_OK);
    CHECK_EQ_I64(loam_session_n_logits(s), 1);
    CHECK_OK(loam_model_unload_adapter(t.m, "b", &e), e);
    CHECK_EQ_I64(loam_model_unload_adapter(t.m, "b", &e), LOAM_E_NOTFOUND);
    CHECK_EQ_I64(loam_model_adapter_id(t.m, "b"), -1);
    /* the freed id is refused */
    bad = (loam_batch_entry){1, 0, 1, t.idb, false};
    CHECK_EQ_I64(loam_session_decode(s, &bad, 1, &e), LOAM_E_INVAL);
    CHECK_EQ_I64(loam_session_seq_len(s, 1), 0);
    /* a failed call still clears the logits of the previous one; n == 0 is a no-op */
    CHECK_EQ_I64(loam_session_n_logits(s), 0);
    CHECK_OK(loam_session_decode(s, NULL, 0, &e), e);
    /* sequence ids out of range are harmless for the queries */
    CHECK_EQ_I64(loam_session_seq_len(s, 2), -1);
    loam_session_seq_reset(s, -1);
    /* a single sequence longer than n_ctx */
    loam_session_seq_reset(s, 0);
    CHECK_EQ_I64(loam_session_decode(s, ent, 41, &e), LOAM_E_RANGE);
    CHECK_EQ_I64(loam_session_n_tokens(s), 0);
    /* duplicate adapter names, bad names */
    char a[600];
    snprintf(a, sizeof a, "%s/ad_a", t.dir);
    CHECK_EQ_I64(loam_model_load_adapter(t.m, "a", a, &e), LOAM_E_INVAL);
    CHECK_EQ_I64(loam_model_load_adapter(t.m, "", a, &e), LOAM_E_INVAL);
    loam_session_free(s);
    /* session parameters */
    p.n_ctx = 0;
    CHECK_EQ_I64(loam_session_new(&s, t.m, &p, &e), LOAM_E_INVAL);
    CHECK(s == NULL);
    p.n_ctx = 16;
    p.n_batch = 0;
    CHECK_EQ_I64(loam_session_new(&s, t.m, &p, &e), LOAM_E_INVAL);
    three_close(&t);
}

/* Opens dir and expects status with msg containing needle. */
static void expect_open_fail(const char *dir, loam_status want, const char *needle) {
    loam_model *m = (loam_model *)1;
    loam_err e = {0};
    loam_status st = loam_model_open(&m, dir, NULL, &e);
    CHECK_EQ_I64(st, want);
    CHECK(m == NULL);
    if (!strstr(e.msg, needle)) {
        fprintf(stderr, "  message \"%s\" lacks \"%s\"\n", e.msg, needle);
        CHECK(strstr(e.msg, needle) != NULL);
    }
    if (st == LOAM_OK) loam_model_close(m);
}

static void test_model_errors(void) {
    char dir[512];
    tmodel M;
    tspec s = qwen3_spec();

    s.skip = "model.layers.1.mlp.up_proj.scales";
    subdir(dir, sizeof dir, "err_missing");
    build(&M, &s, dir);
    tmodel_free(&M);
    /* without .scales the module counts as float: its U32 weight is then the wrong dtype */
    expect_open_fail(dir, LOAM_E_FORMAT, "model.layers.1.mlp.up_proj.weight");

    s = qwen3_spec();
    s.skip = "model.layers.0.self_attn.k_norm.weight";
    subdir(dir, sizeof dir, "err_missing2");
    build(&M, &s, dir);
    tmodel_free(&M);
    expect_open_fail(dir, LOAM_E_FORMAT, "'model.layers.0.self_attn.k_norm.weight' is missing");

    s = qwen3_spec();
    s.skip = "lm_head.weight";
    subdir(dir, sizeof dir, "err_missing3");
    build(&M, &s, dir);
    tmodel_free(&M);
    expect_open_fail(dir, LOAM_E_FORMAT, "lm_head.weight");

    s = qwen3_spec();
    s.bad_shape = "model.layers.1.self_attn.o_proj.weight";
    subdir(dir, sizeof dir, "err_shape");
    build(&M, &s, dir);
    tmodel_free(&M);
    expect_open_fail(dir, LOAM_E_FORMAT,
                     "'model.layers.1.self_attn.o_proj.weight' has shape [65, 16], expected [64, 16]");

    s = qwen3_spec();
    s.bad_shape = "model.norm.weight";
    subdir(dir, sizeof dir, "err_shape2");
    build(&M, &s, dir);
    tmodel_free(&M);
    expect_open_fail(dir, LOAM_E_FORMAT, "'model.norm.weight' has shape [65], expected [64]");

    s = qwen3_spec();
    s.arch = "MistralForCausalLM";
    subdir(dir, sizeof dir, "err_arch");
    build(&M, &s, dir);
    tmodel_free(&M);
    expect_open_fail(dir, LOAM_E_UNSUPPORTED, "'MistralForCausalLM' is not supported");

    static const override mx[] = {{"model.layers.0.mlp.up_proj", 4, 32, "mxfp4"}};
    s = qwen3_spec();
    s.ov = mx;
    s.n_ov = 1;
    subdir(dir, sizeof dir, "err_mode");
    build(&M, &s, dir);
    tmodel_free(&M);
    expect_open_fail(dir, LOAM_E_UNSUPPORTED, "model.layers.0.mlp.up_proj");

    s = qwen3_spec();
    s.rope = "\"rope_scaling\": {\"type\": \"dynamic\", \"factor\": 2.0}";
    subdir(dir, sizeof dir, "err_rope");
    build(&M, &s, dir);
    tmodel_free(&M);
    expect_open_fail(dir, LOAM_E_UNSUPPORTED, "rope type 'dynamic'");

    s = qwen3_spec();
    s.extra = "\"use_sliding_window\": true, \"sliding_window\": 16";
    subdir(dir, sizeof dir, "err_sliding");
    build(&M, &s, dir);
    tmodel_free(&M);
    expect_open_fail(dir, LOAM_E_UNSUPPORTED, "sliding-window");

    s = qwen3_spec();
    s.n_kv = 3; /* 4 heads: not a multiple */
    subdir(dir, sizeof dir, "err_gqa");
    build(&M, &s, dir);
    tmodel_free(&M);
    expect_open_fail(dir, LOAM_E_FORMAT, "num_key_value_heads");

    /* no config.json */
    subdir(dir, sizeof dir, "err_noconfig");
    s = qwen3_spec();
    build(&M, &s, dir);
    tmodel_free(&M);
    char path[600];
    snprintf(path, sizeof path, "%s/config.json", dir);
    unlink(path);
    expect_open_fail(dir, LOAM_E_FORMAT, "config.json");

    /* not a directory of a model at all */
    loam_model *m;
    loam_err e;
    CHECK(loam_model_open(&m, "/nonexistent/loam", NULL, &e) != LOAM_OK);
    CHECK(m == NULL);
    loam_model_close(NULL);
    loam_session_free(NULL);
}

static void test_info(void) {
    char dir[512];
    subdir(dir, sizeof dir, "info");
    tspec s = qwen3_spec();
    tmodel M;
    build(&M, &s, dir);
    tmodel_free(&M);
    loam_model *m;
    loam_err e;
    CHECK_OK(loam_model_open(&m, dir, NULL, &e), e);
    if (!m) return;
    loam_model_info i;
    loam_model_get_info(m, &i);
    CHECK_STR(i.arch, "Qwen3ForCausalLM");
    CHECK_STR(i.rope_type, "default");
    CHECK_EQ_I64(i.n_vocab, 64);
    CHECK_EQ_I64(i.n_embd, 64);
    CHECK_EQ_I64(i.n_ff, 128);
    CHECK_EQ_I64(i.n_layer, 2);
    CHECK_EQ_I64(i.n_head, 4);
    CHECK_EQ_I64(i.n_head_kv, 2);
    CHECK_EQ_I64(i.head_dim, 32);
    CHECK_EQ_I64(i.bits, 4);
    CHECK_EQ_I64(i.group_size, 32);
    CHECK(!i.mixed);
    CHECK(!i.tied_embeddings);
    CHECK_CLOSE(i.rope_theta, 1e6, 1);
    /* params: embed + head 2*64*64, per layer q 128*64, k,v 64*64, o 64*128, gate/up/down
     * 3*128*64, norms 2*64 + 2*32; final norm 64 */
    uint64_t per = 128 * 64 + 2 * 64 * 64 + 64 * 128 + 3 * 128 * 64 + 2 * 64 + 2 * 32;
    CHECK_EQ_I64(i.n_params, 2 * 64 * 64 + 2 * per + 64);
    /* bytes: a 4-bit g32 bf16 matrix n x k is n*k/2 + 2 * n*(k/32)*2 */
    uint64_t qb_e = 64 * 64 / 2 + 4 * 64 * 2;
    CHECK(i.weight_bytes > i.step_bytes);
    CHECK_EQ_I64(i.weight_bytes - i.step_bytes, qb_e); /* the embedding table is not read */
    CHECK_EQ_I64(i.n_adapters, 0);
    loam_model_close(m);
}

// ---- tests: attention kernels -------------------------------------------------------------------

static void check_attend(loam__attend_fn fn, const char *name) {
    enum { NB = 12, B = LOAM__KV_BLOCK, MAXK = NB * B };
    static const int hds[] = {64, 128}, reps[] = {1, 2, 3, 4, 8}, nks[] = {1, 5, 16, 31, 32, 33,
                                                                            100, 300, 384};
    for (size_t hi = 0; hi < 2; hi++)
        for (size_t ri = 0; ri < sizeof reps / sizeof reps[0]; ri++)
            for (size_t ki = 0; ki < sizeof nks / sizeof nks[0]; ki++) {
                int hd = hds[hi], rep = reps[ri], nk = nks[ki], n_kv = 2;
                int64_t bs = (int64_t)n_kv * B * hd; /* block stride: 2 kv heads per block */
                float *k = malloc((size_t)(NB * bs) * 4), *v = malloc((size_t)(NB * bs) * 4);
                float *q = malloc((size_t)(rep * hd) * 4), *o1 = malloc((size_t)(rep * hd) * 4),
                      *o2 = malloc((size_t)(rep * hd) * 4);
                float *w1 = malloc((size_t)(rep * MAXK) * 4), *w2 = malloc((size_t)(rep * MAXK) * 4);
                for (int64_t i = 0; i < NB * bs; i++) k[i] = frand(), v[i] = frand();
                for (int i = 0; i < rep * hd; i++) q[i] = 2.0f * frand();
                int32_t table[NB];
                for (int b = 0; b < NB; b++) table[b] = (b * 7 + 3) % NB; /* scattered blocks */
                loam__attn_task t = {.q = q, .out = o1, .k = k + (int64_t)B * hd, /* kv head 1 */
                                     .v = v + (int64_t)B * hd, .table = table, .block_stride = bs,
                                     .n_keys = nk, .n_rep = rep, .head_dim = hd,
                                     .scale = 1.0f / sqrtf((float)hd), .w = w1, .w_stride = MAXK};
                loam__attend_c(&t);
                t.out = o2;
                t.w = w2;
                fn(&t);
                double r = rel_l2(o2, o1, (size_t)(rep * hd));
                if (!(r < 2e-6)) {
                    fprintf(stderr, "  %s: hd %d rep %d keys %d: rel L2 %.3g\n", name, hd, rep, nk, r);
                    CHECK(r < 2e-6);
                }
                free(k), free(v), free(q), free(o1), free(o2), free(w1), free(w2);
            }
}

static void test_attention_kernels(void) {
    int n = 0;
    if (loam__cpu_kernels_named("avx512")) {
        check_attend(loam__attend_avx512, "avx512");
        n++;
    }
    if (loam__cpu_kernels_named("avx2")) {
        check_attend(loam__attend_avx2, "avx2");
        n++;
    }
    /* what the fast path picks: an ISA version for 64 / 128 when the CPU has one, never for the
     * reference path, other head sizes or more than 64 query heads per KV head */
    CHECK(loam__attend_pick(128, 4, true) == loam__attend_c);
    CHECK(loam__attend_pick(96, 4, false) == loam__attend_c);
    CHECK(loam__attend_pick(128, 65, false) == loam__attend_c);
    CHECK((loam__attend_pick(128, 4, false) != loam__attend_c) == (n > 0 && strncmp(loam_cpu_kernels_name(), "avx", 3) == 0));
}

// ---- tests: Hugging Face transformers fixtures -------------------------------------------------

static float *read_f32(const char *path, size_t n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    float *x = malloc(n * sizeof(float));
    size_t got = fread(x, sizeof(float), n, f);
    int extra = fgetc(f);
    fclose(f);
    if (got != n || extra != EOF) {
        free(x);
        return NULL;
    }
    return x; /* the fixtures are little-endian, as every host loam runs on */
}

static int argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

/* One variant of one case: logits at every position (reference and fast path), then greedy. */
static void fixture_variant(loam_model *m, const char *dir, const cJSON *ref, const char *variant,
                            const char *file, int32_t adapter) {
    const cJSON *ids_j = cJSON_GetObjectItemCaseSensitive(ref, "ids");
    int T = cJSON_GetArraySize(ids_j), nv;
    loam_model_info info;
    loam_model_get_info(m, &info);
    nv = info.n_vocab;
    CHECK_EQ_I64(nv, cJSON_GetObjectItemCaseSensitive(ref, "vocab_size")->valueint);
    int ids[64];
    LOAM_CHECK(T > 0 && T <= 32);
    for (int i = 0; i < T; i++) ids[i] = cJSON_GetArrayItem(ids_j, i)->valueint;
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    float *want = read_f32(path, (size_t)T * nv), *got = malloc((size_t)T * nv * 4);
    CHECK(want != NULL);
    if (!want) {
        free(got);
        return;
    }
    loam_err e;
    double r[2] = {1, 1};
    for (int ref_path = 1; ref_path >= 0; ref_path--) {
        CHECK_OK(run_seq(m, ref_path, 512, adapter, ids, T, got, &e), e);
        r[ref_path] = rel_l2(got, want, (size_t)T * nv);
    }
    CHECK(r[1] < TOL_REF);
    CHECK(r[0] < TOL_FAST);
    if (getenv("LOAM_TEST_VERBOSE") || r[1] >= TOL_REF || r[0] >= TOL_FAST)
        fprintf(stderr, "  %s %s: rel L2 reference %.3g, fast %.3g\n", dir, variant, r[1], r[0]);

    /* greedy continuation with the KV cache, reference path. (The fast path is not held to it:
     * some fixtures' smallest top-2 margin, greedy_min_margin, is 0.05, within its logit error,
     * and its continuations do diverge after a few tokens on two cases.) */
    const cJSON *greedy =
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(ref, "greedy"), variant);
    int n_greedy = cJSON_GetArraySize(greedy);
    loam_session_params p = loam_session_params_default();
    p.n_ctx = 64;
    p.n_logits = 1;
    p.reference = true;
    loam_session *s;
    CHECK_OK(loam_session_new(&s, m, &p, &e), e);
    loam_batch_entry ent[64];
    for (int i = 0; i < T; i++) ent[i] = (loam_batch_entry){0, i, ids[i], adapter, i == T - 1};
    CHECK_OK(loam_session_decode(s, ent, (size_t)T, &e), e);
    for (int g = 0; g < n_greedy && loam_session_n_logits(s) == 1; g++) {
        int next = argmax(loam_session_logits(s, 0), nv);
        CHECK_EQ_I64(next, cJSON_GetArrayItem(greedy, g)->valueint);
        loam_batch_entry one = {0, T + g, next, adapter, true};
        CHECK_OK(loam_session_decode(s, &one, 1, &e), e);
    }
    loam_session_free(s);
    free(want);
    free(got);
}

static void test_fixtures(void) {
    const char *root = LOAM_TEST_DIR "/data/models";
    DIR *d = opendir(root);
    CHECK(d != NULL); /* the fixtures are committed: their absence is a failure */
    if (!d) return;
    int n_cases = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.') continue;
        char dir[768], path[1024];
        snprintf(dir, sizeof dir, "%s/%s", root, de->d_name);
        snprintf(path, sizeof path, "%s/reference.json", dir);
        char *text;
        size_t len;
        loam_err e;
        if (loam__read_file(path, &text, &len, &e) != LOAM_OK) continue;
        cJSON *ref = cJSON_Parse(text);
        loam__free(text);
        CHECK(ref != NULL);
        if (!ref) continue;
        n_cases++;
        loam_model *m = NULL;
        CHECK_OK(loam_model_open(&m, dir, NULL, &e), e);
        const cJSON *v;
        cJSON_ArrayForEach(v, cJSON_GetObjectItemCaseSensitive(ref, "cases")) {
            int32_t adapter = -1;
            if (!m) break;
            if (strcmp(v->string, "base") != 0) {
                snprintf(path, sizeof path, "%s/adapter_%s", dir, v->string);
                CHECK_OK(loam_model_load_adapter(m, v->string, path, &e), e);
                adapter = loam_model_adapter_id(m, v->string);
                if (adapter < 0) continue;
            }
            fixture_variant(m, dir, ref, v->string, v->valuestring, adapter);
        }
        loam_model_close(m);
        cJSON_Delete(ref);
    }
    closedir(d);
    CHECK(n_cases >= 9);
}

static void run_tests(void) {
    TEST(test_info);
    TEST(test_qwen3_q4);
    TEST(test_qwen3_bf16_tied_head_dim);
    TEST(test_qwen2_bias_tied);
    TEST(test_llama3_rope_biases);
    TEST(test_linear_rope_parameters);
    TEST(test_yarn);
    TEST(test_overrides);
    TEST(test_batched_reference);
    TEST(test_batched_fast);
    TEST(test_chunked_prefill);
    TEST(test_kv_reuse);
    TEST(test_decode_errors);
    TEST(test_model_errors);
    TEST(test_attention_kernels);
    TEST(test_fixtures);
    if (g_tmp[0]) rm_rf(g_tmp);
}

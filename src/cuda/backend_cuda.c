/* backend_cuda.c: the CUDA backend (DESIGN.md "The backend interface"), the second
 * implementation of loam__backend after src/cpu/backend_cpu.c, stage for stage. Built only by
 * `make CUDA=1` (it defines LOAM_CUDA and links the objects of src/cuda/); a model opened with
 * device LOAM_DEVICE_CUDA gets it for its sessions.
 *
 * What lives where:
 * - Weights: every Linear layer and the head are uploaded at session creation as the MLX bytes
 *   (loam__cuda_q4mat: 4-bit, group 64, bf16 scales and biases; any other format is
 *   LOAM_E_UNSUPPORTED naming the tensor); norm weights and Linear biases as float32. The
 *   embedding stays on the host: a step's rows are gathered and dequantized there (one row
 *   per token) and uploaded with the step's positions, RoPE angles and block tables.
 * - LoRA: A, B (and DoRA factors, PEFT biases) are uploaded at the first step that uses them,
 *   keyed by (adapter serial, layer, module), kept until the session ends.
 * - Activations, KV cache (the CPU layout, float32) and logits: device memory sized from the
 *   session shape; the logits of the wanted rows are copied back at the end of a step.
 * - Matmuls: loam__cuda_quantize_x + loam__cuda_matmul_q4 over runs of at most 8 rows
 *   (LOAM_CUDA_Q4_MAX_M), so a long prefill is many decode-shaped launches (correct, not yet
 *   fast: a tensor-core path for m > 8 is the next piece).
 * - Fusions: q/k/v (and gate/up) are one stacked matrix on the device, one matmul launch
 *   whose output rows hold the modules side by side (row stride ld_qkv, 2·n_ff), and their
 *   LoRA terms run as one launch pair per adapter group; the residual add of o_proj and down_proj is deferred
 *   into the next RMSNorm (`pending`), so x is read once per norm.
 * - Decode steps (<= GRAPH_MAX_ROWS rows) are recorded as a CUDA graph on their first run and
 *   replayed after, keyed by their shape (graph_key): the stages between embed and head then
 *   queue nothing. Everything that varies within a shape is in device buffers that embed fills.
 * Stage functions cannot fail (backend.h); a CUDA error inside one is kept (the first one), the
 * step's logits come back as NaN, and step_status reports it (loam_session_decode fails).
 * One stream of the session's own; the synchronous copies (uploads before, logits after) order
 * with it through the legacy default stream.
 */
#include "../backend.h"
#include "../lora.h"
#include "loam_cuda.h"

#include <math.h>

#define KV_BLOCK LOAM__KV_BLOCK
#define MAX_M    LOAM_CUDA_Q4_MAX_M
#define LORA_T   (1 << 16) /* floats of LoRA scratch (rows × rank) */

/* A layer on the device. q, k, v are one matrix (qkv, rows q then k then v) and gate, up another
 * (gu), so each reads its input once in one launch (DESIGN.md: weights may be repacked at
 * load); w[] of those five modules are views into them (no memory of their own). */
typedef struct dev_layer {
    loam__cuda_q4mat w[LOAM__N_MOD];
    loam__cuda_q4mat qkv, gu;
    float *bias[LOAM__N_MOD];
    float *attn_norm, *ffn_norm, *q_norm, *k_norm;
} dev_layer;

/* w[mod] is a view into the layer's qkv or gu matrix (not to be freed on its own) */
static bool is_view(const dev_layer *L, int mod) {
    if (mod == LOAM__MOD_Q || mod == LOAM__MOD_K || mod == LOAM__MOD_V) return L->qkv.w != NULL;
    if (mod == LOAM__MOD_GATE || mod == LOAM__MOD_UP) return L->gu.w != NULL;
    return false;
}

typedef struct lora_dev {
    uint64_t serial; /* 0: free entry */
    int32_t layer, mod;
    float *a, *b, *bias, *dora; /* a: Aᵀ, (r, in) */
} lora_dev;

#define N_GRAPHS       16 /* decode shapes kept */
#define N_SEEN         64 /* shapes remembered to have been run once */
#define GRAPH_MAX_ROWS 64 /* larger steps (prefill) run directly */
#define GRAPH_GROUPS   8  /* adapter groups a recorded step may have */

/* What a recorded step depends on besides device buffers: rows, outputs, adapter groups. */
typedef struct graph_key {
    int32_t n_rows, n_out, n_groups;
    struct {
        uint64_t serial; /* 0: the base model */
        int32_t row0, n;
    } g[GRAPH_GROUPS];
} graph_key;

typedef struct graph {
    graph_key key;
    void *exec;    /* NULL: free slot */
    uint64_t used; /* for replacement: the least recently used goes */
} graph;

typedef struct cuda_state {
    const loam_model *m;
    loam__backend_shape sh;
    int64_t q_dim, kv_dim, kv_layer; /* kv_layer: floats of one layer's K (or V) cache */
    dev_layer *layers;
    loam__cuda_q4mat head;
    float *out_norm;
    /* device activations */
    float *x, *xn, *att, *rope_cos, *rope_sin, *k_cache, *v_cache;
    float *qkv; /* (n_batch, ld_qkv): the q/k/v projections of a row side by side */
    float *gu;  /* (n_batch, 2·n_ff): gate then up */
    float *act; /* (n_batch, n_ff): silu(gate)·up, the input of down */
    int64_t ld_qkv;
    float *lora_t, *logits, *hn; /* hn: the head's normed rows */
    float *pending; /* a residual not yet added to x: the next norm adds it (xn, or NULL) */
    void *xq;
    int32_t *d_blk, *d_slot, *d_pos, *d_seq, *d_tables, *d_out;
    /* host staging */
    float *h_x, *h_cos, *h_sin;
    int32_t *h_blk, *h_slot;
    lora_dev *lora;
    size_t lora_cap, lora_used;
    loam_status status; /* first failure of a stage, sticky */
    loam_err err;
    void *stream;
    /* decode steps are recorded once per shape as a CUDA graph and replayed: the kernels read
     * everything that changes between steps from the device buffers the embed stage fills */
    graph graphs[N_GRAPHS];
    graph seen[N_SEEN]; /* shapes met once (exec unused): recorded when met again */
    uint64_t graph_clock;
    enum { RUN_DIRECT, RUN_CAPTURE, RUN_REPLAY } mode;
    bool no_graphs; /* LOAM_CUDA_GRAPHS=0 in the environment: every step runs directly */
    graph *cur; /* the graph being recorded or replayed */
} cuda_state;

static bool failed(cuda_state *cs, loam_status s) {
    if (s != LOAM_OK && cs->status == LOAM_OK) cs->status = s;
    return s != LOAM_OK;
}

// ---- allocation helpers -----------------------------------------------------------------------

static void *dalloc(cuda_state *cs, size_t bytes, loam_err *err) {
    void *p = NULL;
    if (loam__cuda_alloc(&p, bytes, err) != LOAM_OK) return NULL;
    (void)cs;
    return p;
}

/* a device copy of n host floats (NULL host: NULL, no error) */
static loam_status up_f32(float **out, const float *host, int64_t n, loam_err *err) {
    *out = NULL;
    if (!host || n <= 0) return LOAM_OK;
    loam_status s = loam__cuda_alloc((void **)out, (size_t)n * sizeof(float), err);
    if (s == LOAM_OK) s = loam__cuda_upload(*out, host, (size_t)n * sizeof(float), err);
    return s;
}

static void cuda_session_free(void *p) {
    cuda_state *cs = p;
    if (!cs) return;
    if (cs->layers) {
        for (int32_t l = 0; l < cs->m->cfg.n_layer; l++) {
            dev_layer *L = &cs->layers[l];
            for (int i = 0; i < LOAM__N_MOD; i++) {
                if (!is_view(L, i)) loam__cuda_q4mat_free(&L->w[i]);
                loam__cuda_free(L->bias[i]);
            }
            loam__cuda_q4mat_free(&L->qkv);
            loam__cuda_q4mat_free(&L->gu);
            loam__cuda_free(L->attn_norm);
            loam__cuda_free(L->ffn_norm);
            loam__cuda_free(L->q_norm);
            loam__cuda_free(L->k_norm);
        }
        loam__free(cs->layers);
    }
    for (size_t i = 0; cs->lora && i < cs->lora_cap; i++) {
        if (!cs->lora[i].serial) continue;
        loam__cuda_free(cs->lora[i].a);
        loam__cuda_free(cs->lora[i].b);
        loam__cuda_free(cs->lora[i].bias);
        loam__cuda_free(cs->lora[i].dora);
    }
    loam__free(cs->lora);
    for (int i = 0; i < N_GRAPHS; i++) loam__cuda_graph_free(cs->graphs[i].exec);
    loam__cuda_stream_free(cs->stream);
    loam__cuda_q4mat_free(&cs->head);
    void *dev[] = {cs->out_norm, cs->x,       cs->xn,      cs->qkv,      cs->gu,     cs->act,
                   cs->att,      cs->rope_cos, cs->rope_sin, cs->k_cache,
                   cs->v_cache,  cs->lora_t,  cs->logits,  cs->hn,  cs->xq,      cs->d_blk,  cs->d_slot,
                   cs->d_pos,    cs->d_seq,   cs->d_tables, cs->d_out};
    for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++) loam__cuda_free(dev[i]);
    loam__free(cs->h_x);
    loam__free(cs->h_cos);
    loam__free(cs->h_sin);
    loam__free(cs->h_blk);
    loam__free(cs->h_slot);
    loam__free(cs);
}

static loam_status upload_weight(loam__cuda_q4mat *out, const loam__qmat *w, const char *what,
                                 int32_t layer, loam_err *err) {
    loam_status s = loam__cuda_q4mat_upload(out, w, err);
    if (s == LOAM_E_UNSUPPORTED) {
        char name[96];
        if (layer >= 0) snprintf(name, sizeof name, "model.layers.%d.%s", layer, what);
        else snprintf(name, sizeof name, "%s", what);
        if (w->dtype == LOAM_DTYPE_U32)
            return loam__fail(err, s,
                              "cuda backend: %s is %d-bit group %d with %s scales; only MLX "
                              "4-bit group-64 bf16-scale weights run on CUDA (use the CPU)",
                              name, w->fmt.bits, w->fmt.group_size,
                              loam_dtype_name(w->fmt.scale_dtype));
        return loam__fail(err, s,
                          "cuda backend: %s is unquantized %s; only MLX 4-bit group-64 "
                          "bf16-scale weights run on CUDA (use the CPU)",
                          name, loam_dtype_name(w->dtype));
    }
    return s;
}

/* out = the matrices w[mods[0..n)] stacked by rows (same k) in one allocation; each w[mods[i]]
 * is freed and becomes a view into out. On failure the parts are left as they were. */
static loam_status fuse_rows(loam__cuda_q4mat *out, loam__cuda_q4mat *w, const loam__mod *mods,
                             int n, loam_err *err) {
    const int64_t k = w[mods[0]].k;
    int64_t rows = 0;
    for (int i = 0; i < n; i++) rows += w[mods[i]].n;
    /* 4-bit: k/2 bytes of words per row; bf16 scales and biases: k/64 of 2 bytes */
    const size_t wrow = (size_t)k / 2, srow = (size_t)k / 64 * 2;
    memset(out, 0, sizeof *out);
    loam_status s = loam__cuda_alloc(&out->w, (size_t)rows * wrow, err);
    if (s == LOAM_OK) s = loam__cuda_alloc(&out->scales, (size_t)rows * srow, err);
    if (s == LOAM_OK) s = loam__cuda_alloc(&out->biases, (size_t)rows * srow, err);
    int64_t r0 = 0;
    for (int i = 0; i < n && s == LOAM_OK; i++) {
        const loam__cuda_q4mat *p = &w[mods[i]];
        s = loam__cuda_copy((char *)out->w + r0 * wrow, p->w, (size_t)p->n * wrow, err);
        if (s == LOAM_OK)
            s = loam__cuda_copy((char *)out->scales + r0 * srow, p->scales, (size_t)p->n * srow,
                                err);
        if (s == LOAM_OK)
            s = loam__cuda_copy((char *)out->biases + r0 * srow, p->biases, (size_t)p->n * srow,
                                err);
        r0 += p->n;
    }
    if (s != LOAM_OK) {
        loam__cuda_q4mat_free(out);
        return s;
    }
    out->n = rows;
    out->k = k;
    r0 = 0;
    for (int i = 0; i < n; i++) {
        loam__cuda_q4mat *p = &w[mods[i]];
        int64_t pn = p->n;
        loam__cuda_q4mat_free(p);
        p->w = (char *)out->w + r0 * wrow;
        p->scales = (char *)out->scales + r0 * srow;
        p->biases = (char *)out->biases + r0 * srow;
        p->n = pn;
        p->k = k;
        r0 += pn;
    }
    return LOAM_OK;
}

static loam_status cuda_session_new(void **out, const loam_model *m,
                                    const loam__backend_shape *sh, loam_err *err) {
    const loam__config *c = &m->cfg;
    *out = NULL;
    cuda_state *cs = loam__calloc(1, sizeof *cs);
    if (!cs) return loam__fail(err, LOAM_E_NOMEM, "cuda backend: out of memory");
    cs->m = m;
    cs->sh = *sh;
    cs->q_dim = (int64_t)c->n_head * c->head_dim;
    cs->kv_dim = (int64_t)c->n_head_kv * c->head_dim;
    cs->kv_layer = (int64_t)sh->n_blocks * c->n_head_kv * KV_BLOCK * c->head_dim;
    cs->ld_qkv = cs->q_dim + 2 * cs->kv_dim;
    loam_status s = loam__cuda_stream_new(&cs->stream, err);
    if (s != LOAM_OK) goto fail;
    if (c->head_dim > 256 || c->head_dim % 2) {
        s = loam__fail(err, LOAM_E_UNSUPPORTED, "cuda backend: head_dim %d (even, <= 256)",
                       c->head_dim);
        goto fail;
    }
    cs->layers = loam__calloc((size_t)c->n_layer, sizeof *cs->layers);
    if (!cs->layers) {
        s = loam__fail(err, LOAM_E_NOMEM, "cuda backend: out of memory");
        goto fail;
    }
    for (int32_t l = 0; l < c->n_layer && s == LOAM_OK; l++) {
        const loam__layer *L = &m->layers[l];
        dev_layer *D = &cs->layers[l];
        for (int i = 0; i < LOAM__N_MOD && s == LOAM_OK; i++) {
            s = upload_weight(&D->w[i], &L->lin[i].w, loam__mod_path[i], l, err);
            if (s == LOAM_OK) s = up_f32(&D->bias[i], L->lin[i].bias, L->lin[i].w.n, err);
        }
        static const loam__mod qkv[3] = {LOAM__MOD_Q, LOAM__MOD_K, LOAM__MOD_V};
        static const loam__mod gu[2] = {LOAM__MOD_GATE, LOAM__MOD_UP};
        if (s == LOAM_OK) s = fuse_rows(&D->qkv, D->w, qkv, 3, err);
        if (s == LOAM_OK) s = fuse_rows(&D->gu, D->w, gu, 2, err);
        if (s == LOAM_OK) s = up_f32(&D->attn_norm, L->attn_norm, c->n_embd, err);
        if (s == LOAM_OK) s = up_f32(&D->ffn_norm, L->ffn_norm, c->n_embd, err);
        if (s == LOAM_OK) s = up_f32(&D->q_norm, L->q_norm, c->head_dim, err);
        if (s == LOAM_OK) s = up_f32(&D->k_norm, L->k_norm, c->head_dim, err);
    }
    if (s == LOAM_OK) s = upload_weight(&cs->head, &m->head, "lm_head", -1, err);
    if (s == LOAM_OK) s = up_f32(&cs->out_norm, m->out_norm, c->n_embd, err);
    if (s != LOAM_OK) goto fail;

    const int64_t nb = sh->n_batch, half = c->head_dim / 2;
    const int64_t wide = cs->q_dim > c->n_embd ? cs->q_dim : c->n_embd;
    const int64_t kmax = wide > c->n_ff ? wide : c->n_ff;
    const size_t F = sizeof(float), I = sizeof(int32_t);
    const int64_t table_stride = ((int64_t)sh->n_ctx + KV_BLOCK - 1) / KV_BLOCK;
    cs->lora_cap = 4096;
    const char *g = getenv("LOAM_CUDA_GRAPHS");
    cs->no_graphs = g && strcmp(g, "0") == 0;
    struct {
        void **p;
        size_t bytes;
    } bufs[] = {
        {(void **)&cs->x, (size_t)(nb * c->n_embd) * F},
        {(void **)&cs->xn, (size_t)(nb * wide) * F},
        {(void **)&cs->qkv, (size_t)(nb * cs->ld_qkv) * F},
        {(void **)&cs->att, (size_t)(nb * cs->q_dim) * F},
        {(void **)&cs->gu, (size_t)(nb * 2 * c->n_ff) * F},
        {(void **)&cs->act, (size_t)(nb * c->n_ff) * F},
        {(void **)&cs->rope_cos, (size_t)(nb * half) * F},
        {(void **)&cs->rope_sin, (size_t)(nb * half) * F},
        {(void **)&cs->k_cache, (size_t)(cs->kv_layer * c->n_layer) * F},
        {(void **)&cs->v_cache, (size_t)(cs->kv_layer * c->n_layer) * F},
        {(void **)&cs->lora_t, (size_t)LORA_T * F},
        {(void **)&cs->hn, (size_t)(nb * c->n_embd) * F},
        {(void **)&cs->logits, (size_t)(nb * c->n_vocab) * F},
        {(void **)&cs->xq, loam__cuda_xq_bytes(MAX_M, kmax)},
        {(void **)&cs->d_blk, (size_t)nb * I},
        {(void **)&cs->d_slot, (size_t)nb * I},
        {(void **)&cs->d_pos, (size_t)nb * I},
        {(void **)&cs->d_seq, (size_t)nb * I},
        {(void **)&cs->d_tables, (size_t)(sh->n_seq * table_stride) * I},
        {(void **)&cs->d_out, (size_t)nb * I},
    };
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) {
        if (!(*bufs[i].p = dalloc(cs, bufs[i].bytes, err))) {
            s = loam__fail(err, LOAM_E_NOMEM,
                           "cuda backend: no device memory for the session (%.1f MiB buffer %zu: "
                           "%s)",
                           (double)bufs[i].bytes / 1048576.0, i, err->msg);
            goto fail;
        }
    }
    cs->h_x = loam__malloc((size_t)(nb * c->n_embd) * F);
    cs->h_cos = loam__malloc((size_t)(nb * half) * F);
    cs->h_sin = loam__malloc((size_t)(nb * half) * F);
    cs->h_blk = loam__malloc((size_t)nb * I);
    cs->h_slot = loam__malloc((size_t)nb * I);
    cs->lora = loam__calloc(cs->lora_cap, sizeof *cs->lora);
    if (!cs->h_x || !cs->h_cos || !cs->h_sin || !cs->h_blk || !cs->h_slot || !cs->lora) {
        s = loam__fail(err, LOAM_E_NOMEM, "cuda backend: out of memory");
        goto fail;
    }
    *out = cs;
    return LOAM_OK;
fail:
    cuda_session_free(cs);
    return s;
}

// ---- linear layers ----------------------------------------------------------------------------

/* The device copy of an adapter module, uploaded on first use; NULL after a failure (kept). */
static const lora_dev *lora_get(cuda_state *cs, const loam__adapter *a, int32_t layer,
                                loam__mod mod, const loam__lora_mod *lm, int64_t in, int64_t out) {
    const uint64_t serial = loam__adapter_serial(a);
    size_t h = (size_t)((serial * 0x9E3779B97F4A7C15ull) ^ (uint64_t)(layer * 8 + (int)mod) *
                                                               0xBF58476D1CE4E5B9ull);
    for (size_t i = 0; i < cs->lora_cap; i++) {
        lora_dev *e = &cs->lora[(h + i) % cs->lora_cap];
        if (e->serial == serial && e->layer == layer && e->mod == (int32_t)mod) return e;
        if (e->serial) continue;
        if (cs->lora_used + 1 > cs->lora_cap * 3 / 4) break; /* full: below */
        /* A (in, r) goes up transposed, (r, in): each rank's row is read contiguously */
        float *at = loam__malloc((size_t)(in * lm->r) * sizeof(float));
        if (!at) {
            failed(cs, loam__fail(&cs->err, LOAM_E_NOMEM, "cuda backend: out of memory"));
            return NULL;
        }
        for (int64_t c = 0; c < in; c++)
            for (int32_t j = 0; j < lm->r; j++) at[(int64_t)j * in + c] = lm->a[c * lm->r + j];
        loam_status s = up_f32(&e->a, at, in * lm->r, &cs->err);
        loam__free(at);
        if (s == LOAM_OK) s = up_f32(&e->b, lm->b, (int64_t)lm->r * out, &cs->err);
        if (s == LOAM_OK) s = up_f32(&e->bias, lm->bias, out, &cs->err);
        if (s == LOAM_OK) s = up_f32(&e->dora, lm->dora, out, &cs->err);
        if (failed(cs, s)) return NULL;
        e->serial = serial;
        e->layer = layer;
        e->mod = (int32_t)mod;
        cs->lora_used++;
        return e;
    }
    failed(cs, loam__fail(&cs->err, LOAM_E_NOMEM,
                          "cuda backend: more than %zu adapted modules in one session",
                          cs->lora_cap * 3 / 4));
    return NULL;
}

/* y (m, W.n) = x (m, W.k) · Wᵀ in runs of at most 8 rows (x quantized once per run; q/k/v and
 * gate/up are one stacked W each, so they share it). */
static void matmul(cuda_state *cs, const loam__cuda_q4mat *W, const float *x, int64_t m,
                   float *y) {
    for (int64_t r0 = 0; r0 < m && cs->status == LOAM_OK; r0 += MAX_M) {
        int64_t mc = m - r0 < MAX_M ? m - r0 : MAX_M;
        if (!failed(cs, loam__cuda_quantize_x(x + r0 * W->k, mc, W->k, cs->xq, 0, cs->stream,
                                              &cs->err)))
            failed(cs, loam__cuda_matmul_q4(W, cs->xq, mc, y + r0 * W->n, 0, cs->stream,
                                            &cs->err));
    }
}

/* After y = x · Wᵀ of module mod: the LoRA term of each adapter group, then the bias. */
/* y = x · Wᵀ for W a layer's module or its fused qkv / gu matrix: the modules mods[0..n) are
 * the column blocks of y (row stride W->n), module i from column col[i]; then the LoRA terms
 * (per adapter group, one launch pair for all of them) and the Linear biases. */
static void linears(cuda_state *cs, const loam__step *st, int32_t layer,
                    const loam__cuda_q4mat *W, const loam__mod *mods, int n, const float *x,
                    float *y) {
    const dev_layer *D = &cs->layers[layer];
    matmul(cs, W, x, st->n_rows, y);
    const int64_t in = W->k, ld = W->n;
    int64_t col[LOAM_CUDA_LORA_SET];
    for (int i = 0, c = 0; i < n; i++) {
        col[i] = c;
        c += (int)D->w[mods[i]].n;
    }
    for (int32_t g = 0; g < st->n_groups && cs->status == LOAM_OK; g++) {
        const loam__group *gr = &st->groups[g];
        if (!gr->a) continue;
        loam__cuda_lora_set set;
        memset(&set, 0, sizeof set);
        int64_t r_total = 0;
        for (int i = 0; i < n; i++) {
            const loam__lora_mod *lm = loam__adapter_mod(gr->a, layer, mods[i]);
            if (!lm || !lm->a) continue;
            const int64_t out = D->w[mods[i]].n;
            const lora_dev *e = lora_get(cs, gr->a, layer, mods[i], lm, in, out);
            if (!e) return;
            int k = set.n++;
            set.at[k] = e->a;
            set.b[k] = e->b;
            set.bias[k] = e->bias;
            set.dora[k] = e->dora;
            set.scale[k] = lm->scale;
            set.r[k] = lm->r;
            set.out[k] = (int32_t)out;
            set.y[k] = y + col[i];
            set.ld[k] = ld;
            r_total += lm->r;
        }
        if (!set.n) continue;
        const int64_t step = LORA_T / r_total;
        if (step < 1) {
            failed(cs, loam__fail(&cs->err, LOAM_E_UNSUPPORTED,
                                  "cuda backend: LoRA ranks summing to %lld (at most %d)",
                                  (long long)r_total, LORA_T));
            return;
        }
        for (int64_t r0 = 0; r0 < gr->n && cs->status == LOAM_OK; r0 += step) {
            int64_t rows = gr->n - r0 < step ? gr->n - r0 : step, row = gr->row0 + r0;
            loam__cuda_lora_set part = set;
            for (int k = 0; k < set.n; k++) part.y[k] = set.y[k] + row * ld;
            failed(cs, loam__cuda_lora(x + row * in, (int32_t)rows, (int32_t)in, &part,
                                       cs->lora_t, cs->stream, &cs->err));
        }
    }
    for (int i = 0; i < n && cs->status == LOAM_OK; i++)
        if (D->bias[mods[i]])
            failed(cs, loam__cuda_add_bias(y + col[i], ld, D->bias[mods[i]], st->n_rows,
                                           (int32_t)D->w[mods[i]].n, cs->stream, &cs->err));
}

static void linear(cuda_state *cs, const loam__step *st, int32_t layer, loam__mod mod,
                   const float *x, float *y) {
    linears(cs, st, layer, &cs->layers[layer].w[mod], &mod, 1, x, y);
}

// ---- recorded steps ---------------------------------------------------------------------------

static bool make_key(const loam__step *st, graph_key *k) {
    memset(k, 0, sizeof *k);
    if (st->n_rows > GRAPH_MAX_ROWS || st->n_groups > GRAPH_GROUPS) return false;
    k->n_rows = st->n_rows;
    k->n_out = st->n_out;
    k->n_groups = st->n_groups;
    for (int32_t g = 0; g < st->n_groups; g++) {
        k->g[g].serial = st->groups[g].a ? loam__adapter_serial(st->groups[g].a) : 0;
        k->g[g].row0 = st->groups[g].row0;
        k->g[g].n = st->groups[g].n;
    }
    return true;
}

/* Every adapter module the step uses, on the device before recording (uploads cannot be
 * recorded). */
static bool preload_adapters(cuda_state *cs, const loam__step *st) {
    for (int32_t g = 0; g < st->n_groups; g++) {
        const loam__adapter *a = st->groups[g].a;
        if (!a) continue;
        for (int32_t l = 0; l < cs->m->cfg.n_layer; l++)
            for (int i = 0; i < LOAM__N_MOD; i++) {
                const loam__lora_mod *lm = loam__adapter_mod(a, l, (loam__mod)i);
                if (lm && lm->a &&
                    !lora_get(cs, a, l, (loam__mod)i, lm, cs->layers[l].w[i].k,
                              cs->layers[l].w[i].n))
                    return false;
            }
    }
    return true;
}

/* After the embed uploads: replay this step's recorded graph, record one, or run directly. */
static void choose_mode(cuda_state *cs, const loam__step *st) {
    cs->mode = RUN_DIRECT;
    cs->cur = NULL;
    graph_key k;
    /* the head stage ends a recording, and it runs only when some row wants logits */
    if (cs->status != LOAM_OK || cs->no_graphs || st->n_out == 0 || !make_key(st, &k)) return;
    graph *victim = &cs->graphs[0];
    for (int i = 0; i < N_GRAPHS; i++) {
        graph *gr = &cs->graphs[i];
        if (gr->exec && memcmp(&gr->key, &k, sizeof k) == 0) {
            gr->used = ++cs->graph_clock;
            cs->mode = RUN_REPLAY;
            cs->cur = gr;
            return;
        }
        if (!gr->exec || (victim->exec && gr->used < victim->used)) victim = gr;
    }
    /* record a shape the second time it comes: a server's steps change shape whenever a request
     * joins or leaves, and recording one that never comes back costs more than it saves */
    graph *old = &cs->seen[0];
    bool again = false;
    for (int i = 0; i < N_SEEN && !again; i++) {
        graph *sn = &cs->seen[i];
        if (sn->used && memcmp(&sn->key, &k, sizeof k) == 0) {
            again = true;
            sn->used = 0; /* forgotten: it becomes a recorded graph */
        } else if (sn->used < old->used) {
            old = sn;
        }
    }
    if (!again) {
        old->key = k;
        old->used = ++cs->graph_clock;
        return;
    }
    if (!preload_adapters(cs, st)) return;
    loam_err e;
    if (loam__cuda_capture_begin(cs->stream, &e) != LOAM_OK) return; /* run directly */
    loam__cuda_graph_free(victim->exec);
    victim->exec = NULL;
    victim->key = k;
    victim->used = ++cs->graph_clock;
    cs->mode = RUN_CAPTURE;
    cs->cur = victim;
}

/* In the head stage, after its kernels were queued: end a recording and launch what is due. */
static void finish_mode(cuda_state *cs) {
    if (cs->mode == RUN_CAPTURE) {
        void *exec = NULL;
        loam_err e;
        loam_status s = loam__cuda_capture_end(cs->stream, &exec, &e);
        if (cs->status == LOAM_OK) failed(cs, s);
        if (cs->status == LOAM_OK) {
            cs->cur->exec = exec;
        } else {
            loam__cuda_graph_free(exec);
            cs->cur->exec = NULL;
            return;
        }
    }
    if (cs->mode != RUN_DIRECT && cs->status == LOAM_OK)
        failed(cs, loam__cuda_graph_launch(cs->cur->exec, cs->stream, &cs->err));
}

// ---- stages -----------------------------------------------------------------------------------

static void cuda_embed(void *p, const loam__step *st) {
    cuda_state *cs = p;
    const loam_model *m = cs->m;
    const int64_t n_embd = m->cfg.n_embd;
    const int32_t half = m->cfg.head_dim / 2, n = st->n_rows;
    const float af = m->rope_attn_factor;
    cs->status = LOAM_OK; /* a new step */
    cs->pending = NULL;
    for (int32_t r = 0; r < n; r++) {
        loam__qmat_row(&m->embed, st->token[r], cs->h_x + r * n_embd);
        float *cr = cs->h_cos + (int64_t)r * half, *sr = cs->h_sin + (int64_t)r * half;
        const float pos = (float)st->pos[r];
        for (int32_t i = 0; i < half; i++) {
            float theta = pos * m->rope_inv_freq[i]; /* float32 product, as the CPU backend */
            cr[i] = cosf(theta) * af;
            sr[i] = sinf(theta) * af;
        }
        cs->h_blk[r] = loam__kv_table(st->kv, st->seq[r])[st->pos[r] / KV_BLOCK];
        cs->h_slot[r] = st->pos[r] % KV_BLOCK;
    }
    const size_t F = sizeof(float), I = sizeof(int32_t);
    const loam__kv *kv = st->kv;
    struct {
        void *dev;
        const void *host;
        size_t bytes;
    } ups[] = {
        {cs->x, cs->h_x, (size_t)(n * n_embd) * F},
        {cs->rope_cos, cs->h_cos, (size_t)n * (size_t)half * F},
        {cs->rope_sin, cs->h_sin, (size_t)n * (size_t)half * F},
        {cs->d_blk, cs->h_blk, (size_t)n * I},
        {cs->d_slot, cs->h_slot, (size_t)n * I},
        {cs->d_pos, st->pos, (size_t)n * I},
        {cs->d_seq, st->seq, (size_t)n * I},
        {cs->d_tables, kv->tables, (size_t)kv->n_seq * (size_t)kv->table_stride * I},
        {cs->d_out, st->out_rows, (size_t)st->n_out * I},
    };
    for (size_t i = 0; i < sizeof ups / sizeof ups[0]; i++)
        if (ups[i].bytes && failed(cs, loam__cuda_upload(ups[i].dev, ups[i].host, ups[i].bytes,
                                                         &cs->err)))
            return;
    choose_mode(cs, st);
}

static void cuda_attn_qkv(void *p, const loam__step *st, int32_t l) {
    cuda_state *cs = p;
    const loam__config *c = &cs->m->cfg;
    if (cs->status != LOAM_OK || cs->mode == RUN_REPLAY) return;
    if (failed(cs, loam__cuda_add_rmsnorm(cs->x, cs->pending, NULL, cs->layers[l].attn_norm,
                                          cs->xn, st->n_rows, c->n_embd, c->rms_eps, cs->stream,
                                          &cs->err)))
        return;
    cs->pending = NULL;
    static const loam__mod qkv[3] = {LOAM__MOD_Q, LOAM__MOD_K, LOAM__MOD_V};
    linears(cs, st, l, &cs->layers[l].qkv, qkv, 3, cs->xn, cs->qkv);
}

static void cuda_attention(void *p, const loam__step *st, int32_t l) {
    cuda_state *cs = p;
    const loam__config *c = &cs->m->cfg;
    const dev_layer *D = &cs->layers[l];
    if (cs->status != LOAM_OK || cs->mode == RUN_REPLAY) return;
    float *kc = cs->k_cache + (int64_t)l * cs->kv_layer, *vc = cs->v_cache + (int64_t)l * cs->kv_layer;
    float *q = cs->qkv, *k = cs->qkv + cs->q_dim, *v = cs->qkv + cs->q_dim + cs->kv_dim;
    if (failed(cs, loam__cuda_qk_rope_store(q, k, v, cs->ld_qkv, D->q_norm, D->k_norm,
                                            cs->rope_cos, cs->rope_sin, cs->d_blk, cs->d_slot, kc,
                                            vc, st->n_rows, c->n_head, c->n_head_kv, c->head_dim,
                                            c->rms_eps, cs->stream, &cs->err)))
        return;
    failed(cs, loam__cuda_attention(q, cs->ld_qkv, kc, vc, cs->d_tables, st->kv->table_stride, cs->d_seq,
                                    cs->d_pos, cs->att, st->n_rows, c->n_head, c->n_head_kv,
                                    c->head_dim, 1.0f / sqrtf((float)c->head_dim), cs->stream,
                                    &cs->err));
}

static void cuda_attn_out(void *p, const loam__step *st, int32_t l) {
    cuda_state *cs = p;
    if (cs->status != LOAM_OK || cs->mode == RUN_REPLAY) return;
    linear(cs, st, l, LOAM__MOD_O, cs->att, cs->xn);
    cs->pending = cs->xn; /* x += xn happens in the next norm */
}

static void cuda_ffn_up(void *p, const loam__step *st, int32_t l) {
    cuda_state *cs = p;
    const loam__config *c = &cs->m->cfg;
    if (cs->status != LOAM_OK || cs->mode == RUN_REPLAY) return;
    if (failed(cs, loam__cuda_add_rmsnorm(cs->x, cs->pending, NULL, cs->layers[l].ffn_norm,
                                          cs->xn, st->n_rows, c->n_embd, c->rms_eps, cs->stream,
                                          &cs->err)))
        return;
    cs->pending = NULL;
    static const loam__mod gu[2] = {LOAM__MOD_GATE, LOAM__MOD_UP};
    linears(cs, st, l, &cs->layers[l].gu, gu, 2, cs->xn, cs->gu);
    if (cs->status == LOAM_OK)
        failed(cs, loam__cuda_silu_mul(cs->gu, cs->gu + c->n_ff, 2 * (int64_t)c->n_ff, cs->act,
                                       st->n_rows, c->n_ff, cs->stream, &cs->err));
}

static void cuda_ffn_down(void *p, const loam__step *st, int32_t l) {
    cuda_state *cs = p;
    if (cs->status != LOAM_OK || cs->mode == RUN_REPLAY) return;
    linear(cs, st, l, LOAM__MOD_DOWN, cs->act, cs->xn);
    cs->pending = cs->xn;
}

static void cuda_head(void *p, const loam__step *st) {
    cuda_state *cs = p;
    const loam__config *c = &cs->m->cfg;
    const size_t n_logits = (size_t)st->n_out * (size_t)c->n_vocab;
    if (st->n_out > 0 && cs->status == LOAM_OK && cs->mode != RUN_REPLAY &&
        !failed(cs, loam__cuda_add_rmsnorm(cs->x, cs->pending, cs->d_out, cs->out_norm, cs->hn,
                                           st->n_out, c->n_embd, c->rms_eps, cs->stream,
                                           &cs->err)))
        matmul(cs, &cs->head, cs->hn, st->n_out, cs->logits);
    finish_mode(cs);
    if (st->n_out > 0 && cs->status == LOAM_OK)
        failed(cs, loam__cuda_download(st->logits, cs->logits, n_logits * sizeof(float),
                                       &cs->err));
    if (cs->status != LOAM_OK)
        for (size_t i = 0; i < n_logits; i++) st->logits[i] = NAN;
}

static loam_status cuda_step_status(void *p, loam_err *err) {
    cuda_state *cs = p;
    if (cs->status == LOAM_OK && cs->mode == RUN_DIRECT) /* a step without logits: no copy */
        failed(cs, loam__cuda_sync(cs->stream, &cs->err)); /* waited for its kernels */
    if (cs->status == LOAM_OK) return LOAM_OK;
    return loam__fail(err, cs->status, "%s", cs->err.msg);
}

const loam__backend loam__backend_cuda = {
    .name = "cuda",
    .session_new = cuda_session_new,
    .session_free = cuda_session_free,
    .embed = cuda_embed,
    .attn_qkv = cuda_attn_qkv,
    .attention = cuda_attention,
    .attn_out = cuda_attn_out,
    .ffn_up = cuda_ffn_up,
    .ffn_down = cuda_ffn_down,
    .head = cuda_head,
    .step_status = cuda_step_status,
};

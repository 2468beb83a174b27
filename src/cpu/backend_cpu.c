/* backend_cpu.c: the CPU backend: the stages of backend.h on host memory, with OpenMP threads.
 *
 * Per session it owns the activations of n_batch rows and the KV storage of the paged pool:
 *   k_cache, v_cache  (n_layer, n_blocks, n_head_kv, LOAM__KV_BLOCK, head_dim) float32
 * so the keys of one (block, kv head) are contiguous: attention streams a sequence block by
 * block through its block table. KV is stored in float32, measured against the alternative:
 * it is exact (the reference path needs it); at the depths of the decode target (tg128) K and V
 * are under 1% of the bytes a step reads; at depth 2048 they are 604 MB against 4.26 GB of
 * weights, and the AVX-512 attention streams them at 26 GB/s (bench/bench_attention.c: 23 ms
 * of a 141 ms step), so f16 would save about 11 ms there (8%) at the price of a conversion
 * per element and a second storage path; not worth it before long contexts matter.
 *
 * Matmuls go through quant.h: loam__matmul (int8 activations, fastest kernel for this CPU,
 * threaded inside) or, for a reference session, loam__matmul_ref (float32 dequantize-and-dot).
 * All rows of the step go through each matmul together, so each weight byte is read once per
 * step; the LoRA term (lora.h) is then added per adapter group (rows are grouped by adapter),
 * followed by the Linear bias. Attention is one task per (row, kv head) over OpenMP threads
 * (attention.h): the task scores its n_head/n_head_kv query heads against every key of the
 * row's sequence up to its position (causal), softmax in float32, and sums the values; the
 * AVX-512 / AVX2 versions run on the fast path, the portable one on the reference path.
 *
 * The vector loop (axpy) is written with 16 independent lanes so that the compiler vectorises
 * it at -O2 without reassociating floating-point sums (no -ffast-math).
 */
#include "../backend.h"
#include "attention.h"

#include <math.h>
#include <omp.h>

/* Below these sizes a stage runs on the calling thread: an OpenMP fork/join costs a few
 * microseconds on an idle machine and far more when threads are descheduled, while a norm of
 * one row costs about one. SMALL_WORK counts multiply-adds (attention) or, divided by 64,
 * exponentials (SwiGLU). */
#define SMALL_ROWS 4
#define SMALL_WORK (1 << 16)
/* A matmul of fewer multiply-adds (m·n·k) than this runs on one thread. Measured on the demo
 * model (hidden 384, 2-core Zen 5, -t 2): decode 3410 tok/s with 1 << 18 against 3090 with
 * every matmul forked, 3000 with 1 << 21; with two CPU hogs beside it, 1640 ± 10 against
 * 800–1600 ± 1100. Qwen3-8B-sized matmuls (16M multiply-adds and up) never reach it. */
#define SMALL_MATMUL (1 << 18)

/* LoRA scratch: rows are fed to loam__lora_apply in pieces of at most this many floats. */
#define LORA_SCRATCH_MIN LOAM__LORA_RANK_MAX

typedef struct cpu_state {
    const loam_model *m;
    loam__backend_shape sh;
    int64_t q_dim, kv_dim;  /* n_head*head_dim, n_head_kv*head_dim */
    float *x;               /* (n_batch, n_embd) residual stream */
    float *xn;              /* (n_batch, max(n_embd, q_dim)) normed input / projection output */
    float *q;               /* (n_batch, q_dim) */
    float *k, *v;           /* (n_batch, kv_dim) */
    float *att;             /* (n_batch, q_dim) attention output */
    float *gate, *up;       /* (n_batch, n_ff) */
    float *rope_cos;        /* (n_batch, head_dim/2) cos(pos * inv_freq) * attn_factor */
    float *rope_sin;        /* (n_batch, head_dim/2) */
    float *k_cache;         /* (n_layer, n_blocks, n_head_kv, LOAM__KV_BLOCK, head_dim) */
    float *v_cache;         /* same */
    void *mm_scratch;       /* loam__matmul scratch for n_batch rows of the widest input */
    float *lora_scratch;    /* (lora_cap) */
    int64_t lora_cap;
    float *att_scratch;     /* (n_threads, n_rep, round_up(n_ctx, KV block)) attention weights */
    loam__attend_fn attend; /* attention task: ISA version, or loam__attend_c (reference) */
} cpu_state;

// ---- vector helpers ---------------------------------------------------------------------------

static void axpy(float *restrict y, float a, const float *restrict x, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int j = 0; j < 16; j++) y[i + j] += a * x[i + j];
    for (; i < n; i++) y[i] += a * x[i];
}

/* y = w ⊙ x / sqrt(mean(x²) + eps) (FORMATS.md §6.4, all in float32, sum in double) */
static void rmsnorm(float *y, const float *x, const float *w, int64_t n, float eps) {
    double ss = 0.0;
    for (int64_t i = 0; i < n; i++) ss += (double)x[i] * (double)x[i];
    float inv = 1.0f / sqrtf((float)(ss / (double)n) + eps);
    for (int64_t i = 0; i < n; i++) y[i] = w[i] * (x[i] * inv);
}

/* rotate-half RoPE of one head vector (FORMATS.md §6.5) */
static void rope(float *v, const float *cs, const float *sn, int32_t half) {
    for (int32_t i = 0; i < half; i++) {
        float x1 = v[i], x2 = v[i + half];
        v[i] = x1 * cs[i] - x2 * sn[i];
        v[i + half] = x2 * cs[i] + x1 * sn[i];
    }
}

static int64_t round_up_block(int64_t n) {
    return (n + LOAM__KV_BLOCK - 1) / LOAM__KV_BLOCK * LOAM__KV_BLOCK;
}

// ---- session state ----------------------------------------------------------------------------

static void cpu_session_free(void *p) {
    cpu_state *cs = p;
    if (!cs) return;
    loam__free(cs->x);
    loam__free(cs->xn);
    loam__free(cs->q);
    loam__free(cs->k);
    loam__free(cs->v);
    loam__free(cs->att);
    loam__free(cs->gate);
    loam__free(cs->up);
    loam__free(cs->rope_cos);
    loam__free(cs->rope_sin);
    loam__free(cs->k_cache);
    loam__free(cs->v_cache);
    loam__free(cs->mm_scratch);
    loam__free(cs->lora_scratch);
    loam__free(cs->att_scratch);
    loam__free(cs);
}

/* n_a * n_b floats, or 0 when the product overflows */
static size_t floats(int64_t n_a, int64_t n_b) {
    uint64_t n;
    if (n_a < 0 || n_b < 0 || loam__mul_u64((uint64_t)n_a, (uint64_t)n_b, &n) ||
        n > SIZE_MAX / sizeof(float))
        return 0;
    return (size_t)n * sizeof(float);
}

static loam_status cpu_session_new(void **out, const loam_model *m,
                                   const loam__backend_shape *sh, loam_err *err) {
    const loam__config *c = &m->cfg;
    *out = NULL;
    cpu_state *cs = loam__calloc(1, sizeof *cs);
    if (!cs) return loam__fail(err, LOAM_E_NOMEM, "cpu backend: out of memory");
    cs->m = m;
    cs->sh = *sh;
    cs->q_dim = (int64_t)c->n_head * c->head_dim;
    cs->kv_dim = (int64_t)c->n_head_kv * c->head_dim;
    int64_t nb = sh->n_batch, wide = cs->q_dim > c->n_embd ? cs->q_dim : c->n_embd;
    int64_t kmax = wide > c->n_ff ? wide : c->n_ff;
    int64_t n_rep = c->n_head / c->n_head_kv;
    cs->lora_cap = nb * 256 > LORA_SCRATCH_MIN ? nb * 256 : LORA_SCRATCH_MIN;

    size_t kv_bytes = 0;
    uint64_t kv_floats = 0;
    if (!loam__mul_u64((uint64_t)c->n_layer * (uint64_t)sh->n_blocks,
                       (uint64_t)LOAM__KV_BLOCK * (uint64_t)cs->kv_dim, &kv_floats))
        kv_bytes = floats((int64_t)kv_floats, 1);
    size_t mm_bytes = loam__matmul_scratch_bytes(nb, kmax);
    size_t b_x = floats(nb, c->n_embd), b_xn = floats(nb, wide), b_q = floats(nb, cs->q_dim),
           b_kv = floats(nb, cs->kv_dim), b_ff = floats(nb, c->n_ff),
           b_rope = floats(nb, c->head_dim / 2), b_lora = floats(cs->lora_cap, 1),
           b_att = floats((int64_t)sh->n_threads * n_rep, round_up_block(sh->n_ctx));
    if (!kv_bytes || !b_x || !b_xn || !b_q || !b_kv || !b_ff || !b_rope || !b_lora || !b_att) {
        cpu_session_free(cs);
        return loam__fail(err, LOAM_E_NOMEM, "cpu backend: session buffers are too large");
    }
    cs->x = loam__aligned_alloc(64, b_x);
    cs->xn = loam__aligned_alloc(64, b_xn);
    cs->q = loam__aligned_alloc(64, b_q);
    cs->k = loam__aligned_alloc(64, b_kv);
    cs->v = loam__aligned_alloc(64, b_kv);
    cs->att = loam__aligned_alloc(64, b_q);
    cs->gate = loam__aligned_alloc(64, b_ff);
    cs->up = loam__aligned_alloc(64, b_ff);
    cs->rope_cos = loam__aligned_alloc(64, b_rope);
    cs->rope_sin = loam__aligned_alloc(64, b_rope);
    /* calloc: zero pages come lazily from the OS, and unwritten slots of a block are zeros */
    cs->k_cache = loam__calloc(1, kv_bytes);
    cs->v_cache = loam__calloc(1, kv_bytes);
    cs->mm_scratch = loam__aligned_alloc(64, mm_bytes ? mm_bytes : 64);
    cs->lora_scratch = loam__aligned_alloc(64, b_lora);
    cs->att_scratch = loam__aligned_alloc(64, b_att);
    if (!cs->x || !cs->xn || !cs->q || !cs->k || !cs->v || !cs->att || !cs->gate || !cs->up ||
        !cs->rope_cos || !cs->rope_sin || !cs->k_cache || !cs->v_cache || !cs->mm_scratch ||
        !cs->lora_scratch || !cs->att_scratch) {
        cpu_session_free(cs);
        return loam__fail(err, LOAM_E_NOMEM,
                          "cpu backend: out of memory (KV cache %.1f MiB for %d blocks)",
                          (double)kv_bytes * 2.0 / 1048576.0, sh->n_blocks);
    }
    cs->attend = loam__attend_pick(c->head_dim, (int32_t)n_rep, sh->reference);
    *out = cs;
    return LOAM_OK;
}

// ---- linear layers ----------------------------------------------------------------------------

static int mm_threads(const cpu_state *cs, int64_t m, const loam__qmat *w) {
    return m * w->n * w->k < SMALL_MATMUL ? 1 : cs->sh.n_threads;
}

/* y (m, W.n) = x (m, W.k) · Wᵀ, then the LoRA term of each adapter group, then the bias. */
static void linear(cpu_state *cs, const loam__step *st, int32_t layer, loam__mod mod,
                   const float *x, float *y) {
    const loam__linear *lin = &cs->m->layers[layer].lin[mod];
    int64_t m = st->n_rows, in = lin->w.k, out = lin->w.n;
    if (cs->sh.reference) loam__matmul_ref(&lin->w, x, m, y);
    else loam__matmul(&lin->w, x, m, y, mm_threads(cs, m, &lin->w), cs->mm_scratch);
    for (int32_t g = 0; g < st->n_groups; g++) {
        const loam__group *gr = &st->groups[g];
        const loam__lora_mod *lm = gr->a ? loam__adapter_mod(gr->a, layer, mod) : NULL;
        if (!lm || !lm->a) continue;
        LOAM_ASSERT(lm->r >= 1 && lm->r <= LOAM__LORA_RANK_MAX); /* checked at binding */
        int64_t step = cs->lora_cap / lm->r;
        for (int64_t r0 = 0; r0 < gr->n; r0 += step) {
            int64_t rows = gr->n - r0 < step ? gr->n - r0 : step;
            int64_t row = gr->row0 + r0;
            loam__lora_apply(lm, x + row * in, rows, in, out, y + row * out, cs->lora_scratch);
        }
    }
    if (lin->bias)
        for (int64_t r = 0; r < m; r++) axpy(y + r * out, 1.0f, lin->bias, out);
}

// ---- stages -----------------------------------------------------------------------------------

static void cpu_embed(void *p, const loam__step *st) {
    cpu_state *cs = p;
    const loam_model *m = cs->m;
    int64_t n_embd = m->cfg.n_embd;
    int32_t half = m->cfg.head_dim / 2;
    float af = m->rope_attn_factor;
#pragma omp parallel for num_threads(cs->sh.n_threads) schedule(static) if (st->n_rows >= SMALL_ROWS)
    for (int32_t r = 0; r < st->n_rows; r++) {
        loam__qmat_row(&m->embed, st->token[r], cs->x + r * n_embd);
        float *cr = cs->rope_cos + (int64_t)r * half, *sr = cs->rope_sin + (int64_t)r * half;
        float pos = (float)st->pos[r];
        for (int32_t i = 0; i < half; i++) {
            float theta = pos * m->rope_inv_freq[i]; /* float32 product, as transformers */
            cr[i] = cosf(theta) * af;
            sr[i] = sinf(theta) * af;
        }
    }
}

static void norm_rows(cpu_state *cs, int32_t n_rows, const float *w, float *dst) {
    int64_t n_embd = cs->m->cfg.n_embd;
    float eps = cs->m->cfg.rms_eps;
#pragma omp parallel for num_threads(cs->sh.n_threads) schedule(static) if (n_rows >= SMALL_ROWS)
    for (int32_t r = 0; r < n_rows; r++)
        rmsnorm(dst + r * n_embd, cs->x + r * n_embd, w, n_embd, eps);
}

static void cpu_attn_qkv(void *p, const loam__step *st, int32_t l) {
    cpu_state *cs = p;
    norm_rows(cs, st->n_rows, cs->m->layers[l].attn_norm, cs->xn);
    linear(cs, st, l, LOAM__MOD_Q, cs->xn, cs->q);
    linear(cs, st, l, LOAM__MOD_K, cs->xn, cs->k);
    linear(cs, st, l, LOAM__MOD_V, cs->xn, cs->v);
}

/* Address of token slot `slot` of block `block`, kv head h, layer l, in a cache. */
static float *kv_at(const cpu_state *cs, float *cache, int32_t l, int32_t block, int32_t h,
                    int32_t slot) {
    const loam__config *c = &cs->m->cfg;
    size_t i = ((size_t)l * (size_t)cs->sh.n_blocks + (size_t)block) * (size_t)c->n_head_kv +
               (size_t)h;
    return cache + (i * LOAM__KV_BLOCK + (size_t)slot) * (size_t)c->head_dim;
}

static void cpu_attention(void *p, const loam__step *st, int32_t l) {
    cpu_state *cs = p;
    const loam__config *c = &cs->m->cfg;
    const loam__layer *L = &cs->m->layers[l];
    int32_t hd = c->head_dim, half = hd / 2;
    /* q/k norm + RoPE, then K and V into the cache (every row before any attention: rows of
     * one sequence in this step attend to each other) */
#pragma omp parallel for num_threads(cs->sh.n_threads) schedule(static) if (st->n_rows >= SMALL_ROWS)
    for (int32_t r = 0; r < st->n_rows; r++) {
        const float *cr = cs->rope_cos + (int64_t)r * half, *sr = cs->rope_sin + (int64_t)r * half;
        for (int32_t h = 0; h < c->n_head; h++) {
            float *qh = cs->q + (int64_t)r * cs->q_dim + (int64_t)h * hd;
            if (L->q_norm) rmsnorm(qh, qh, L->q_norm, hd, c->rms_eps);
            rope(qh, cr, sr, half);
        }
        int32_t pos = st->pos[r];
        int32_t block = loam__kv_table(st->kv, st->seq[r])[pos / LOAM__KV_BLOCK];
        for (int32_t h = 0; h < c->n_head_kv; h++) {
            float *kh = cs->k + (int64_t)r * cs->kv_dim + (int64_t)h * hd;
            if (L->k_norm) rmsnorm(kh, kh, L->k_norm, hd, c->rms_eps);
            rope(kh, cr, sr, half);
            memcpy(kv_at(cs, cs->k_cache, l, block, h, pos % LOAM__KV_BLOCK), kh,
                   (size_t)hd * sizeof(float));
            memcpy(kv_at(cs, cs->v_cache, l, block, h, pos % LOAM__KV_BLOCK),
                   cs->v + (int64_t)r * cs->kv_dim + (int64_t)h * hd, (size_t)hd * sizeof(float));
        }
    }
    int32_t n_tasks = st->n_rows * c->n_head_kv, n_rep = c->n_head / c->n_head_kv;
    int64_t w_stride = round_up_block(cs->sh.n_ctx), per_thread = n_rep * w_stride, work = 0;
    for (int32_t r = 0; r < st->n_rows; r++) work += (int64_t)(st->pos[r] + 1) * cs->q_dim;
    int64_t block_stride = (int64_t)c->n_head_kv * LOAM__KV_BLOCK * hd;
#pragma omp parallel for num_threads(cs->sh.n_threads) schedule(dynamic, 1) if (work >= SMALL_WORK)
    for (int32_t task = 0; task < n_tasks; task++) {
        int32_t r = task / c->n_head_kv, h = task % c->n_head_kv;
        int64_t head0 = ((int64_t)r * c->n_head + (int64_t)h * n_rep) * hd;
        loam__attn_task at = {
            .q = cs->q + head0,
            .out = cs->att + head0,
            .k = kv_at(cs, cs->k_cache, l, 0, h, 0),
            .v = kv_at(cs, cs->v_cache, l, 0, h, 0),
            .table = loam__kv_table(st->kv, st->seq[r]),
            .block_stride = block_stride,
            .n_keys = st->pos[r] + 1,
            .n_rep = n_rep,
            .head_dim = hd,
            .scale = 1.0f / sqrtf((float)hd),
            .w = cs->att_scratch + (int64_t)omp_get_thread_num() * per_thread,
            .w_stride = w_stride,
        };
        cs->attend(&at);
    }
}

static void add_rows(cpu_state *cs, int32_t n_rows, const float *y) {
    int64_t n = (int64_t)n_rows * cs->m->cfg.n_embd;
    axpy(cs->x, 1.0f, y, n);
}

static void cpu_attn_out(void *p, const loam__step *st, int32_t l) {
    cpu_state *cs = p;
    linear(cs, st, l, LOAM__MOD_O, cs->att, cs->xn);
    add_rows(cs, st->n_rows, cs->xn);
}

static void cpu_ffn_up(void *p, const loam__step *st, int32_t l) {
    cpu_state *cs = p;
    norm_rows(cs, st->n_rows, cs->m->layers[l].ffn_norm, cs->xn);
    linear(cs, st, l, LOAM__MOD_GATE, cs->xn, cs->gate);
    linear(cs, st, l, LOAM__MOD_UP, cs->xn, cs->up);
    int64_t n = (int64_t)st->n_rows * cs->m->cfg.n_ff;
    float *g = cs->gate;
    const float *u = cs->up;
#pragma omp parallel for num_threads(cs->sh.n_threads) schedule(static) if (n >= SMALL_WORK / 64)
    for (int64_t i = 0; i < n; i++) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i]; /* silu(g)·u */
}

static void cpu_ffn_down(void *p, const loam__step *st, int32_t l) {
    cpu_state *cs = p;
    linear(cs, st, l, LOAM__MOD_DOWN, cs->gate, cs->xn);
    add_rows(cs, st->n_rows, cs->xn);
}

static void cpu_head(void *p, const loam__step *st) {
    cpu_state *cs = p;
    const loam_model *m = cs->m;
    int64_t n_embd = m->cfg.n_embd;
    for (int32_t i = 0; i < st->n_out; i++)
        rmsnorm(cs->xn + i * n_embd, cs->x + (int64_t)st->out_rows[i] * n_embd, m->out_norm,
                n_embd, m->cfg.rms_eps);
    if (cs->sh.reference) loam__matmul_ref(&m->head, cs->xn, st->n_out, st->logits);
    else loam__matmul(&m->head, cs->xn, st->n_out, st->logits, mm_threads(cs, st->n_out, &m->head),
                      cs->mm_scratch);
}

const loam__backend loam__backend_cpu = {
    .name = "cpu",
    .session_new = cpu_session_new,
    .session_free = cpu_session_free,
    .embed = cpu_embed,
    .attn_qkv = cpu_attn_qkv,
    .attention = cpu_attention,
    .attn_out = cpu_attn_out,
    .ffn_up = cpu_ffn_up,
    .ffn_down = cpu_ffn_down,
    .head = cpu_head,
};

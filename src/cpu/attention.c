/* attention.c: the portable attention task (attention.h) and the choice of its fastest
 * version for this CPU.
 *
 * loam__attend_c is plain C whose vector loops are written with 16 independent lanes, so the
 * compiler vectorises them at -O2 for the baseline ISA without reassociating float sums: the
 * scores are dot products, the softmax uses expf and multiplies by 1/Σ, the values are summed
 * with one axpy per key. It is the reference path's attention and the fallback for any CPU
 * or head size without an ISA version.
 */
#include "cpu/attention.h"
#include "cpu/kernels.h"

#include <math.h>

/* ISA versions, by the name of the CPU kernel table that implies the ISA */
typedef struct isa_attend {
    const char *kernels;
    loam__attend_fn fn;
} isa_attend;
#if defined(__x86_64__)
static const isa_attend k_isa[] = {{"avx512vnni", loam__attend_avx512}, {"avx2", loam__attend_avx2}};
#else
static const isa_attend k_isa[] = {{"", NULL}};
#endif

static float dot(const float *restrict a, const float *restrict b, int64_t n) {
    float acc[16] = {0};
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int j = 0; j < 16; j++) acc[j] += a[i + j] * b[i + j];
    float s = 0.0f;
    for (int j = 0; j < 16; j++) s += acc[j];
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

static void axpy(float *restrict y, float a, const float *restrict x, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int j = 0; j < 16; j++) y[i + j] += a * x[i + j];
    for (; i < n; i++) y[i] += a * x[i];
}

void loam__attend_c(const loam__attn_task *t) {
    const int32_t hd = t->head_dim, n_rep = t->n_rep, nk = t->n_keys;
    for (int32_t t0 = 0; t0 < nk; t0 += LOAM__KV_BLOCK) {
        const float *kb = t->k + (int64_t)t->table[t0 / LOAM__KV_BLOCK] * t->block_stride;
        int32_t nt = nk - t0 < LOAM__KV_BLOCK ? nk - t0 : LOAM__KV_BLOCK;
        for (int32_t i = 0; i < nt; i++)
            for (int32_t j = 0; j < n_rep; j++)
                t->w[j * t->w_stride + t0 + i] =
                    dot(t->q + (int64_t)j * hd, kb + (int64_t)i * hd, hd) * t->scale;
    }
    for (int32_t j = 0; j < n_rep; j++) { /* softmax in float32 */
        float *w = t->w + j * t->w_stride, mx = w[0], sum = 0.0f;
        for (int32_t i = 1; i < nk; i++) mx = w[i] > mx ? w[i] : mx;
        for (int32_t i = 0; i < nk; i++) {
            w[i] = expf(w[i] - mx);
            sum += w[i];
        }
        float inv = 1.0f / sum;
        for (int32_t i = 0; i < nk; i++) w[i] *= inv;
        memset(t->out + (int64_t)j * hd, 0, (size_t)hd * sizeof(float));
    }
    for (int32_t t0 = 0; t0 < nk; t0 += LOAM__KV_BLOCK) {
        const float *vb = t->v + (int64_t)t->table[t0 / LOAM__KV_BLOCK] * t->block_stride;
        int32_t nt = nk - t0 < LOAM__KV_BLOCK ? nk - t0 : LOAM__KV_BLOCK;
        for (int32_t j = 0; j < n_rep; j++) {
            const float *w = t->w + j * t->w_stride + t0;
            for (int32_t i = 0; i < nt; i++)
                axpy(t->out + (int64_t)j * hd, w[i], vb + (int64_t)i * hd, hd);
        }
    }
}

loam__attend_fn loam__attend_pick(int32_t head_dim, int32_t n_rep, bool reference) {
    if (reference || (head_dim != 64 && head_dim != 128) || n_rep > 64) return loam__attend_c;
    const char *name = loam__cpu_kernels()->name;
    for (size_t i = 0; i < sizeof k_isa / sizeof k_isa[0]; i++)
        if (k_isa[i].fn && strcmp(k_isa[i].kernels, name) == 0) return k_isa[i].fn;
    return loam__attend_c;
}

/* attention_avx512.c: the attention task of attention.h with AVX-512 F (x86-64), for head_dim
 * 64 and 128. Compiled with the AVX-512 flags; backend_cpu.c calls it only when the CPU kernel
 * table chosen by cpu/dispatch.c (cpuid, LOAM_CPU) is an AVX-512 one.
 *
 * Scores: per block of 32 keys, per query head, 16 keys at a time: 16 accumulators each
 * collect q·k_t over head_dim/16 FMAs (q's chunks are reused by all 16), then a reduction tree
 * (unpack + add, shuffle + add, two 128-bit lane shuffles + add: 45 instructions for 16 dot
 * products) leaves the 16 sums in one register. The block (16 KiB) stays in L1 while every
 * query head of the GQA group reads it.
 * Softmax: max, then exp(s - max) by range reduction (n = round(x·log2 e), r = x - n·ln 2 in
 * two steps), a degree-6 Taylor polynomial (|r| <= ln2/2: relative error < 2e-7) and scalef.
 * Values: up to four query heads at a time over 64 floats of head_dim (16 accumulators), so a
 * value row comes from memory once for a GQA group of four; the output is scaled by 1/Σ.
 */
#if defined(__x86_64__)
#include "cpu/attention.h"

#include <immintrin.h>
#include <math.h>

#define INLINE static inline __attribute__((always_inline))

/* The 16 horizontal sums of v[0..16), in order, in one register. */
INLINE __m512 hsum16(const __m512 v[16]) {
    __m512 u[8], w[4], x[2];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) /* per 128-bit lane: [a0+a2, b0+b2, a1+a3, b1+b3] */
        u[i] = _mm512_add_ps(_mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]),
                             _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]));
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) /* per 128-bit lane: the lane sums of v[4i .. 4i+3] */
        w[i] = _mm512_add_ps(_mm512_shuffle_ps(u[2 * i], u[2 * i + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                             _mm512_shuffle_ps(u[2 * i], u[2 * i + 1], _MM_SHUFFLE(3, 2, 3, 2)));
#pragma GCC unroll 2
    for (int i = 0; i < 2; i++) /* lanes 0+2 and 1+3 of w[2i], then of w[2i+1] */
        x[i] = _mm512_add_ps(_mm512_shuffle_f32x4(w[2 * i], w[2 * i + 1], 0x44),
                             _mm512_shuffle_f32x4(w[2 * i], w[2 * i + 1], 0xEE));
    return _mm512_add_ps(_mm512_shuffle_f32x4(x[0], x[1], 0x88),
                         _mm512_shuffle_f32x4(x[0], x[1], 0xDD));
}

/* e^x for x <= 0 (arguments below -87.3 give e^-87.3, not 0: harmless after a max) */
INLINE __m512 exp16(__m512 x) {
    x = _mm512_max_ps(x, _mm512_set1_ps(-87.3f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.0f / 720.0f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

INLINE __mmask16 tail16(int64_t n) {
    return (__mmask16)(n >= 16 ? 0xffffu : (1u << n) - 1u);
}

/* out_j = inv_j · Σ_t w_j[t] v_t for heads j0 .. j0+NH-1 */
INLINE void values(const loam__attn_task *t, int32_t j0, const float *inv, const int HD,
                   const int NH) {
    const int32_t nk = t->n_keys;
    for (int c0 = 0; c0 < HD / 16; c0 += 4) {
        __m512 acc[4][4];
#pragma GCC unroll 4
        for (int h = 0; h < NH; h++)
#pragma GCC unroll 4
            for (int c = 0; c < 4; c++) acc[h][c] = _mm512_setzero_ps();
        for (int32_t t0 = 0; t0 < nk; t0 += LOAM__KV_BLOCK) {
            const float *vb = t->v + (int64_t)t->table[t0 / LOAM__KV_BLOCK] * t->block_stride +
                              c0 * 16;
            int32_t nt = nk - t0 < LOAM__KV_BLOCK ? nk - t0 : LOAM__KV_BLOCK;
            for (int32_t i = 0; i < nt; i++) {
                __m512 vv[4];
#pragma GCC unroll 4
                for (int c = 0; c < 4; c++) vv[c] = _mm512_loadu_ps(vb + (int64_t)i * HD + c * 16);
#pragma GCC unroll 4
                for (int h = 0; h < NH; h++) {
                    __m512 e = _mm512_set1_ps(t->w[(int64_t)(j0 + h) * t->w_stride + t0 + i]);
#pragma GCC unroll 4
                    for (int c = 0; c < 4; c++) acc[h][c] = _mm512_fmadd_ps(e, vv[c], acc[h][c]);
                }
            }
        }
#pragma GCC unroll 4
        for (int h = 0; h < NH; h++) {
            __m512 sc = _mm512_set1_ps(inv[h]);
#pragma GCC unroll 4
            for (int c = 0; c < 4; c++)
                _mm512_storeu_ps(t->out + (int64_t)(j0 + h) * HD + (c0 + c) * 16,
                                 _mm512_mul_ps(acc[h][c], sc));
        }
    }
}

INLINE void attend_hd(const loam__attn_task *t, const int HD) {
    const int NC = HD / 16; /* registers per head vector */
    const int32_t nk = t->n_keys, n_rep = t->n_rep;
    const __m512 scale = _mm512_set1_ps(t->scale);

    /* scores */
    for (int32_t t0 = 0; t0 < nk; t0 += LOAM__KV_BLOCK) {
        const float *kb = t->k + (int64_t)t->table[t0 / LOAM__KV_BLOCK] * t->block_stride;
        int32_t nt = nk - t0 < LOAM__KV_BLOCK ? nk - t0 : LOAM__KV_BLOCK;
        for (int32_t j = 0; j < n_rep; j++) {
            const float *q = t->q + (int64_t)j * HD;
            for (int32_t g = 0; g < nt; g += 16) {
                __m512 acc[16];
#pragma GCC unroll 16
                for (int i = 0; i < 16; i++) acc[i] = _mm512_setzero_ps();
#pragma GCC unroll 8
                for (int c = 0; c < NC; c++) {
                    __m512 qc = _mm512_loadu_ps(q + c * 16);
#pragma GCC unroll 16
                    for (int i = 0; i < 16; i++) /* rows past nt are stale or zero, never used */
                        acc[i] = _mm512_fmadd_ps(
                            qc, _mm512_loadu_ps(kb + (int64_t)(g + i) * HD + c * 16), acc[i]);
                }
                _mm512_storeu_ps(t->w + (int64_t)j * t->w_stride + t0 + g,
                                 _mm512_mul_ps(hsum16(acc), scale));
            }
        }
    }

    /* softmax numerators, and 1/Σ per head (n_rep <= 64: loam__attend_pick) */
    float inv[64];
    for (int32_t j = 0; j < n_rep; j++) {
        float *w = t->w + (int64_t)j * t->w_stride;
        __m512 mx = _mm512_set1_ps(-INFINITY);
        for (int32_t i = 0; i < nk; i += 16)
            mx = _mm512_max_ps(mx, _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY),
                                                        tail16(nk - i), w + i));
        __m512 m = _mm512_set1_ps(_mm512_reduce_max_ps(mx)), sum = _mm512_setzero_ps();
        for (int32_t i = 0; i < nk; i += 16) {
            __mmask16 k = tail16(nk - i);
            __m512 e = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, w + i), m));
            e = _mm512_maskz_mov_ps(k, e);
            sum = _mm512_add_ps(sum, e);
            _mm512_mask_storeu_ps(w + i, k, e);
        }
        inv[j] = 1.0f / _mm512_reduce_add_ps(sum);
    }

    /* values: NH (<= 4) heads at a time, 64 floats of head_dim per pass, so every value row
     * is read from memory once for up to 4 heads */
    for (int32_t j0 = 0; j0 < n_rep; j0 += 4) {
        switch (n_rep - j0 >= 4 ? 4 : n_rep - j0) {
        case 4: values(t, j0, inv + j0, HD, 4); break;
        case 3: values(t, j0, inv + j0, HD, 3); break;
        case 2: values(t, j0, inv + j0, HD, 2); break;
        default: values(t, j0, inv + j0, HD, 1); break;
        }
    }
}

void loam__attend_avx512(const loam__attn_task *t) {
    if (t->head_dim == 128) attend_hd(t, 128);
    else attend_hd(t, 64);
}
#endif

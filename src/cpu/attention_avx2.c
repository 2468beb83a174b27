/* attention_avx2.c: the attention task of attention.h with AVX2 + FMA (x86-64), for head_dim
 * 64 and 128. Compiled with the AVX2 flags; backend_cpu.c calls it only when the CPU kernel
 * table chosen by cpu/dispatch.c (cpuid, LOAM_CPU) is the AVX2 one.
 *
 * The scheme of attention_avx512.c at 8 lanes: scores 8 keys at a time (8 accumulators, a
 * reduction tree of two hadd levels and one 128-bit lane swap); exp by the same range
 * reduction and polynomial, 2^n built in the exponent bits; values one query head at a time in
 * chunks of 64 floats (8 accumulators), since 16 registers do not hold two whole heads.
 */
#if defined(__x86_64__)
#include "cpu/attention.h"

#include <immintrin.h>
#include <math.h>

#define INLINE static inline __attribute__((always_inline))

/* The 8 horizontal sums of v[0..8), in order, in one register. */
INLINE __m256 hsum8(const __m256 v[8]) {
    __m256 u0 = _mm256_hadd_ps(v[0], v[1]), u1 = _mm256_hadd_ps(v[2], v[3]);
    __m256 u2 = _mm256_hadd_ps(v[4], v[5]), u3 = _mm256_hadd_ps(v[6], v[7]);
    __m256 w0 = _mm256_hadd_ps(u0, u1), w1 = _mm256_hadd_ps(u2, u3); /* per lane: v0..3 / v4..7 */
    return _mm256_add_ps(_mm256_permute2f128_ps(w0, w1, 0x20), _mm256_permute2f128_ps(w0, w1, 0x31));
}

/* e^x for x <= 0 (arguments below -87.3 give e^-87.3) */
INLINE __m256 exp8(__m256 x) {
    x = _mm256_max_ps(x, _mm256_set1_ps(-87.3f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.0f / 720.0f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e)); /* n >= -126: a normal power of two */
}

INLINE __m256i tail8(int64_t n) {
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n >= 8 ? 8 : (int)n), idx);
}

INLINE void attend_hd(const loam__attn_task *t, const int HD) {
    const int NC = HD / 8;
    const int32_t nk = t->n_keys, n_rep = t->n_rep;
    const __m256 scale = _mm256_set1_ps(t->scale);

    for (int32_t t0 = 0; t0 < nk; t0 += LOAM__KV_BLOCK) {
        const float *kb = t->k + (int64_t)t->table[t0 / LOAM__KV_BLOCK] * t->block_stride;
        int32_t nt = nk - t0 < LOAM__KV_BLOCK ? nk - t0 : LOAM__KV_BLOCK;
        for (int32_t j = 0; j < n_rep; j++) {
            const float *q = t->q + (int64_t)j * HD;
            for (int32_t g = 0; g < nt; g += 8) {
                __m256 acc[8];
#pragma GCC unroll 8
                for (int i = 0; i < 8; i++) acc[i] = _mm256_setzero_ps();
#pragma GCC unroll 16
                for (int c = 0; c < NC; c++) {
                    __m256 qc = _mm256_loadu_ps(q + c * 8);
#pragma GCC unroll 8
                    for (int i = 0; i < 8; i++) /* rows past nt are stale or zero, never used */
                        acc[i] = _mm256_fmadd_ps(
                            qc, _mm256_loadu_ps(kb + (int64_t)(g + i) * HD + c * 8), acc[i]);
                }
                _mm256_storeu_ps(t->w + (int64_t)j * t->w_stride + t0 + g,
                                 _mm256_mul_ps(hsum8(acc), scale));
            }
        }
    }

    for (int32_t j = 0; j < n_rep; j++) {
        float *w = t->w + (int64_t)j * t->w_stride;
        __m256 mx = _mm256_set1_ps(-INFINITY);
        for (int32_t i = 0; i < nk; i += 8) {
            __m256 m = _mm256_castsi256_ps(tail8(nk - i));
            mx = _mm256_max_ps(mx, _mm256_blendv_ps(_mm256_set1_ps(-INFINITY),
                                                    _mm256_maskload_ps(w + i, tail8(nk - i)), m));
        }
        __m128 h = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
        h = _mm_max_ps(h, _mm_movehl_ps(h, h));
        h = _mm_max_ss(h, _mm_shuffle_ps(h, h, 1));
        __m256 m = _mm256_set1_ps(_mm_cvtss_f32(h)), sum = _mm256_setzero_ps();
        for (int32_t i = 0; i < nk; i += 8) {
            __m256i k = tail8(nk - i);
            __m256 e = exp8(_mm256_sub_ps(_mm256_maskload_ps(w + i, k), m));
            e = _mm256_and_ps(e, _mm256_castsi256_ps(k));
            sum = _mm256_add_ps(sum, e);
            _mm256_maskstore_ps(w + i, k, e);
        }
        __m128 s = _mm_add_ps(_mm256_castps256_ps128(sum), _mm256_extractf128_ps(sum, 1));
        s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        float inv = 1.0f / _mm_cvtss_f32(s);

        for (int c0 = 0; c0 < NC; c0 += 8) { /* 64 floats of the output at a time */
            __m256 a[8];
#pragma GCC unroll 8
            for (int c = 0; c < 8; c++) a[c] = _mm256_setzero_ps();
            for (int32_t t0 = 0; t0 < nk; t0 += LOAM__KV_BLOCK) {
                const float *vb = t->v + (int64_t)t->table[t0 / LOAM__KV_BLOCK] * t->block_stride;
                int32_t nt = nk - t0 < LOAM__KV_BLOCK ? nk - t0 : LOAM__KV_BLOCK;
                for (int32_t i = 0; i < nt; i++) {
                    __m256 e = _mm256_set1_ps(w[t0 + i]);
#pragma GCC unroll 8
                    for (int c = 0; c < 8; c++)
                        a[c] = _mm256_fmadd_ps(
                            e, _mm256_loadu_ps(vb + (int64_t)i * HD + (c0 + c) * 8), a[c]);
                }
            }
            __m256 sc = _mm256_set1_ps(inv);
#pragma GCC unroll 8
            for (int c = 0; c < 8; c++)
                _mm256_storeu_ps(t->out + (int64_t)j * HD + (c0 + c) * 8, _mm256_mul_ps(a[c], sc));
        }
    }
}

void loam__attend_avx2(const loam__attn_task *t) {
    if (t->head_dim == 128) attend_hd(t, 128);
    else attend_hd(t, 64);
}
#endif

/* avx512.c: kernel table for x86-64 with AVX-512 F/BW/VL/DQ + VNNI (Ice Lake, Sapphire Rapids,
 * Zen 4/5). Compiled with the AVX-512 flags; dispatch.c calls it only after cpuid says so.
 *
 * 4-bit group 64 (scheme in kernels.h, LOAM__ACT_PAIRS activations): one 64-byte load holds
 * two groups of packed weights; `& 0x0f` gives the even elements of both groups, `>> 4 & 0x0f`
 * the odd ones, and the activations of a group pair are stored in the same order, so two
 * vpdpbusd (u8 × s8, four products summed per int32 lane) give 16 int32 lanes, lanes 0-7
 * belonging to the first group and 8-15 to the second. Converted to float, they are FMA'd with
 * s·d spread the same way (s·d is formed for 16 groups at once, vpermps picks the pair). The
 * c and bias terms are FMA'd 16 groups at a time. An odd last group is loaded as 32 bytes
 * (zero upper half), and its partner's activations are the zero padding. Scales and biases
 * are read with masked loads, so nothing past a row is touched.
 * Tiles: mv 1 row × 1 activation row, so the weights stream through memory in address order
 * (measured: interleaving 2 or 4 rows costs 20% of single-thread DRAM throughput), with a
 * software prefetch PREFETCH_BYTES ahead (hardware prefetchers stop at 4 KiB pages) and
 * two accumulators taking alternate pairs (so the FMA latency does not bound one row);
 * mm 2 rows × 4 activation rows (8 accumulators + 8 s·d vectors + weights in 32 registers).
 * Loops over the tile's rows (R) and activation rows (A) carry `#pragma GCC unroll` so the
 * accumulator arrays become registers at -O2 (without it they live on the stack: 2-3× slower).
 *
 * Dense F32/F16/BF16: 16 weights per load converted to float (bf16: widen, shift left 16;
 * f16: vcvtph2ps), one FMA per activation row, the k % 16 tail with masked loads; the same
 * tiles as above (mv one row with two accumulators and prefetch, mm 4 rows × 4).
 * Generic widths: bytes of q widened to float, w = fma(q, s, b), one FMA with x.
 */
#if defined(__x86_64__)
#include "cpu/kernels.h"

#include <immintrin.h>

#define INLINE         static inline __attribute__((always_inline))
#define PREFETCH_BYTES 8192 /* measured: 0, 4, 8, 16, 32 KiB ahead; 8 KiB best or near */

INLINE __mmask16 mask16(int64_t n) {
    return (__mmask16)(n >= 16 ? 0xffffu : (1u << n) - 1u);
}

/* n (<= 16) elements of a F32/F16/BF16 array at p as 16 floats (zero beyond n). */
INLINE __m512 load16_float(const uint8_t *p, const loam_dtype t, int64_t n) {
    /* masked loads only for a partial vector: on Zen 5 a masked load from memory costs a
     * third of the matrix-vector throughput when it sits in the streaming loop */
    if (t == LOAM_DTYPE_F32)
        return n >= 16 ? _mm512_loadu_ps(p) : _mm512_maskz_loadu_ps(mask16(n), p);
    __m256i h =
        n >= 16 ? _mm256_loadu_si256((const __m256i *)p) : _mm256_maskz_loadu_epi16(mask16(n), p);
    if (t == LOAM_DTYPE_BF16)
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    return _mm512_cvtph_ps(h);
}

INLINE __m512 load16_scales(const void *base, loam_dtype t, size_t gi, int64_t n) {
    const uint8_t *p = (const uint8_t *)base + gi * (t == LOAM_DTYPE_F32 ? 4u : 2u);
    switch (t) {
    case LOAM_DTYPE_F32:
        return load16_float(p, LOAM_DTYPE_F32, n);
    case LOAM_DTYPE_BF16:
        return load16_float(p, LOAM_DTYPE_BF16, n);
    default:
        return load16_float(p, LOAM_DTYPE_F16, n);
    }
}

// ---- 4-bit, group 64 --------------------------------------------------------------------------

/* The pair of groups g, g+1 (of the chunk at g0; g+1 may be past the row's last group, gn) of
 * every (row, activation row) of the tile; idx spreads s·d of g, g+1 over lanes 0-7, 8-15. */
INLINE void q4_pair(const loam__qmat *W, int64_t r, const loam__actq *xq, int64_t a, int64_t g0,
                    int64_t g, int64_t gn, __m512i idx, __m512 sd[4][4], __m512 acc[4][4],
                    const int R, const int A) {
    const int64_t ng = xq->n_groups, gp = xq->n_gpad;
    const uint8_t *w = (const uint8_t *)W->w;
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    __m512i lo[4], hi[4];
#pragma GCC unroll 4
    for (int i = 0; i < R; i++) {
        const uint8_t *wp = w + ((size_t)(r + i) * (size_t)ng + (size_t)(g0 + g)) * 32u;
        if (A == 1)
            _mm_prefetch((const char *)(wp + PREFETCH_BYTES), _MM_HINT_T0);
        __m512i wv = g + 1 < gn ? _mm512_loadu_si512(wp)
                                : _mm512_zextsi256_si512(_mm256_loadu_si256((const __m256i *)wp));
        lo[i] = _mm512_and_si512(wv, m4);
        hi[i] = _mm512_and_si512(_mm512_srli_epi16(wv, 4), m4);
    }
#pragma GCC unroll 4
    for (int j = 0; j < A; j++) {
        const int8_t *q = xq->q + ((size_t)(a + j) * (size_t)gp + (size_t)(g0 + g)) * 64u;
        __m512i xlo = _mm512_load_si512(q), xhi = _mm512_load_si512(q + 64);
#pragma GCC unroll 4
        for (int i = 0; i < R; i++) {
            __m512i s = _mm512_dpbusd_epi32(_mm512_setzero_si512(), lo[i], xlo);
            s = _mm512_dpbusd_epi32(s, hi[i], xhi);
            acc[i][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_permutexvar_ps(idx, sd[i][j]),
                                        acc[i][j]);
        }
    }
}

INLINE void q4_tile(const loam__qmat *W, int64_t r, const loam__actq *xq, int64_t a, float *y,
                    const int R, const int A) {
    const int64_t ng = xq->n_groups, gp = xq->n_gpad;
    const loam_dtype st = W->fmt.scale_dtype;
    const __m512i two = _mm512_set1_epi32(2);
    const __m512i pair0 = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    /* a 1×1 tile alternates two accumulators so consecutive pairs do not wait on one FMA */
    __m512 acc[4][4], acc2[4][4];
#pragma GCC unroll 4
    for (int i = 0; i < R; i++)
#pragma GCC unroll 4
        for (int j = 0; j < A; j++)
            acc[i][j] = acc2[i][j] = _mm512_setzero_ps();

    for (int64_t g0 = 0; g0 < ng; g0 += 16) {
        const int64_t gn = ng - g0 < 16 ? ng - g0 : 16;
        __m512 sd[4][4]; /* s_g·d_g of 16 groups for each (row, activation row) */
#pragma GCC unroll 4
        for (int i = 0; i < R; i++) {
            size_t gi = (size_t)(r + i) * (size_t)ng + (size_t)g0;
            __m512 s16 = load16_scales(W->scales, st, gi, gn);
            __m512 b16 = load16_scales(W->biases, st, gi, gn);
#pragma GCC unroll 4
            for (int j = 0; j < A; j++) {
                size_t o = (size_t)(a + j) * (size_t)gp + (size_t)g0;
                sd[i][j] = _mm512_mul_ps(s16, _mm512_load_ps(xq->d + o));
                acc[i][j] = _mm512_fmadd_ps(s16, _mm512_load_ps(xq->c + o), acc[i][j]);
                acc[i][j] = _mm512_fmadd_ps(b16, _mm512_load_ps(xq->sum + o), acc[i][j]);
            }
        }
        __m512i idx = pair0;
        int64_t g = 0;
        for (; g + 2 < gn; g += 4) {
            q4_pair(W, r, xq, a, g0, g, gn, idx, sd, acc, R, A);
            idx = _mm512_add_epi32(idx, two);
            q4_pair(W, r, xq, a, g0, g + 2, gn, idx, sd, R * A == 1 ? acc2 : acc, R, A);
            idx = _mm512_add_epi32(idx, two);
        }
        if (g < gn)
            q4_pair(W, r, xq, a, g0, g, gn, idx, sd, acc, R, A);
    }
#pragma GCC unroll 4
    for (int i = 0; i < R; i++)
#pragma GCC unroll 4
        for (int j = 0; j < A; j++)
            y[(size_t)(a + j) * (size_t)W->n + (size_t)(r + i)] =
                _mm512_reduce_add_ps(_mm512_add_ps(acc[i][j], acc2[i][j]));
}

static void q4_mv(const loam__qmat *W, int64_t r, const void *x, int64_t a, float *y) {
    q4_tile(W, r, (const loam__actq *)x, a, y, 1, 1);
}
static void q4_mm(const loam__qmat *W, int64_t r, const void *x, int64_t a, float *y) {
    q4_tile(W, r, (const loam__actq *)x, a, y, 2, 4);
}
static void q4_one(const loam__qmat *W, int64_t r, const void *x, int64_t a, float *y) {
    q4_tile(W, r, (const loam__actq *)x, a, y, 1, 1);
}

// ---- dense F32 / F16 / BF16 -------------------------------------------------------------------

/* 16 columns from c (n of them valid, n may exceed 16) of every (row, activation row). */
INLINE void dense_step(const uint8_t *w, int64_t k, int64_t r, const float *x, int64_t a, int64_t c,
                       int64_t n, __m512 acc[4][4], const int R, const int A, const loam_dtype t) {
    const size_t es = t == LOAM_DTYPE_F32 ? 4u : 2u;
    __m512 wv[4];
#pragma GCC unroll 4
    for (int i = 0; i < R; i++) {
        const uint8_t *wp = w + ((size_t)(r + i) * (size_t)k + (size_t)c) * es;
        if (A == 1)
            _mm_prefetch((const char *)(wp + PREFETCH_BYTES), _MM_HINT_T0);
        wv[i] = load16_float(wp, t, n);
    }
#pragma GCC unroll 4
    for (int j = 0; j < A; j++) {
        const float *xp = x + (size_t)(a + j) * (size_t)k + (size_t)c;
        __m512 xv = n >= 16 ? _mm512_loadu_ps(xp) : _mm512_maskz_loadu_ps(mask16(n), xp);
#pragma GCC unroll 4
        for (int i = 0; i < R; i++)
            acc[i][j] = _mm512_fmadd_ps(wv[i], xv, acc[i][j]);
    }
}

INLINE void dense_tile(const loam__qmat *W, int64_t r, const float *x, int64_t a, float *y,
                       const int R, const int A, const loam_dtype t) {
    const int64_t k = W->k;
    const uint8_t *w = (const uint8_t *)W->w;
    __m512 acc[4][4], acc2[4][4]; /* acc2: second accumulator of a 1×1 tile */
#pragma GCC unroll 4
    for (int i = 0; i < R; i++)
#pragma GCC unroll 4
        for (int j = 0; j < A; j++)
            acc[i][j] = acc2[i][j] = _mm512_setzero_ps();
    int64_t c = 0;
    for (; c + 32 <= k; c += 32) {
        dense_step(w, k, r, x, a, c, 16, acc, R, A, t);
        dense_step(w, k, r, x, a, c + 16, 16, R * A == 1 ? acc2 : acc, R, A, t);
    }
    for (; c < k; c += 16)
        dense_step(w, k, r, x, a, c, k - c, acc, R, A, t);
#pragma GCC unroll 4
    for (int i = 0; i < R; i++)
#pragma GCC unroll 4
        for (int j = 0; j < A; j++)
            y[(size_t)(a + j) * (size_t)W->n + (size_t)(r + i)] =
                _mm512_reduce_add_ps(_mm512_add_ps(acc[i][j], acc2[i][j]));
}

INLINE void dense_dispatch(const loam__qmat *W, int64_t r, const void *x, int64_t a, float *y,
                           const int R, const int A) {
    const float *xf = (const float *)x;
    switch (W->dtype) {
    case LOAM_DTYPE_F32:
        dense_tile(W, r, xf, a, y, R, A, LOAM_DTYPE_F32);
        break;
    case LOAM_DTYPE_BF16:
        dense_tile(W, r, xf, a, y, R, A, LOAM_DTYPE_BF16);
        break;
    default:
        dense_tile(W, r, xf, a, y, R, A, LOAM_DTYPE_F16);
        break;
    }
}

static void dense_mv(const loam__qmat *W, int64_t r, const void *x, int64_t a, float *y) {
    dense_dispatch(W, r, x, a, y, 1, 1);
}
static void dense_mm(const loam__qmat *W, int64_t r, const void *x, int64_t a, float *y) {
    dense_dispatch(W, r, x, a, y, 4, 4);
}
static void dense_one(const loam__qmat *W, int64_t r, const void *x, int64_t a, float *y) {
    dense_dispatch(W, r, x, a, y, 1, 1);
}

static float dot_qf(const uint8_t *q, const float *s, const float *b, int gs, const float *x,
                    int64_t len) {
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    for (int64_t g = 0; g < len / gs; g++) {
        const __m512 vs = _mm512_set1_ps(s[g]), vb = _mm512_set1_ps(b[g]);
        const uint8_t *qg = q + g * gs;
        const float *xg = x + g * gs;
        for (int i = 0; i < gs; i += 32) {
            __m512 q0 = _mm512_cvtepi32_ps(
                _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(qg + i))));
            __m512 q1 = _mm512_cvtepi32_ps(
                _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(qg + i + 16))));
            acc0 = _mm512_fmadd_ps(_mm512_fmadd_ps(q0, vs, vb), _mm512_loadu_ps(xg + i), acc0);
            acc1 = _mm512_fmadd_ps(_mm512_fmadd_ps(q1, vs, vb), _mm512_loadu_ps(xg + i + 16), acc1);
        }
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
}

const loam__kernels loam__kernels_avx512 = {
    .name = "avx512vnni",
    .act_order = LOAM__ACT_PAIRS,
    .q4 = {.mv_rows = 1, .mm_rows = 2, .mm_acts = 4, .mv = q4_mv, .mm = q4_mm, .one = q4_one},
    .dense = {.mv_rows = 1,
              .mm_rows = 4,
              .mm_acts = 4,
              .mv = dense_mv,
              .mm = dense_mm,
              .one = dense_one},
    .dot_qf = dot_qf,
};
#endif

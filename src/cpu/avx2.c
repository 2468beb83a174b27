/* avx2.c: kernel table for x86-64 with AVX2 + FMA + F16C (compiled with -mavx2 -mfma -mf16c;
 * dispatch.c calls it only after cpuid says so).
 *
 * 4-bit group 64 (scheme in kernels.h, LOAM__ACT_EVEN_ODD activations): one 32-byte load is a
 * whole group of packed weights; `& 0x0f` gives the 32 even elements, `>> 4 & 0x0f` the 32 odd
 * ones, each meeting one 32-byte load of int8 activations in vpmaddubsw (u8 × s8 → pairs summed
 * to s16: at most 2·15·127, no saturation), the two halves added (≤ 7620) and vpmaddwd'ed with
 * ones into 8 int32 lanes. That group sum, converted to float, is FMA'd with s_g·d_g into a
 * float accumulator per (row, activation row); the c and bias terms are FMA'd 8 groups at a time
 * from vectors of 8 scales/biases and 8 d/c/sum values. Lanes are summed once per output.
 * Tiles: mv 1 row × 1 activation row, streaming the weights in address order with a software
 * prefetch PREFETCH_BYTES ahead and two accumulators taking alternate groups (so the FMA
 * latency does not bound a single row), mm 2 rows × 4 activation rows (16 ymm registers).
 * Loops over the tile's rows (R) and activation rows (A) carry `#pragma GCC unroll` so the
 * accumulator arrays become registers at -O2.
 *
 * Dense F32/F16/BF16: 8 weights per load converted to float (bf16: widen and shift left 16,
 * f16: vcvtph2ps), one FMA per activation row; the k % 8 tail in scalar code; the same tiles.
 * Generic widths: bytes of q widened to float, w = fma(q, s, b), one FMA with x.
 * Weights come from mmap and may be unaligned: every weight load is unaligned.
 */
#if defined(__x86_64__)
#include "cpu/kernels.h"

#include <immintrin.h>

#define INLINE         static inline __attribute__((always_inline))
#define PREFETCH_BYTES 8192 /* measured: 0, 4, 8, 16, 32 KiB ahead; 8 KiB best or near */

INLINE float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Elements [gi, gi+gn) (gn <= 8) of a F32/F16/BF16 array as 8 floats, zero beyond gn. */
INLINE __m256 load8_float(const void *base, loam_dtype t, size_t gi, int64_t gn) {
    size_t es = t == LOAM_DTYPE_F32 ? 4u : 2u;
    const uint8_t *p = (const uint8_t *)base + gi * es;
    uint8_t buf[32];
    if (gn < 8) {
        memset(buf, 0, sizeof buf);
        memcpy(buf, p, (size_t)gn * es);
        p = buf;
    }
    switch (t) {
    case LOAM_DTYPE_F32:
        return _mm256_loadu_ps((const float *)p);
    case LOAM_DTYPE_BF16: {
        __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
        return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
    }
    default:
        return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
    }
}

// ---- 4-bit, group 64 --------------------------------------------------------------------------

/* One group g (of the chunk starting at g0) of every (row, activation row) of the tile. */
INLINE void q4_group(const loam__qmat *W, int64_t r, const loam__actq *xq, int64_t a, int64_t g0,
                     int64_t g, const __m256 *s8, const __m256 *d8, __m256 acc[4][4], const int R,
                     const int A) {
    const int64_t ng = xq->n_groups, gp = xq->n_gpad;
    const uint8_t *w = (const uint8_t *)W->w;
    const __m256i m4 = _mm256_set1_epi8(0x0f), ones = _mm256_set1_epi16(1);
    const __m256i idx = _mm256_set1_epi32((int)g);
    __m256i lo[4], hi[4];
    __m256 sg[4];
#pragma GCC unroll 4
    for (int i = 0; i < R; i++) {
        const uint8_t *wp = w + ((size_t)(r + i) * (size_t)ng + (size_t)(g0 + g)) * 32u;
        if (A == 1)
            _mm_prefetch((const char *)(wp + PREFETCH_BYTES), _MM_HINT_T0);
        __m256i wv = _mm256_loadu_si256((const __m256i *)wp);
        lo[i] = _mm256_and_si256(wv, m4);
        hi[i] = _mm256_and_si256(_mm256_srli_epi16(wv, 4), m4);
        sg[i] = _mm256_permutevar8x32_ps(s8[i], idx);
    }
#pragma GCC unroll 4
    for (int j = 0; j < A; j++) {
        const int8_t *q = xq->q + ((size_t)(a + j) * (size_t)gp + (size_t)(g0 + g)) * 64u;
        __m256i xlo = _mm256_load_si256((const __m256i *)q);
        __m256i xhi = _mm256_load_si256((const __m256i *)(q + 32));
        __m256 dg = _mm256_permutevar8x32_ps(d8[j], idx);
#pragma GCC unroll 4
        for (int i = 0; i < R; i++) {
            __m256i p = _mm256_add_epi16(_mm256_maddubs_epi16(lo[i], xlo),
                                         _mm256_maddubs_epi16(hi[i], xhi));
            __m256 f = _mm256_cvtepi32_ps(_mm256_madd_epi16(p, ones));
            acc[i][j] = _mm256_fmadd_ps(f, _mm256_mul_ps(sg[i], dg), acc[i][j]);
        }
    }
}

INLINE void q4_tile(const loam__qmat *W, int64_t r, const loam__actq *xq, int64_t a, float *y,
                    const int R, const int A) {
    const int64_t ng = xq->n_groups, gp = xq->n_gpad;
    const loam_dtype st = W->fmt.scale_dtype;
    /* a 1×1 tile alternates two accumulators so consecutive groups do not wait on one FMA */
    __m256 acc[4][4], acc2[4][4];
#pragma GCC unroll 4
    for (int i = 0; i < R; i++)
#pragma GCC unroll 4
        for (int j = 0; j < A; j++)
            acc[i][j] = acc2[i][j] = _mm256_setzero_ps();

    for (int64_t g0 = 0; g0 < ng; g0 += 8) {
        const int64_t gn = ng - g0 < 8 ? ng - g0 : 8;
        __m256 s8[4], d8[4];
#pragma GCC unroll 4
        for (int i = 0; i < R; i++) {
            size_t gi = (size_t)(r + i) * (size_t)ng + (size_t)g0;
            s8[i] = load8_float(W->scales, st, gi, gn);
            __m256 b8 = load8_float(W->biases, st, gi, gn);
#pragma GCC unroll 4
            for (int j = 0; j < A; j++) {
                size_t o = (size_t)(a + j) * (size_t)gp + (size_t)g0;
                acc[i][j] = _mm256_fmadd_ps(s8[i], _mm256_load_ps(xq->c + o), acc[i][j]);
                acc[i][j] = _mm256_fmadd_ps(b8, _mm256_load_ps(xq->sum + o), acc[i][j]);
            }
        }
#pragma GCC unroll 4
        for (int j = 0; j < A; j++)
            d8[j] = _mm256_load_ps(xq->d + (size_t)(a + j) * (size_t)gp + (size_t)g0);
        int64_t g = 0;
        for (; g + 1 < gn; g += 2) {
            q4_group(W, r, xq, a, g0, g, s8, d8, acc, R, A);
            q4_group(W, r, xq, a, g0, g + 1, s8, d8, R * A == 1 ? acc2 : acc, R, A);
        }
        if (g < gn)
            q4_group(W, r, xq, a, g0, g, s8, d8, acc, R, A);
    }
#pragma GCC unroll 4
    for (int i = 0; i < R; i++)
#pragma GCC unroll 4
        for (int j = 0; j < A; j++)
            y[(size_t)(a + j) * (size_t)W->n + (size_t)(r + i)] =
                hsum8(_mm256_add_ps(acc[i][j], acc2[i][j]));
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

INLINE __m256 load8_w(const uint8_t *p, const loam_dtype t) {
    if (t == LOAM_DTYPE_F32)
        return _mm256_loadu_ps((const float *)p);
    if (t == LOAM_DTYPE_BF16)
        return _mm256_castsi256_ps(
            _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p)), 16));
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}

/* 8 columns from c of every (row, activation row). */
INLINE void dense_step(const uint8_t *w, int64_t k, int64_t r, const float *x, int64_t a, int64_t c,
                       __m256 acc[4][4], const int R, const int A, const loam_dtype t) {
    const size_t es = t == LOAM_DTYPE_F32 ? 4u : 2u;
    __m256 wv[4];
#pragma GCC unroll 4
    for (int i = 0; i < R; i++) {
        const uint8_t *wp = w + ((size_t)(r + i) * (size_t)k + (size_t)c) * es;
        if (A == 1)
            _mm_prefetch((const char *)(wp + PREFETCH_BYTES), _MM_HINT_T0);
        wv[i] = load8_w(wp, t);
    }
#pragma GCC unroll 4
    for (int j = 0; j < A; j++) {
        __m256 xv = _mm256_loadu_ps(x + (size_t)(a + j) * (size_t)k + (size_t)c);
#pragma GCC unroll 4
        for (int i = 0; i < R; i++)
            acc[i][j] = _mm256_fmadd_ps(wv[i], xv, acc[i][j]);
    }
}

INLINE void dense_tile(const loam__qmat *W, int64_t r, const float *x, int64_t a, float *y,
                       const int R, const int A, const loam_dtype t) {
    const int64_t k = W->k;
    const uint8_t *w = (const uint8_t *)W->w;
    __m256 acc[4][4], acc2[4][4]; /* acc2: second accumulator of a 1×1 tile */
#pragma GCC unroll 4
    for (int i = 0; i < R; i++)
#pragma GCC unroll 4
        for (int j = 0; j < A; j++)
            acc[i][j] = acc2[i][j] = _mm256_setzero_ps();
    int64_t c = 0;
    for (; c + 16 <= k; c += 16) {
        dense_step(w, k, r, x, a, c, acc, R, A, t);
        dense_step(w, k, r, x, a, c + 8, R * A == 1 ? acc2 : acc, R, A, t);
    }
    for (; c + 8 <= k; c += 8)
        dense_step(w, k, r, x, a, c, acc, R, A, t);
#pragma GCC unroll 4
    for (int i = 0; i < R; i++)
#pragma GCC unroll 4
        for (int j = 0; j < A; j++) {
            float s = hsum8(_mm256_add_ps(acc[i][j], acc2[i][j]));
            for (int64_t cc = c; cc < k; cc++)
                s += loam__load_float(w, t, (size_t)(r + i) * (size_t)k + (size_t)cc) *
                     x[(size_t)(a + j) * (size_t)k + (size_t)cc];
            y[(size_t)(a + j) * (size_t)W->n + (size_t)(r + i)] = s;
        }
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
    dense_dispatch(W, r, x, a, y, 2, 4);
}
static void dense_one(const loam__qmat *W, int64_t r, const void *x, int64_t a, float *y) {
    dense_dispatch(W, r, x, a, y, 1, 1);
}

static float dot_qf(const uint8_t *q, const float *s, const float *b, int gs, const float *x,
                    int64_t len) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    for (int64_t g = 0; g < len / gs; g++) {
        const __m256 vs = _mm256_set1_ps(s[g]), vb = _mm256_set1_ps(b[g]);
        const uint8_t *qg = q + g * gs;
        const float *xg = x + g * gs;
        for (int i = 0; i < gs; i += 16) {
            __m256 q0 = _mm256_cvtepi32_ps(
                _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(qg + i))));
            __m256 q1 = _mm256_cvtepi32_ps(
                _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(qg + i + 8))));
            acc0 = _mm256_fmadd_ps(_mm256_fmadd_ps(q0, vs, vb), _mm256_loadu_ps(xg + i), acc0);
            acc1 = _mm256_fmadd_ps(_mm256_fmadd_ps(q1, vs, vb), _mm256_loadu_ps(xg + i + 8), acc1);
        }
    }
    return hsum8(_mm256_add_ps(acc0, acc1));
}

const loam__kernels loam__kernels_avx2 = {
    .name = "avx2",
    .act_order = LOAM__ACT_EVEN_ODD,
    .q4 = {.mv_rows = 1, .mm_rows = 2, .mm_acts = 4, .mv = q4_mv, .mm = q4_mm, .one = q4_one},
    .dense = {.mv_rows = 1,
              .mm_rows = 2,
              .mm_acts = 4,
              .mv = dense_mv,
              .mm = dense_mm,
              .one = dense_one},
    .dot_qf = dot_qf,
};
#endif

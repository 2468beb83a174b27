/* neon.c: kernel table for aarch64 with the dot-product extension (ARMv8.2-A+dotprod: Apple M1
 * and later, Graviton 2+, Cortex-A76+). Compiled with -march=armv8.2-a+dotprod; dispatch.c
 * calls it only when the kernel reports HWCAP_ASIMDDP.
 *
 * 4-bit group 64 (scheme in kernels.h, LOAM__ACT_EVEN_ODD activations): a group is two 16-byte
 * loads of packed weights; `& 0x0f` gives even elements, `>> 4` odd ones (0..15, valid as
 * int8), and four sdot (s8 × s8, four products summed per int32 lane) against the group's 64
 * int8 activations give 4 int32 lanes, converted to float and FMA'd with s_g·d_g. The c and
 * bias terms are summed in scalar once per group. Scales/biases are converted 16 groups at a
 * time into a float buffer.
 * Tiles: mv 4 rows × 1 activation row, mm 2 rows × 4 activation rows.
 *
 * Dense F32/F16/BF16: 4 weights per load as float (bf16: widen with shift 16, f16: fcvtl), one
 * FMA per activation row, k % 4 tail in scalar code.
 * Generic widths: bytes of q widened to float, w = fma(q, s, b), one FMA with x. Weight loads are
 * byte loads (vld1q_u8) reinterpreted, so unaligned mmap data is fine.
 */
#if defined(__aarch64__)
#include "cpu/kernels.h"

#include <arm_neon.h>

#define INLINE static inline __attribute__((always_inline))

/* n (<= 16) elements from index gi of a F32/F16/BF16 array, as floats. */
static void load_floats(const void *base, loam_dtype t, size_t gi, int64_t n, float *out) {
    for (int64_t i = 0; i < n; i++)
        out[i] = loam__load_float(base, t, gi + (size_t)i);
}

// ---- 4-bit, group 64 --------------------------------------------------------------------------

INLINE void q4_tile(const loam__qmat *W, int64_t r, const loam__actq *xq, int64_t a, float *y,
                    const int R, const int A) {
    const int64_t ng = xq->n_groups, gp = xq->n_gpad;
    const loam_dtype st = W->fmt.scale_dtype;
    const uint8_t *w = (const uint8_t *)W->w;
    const uint8x16_t m4 = vdupq_n_u8(0x0f);
    float32x4_t acc[4][4];
    float accs[4][4];
#pragma GCC unroll 4
    for (int i = 0; i < R; i++)
#pragma GCC unroll 4
        for (int j = 0; j < A; j++) {
            acc[i][j] = vdupq_n_f32(0.0f);
            accs[i][j] = 0.0f;
        }
    for (int64_t g0 = 0; g0 < ng; g0 += 16) {
        const int64_t gn = ng - g0 < 16 ? ng - g0 : 16;
        float s[4][16], b[4][16];
#pragma GCC unroll 4
        for (int i = 0; i < R; i++) {
            size_t gi = (size_t)(r + i) * (size_t)ng + (size_t)g0;
            load_floats(W->scales, st, gi, gn, s[i]);
            load_floats(W->biases, st, gi, gn, b[i]);
        }
        for (int64_t g = 0; g < gn; g++) {
            int8x16_t lo0[4], lo1[4], hi0[4], hi1[4];
#pragma GCC unroll 4
            for (int i = 0; i < R; i++) {
                const uint8_t *wp = w + ((size_t)(r + i) * (size_t)ng + (size_t)(g0 + g)) * 32u;
                uint8x16_t w0 = vld1q_u8(wp), w1 = vld1q_u8(wp + 16);
                lo0[i] = vreinterpretq_s8_u8(vandq_u8(w0, m4));
                lo1[i] = vreinterpretq_s8_u8(vandq_u8(w1, m4));
                hi0[i] = vreinterpretq_s8_u8(vshrq_n_u8(w0, 4));
                hi1[i] = vreinterpretq_s8_u8(vshrq_n_u8(w1, 4));
            }
#pragma GCC unroll 4
            for (int j = 0; j < A; j++) {
                size_t o = (size_t)(a + j) * (size_t)gp + (size_t)(g0 + g);
                const int8_t *q = xq->q + o * 64u;
                int8x16_t x0 = vld1q_s8(q), x1 = vld1q_s8(q + 16);
                int8x16_t x2 = vld1q_s8(q + 32), x3 = vld1q_s8(q + 48);
                float d = xq->d[o], c = xq->c[o], sum = xq->sum[o];
#pragma GCC unroll 4
                for (int i = 0; i < R; i++) {
                    int32x4_t dot = vdotq_s32(vdupq_n_s32(0), lo0[i], x0);
                    dot = vdotq_s32(dot, lo1[i], x1);
                    dot = vdotq_s32(dot, hi0[i], x2);
                    dot = vdotq_s32(dot, hi1[i], x3);
                    acc[i][j] = vfmaq_n_f32(acc[i][j], vcvtq_f32_s32(dot), s[i][g] * d);
                    accs[i][j] += s[i][g] * c + b[i][g] * sum;
                }
            }
        }
    }
#pragma GCC unroll 4
    for (int i = 0; i < R; i++)
#pragma GCC unroll 4
        for (int j = 0; j < A; j++)
            y[(size_t)(a + j) * (size_t)W->n + (size_t)(r + i)] =
                vaddvq_f32(acc[i][j]) + accs[i][j];
}

static void q4_mv(const loam__qmat *W, int64_t r, const void *x, int64_t a, float *y) {
    q4_tile(W, r, (const loam__actq *)x, a, y, 4, 1);
}
static void q4_mm(const loam__qmat *W, int64_t r, const void *x, int64_t a, float *y) {
    q4_tile(W, r, (const loam__actq *)x, a, y, 2, 4);
}
static void q4_one(const loam__qmat *W, int64_t r, const void *x, int64_t a, float *y) {
    q4_tile(W, r, (const loam__actq *)x, a, y, 1, 1);
}

// ---- dense F32 / F16 / BF16 -------------------------------------------------------------------

INLINE float32x4_t load4_w(const uint8_t *p, const loam_dtype t) {
    if (t == LOAM_DTYPE_F32)
        return vreinterpretq_f32_u8(vld1q_u8(p));
    uint16x4_t h = vreinterpret_u16_u8(vld1_u8(p));
    if (t == LOAM_DTYPE_BF16)
        return vreinterpretq_f32_u32(vshll_n_u16(h, 16));
    return vcvt_f32_f16(vreinterpret_f16_u16(h));
}

INLINE void dense_tile(const loam__qmat *W, int64_t r, const float *x, int64_t a, float *y,
                       const int R, const int A, const loam_dtype t) {
    const int64_t k = W->k;
    const size_t es = t == LOAM_DTYPE_F32 ? 4u : 2u;
    const uint8_t *w = (const uint8_t *)W->w;
    float32x4_t acc[4][4];
#pragma GCC unroll 4
    for (int i = 0; i < R; i++)
#pragma GCC unroll 4
        for (int j = 0; j < A; j++)
            acc[i][j] = vdupq_n_f32(0.0f);
    int64_t c = 0;
    for (; c + 4 <= k; c += 4) {
        float32x4_t wv[4];
#pragma GCC unroll 4
        for (int i = 0; i < R; i++)
            wv[i] = load4_w(w + ((size_t)(r + i) * (size_t)k + (size_t)c) * es, t);
#pragma GCC unroll 4
        for (int j = 0; j < A; j++) {
            float32x4_t xv = vld1q_f32(x + (size_t)(a + j) * (size_t)k + (size_t)c);
#pragma GCC unroll 4
            for (int i = 0; i < R; i++)
                acc[i][j] = vfmaq_f32(acc[i][j], wv[i], xv);
        }
    }
#pragma GCC unroll 4
    for (int i = 0; i < R; i++)
#pragma GCC unroll 4
        for (int j = 0; j < A; j++) {
            float s = vaddvq_f32(acc[i][j]);
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
    dense_dispatch(W, r, x, a, y, 4, 1);
}
static void dense_mm(const loam__qmat *W, int64_t r, const void *x, int64_t a, float *y) {
    dense_dispatch(W, r, x, a, y, 2, 4);
}
static void dense_one(const loam__qmat *W, int64_t r, const void *x, int64_t a, float *y) {
    dense_dispatch(W, r, x, a, y, 1, 1);
}

static float dot_qf(const uint8_t *q, const float *s, const float *b, int gs, const float *x,
                    int64_t len) {
    float32x4_t acc0 = vdupq_n_f32(0.0f), acc1 = vdupq_n_f32(0.0f);
    for (int64_t g = 0; g < len / gs; g++) {
        const float32x4_t vb = vdupq_n_f32(b[g]);
        const float sg = s[g];
        const uint8_t *qg = q + g * gs;
        const float *xg = x + g * gs;
        for (int i = 0; i < gs; i += 8) {
            uint16x8_t h = vmovl_u8(vld1_u8(qg + i));
            float32x4_t q0 = vcvtq_f32_u32(vmovl_u16(vget_low_u16(h)));
            float32x4_t q1 = vcvtq_f32_u32(vmovl_u16(vget_high_u16(h)));
            acc0 = vfmaq_f32(acc0, vfmaq_n_f32(vb, q0, sg), vld1q_f32(xg + i));
            acc1 = vfmaq_f32(acc1, vfmaq_n_f32(vb, q1, sg), vld1q_f32(xg + i + 4));
        }
    }
    return vaddvq_f32(vaddq_f32(acc0, acc1));
}

const loam__kernels loam__kernels_neon = {
    .name = "neon",
    .act_order = LOAM__ACT_EVEN_ODD,
    .q4 = {.mv_rows = 4, .mm_rows = 2, .mm_acts = 4, .mv = q4_mv, .mm = q4_mm, .one = q4_one},
    .dense = {.mv_rows = 4,
              .mm_rows = 2,
              .mm_acts = 4,
              .mv = dense_mv,
              .mm = dense_mm,
              .one = dense_one},
    .dot_qf = dot_qf,
};
#endif

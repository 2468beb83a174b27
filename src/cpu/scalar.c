/* scalar.c: the portable kernel table (plain C, no intrinsics). It is the default on CPUs
 * without a faster table and a twin for the SIMD ones: the same int8 activation scheme
 * (kernels.h, LOAM__ACT_EVEN_ODD order) with the integer dot written out, float dots for
 * dense weights, and the generic path's dequantize-and-dot as the reference does it
 * (fl(fl(s·q) + b)). Tiles are 1 row × 1 activation row.
 */
#include "cpu/kernels.h"

static void q4_one(const loam__qmat *W, int64_t r, const void *xv, int64_t a, float *y) {
    const loam__actq *xq = (const loam__actq *)xv;
    const int64_t ng = xq->n_groups, gp = xq->n_gpad;
    const uint8_t *w = (const uint8_t *)W->w + (size_t)r * (size_t)ng * 32u;
    const int8_t *q = xq->q + (size_t)a * (size_t)gp * 64u;
    const float *d = xq->d + (size_t)a * (size_t)gp, *c = xq->c + (size_t)a * (size_t)gp;
    const float *sum = xq->sum + (size_t)a * (size_t)gp;
    float acc = 0.0f;
    for (int64_t g = 0; g < ng; g++) {
        int32_t dot = 0;
        for (int j = 0; j < 32; j++) {
            uint8_t b = w[g * 32 + j];
            dot += (int32_t)(b & 15u) * q[g * 64 + j] + (int32_t)(b >> 4) * q[g * 64 + 32 + j];
        }
        size_t gi = (size_t)r * (size_t)ng + (size_t)g;
        float s = loam__load_float(W->scales, W->fmt.scale_dtype, gi);
        float b = loam__load_float(W->biases, W->fmt.scale_dtype, gi);
        acc += s * (d[g] * (float)dot + c[g]) + b * sum[g];
    }
    y[(size_t)a * (size_t)W->n + (size_t)r] = acc;
}

static void dense_one(const loam__qmat *W, int64_t r, const void *xv, int64_t a, float *y) {
    const int64_t k = W->k;
    const float *x = (const float *)xv + (size_t)a * (size_t)k;
    const uint8_t *w = (const uint8_t *)W->w;
    size_t base = (size_t)r * (size_t)k;
    float acc = 0.0f;
    switch (W->dtype) {
    case LOAM_DTYPE_F32:
        for (int64_t j = 0; j < k; j++)
            acc += loam__rd_f32le(w + (base + (size_t)j) * 4u) * x[j];
        break;
    case LOAM_DTYPE_BF16:
        for (int64_t j = 0; j < k; j++)
            acc += loam__bf16_to_f32(loam__rd_u16le(w + (base + (size_t)j) * 2u)) * x[j];
        break;
    default: /* F16 */
        for (int64_t j = 0; j < k; j++)
            acc += loam__f16_to_f32(loam__rd_u16le(w + (base + (size_t)j) * 2u)) * x[j];
        break;
    }
    y[(size_t)a * (size_t)W->n + (size_t)r] = acc;
}

static float dot_qf(const uint8_t *q, const float *s, const float *b, int gs, const float *x,
                    int64_t len) {
    float acc = 0.0f;
    for (int64_t i = 0; i < len; i++) {
        float sq = s[i / gs] * (float)q[i];
        float w = sq + b[i / gs];
        acc += w * x[i];
    }
    return acc;
}

const loam__kernels loam__kernels_scalar = {
    .name = "scalar",
    .act_order = LOAM__ACT_EVEN_ODD,
    .q4 = {.mv_rows = 1, .mm_rows = 1, .mm_acts = 1, .mv = q4_one, .mm = q4_one, .one = q4_one},
    .dense = {.mv_rows = 1,
              .mm_rows = 1,
              .mm_acts = 1,
              .mv = dense_one,
              .mm = dense_one,
              .one = dense_one},
    .dot_qf = dot_qf,
};

/* quant_ref.c: the scalar reference (the spec) for MLX affine quantization.
 *
 * Format (FORMATS.md §1): a matrix [rows, cols] is cut into groups of group_size consecutive
 * elements of a row. Each group has a scale s and a bias b (stored as F32, F16 or BF16) and
 * each element an unsigned integer q in [0, 2^bits - 1] with w ≈ s·q + b. The q of a row are
 * one LSB-first bit stream: element j occupies stream bits [j*bits, (j+1)*bits), stream bit t
 * is bit t%8 of byte t/8 of the row, and the bytes of the row read as little-endian uint32
 * words are the U32 tensor on disk. Widths 3, 5 and 6 straddle bytes and words; 2, 4, 8 never
 * do. Example: 4-bit values 0..7 are the word 0x76543210.
 *
 * Quantizer (MLX CPU kernel, mlx/backend/cpu/quantized.cpp, §1.2), all in float32:
 *   n_bins = 2^bits - 1; w_min, w_max over the group
 *   mask  = |w_min| > |w_max|            (which end has the larger magnitude: the "edge")
 *   scale = max((w_max - w_min) / n_bins, 1e-7), negated unless mask
 *   edge  = mask ? w_min : w_max;  q0 = rint(edge / scale)
 *   bias  = 0;  if q0 != 0 { scale = edge / q0; bias = edge }      (so 0.0 is representable)
 *   q     = clamp(rint((w - bias) / scale), 0, n_bins)
 * with rint = round half to even; scale and bias are rounded to the storage dtype (round to
 * nearest even) only after every q is computed. Hence scales can be negative, an all-zero
 * group gives scale -1e-7, bias 0, q 0, and a constant group c gives bias c, q 0.
 *
 * Dequantizer: w = fl(fl(s·q) + b) in float32 with s, b the stored values converted to
 * float32 (one rounding after the multiply, one after the add, never fused: the two steps are
 * separate statements so no compiler contracts them into an FMA).
 *
 * loam__matmul_ref is the obvious twin of every kernel: dequantize each weight and accumulate
 * x·w in one sequential float32 sum per output.
 */
#include "quant.h"

#include <math.h>

// ---- formats ----------------------------------------------------------------------------------

static int bits_ok(int32_t bits) {
    return bits >= 2 && bits <= 8 && bits != 7;
}
static int group_ok(int32_t gs) {
    return gs == 32 || gs == 64 || gs == 128;
}
static int float_dtype(loam_dtype t) {
    return t == LOAM_DTYPE_F32 || t == LOAM_DTYPE_F16 || t == LOAM_DTYPE_BF16;
}

loam_status loam_qformat_check(loam_qformat fmt, int64_t cols, loam_err *err) {
    if (!bits_ok(fmt.bits))
        return loam__fail(err, LOAM_E_INVAL, "quant: bits %d not in {2,3,4,5,6,8}", (int)fmt.bits);
    if (!group_ok(fmt.group_size))
        return loam__fail(err, LOAM_E_INVAL, "quant: group_size %d not in {32,64,128}",
                          (int)fmt.group_size);
    if (!float_dtype(fmt.scale_dtype))
        return loam__fail(err, LOAM_E_INVAL, "quant: scale dtype %s is not F32, F16 or BF16",
                          loam_dtype_name(fmt.scale_dtype) ? loam_dtype_name(fmt.scale_dtype)
                                                           : "(invalid)");
    if (cols <= 0 || cols % fmt.group_size != 0)
        return loam__fail(err, LOAM_E_INVAL,
                          "quant: cols %lld is not a positive multiple of "
                          "group_size %d",
                          (long long)cols, (int)fmt.group_size);
    return LOAM_OK;
}

uint64_t loam_qweight_bytes(loam_qformat fmt, int64_t rows, int64_t cols) {
    uint64_t n;
    if (rows < 0 || loam_qformat_check(fmt, cols, NULL) != LOAM_OK)
        return 0;
    if (loam__mul_u64((uint64_t)rows, (uint64_t)cols, &n) ||
        loam__mul_u64(n, (uint64_t)fmt.bits, &n))
        return 0;
    return n / 8;
}

uint64_t loam_qscale_bytes(loam_qformat fmt, int64_t rows, int64_t cols) {
    uint64_t n;
    if (rows < 0 || loam_qformat_check(fmt, cols, NULL) != LOAM_OK)
        return 0;
    uint64_t esize = (uint64_t)loam_dtype_bits(fmt.scale_dtype) / 8;
    if (loam__mul_u64((uint64_t)rows, (uint64_t)(cols / fmt.group_size), &n) ||
        loam__mul_u64(n, esize, &n))
        return 0;
    return n;
}

loam_status loam__qmat_check(const loam__qmat *W, loam_err *err) {
    if (!W || !W->w)
        return loam__fail(err, LOAM_E_INVAL, "qmat: no weight data");
    if (W->n <= 0 || W->k <= 0)
        return loam__fail(err, LOAM_E_INVAL, "qmat: shape [%lld, %lld] is empty", (long long)W->n,
                          (long long)W->k);
    if (W->dtype == LOAM_DTYPE_U32) {
        loam_status s = loam_qformat_check(W->fmt, W->k, err);
        if (s != LOAM_OK)
            return s;
        if (!W->scales || !W->biases)
            return loam__fail(err, LOAM_E_INVAL, "qmat: quantized weight without scales/biases");
        if (loam_qweight_bytes(W->fmt, W->n, W->k) == 0)
            return loam__fail(err, LOAM_E_INVAL, "qmat: size overflows");
        return LOAM_OK;
    }
    if (!float_dtype(W->dtype))
        return loam__fail(err, LOAM_E_INVAL,
                          "qmat: dtype %s is neither U32 (quantized) nor "
                          "F32/F16/BF16",
                          loam_dtype_name(W->dtype) ? loam_dtype_name(W->dtype) : "(invalid)");
    int64_t nk;
    if (loam__mul_i64(W->n, W->k, &nk) || loam__mul_i64(nk, 4, &nk))
        return loam__fail(err, LOAM_E_INVAL, "qmat: size overflows");
    return LOAM_OK;
}

// ---- bit packing ------------------------------------------------------------------------------

void loam__qunpack(const void *row, int bits, int64_t j0, int64_t len, uint8_t *q) {
    const uint8_t *b = (const uint8_t *)row;
    const uint32_t mask = (1u << bits) - 1u;
    for (int64_t j = 0; j < len; j++) {
        uint64_t bit = (uint64_t)(j0 + j) * (uint64_t)bits;
        uint64_t byte = bit >> 3;
        unsigned sh = (unsigned)(bit & 7u);
        uint32_t v = b[byte];
        if (sh + (unsigned)bits > 8u)
            v |= (uint32_t)b[byte + 1] << 8; /* straddles a byte */
        q[j] = (uint8_t)((v >> sh) & mask);
    }
}

void loam__qpack(const uint8_t *q, int64_t len, int bits, void *row) {
    uint8_t *b = (uint8_t *)row;
    memset(b, 0, (size_t)((uint64_t)len * (uint64_t)bits / 8u));
    for (int64_t j = 0; j < len; j++) {
        uint64_t bit = (uint64_t)j * (uint64_t)bits;
        uint64_t byte = bit >> 3;
        unsigned sh = (unsigned)(bit & 7u);
        uint32_t v = (uint32_t)q[j] << sh;
        b[byte] |= (uint8_t)v;
        if (sh + (unsigned)bits > 8u)
            b[byte + 1] |= (uint8_t)(v >> 8);
    }
}

// ---- quantize ---------------------------------------------------------------------------------

void loam__quantize_group(const float *w, int gs, int bits, float *scale_out, float *bias_out,
                          uint8_t *q) {
    const float n_bins = (float)((1 << bits) - 1);
    const float eps = 1e-7f;
    float w_min = INFINITY, w_max = -INFINITY;
    for (int j = 0; j < gs; j++) {
        w_max = fmaxf(w_max, w[j]);
        w_min = fminf(w_min, w[j]);
    }
    int mask = fabsf(w_min) > fabsf(w_max);
    float scale = fmaxf((w_max - w_min) / n_bins, eps);
    scale = mask ? scale : -scale;
    float edge = mask ? w_min : w_max;
    float q0 = rintf(edge / scale);
    float bias = 0.0f;
    if (q0 != 0.0f) {
        scale = edge / q0;
        bias = edge;
    }
    for (int j = 0; j < gs; j++) {
        float v = rintf((w[j] - bias) / scale);
        v = fminf(fmaxf(v, 0.0f), n_bins);
        q[j] = (uint8_t)v;
    }
    *scale_out = scale;
    *bias_out = bias;
}

loam_status loam_quantize(const float *w, int64_t rows, int64_t cols, loam_qformat fmt, void *wq,
                          void *scales, void *biases, loam_err *err) {
    loam_status s = loam_qformat_check(fmt, cols, err);
    if (s != LOAM_OK)
        return s;
    if (rows <= 0)
        return loam__fail(err, LOAM_E_INVAL, "quantize: rows %lld", (long long)rows);
    if (!w || !wq || !scales || !biases)
        return loam__fail(err, LOAM_E_INVAL, "quantize: NULL buffer");
    if (loam_qweight_bytes(fmt, rows, cols) == 0)
        return loam__fail(err, LOAM_E_INVAL, "quantize: [%lld, %lld] overflows", (long long)rows,
                          (long long)cols);
    const int gs = fmt.group_size, bits = fmt.bits;
    const int64_t n_groups = cols / gs;
    const size_t row_bytes = (size_t)cols * (size_t)bits / 8u;
    const size_t group_bytes = (size_t)gs * (size_t)bits / 8u;
    uint8_t q[128];
    for (int64_t r = 0; r < rows; r++) {
        const float *wr = w + (size_t)r * (size_t)cols;
        for (int64_t j = 0; j < cols; j++)
            if (!isfinite(wr[j]))
                return loam__fail(err, LOAM_E_INVAL,
                                  "quantize: value at [%lld, %lld] is not "
                                  "finite",
                                  (long long)r, (long long)j);
        for (int64_t g = 0; g < n_groups; g++) {
            float sc, bi;
            loam__quantize_group(wr + g * gs, gs, bits, &sc, &bi, q);
            loam__qpack(q, gs, bits,
                        (uint8_t *)wq + (size_t)r * row_bytes + (size_t)g * group_bytes);
            size_t gi = (size_t)r * (size_t)n_groups + (size_t)g;
            loam__store_float(scales, fmt.scale_dtype, gi, sc);
            loam__store_float(biases, fmt.scale_dtype, gi, bi);
        }
    }
    return LOAM_OK;
}

// ---- dequantize and the reference matmul ------------------------------------------------------

void loam__qmat_row_range(const loam__qmat *W, int64_t row, int64_t j0, int64_t len, float *out) {
    if (W->dtype != LOAM_DTYPE_U32) {
        size_t base = (size_t)row * (size_t)W->k + (size_t)j0;
        for (int64_t j = 0; j < len; j++)
            out[j] = loam__load_float(W->w, W->dtype, base + (size_t)j);
        return;
    }
    const int gs = W->fmt.group_size, bits = W->fmt.bits;
    LOAM_ASSERT(j0 % gs == 0 && len % gs == 0);
    const int64_t n_groups = W->k / gs;
    const uint8_t *wrow = (const uint8_t *)W->w + (size_t)row * ((size_t)W->k * (size_t)bits / 8u);
    uint8_t q[128];
    for (int64_t g = j0 / gs; g < (j0 + len) / gs; g++) {
        size_t gi = (size_t)row * (size_t)n_groups + (size_t)g;
        float s = loam__load_float(W->scales, W->fmt.scale_dtype, gi);
        float b = loam__load_float(W->biases, W->fmt.scale_dtype, gi);
        loam__qunpack(wrow, bits, g * gs, gs, q);
        float *o = out + (g * gs - j0);
        for (int j = 0; j < gs; j++) {
            float sq = s * (float)q[j];
            o[j] = sq + b;
        }
    }
}

void loam__qmat_row(const loam__qmat *W, int64_t row, float *out) {
    loam__qmat_row_range(W, row, 0, W->k, out);
}

loam_status loam_dequantize(const void *wq, const void *scales, const void *biases, int64_t rows,
                            int64_t cols, loam_qformat fmt, float *out, loam_err *err) {
    loam__qmat W = {LOAM_DTYPE_U32, fmt, wq, scales, biases, rows, cols};
    loam_status s = loam__qmat_check(&W, err);
    if (s != LOAM_OK)
        return s;
    if (!out)
        return loam__fail(err, LOAM_E_INVAL, "dequantize: NULL output");
    for (int64_t r = 0; r < rows; r++)
        loam__qmat_row(&W, r, out + (size_t)r * (size_t)cols);
    return LOAM_OK;
}

void loam__matmul_ref(const loam__qmat *W, const float *x, int64_t m, float *y) {
    LOAM_ASSERT(loam__qmat_check(W, NULL) == LOAM_OK);
    const int64_t k = W->k, n = W->n;
    float chunk[128]; /* a multiple of every group size */
    for (int64_t r = 0; r < n; r++) {
        for (int64_t a = 0; a < m; a++)
            y[(size_t)a * (size_t)n + (size_t)r] = 0.0f;
        for (int64_t j0 = 0; j0 < k; j0 += 128) {
            int64_t len = k - j0 < 128 ? k - j0 : 128;
            loam__qmat_row_range(W, r, j0, len, chunk);
            for (int64_t a = 0; a < m; a++) {
                const float *xa = x + (size_t)a * (size_t)k + (size_t)j0;
                float acc = y[(size_t)a * (size_t)n + (size_t)r];
                for (int64_t j = 0; j < len; j++)
                    acc += chunk[j] * xa[j];
                y[(size_t)a * (size_t)n + (size_t)r] = acc;
            }
        }
    }
}

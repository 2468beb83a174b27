/* quant.h: internal contract for weight matrices and the matmul every layer goes through.
 *
 * A loam__qmat is a view of one Linear/Embedding weight as stored on disk: either MLX affine
 * quantized (dtype U32, packed as FORMATS.md §1.3, scales/biases per group) or dense
 * (F32/F16/BF16, [n, k] row-major). Pointers are borrowed (usually from the mmap of the model
 * file, so they may be unaligned) or from a repacked copy made at load.
 *
 * Packed rows: row r of a quantized matrix starts at byte r*k*bits/8 of w and is an LSB-first
 * bit stream (element j at stream bits [j*bits, (j+1)*bits), bit b is bit b%8 of byte b/8), so
 * 3/5/6-bit elements straddle bytes and words. k*bits/8 is a whole number of uint32 words
 * because k is a multiple of group_size >= 32.
 *
 * Adding a format? Update quant_ref.c (the scalar spec), cpu/dispatch.c, every cpu/<isa>.c,
 * tests/test_quant.c, and this header.
 */
#ifndef LOAM_QUANT_H
#define LOAM_QUANT_H

#include "loam_internal.h"

typedef struct loam__qmat {
    loam_dtype dtype;   /* LOAM_DTYPE_U32 = affine quantized with fmt; else F32/F16/BF16 dense */
    loam_qformat fmt;   /* valid when quantized */
    const void *w;      /* quantized: [n, k*bits/32] u32 words; dense: [n, k] of dtype */
    const void *scales; /* [n, k/group_size] of fmt.scale_dtype (quantized only) */
    const void *biases; /* [n, k/group_size] of fmt.scale_dtype (quantized only) */
    int64_t n;          /* rows: output features (or vocabulary for an embedding) */
    int64_t k;          /* columns: input features (or embedding width) */
} loam__qmat;

/* LOAM_OK when W can be handed to the functions below: dtype U32 with a supported fmt and k a
 * multiple of group_size, or dense F32/F16/BF16; n, k > 0; the pointers it needs non-NULL.
 * Else LOAM_E_INVAL naming the field. Call it once when binding a weight (model load); the
 * functions below only LOAM_ASSERT it. */
loam_status loam__qmat_check(const loam__qmat *W, loam_err *err);

/* Scratch bytes loam__matmul needs for m rows of k inputs (activation quantization etc.).
 * Callers size their buffers once at session creation: no malloc on the per-token path.
 * The scratch may have any alignment (the matmul aligns inside it). */
size_t loam__matmul_scratch_bytes(int64_t m, int64_t k);

/* y [m, n] = x [m, k] · Wᵀ (no bias), quantized or dense, fastest kernel for this CPU, using
 * up to n_threads threads (<= 0: all). scratch holds loam__matmul_scratch_bytes(m, k) bytes.
 * Opens its own OpenMP parallel region: call it from outside one (inside one it runs on the
 * calling thread only, OpenMP nesting being off). x and y must not overlap. */
void loam__matmul(const loam__qmat *W, const float *x, int64_t m, float *y, int n_threads,
                  void *scratch);

/* The scalar reference twin of loam__matmul (quant_ref.c): float32 dequantize-and-dot, one
 * sequential float32 sum per output in order of k. */
void loam__matmul_ref(const loam__qmat *W, const float *x, int64_t m, float *y);

/* out [k] = row `row` of W in float32 (embedding lookup; dequantizes one row). */
void loam__qmat_row(const loam__qmat *W, int64_t row, float *out);

/* out [len] = elements [j0, j0+len) of row `row` of W in float32. Quantized: j0 and len are
 * multiples of fmt.group_size. Dequantization is fl(fl(scale·q) + bias) in float32. */
void loam__qmat_row_range(const loam__qmat *W, int64_t row, int64_t j0, int64_t len, float *out);

// ---- bit packing (FORMATS.md §1.3) ------------------------------------------------------------

/* q[0..len) = elements [j0, j0+len) of the packed row starting at byte `row`. Never reads a
 * byte outside the bits of those elements. */
void loam__qunpack(const void *row, int bits, int64_t j0, int64_t len, uint8_t *q);
/* Packs q[0..len) (each < 2^bits) as elements [0, len) of a row starting at byte `row`;
 * len*bits must be a multiple of 8 (it is a multiple of 32 for whole groups). */
void loam__qpack(const uint8_t *q, int64_t len, int bits, void *row);

/* The MLX CPU quantizer for one group of gs float32 values (FORMATS.md §1.2): q[gs] in
 * [0, 2^bits-1], *scale and *bias in float32 (before rounding to the storage dtype). */
void loam__quantize_group(const float *w, int gs, int bits, float *scale, float *bias, uint8_t *q);

#endif /* LOAM_QUANT_H */

/* quant.h: internal contract for weight matrices and the matmul every layer goes through.
 *
 * A loam__qmat is a view of one Linear/Embedding weight as stored on disk: either MLX affine
 * quantized (dtype U32, packed as FORMATS.md §1.3, scales/biases per group) or dense
 * (F32/F16/BF16, [n, k] row-major). Pointers are borrowed (usually from the mmap of the model
 * file, so they may be unaligned) or from a repacked copy made at load.
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

/* Scratch bytes loam__matmul needs for m rows of k inputs (activation quantization etc.).
 * Callers size their buffers once at session creation: no malloc on the per-token path. */
size_t loam__matmul_scratch_bytes(int64_t m, int64_t k);

/* y [m, n] = x [m, k] · Wᵀ (no bias), quantized or dense, fastest kernel for this CPU, using
 * up to n_threads threads (<= 0: all). scratch holds loam__matmul_scratch_bytes(m, k) bytes. */
void loam__matmul(const loam__qmat *W, const float *x, int64_t m, float *y, int n_threads,
                  void *scratch);

/* The scalar reference twin of loam__matmul (quant_ref.c): float32 dequantize-and-dot. */
void loam__matmul_ref(const loam__qmat *W, const float *x, int64_t m, float *y);

/* out [k] = row `row` of W in float32 (embedding lookup; dequantizes one row). */
void loam__qmat_row(const loam__qmat *W, int64_t row, float *out);

#endif /* LOAM_QUANT_H */

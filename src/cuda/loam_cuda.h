/* loam_cuda.h: the C interface of the CUDA backend (extern "C", plain C types only).
 *
 * Everything CUDA is reached through this header, so C files never see a CUDA type: device
 * pointers are void * (or typed C pointers into device memory) and streams are void *
 * (a cudaStream_t; NULL is the default stream). Every function returns a loam_status with the
 * CUDA error text in err (LOAM_E_CUDA), never exits and never prints.
 *
 * This first piece is the decode matmul for MLX affine 4-bit, group-64, bf16 scales/biases:
 *   y [m, n] = x [m, k] · Wᵀ, m = 1..8 (FORMATS.md §1.6, transpose = True)
 * in two launches: loam__cuda_quantize_x turns x into int8 blocks (once per x, shared by every
 * matrix that reads the same x: q/k/v, gate/up), loam__cuda_matmul_q4 reads each weight byte
 * once for all m rows. The kernels and their tiling are described in matmul_q4.cu; their lab
 * (reference, variants, validation, timing) is bench/bench_matmul_q4.cu.
 *
 * Adding a format or changing the quantized-activation layout? Update matmul_q4.cu, this header,
 * bench/bench_matmul_q4.cu (its host-side twin of the layout) and bench/NOTES.md.
 */
#ifndef LOAM_CUDA_H
#define LOAM_CUDA_H

/* The C library headers first, outside the extern "C" block: under C++ they declare overloads
 * that must keep C++ linkage; quant.h then finds them already included. */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "quant.h"

// ---- device memory ----------------------------------------------------------------------------

/* *dev = bytes of device memory (cudaMalloc, 256-byte aligned); bytes 0 gives NULL and LOAM_OK. */
loam_status loam__cuda_alloc(void **dev, size_t bytes, loam_err *err);
/* Frees memory from loam__cuda_alloc; NULL is a no-op. */
void loam__cuda_free(void *dev);
/* Synchronous copies host -> device and device -> host (the host side may be unaligned or
 * mapped). The load path will use pinned, overlapped copies; these are for tests and tools. */
loam_status loam__cuda_upload(void *dev, const void *host, size_t bytes, loam_err *err);
loam_status loam__cuda_download(void *host, const void *dev, size_t bytes, loam_err *err);
/* Waits for everything queued on stream (NULL: the default stream) and reports the first
 * asynchronous error of the work it waited for. */
loam_status loam__cuda_sync(void *stream, loam_err *err);
/* Synchronous device-to-device copy. */
loam_status loam__cuda_copy(void *dst, const void *src, size_t bytes, loam_err *err);

// ---- 4-bit group-64 matrices ------------------------------------------------------------------

/* A device copy of a loam__qmat in MLX's own layout (uploaded byte for byte). */
typedef struct loam__cuda_q4mat {
    void *w;      /* device [n, k/8] uint32 words, 8 nibbles each, LSB first (FORMATS.md §1.3) */
    void *scales; /* device [n, k/64] bf16 */
    void *biases; /* device [n, k/64] bf16 */
    int64_t n;    /* rows (output features) */
    int64_t k;    /* columns (input features), a multiple of 64 */
} loam__cuda_q4mat;

/* Uploads W (dtype U32, bits 4, group_size 64, scale dtype BF16; anything else is
 * LOAM_E_UNSUPPORTED, a malformed W is LOAM_E_INVAL) into fresh device memory. On success *out
 * owns three allocations, released with loam__cuda_q4mat_free; on failure *out is zeroed. */
loam_status loam__cuda_q4mat_upload(loam__cuda_q4mat *out, const loam__qmat *W, loam_err *err);
/* Frees the device memory of *W and zeroes it; a zeroed struct is a no-op. */
void loam__cuda_q4mat_free(loam__cuda_q4mat *W);

// ---- quantized activations --------------------------------------------------------------------

/* Largest m the q4 kernels take (decode batches; larger batches go to tensor-core kernels). */
#define LOAM_CUDA_Q4_MAX_M 8

/* Launch flags. LOAM_CUDA_LAUNCH_PDL: programmatic dependent launch. The kernel may start
 * while the previous kernel on the stream is finishing; it reads only its weights until that
 * kernel has completed and its writes are visible, then its inputs. Use it inside a captured
 * decode step where each launch follows the one producing its input. */
#define LOAM_CUDA_LAUNCH_PDL 1u

/* Bytes of device scratch loam__cuda_quantize_x writes for m rows of k inputs (k a multiple of
 * 64): m*k int8 values, then m*(k/32) pairs of float32. 0 when m or k is out of range. */
size_t loam__cuda_xq_bytes(int64_t m, int64_t k);

/* xq = x [m, k] (device float32) quantized to int8 in blocks of 32 consecutive inputs:
 * d = max|x| / 127 per block, q = round_half_even(x / d) (q = 0 when max|x| = 0), and each
 * block stores (d, d·Σq). Within every run of 8 inputs (one weight word) the int8 values are
 * stored in the order 0,2,4,6,1,3,5,7 so that a word's even and odd nibbles meet their inputs
 * without shuffles. xq is device memory of loam__cuda_xq_bytes(m, k) bytes, 16-byte aligned.
 * Asynchronous on stream; 1 <= m <= LOAM_CUDA_Q4_MAX_M, k a positive multiple of 64; flags:
 * LOAM_CUDA_LAUNCH_* (0 for a plain launch). */
loam_status loam__cuda_quantize_x(const float *x, int64_t m, int64_t k, void *xq, unsigned flags,
                                  void *stream, loam_err *err);

/* y [m, n] (device float32, row-major) = x · Wᵀ with x given as loam__cuda_quantize_x's xq for
 * the same m and k = W->k. Per group of 64 the kernel computes s·Σ q·x̂ + b·Σ x̂ in float32
 * (x̂ = d·q_x, the quantized inputs; integer dot products through dp4a), so it matches the
 * float32 reference on x̂ to float32 rounding, and the reference on x within the int8 error
 * of the activations (bench/NOTES.md). Asynchronous on stream; y must not overlap xq; flags:
 * LOAM_CUDA_LAUNCH_* (0 for a plain launch). */
loam_status loam__cuda_matmul_q4(const loam__cuda_q4mat *W, const void *xq, int64_t m, float *y,
                                 unsigned flags, void *stream, loam_err *err);

// ---- the forward pass's other stages (ops.cu) -------------------------------------------------
/* All asynchronous on stream, float32 device arrays, row-major; errors are launch errors. */

/* The residual add fused with the next RMSNorm: v = x[src_r] + res[src_r] (res may be NULL),
 * out[r] = w ⊙ v / sqrt(mean(v²) + eps) for r < rows, rows of n floats; src_r = rows_idx[r]
 * when rows_idx (device int32) is given, else r, and then x[r] = v is stored too. out may be
 * res (each element is read before it is overwritten, by the same thread), not with
 * rows_idx. */
loam_status loam__cuda_add_rmsnorm(float *x, const float *res, const int32_t *rows_idx,
                                   const float *w, float *out, int32_t rows, int32_t n, float eps,
                                   void *stream, loam_err *err);

/* Per row r: q/k RMSNorm of every head when q_norm/k_norm are given (head_dim weights), then
 * rotate-half RoPE with cos/sin [rows, head_dim/2]; the rotated k heads and the v heads are
 * written to the paged caches at block blk[r], slot slot[r]: cache layout (n_blocks, n_head_kv,
 * 32, head_dim) for this layer. q (n_head·hd), k and v (n_head_kv·hd each) are rows `ld` floats
 * apart (one fused q/k/v output); q and k are rotated in place. */
loam_status loam__cuda_qk_rope_store(float *q, float *k, const float *v, int64_t ld,
                                     const float *q_norm,
                                     const float *k_norm, const float *cos_, const float *sin_,
                                     const int32_t *blk, const int32_t *slot, float *k_cache,
                                     float *v_cache, int32_t rows, int32_t n_head,
                                     int32_t n_head_kv, int32_t head_dim, float eps, void *stream,
                                     loam_err *err);

/* Causal GQA attention of each row over keys 0..pos[r] of its sequence: tables [n_seq,
 * table_stride] block ids, row_seq[r] its sequence. q rows ldq floats apart; out [rows,
 * n_head·hd]. head_dim <= 256. */
loam_status loam__cuda_attention(const float *q, int64_t ldq, const float *k_cache, const float *v_cache,
                                 const int32_t *tables, int32_t table_stride,
                                 const int32_t *row_seq, const int32_t *pos, float *out,
                                 int32_t rows, int32_t n_head, int32_t n_head_kv,
                                 int32_t head_dim, float scale, void *stream, loam_err *err);

/* Device memory bandwidth in bytes/s: best of 5 device-to-device copies of 1 GiB, bytes read
 * plus bytes written over the time (the ceiling `loam bench` reports against); and the
 * device's name (buf of cap bytes). */
loam_status loam__cuda_copy_bandwidth(double *bytes_per_s, loam_err *err);
loam_status loam__cuda_device_name(char *buf, size_t cap, loam_err *err);

/* A stream of its own (blocking: it orders with the legacy default stream, which the
 * synchronous copies use); and CUDA graphs of the work queued on it: capture_begin starts
 * recording (this thread's calls only), capture_end stops and instantiates the graph into
 * *exec (on failure the recording is dropped and *exec is NULL), graph_launch replays it. */
loam_status loam__cuda_stream_new(void **stream, loam_err *err);
void loam__cuda_stream_free(void *stream);
loam_status loam__cuda_capture_begin(void *stream, loam_err *err);
loam_status loam__cuda_capture_end(void *stream, void **exec, loam_err *err);
loam_status loam__cuda_graph_launch(void *exec, void *stream, loam_err *err);
void loam__cuda_graph_free(void *exec);

/* x += y (n floats); out[r, i] = silu(g[r, i])·u[r, i] for rows × n, g and u rows ld floats
 * apart, out dense; y[r, o] += b[o] for rows × n, y rows ld floats apart. */
loam_status loam__cuda_add(float *x, const float *y, int64_t n, void *stream, loam_err *err);
loam_status loam__cuda_silu_mul(const float *g, const float *u, int64_t ld, float *out,
                                int32_t rows, int32_t n, void *stream, loam_err *err);
loam_status loam__cuda_add_bias(float *y, int64_t ld, const float *b, int32_t rows, int32_t n,
                                void *stream, loam_err *err);

/* Up to 3 LoRA modules that read the same input x (q/k/v, gate/up), run together. */
#define LOAM_CUDA_LORA_SET 3
typedef struct loam__cuda_lora_set {
    int32_t n;
    const float *at[LOAM_CUDA_LORA_SET];   /* (r, in): A transposed, so a rank row is contiguous */
    const float *b[LOAM_CUDA_LORA_SET];    /* (r, out) */
    const float *bias[LOAM_CUDA_LORA_SET]; /* (out) PEFT lora_B bias, or NULL */
    const float *dora[LOAM_CUDA_LORA_SET]; /* (out) DoRA factor, or NULL */
    float scale[LOAM_CUDA_LORA_SET];
    int32_t r[LOAM_CUDA_LORA_SET], out[LOAM_CUDA_LORA_SET];
    float *y[LOAM_CUDA_LORA_SET];          /* (m, out): the rows of this call, ld[i] apart */
    int64_t ld[LOAM_CUDA_LORA_SET];
} loam__cuda_lora_set;

/* LoRA on rows [0, m) of x [m, in] for every module i of set (FORMATS.md §3):
 * t_i = scale_i·(x · A_i), then y_i += t_i · B_i (+ scale_i·bias_i), then y_i *= dora_i. Two
 * launches whatever set->n; t is scratch of m·Σr floats. */
loam_status loam__cuda_lora(const float *x, int32_t m, int32_t in, const loam__cuda_lora_set *set,
                            float *t, void *stream, loam_err *err);

#ifdef __cplusplus
}
#endif

#endif /* LOAM_CUDA_H */

/* matmul_q4.cu: device buffers, qmat upload, and the decode matmul for MLX affine 4-bit,
 * group-64 weights with bf16 scales and biases: y [m, n] = x [m, k] · Wᵀ for m = 1..8.
 *
 * Decode is a bandwidth problem (DESIGN.md decision 4): a step reads every weight byte once and
 * does ~1 multiply-add per weight per batch row, far below what the SMs can do. So the kernel
 * is built around the weight stream and keeps everything else in L1 and registers.
 *
 * Weight layout (MLX, uploaded unchanged; FORMATS.md §1.3): row r is k/8 uint32 words, word w
 * holds inputs 8w..8w+7 as nibbles, LSB first; scales and biases are bf16 [n, k/64]. A row is
 * k/2 bytes, a multiple of 32, so a row is a whole number of 16-byte chunks and each chunk (32
 * inputs, 4 words) lies in one group of 64.
 *
 * Algorithm. Per group, Σ (s·q + b)·x = s·Σ q·x + b·Σ x. The activations are quantized once
 * per call (loam__cuda_quantize_x) to int8 in blocks of 32, x̂ = d·q_x, and each block keeps
 * (d, d·Σ q_x). A chunk's contribution to y[a, r] is then
 *     s·d·dp(q_w, q_x) + b·(d·Σ q_x)
 * where dp is an exact integer dot product of 32 nibbles with 32 int8 values: 8 dp4a. Using
 * Σ x̂ (not Σ x) for the bias term makes the result exactly x̂ · Wᵀ up to float32 rounding,
 * whose error against x · Wᵀ is Σ w·(x̂ − x): unbiased, relative size d/(√12·rms x)
 * (bench/NOTES.md). There is one int->float conversion per 32 weights per row of x, none per
 * weight.
 *
 * Nibble order. A word's even nibbles are `w & 0x0F0F0F0F` (bytes: inputs 0, 2, 4, 6) and its
 * odd nibbles `(w >> 4) & 0x0F0F0F0F` (inputs 1, 3, 5, 7). quantize_x stores each run of 8
 * int8 inputs in the order 0,2,4,6,1,3,5,7, so both halves meet their inputs as plain 32-bit
 * words: 3 integer ops per weight word to unpack, shared by all m rows of x.
 *
 * Tiling (matmul_q4_dp4a_kernel<M, R, U>). A block is 4 warps; a warp owns R consecutive rows
 * of W and all M rows of x. Lane l reads chunks l, l+32, l+64, ... of each of its R rows, U of
 * them per iteration: a warp load is 512 contiguous bytes of one row (16 bytes per lane,
 * coalesced), and the next iteration's R·U chunks are loaded before this iteration's are used,
 * so R·U 16-byte loads per lane are in flight while it computes. The x chunk (32 bytes per x
 * row) and its (d, d·Σq) are read through L1 once per chunk and reused for the R weight rows.
 * Each lane keeps M·R float32 partial sums; a butterfly of shuffles adds them across the warp
 * at the end and lane (a·R + r) % 32 stores y[a, r].
 * Rows past n (the last warp when R does not divide n) re-read row n-1 and store nothing.
 * Every weight byte is read exactly once per call, for all M rows of x.
 *
 * Bytes in flight. At m >= 4 the register kernel runs out of registers before it has enough
 * loads in flight to cover DRAM latency (2 blocks per SM at m = 8, 16 KB in flight per SM:
 * bench/NOTES.md). matmul_q4_dp4a_async_kernel<M, R, S> has the same tiling but stages the
 * weight chunks through shared memory with cp.async (16 bytes, L1 bypassed), S iterations
 * ahead: each thread owns its S·R slots (consecutive threads, consecutive 16 bytes: no bank
 * conflicts, no barriers), so the bytes in flight no longer cost registers. Scales and biases
 * (1/8 of the bytes) travel in a register ring of the same depth.
 *
 * Programmatic dependent launch (LOAM_CUDA_LAUNCH_PDL). The weights do not depend on the
 * previous kernel, x does: both kernels issue their first weight loads, then wait
 * (griddepcontrol.wait) for the previous grid before reading x; they let the next grid launch
 * (griddepcontrol.launch_dependents) once their main loop is done, so its prologue overlaps
 * this grid's tail. quantize_x waits before writing xq (the previous matmul may still read it)
 * and lets the next grid launch at once.
 *
 * Variants and their measurements: bench/bench_matmul_q4.cu, bench/NOTES.md, bench/RESULTS.md.
 */
#include "cuda/common.cuh"

// ---- device memory ----------------------------------------------------------------------------

loam_status loam__cuda_alloc(void **dev, size_t bytes, loam_err *err) {
    *dev = NULL;
    if (bytes == 0) return LOAM_OK;
    cudaError_t e = cudaMalloc(dev, bytes);
    if (e != cudaSuccess) {
        *dev = NULL;
        return loam__fail(err, e == cudaErrorMemoryAllocation ? LOAM_E_NOMEM : LOAM_E_CUDA,
                          "cuda: allocating %zu bytes: %s", bytes, cudaGetErrorString(e));
    }
    return LOAM_OK;
}

void loam__cuda_free(void *dev) {
    if (dev) cudaFree(dev);
}

loam_status loam__cuda_upload(void *dev, const void *host, size_t bytes, loam_err *err) {
    LOAM_CUDA_TRY(cudaMemcpy(dev, host, bytes, cudaMemcpyHostToDevice));
    return LOAM_OK;
}

loam_status loam__cuda_download(void *host, const void *dev, size_t bytes, loam_err *err) {
    LOAM_CUDA_TRY(cudaMemcpy(host, dev, bytes, cudaMemcpyDeviceToHost));
    return LOAM_OK;
}

loam_status loam__cuda_sync(void *stream, loam_err *err) {
    LOAM_CUDA_TRY(cudaStreamSynchronize((cudaStream_t)stream));
    LOAM_CUDA_TRY(cudaGetLastError());
    return LOAM_OK;
}

// ---- upload -----------------------------------------------------------------------------------

void loam__cuda_q4mat_free(loam__cuda_q4mat *W) {
    if (!W) return;
    loam__cuda_free(W->w);
    loam__cuda_free(W->scales);
    loam__cuda_free(W->biases);
    memset(W, 0, sizeof *W);
}

loam_status loam__cuda_q4mat_upload(loam__cuda_q4mat *out, const loam__qmat *W, loam_err *err) {
    memset(out, 0, sizeof *out);
    loam_status s = loam__qmat_check(W, err);
    if (s != LOAM_OK) return s;
    if (W->dtype != LOAM_DTYPE_U32 || W->fmt.bits != 4 || W->fmt.group_size != 64 ||
        W->fmt.scale_dtype != LOAM_DTYPE_BF16)
        return loam__fail(err, LOAM_E_UNSUPPORTED,
                          "cuda: matmul_q4 takes 4-bit, group-64 weights with bf16 scales "
                          "(got %s, bits %d, group %d)",
                          loam_dtype_name(W->dtype) ? loam_dtype_name(W->dtype) : "(invalid)",
                          (int)W->fmt.bits, (int)W->fmt.group_size);
    const uint64_t w_bytes = loam_qweight_bytes(W->fmt, W->n, W->k);
    const uint64_t s_bytes = loam_qscale_bytes(W->fmt, W->n, W->k);
    if (w_bytes == 0 || s_bytes == 0 || w_bytes > SIZE_MAX)
        return loam__fail(err, LOAM_E_INVAL, "cuda: [%lld, %lld] overflows", (long long)W->n,
                          (long long)W->k);
    out->n = W->n;
    out->k = W->k;
    if ((s = loam__cuda_alloc(&out->w, (size_t)w_bytes, err)) != LOAM_OK ||
        (s = loam__cuda_alloc(&out->scales, (size_t)s_bytes, err)) != LOAM_OK ||
        (s = loam__cuda_alloc(&out->biases, (size_t)s_bytes, err)) != LOAM_OK ||
        (s = loam__cuda_upload(out->w, W->w, (size_t)w_bytes, err)) != LOAM_OK ||
        (s = loam__cuda_upload(out->scales, W->scales, (size_t)s_bytes, err)) != LOAM_OK ||
        (s = loam__cuda_upload(out->biases, W->biases, (size_t)s_bytes, err)) != LOAM_OK)
        goto fail;
    return LOAM_OK;
fail:
    loam__cuda_q4mat_free(out);
    return s;
}

// ---- activations: int8 blocks of 32 ----------------------------------------------------------

size_t loam__cuda_xq_bytes(int64_t m, int64_t k) {
    if (m < 1 || m > LOAM_CUDA_Q4_MAX_M || k <= 0 || k % 64 != 0 || k > ((int64_t)1 << 40))
        return 0;
    /* m*k int8, then m*(k/32) float2: m*k is a multiple of 64, so the float2 part is aligned */
    return (size_t)m * (size_t)k + (size_t)m * (size_t)(k / 32) * 8u;
}

/* One warp per block of 32 consecutive inputs of the flattened [m, k] array (k is a multiple of
 * 32, so blocks never straddle rows and block index = row * k/32 + block of the row). */
static __global__ void quantize_x_q8_32_kernel(const float *__restrict__ x, int8_t *__restrict__ xq,
                                               float2 *__restrict__ xd, int64_t n_blocks) {
    const int lane = threadIdx.x & 31;
    const int64_t blk = (int64_t)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    loam__grid_dependency_wait();
    loam__launch_dependents();
    if (blk >= n_blocks) return; /* the whole warp leaves together */
    const float v = x[blk * 32 + lane];
    float amax = fabsf(v);
    for (int o = 16; o > 0; o >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
    /* fmaxf drops NaN: a block holding NaN or Inf gets d = NaN so the outputs it touches are NaN */
    const bool bad = __any_sync(0xffffffffu, !isfinite(v));
    const float id = amax > 0.0f ? 127.0f / amax : 0.0f;
    int q = bad ? 0 : __float2int_rn(v * id);
    q = max(-127, min(127, q));
    const int sum = __reduce_add_sync(0xffffffffu, q);
    const int pos = (lane & ~7) | ((lane & 1) << 2) | ((lane & 7) >> 1);
    xq[blk * 32 + pos] = (int8_t)q;
    if (lane == 0) {
        const float d = bad ? __int_as_float(0x7fc00000) : amax / 127.0f;
        xd[blk] = make_float2(d, d * (float)sum);
    }
}

/* cudaLaunchKernelEx configuration with programmatic stream serialization when flags ask. */
typedef struct launch_cfg {
    cudaLaunchConfig_t cfg;
    cudaLaunchAttribute attr[1];
} launch_cfg;

static void launch_cfg_init(launch_cfg *lc, int64_t grid, int block, size_t smem, unsigned flags,
                            cudaStream_t stream) {
    *lc = launch_cfg{};
    lc->cfg.gridDim = dim3((unsigned)grid, 1, 1);
    lc->cfg.blockDim = dim3((unsigned)block, 1, 1);
    lc->cfg.dynamicSmemBytes = smem;
    lc->cfg.stream = stream;
    lc->attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    lc->attr[0].val.programmaticStreamSerializationAllowed = 1;
    lc->cfg.attrs = lc->attr;
    lc->cfg.numAttrs = (flags & LOAM_CUDA_LAUNCH_PDL) ? 1 : 0;
}

loam_status loam__cuda_quantize_x(const float *x, int64_t m, int64_t k, void *xq, unsigned flags,
                                  void *stream, loam_err *err) {
    if (loam__cuda_xq_bytes(m, k) == 0)
        return loam__fail(err, LOAM_E_INVAL, "cuda: quantize_x: m %lld (1..%d), k %lld (a multiple "
                          "of 64)", (long long)m, LOAM_CUDA_Q4_MAX_M, (long long)k);
    if (!x || !xq || ((uintptr_t)xq & 15u) != 0)
        return loam__fail(err, LOAM_E_INVAL, "cuda: quantize_x: NULL or unaligned buffer");
    const int64_t n_blocks = m * (k / 32);
    const int warps_per_block = 8;
    const int64_t grid = (n_blocks + warps_per_block - 1) / warps_per_block;
    int8_t *q = (int8_t *)xq;
    float2 *d = (float2 *)(q + m * k);
    launch_cfg lc;
    launch_cfg_init(&lc, grid, 32 * warps_per_block, 0, flags, (cudaStream_t)stream);
    LOAM_CUDA_TRY(cudaLaunchKernelEx(&lc.cfg, quantize_x_q8_32_kernel, x, q, d, n_blocks));
    return LOAM_OK;
}

// ---- the matmul -------------------------------------------------------------------------------

#define LOAM_Q4_WARPS 4 /* warps per block */

/* w: [n, k/32] 16-byte chunks (4 packed words = 32 inputs each); scales, biases: [n, k/64] bf16
 * bits; xq: [M, k/16] 16-byte pieces of the reordered int8 inputs; xd: [M, k/32] (d, d·Σq);
 * y: [M, n]. A warp owns R rows; lane l takes chunks l, l+32, l+64, ... of each, U of them per
 * iteration; the next iteration's R·U chunks are loaded before this one's are used. See the
 * file comment for the rest of the tiling. */
template <int M, int R, int U>
static __global__ void __launch_bounds__(32 * LOAM_Q4_WARPS, 1)
matmul_q4_dp4a_kernel(const uint4 *__restrict__ w, const unsigned short *__restrict__ scales,
                      const unsigned short *__restrict__ biases, const uint4 *__restrict__ xq,
                      const float2 *__restrict__ xd, float *__restrict__ y, int64_t n, int64_t k) {
    const int lane = threadIdx.x & 31;
    const int64_t row0 = ((int64_t)blockIdx.x * LOAM_Q4_WARPS + (threadIdx.x >> 5)) * R;
    if (row0 >= n) return; /* the whole warp leaves together */
    const int64_t nc = k / 32; /* chunks of 32 inputs per row */
    const int64_t ng = k / 64; /* groups per row */

    /* chunk `lane` of the warp's rows (clamped to n-1) and its scale and bias */
    const uint4 *wp[R];
    const unsigned short *sp[R], *bp[R];
#pragma unroll
    for (int r = 0; r < R; r++) {
        const int64_t row = row0 + r < n ? row0 + r : n - 1;
        wp[r] = w + row * nc + lane;
        sp[r] = scales + row * ng + (lane >> 1);
        bp[r] = biases + row * ng + (lane >> 1);
    }

    float acc[M][R];
#pragma unroll
    for (int a = 0; a < M; a++)
#pragma unroll
        for (int r = 0; r < R; r++) acc[a][r] = 0.0f;

    /* the chunks of the next iteration: chunk lane + 32·(U·it + u) */
    uint4 wn[R][U] = {};
    unsigned short sn[R][U] = {}, bn[R][U] = {};
#pragma unroll
    for (int u = 0; u < U; u++)
        if (lane + 32 * u < nc) {
#pragma unroll
            for (int r = 0; r < R; r++) {
                wn[r][u] = loam__ld_stream_u4(wp[r] + 32 * u);
                sn[r][u] = __ldg(sp[r] + 16 * u);
                bn[r][u] = __ldg(bp[r] + 16 * u);
            }
        }
    loam__grid_dependency_wait(); /* x is the previous kernel's output */
    for (int64_t c = lane, it = 0; c < nc; c += 32 * U, it++) {
        unsigned lo[R][U][4], hi[R][U][4];
        float s[R][U], b[R][U];
#pragma unroll
        for (int r = 0; r < R; r++)
#pragma unroll
            for (int u = 0; u < U; u++) {
                lo[r][u][0] = wn[r][u].x & 0x0F0F0F0Fu;
                hi[r][u][0] = (wn[r][u].x >> 4) & 0x0F0F0F0Fu;
                lo[r][u][1] = wn[r][u].y & 0x0F0F0F0Fu;
                hi[r][u][1] = (wn[r][u].y >> 4) & 0x0F0F0F0Fu;
                lo[r][u][2] = wn[r][u].z & 0x0F0F0F0Fu;
                hi[r][u][2] = (wn[r][u].z >> 4) & 0x0F0F0F0Fu;
                lo[r][u][3] = wn[r][u].w & 0x0F0F0F0Fu;
                hi[r][u][3] = (wn[r][u].w >> 4) & 0x0F0F0F0Fu;
                s[r][u] = loam__bf16_bits_to_f32(sn[r][u]);
                b[r][u] = loam__bf16_bits_to_f32(bn[r][u]);
            }
        const int64_t next = (it + 1) * (32 * U); /* chunk offset of the next iteration */
#pragma unroll
        for (int u = 0; u < U; u++)
            if (c + 32 * (U + u) < nc) {
#pragma unroll
                for (int r = 0; r < R; r++) {
                    wn[r][u] = loam__ld_stream_u4(wp[r] + next + 32 * u);
                    sn[r][u] = __ldg(sp[r] + next / 2 + 16 * u);
                    bn[r][u] = __ldg(bp[r] + next / 2 + 16 * u);
                }
            }
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int64_t cu = c + 32 * u;
            if (cu >= nc) break;
#pragma unroll
            for (int a = 0; a < M; a++) {
                const uint4 x0 = __ldg(xq + a * (2 * nc) + 2 * cu);
                const uint4 x1 = __ldg(xq + a * (2 * nc) + 2 * cu + 1);
                const float2 dd = __ldg(xd + a * nc + cu);
#pragma unroll
                for (int r = 0; r < R; r++) {
                    int t = __dp4a((int)lo[r][u][0], (int)x0.x, 0);
                    t = __dp4a((int)hi[r][u][0], (int)x0.y, t);
                    t = __dp4a((int)lo[r][u][1], (int)x0.z, t);
                    t = __dp4a((int)hi[r][u][1], (int)x0.w, t);
                    t = __dp4a((int)lo[r][u][2], (int)x1.x, t);
                    t = __dp4a((int)hi[r][u][2], (int)x1.y, t);
                    t = __dp4a((int)lo[r][u][3], (int)x1.z, t);
                    t = __dp4a((int)hi[r][u][3], (int)x1.w, t);
                    acc[a][r] = fmaf(s[r][u] * dd.x, (float)t, fmaf(b[r][u], dd.y, acc[a][r]));
                }
            }
        }
    }
    loam__launch_dependents();

#pragma unroll
    for (int a = 0; a < M; a++)
#pragma unroll
        for (int r = 0; r < R; r++) {
            float v = acc[a][r];
#pragma unroll
            for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
            if (lane == ((a * R + r) & 31) && row0 + r < n) y[(int64_t)a * n + row0 + r] = v;
        }
}

/* The same tiling with the weight chunks staged through shared memory by cp.async, S
 * iterations ahead (file comment, "Bytes in flight"). Dynamic shared memory: S·R·128 16-byte
 * slots, slot (st, r) of thread t at index (st·R + r)·128 + t. */
template <int M, int R, int S>
static __global__ void __launch_bounds__(32 * LOAM_Q4_WARPS, 1)
matmul_q4_dp4a_async_kernel(const uint4 *__restrict__ w, const unsigned short *__restrict__ scales,
                            const unsigned short *__restrict__ biases,
                            const uint4 *__restrict__ xq, const float2 *__restrict__ xd,
                            float *__restrict__ y, int64_t n, int64_t k) {
    extern __shared__ uint4 loam__q4_slots[];
    const int lane = threadIdx.x & 31;
    const int64_t row0 = ((int64_t)blockIdx.x * LOAM_Q4_WARPS + (threadIdx.x >> 5)) * R;
    if (row0 >= n) return; /* the whole warp leaves together */
    const int64_t nc = k / 32, ng = k / 64;
    const uint4 *wp[R];
    const unsigned short *sp[R], *bp[R];
#pragma unroll
    for (int r = 0; r < R; r++) {
        const int64_t row = row0 + r < n ? row0 + r : n - 1;
        wp[r] = w + row * nc + lane;
        sp[r] = scales + row * ng + (lane >> 1);
        bp[r] = biases + row * ng + (lane >> 1);
    }
    const unsigned slot0 = (unsigned)__cvta_generic_to_shared(loam__q4_slots + threadIdx.x);
    float acc[M][R];
#pragma unroll
    for (int a = 0; a < M; a++)
#pragma unroll
        for (int r = 0; r < R; r++) acc[a][r] = 0.0f;
    unsigned sb[S][R]; /* scale | bias << 16 of iteration j in sb[j % S] */

    /* iteration j of this lane is chunk lane + 32·j; one cp.async group per iteration, empty
     * past the end, so "S-1 groups pending" always means "iteration j has landed" */
#pragma unroll
    for (int st = 0; st < S - 1; st++) {
        if (lane + 32 * st < nc) {
#pragma unroll
            for (int r = 0; r < R; r++) {
                loam__cp_async16(slot0 + (unsigned)((st * R + r) * 128 * 16), wp[r] + 32 * st);
                sb[st][r] = (unsigned)__ldg(sp[r] + 16 * st) |
                            ((unsigned)__ldg(bp[r] + 16 * st) << 16);
            }
        }
        loam__cp_async_commit();
    }
    loam__grid_dependency_wait(); /* x is the previous kernel's output */
    for (int64_t j0 = 0; lane + 32 * j0 < nc; j0 += S) {
#pragma unroll
        for (int st = 0; st < S; st++) {
            const int64_t j = j0 + st, c = lane + 32 * j;
            if (c >= nc) break;
            const int ld = (st + S - 1) % S; /* slot of iteration j + S - 1 */
            if (c + 32 * (S - 1) < nc) {
#pragma unroll
                for (int r = 0; r < R; r++) {
                    loam__cp_async16(slot0 + (unsigned)((ld * R + r) * 128 * 16),
                                     wp[r] + 32 * (j + S - 1));
                    sb[ld][r] = (unsigned)__ldg(sp[r] + 16 * (j + S - 1)) |
                                ((unsigned)__ldg(bp[r] + 16 * (j + S - 1)) << 16);
                }
            }
            loam__cp_async_commit();
            loam__cp_async_wait<S - 1>();
            unsigned lo[R][4], hi[R][4];
            float s[R], b[R];
#pragma unroll
            for (int r = 0; r < R; r++) {
                const uint4 wv = loam__q4_slots[(st * R + r) * 128 + threadIdx.x];
                lo[r][0] = wv.x & 0x0F0F0F0Fu;
                hi[r][0] = (wv.x >> 4) & 0x0F0F0F0Fu;
                lo[r][1] = wv.y & 0x0F0F0F0Fu;
                hi[r][1] = (wv.y >> 4) & 0x0F0F0F0Fu;
                lo[r][2] = wv.z & 0x0F0F0F0Fu;
                hi[r][2] = (wv.z >> 4) & 0x0F0F0F0Fu;
                lo[r][3] = wv.w & 0x0F0F0F0Fu;
                hi[r][3] = (wv.w >> 4) & 0x0F0F0F0Fu;
                s[r] = loam__bf16_bits_to_f32((unsigned short)(sb[st][r] & 0xffffu));
                b[r] = loam__bf16_bits_to_f32((unsigned short)(sb[st][r] >> 16));
            }
#pragma unroll
            for (int a = 0; a < M; a++) {
                const uint4 x0 = __ldg(xq + a * (2 * nc) + 2 * c);
                const uint4 x1 = __ldg(xq + a * (2 * nc) + 2 * c + 1);
                const float2 dd = __ldg(xd + a * nc + c);
#pragma unroll
                for (int r = 0; r < R; r++) {
                    int t = __dp4a((int)lo[r][0], (int)x0.x, 0);
                    t = __dp4a((int)hi[r][0], (int)x0.y, t);
                    t = __dp4a((int)lo[r][1], (int)x0.z, t);
                    t = __dp4a((int)hi[r][1], (int)x0.w, t);
                    t = __dp4a((int)lo[r][2], (int)x1.x, t);
                    t = __dp4a((int)hi[r][2], (int)x1.y, t);
                    t = __dp4a((int)lo[r][3], (int)x1.z, t);
                    t = __dp4a((int)hi[r][3], (int)x1.w, t);
                    acc[a][r] = fmaf(s[r] * dd.x, (float)t, fmaf(b[r], dd.y, acc[a][r]));
                }
            }
        }
    }
    loam__cp_async_wait<0>(); /* nothing may still be writing this block's shared memory */
    loam__launch_dependents();

#pragma unroll
    for (int a = 0; a < M; a++)
#pragma unroll
        for (int r = 0; r < R; r++) {
            float v = acc[a][r];
#pragma unroll
            for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
            if (lane == ((a * R + r) & 31) && row0 + r < n) y[(int64_t)a * n + row0 + r] = v;
        }
}

/* Launches the register kernel <M, R, U> (depth = U) or, with async, the shared-memory kernel
 * <M, R, S> (depth = S). */
template <int M, int R, int D, bool ASYNC>
static cudaError_t launch_matmul_q4(const loam__cuda_q4mat *W, const void *xq, float *y,
                                    unsigned flags, cudaStream_t stream) {
    const int64_t warps = (W->n + R - 1) / R;
    const int64_t grid = (warps + LOAM_Q4_WARPS - 1) / LOAM_Q4_WARPS;
    const uint4 *w = (const uint4 *)W->w;
    const unsigned short *s = (const unsigned short *)W->scales;
    const unsigned short *b = (const unsigned short *)W->biases;
    const int8_t *q = (const int8_t *)xq;
    const uint4 *xv = (const uint4 *)q;
    const float2 *xd = (const float2 *)(q + (int64_t)M * W->k);
    const int64_t n = W->n, k = W->k;
    launch_cfg lc;
    if constexpr (ASYNC) {
        launch_cfg_init(&lc, grid, 32 * LOAM_Q4_WARPS, (size_t)D * R * 32 * LOAM_Q4_WARPS * 16,
                        flags, stream);
        return cudaLaunchKernelEx(&lc.cfg, matmul_q4_dp4a_async_kernel<M, R, D>, w, s, b, xv, xd,
                                  y, n, k);
    } else {
        launch_cfg_init(&lc, grid, 32 * LOAM_Q4_WARPS, 0, flags, stream);
        return cudaLaunchKernelEx(&lc.cfg, matmul_q4_dp4a_kernel<M, R, D>, w, s, b, xv, xd, y, n,
                                  k);
    }
}

/* The kernel and tile per m and n, from bench/bench_matmul_q4.cu on an H100 (bench/NOTES.md,
 * run 2): m <= 2: registers, R = 2, U = 2 (v5); m >= 3 with many rows (the vocabulary head):
 * cp.async, R = 4, S = 4 (v7), whose deeper pipeline pays off over many waves of blocks;
 * otherwise registers, R = 2, U = 1 for m <= 4 (v2) and R = 4, U = 1 beyond (v3). */
#define LOAM_Q4_ASYNC_MIN_N 32768

template <int M>
static cudaError_t launch_matmul_q4_m(const loam__cuda_q4mat *W, const void *xq, float *y,
                                      unsigned flags, cudaStream_t stream) {
    if constexpr (M <= 2) {
        return launch_matmul_q4<M, 2, 2, false>(W, xq, y, flags, stream);
    } else {
        if (W->n >= LOAM_Q4_ASYNC_MIN_N)
            return launch_matmul_q4<M, 4, 4, true>(W, xq, y, flags, stream);
        if constexpr (M <= 4) return launch_matmul_q4<M, 2, 1, false>(W, xq, y, flags, stream);
        else return launch_matmul_q4<M, 4, 1, false>(W, xq, y, flags, stream);
    }
}

loam_status loam__cuda_matmul_q4(const loam__cuda_q4mat *W, const void *xq, int64_t m, float *y,
                                 unsigned flags, void *stream, loam_err *err) {
    if (!W || !W->w || !W->scales || !W->biases || !xq || !y)
        return loam__fail(err, LOAM_E_INVAL, "cuda: matmul_q4: NULL argument");
    if (loam__cuda_xq_bytes(m, W->k) == 0 || W->n <= 0 || W->n > (int64_t)INT32_MAX)
        return loam__fail(err, LOAM_E_INVAL, "cuda: matmul_q4: m %lld (1..%d), W [%lld, %lld]",
                          (long long)m, LOAM_CUDA_Q4_MAX_M, (long long)W->n, (long long)W->k);
    if (((uintptr_t)xq & 15u) != 0 || ((uintptr_t)W->w & 15u) != 0)
        return loam__fail(err, LOAM_E_INVAL, "cuda: matmul_q4: buffers not 16-byte aligned");
    cudaStream_t st = (cudaStream_t)stream;
    cudaError_t e;
    switch (m) {
    case 1: e = launch_matmul_q4_m<1>(W, xq, y, flags, st); break;
    case 2: e = launch_matmul_q4_m<2>(W, xq, y, flags, st); break;
    case 3: e = launch_matmul_q4_m<3>(W, xq, y, flags, st); break;
    case 4: e = launch_matmul_q4_m<4>(W, xq, y, flags, st); break;
    case 5: e = launch_matmul_q4_m<5>(W, xq, y, flags, st); break;
    case 6: e = launch_matmul_q4_m<6>(W, xq, y, flags, st); break;
    case 7: e = launch_matmul_q4_m<7>(W, xq, y, flags, st); break;
    default: e = launch_matmul_q4_m<8>(W, xq, y, flags, st); break;
    }
    LOAM_CUDA_TRY(e);
    return LOAM_OK;
}

/* bench_matmul_q4.cu: the CUDA 4-bit matmul kernel lab (llm.c dev/cuda style): reference,
 * numbered variants, validation of every variant on fresh random data, then timing.
 *
 *   make cuda && build/bench/bench_matmul_q4 [--seed N]     (on a machine with an sm_90 GPU)
 *
 * The operation: y [m, n] = x [m, k] · Wᵀ, W MLX affine 4-bit, group 64, bf16 scales/biases
 * (src/cuda/matmul_q4.cu has the algorithm). This file includes that .cu, so it can launch the
 * library kernel with tile sizes other than the library's choice.
 *
 * Reference: loam__matmul_ref (src/quant_ref.c, the scalar spec) on the CPU for small shapes,
 * and ref = matmul_q4_ref_kernel, the obvious float32 dequantize-and-dot on the GPU (one warp
 * per row), for the Qwen3-8B shapes, where the CPU would take minutes. Part 1 checks the GPU
 * reference against the CPU one.
 *
 * Variants:
 *   v1  dp4a, one row per warp, plain 16-byte __ldg loads, no prefetch (the simplest version)
 *   v2  the library kernel, R = 2 rows per warp, U = 1 chunk per lane per iteration (streaming
 *       loads, the next iteration's chunks loaded before this one's are used)
 *   v3  the library kernel, R = 4, U = 1
 *   v4  fp16: x rounded to fp16, nibbles turned into fp16 by the 0x6400 exponent trick (no
 *       int->float conversion), 16 HFMA2 per 32 weights into a half2, then float32 per chunk;
 *       tiled as v3
 *   v5  the library kernel, R = 2, U = 2
 *   (v6, R = 1, U = 4, was dropped after the first run: bench/NOTES.md)
 *   v7  the library's async kernel (cp.async through shared memory), R = 4, S = 4 stages
 *   v8  the library's async kernel, R = 2, S = 8
 *   lib loam__cuda_matmul_q4, plain launch (v5, v2, v3 or v7 by m and n: launch_matmul_q4_m)
 *   pdl quantize_x + loam__cuda_matmul_q4, both launched with LOAM_CUDA_LAUNCH_PDL, so each
 *       matmul's weight prologue overlaps the quantize_x before it (and that one the previous
 *       matmul's tail): a decode step's launch pattern
 *
 * Validation (relative L2 error ‖y − y_ref‖ / ‖y_ref‖, NaN fails; y is poisoned with NaN
 * before every run so an unwritten output fails):
 *   gpu ref (x) vs loam__matmul_ref (x)                         <= 1e-5  (float32 summation order)
 *   v1, v2, v3, v5, v6, lib vs ref (x̂), x̂ = int8-quantized x   <= 1e-5  (the same function)
 *   every variant vs ref (x), where m·n >= 1000                 <= 1e-2  (activation rounding)
 *   quantize_x against its host twin: every int8 and every d    exact
 * The 1e-2: int8 blocks of 32 with d = max|x|/127 round each input by at most d/2, an error of
 * rms d/√12, independent of the weights, so ‖Δy‖/‖y‖ ≈ d/(√12·rms x)
 * = max|x|/(127·√12·rms x).
 * For Gaussian x a block of 32 has E max|x| ≈ 2.1σ, so the expected error is ≈ 4.8e-3; the
 * bound leaves a factor 2. fp16 x (v4) rounds by 2^-11 relative and accumulates 16 products in
 * fp16, about 1e-3. Part 1 uses weights quantized from Gaussian floats by loam_quantize (MLX's
 * quantizer), ragged shapes (k = 64, 192; n not a multiple of the rows per warp) and m = 1..8;
 * part 2 uses random packed words with plausible scales and biases at the real shapes.
 *
 * Timing: CUDA graphs of 20 launches, each launch on another copy of the weights so that L2
 * (50 MB on H100) does not serve them (copies: at least 256 MB in all, at least 2), 3 warm-up
 * replays, then 15 replays timed with events one by one; the figure is the median replay / 20:
 * kernel time plus the small gap between graph nodes, as a captured decode step sees it.
 * GB/s counts weight bytes (packed words + scales + biases) per call; % is of the
 * device-to-device copy bandwidth measured in the same run (bytes read + written), also shown:
 * a streaming read-only kernel's bandwidth. qx is quantize_x alone; qx+lib both kernels.
 * The process exits 1 if any check fails; the last line is "N passed, N failed".
 */
#include "../src/cuda/matmul_q4.cu"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <math.h>
#include <time.h>

// ---- harness ----------------------------------------------------------------------------------

#define BENCH_CUDA(call)                                                                           \
    do {                                                                                           \
        cudaError_t bench_e_ = (call);                                                             \
        if (bench_e_ != cudaSuccess) {                                                             \
            fprintf(stderr, "bench: %s: %s (%s:%d)\n", #call, cudaGetErrorString(bench_e_),       \
                    __FILE__, __LINE__);                                                           \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

static loam_err g_err;
#define BENCH_OK(call)                                                                             \
    do {                                                                                           \
        if ((call) != LOAM_OK) {                                                                   \
            fprintf(stderr, "bench: %s: %s (%s:%d)\n", #call, g_err.msg, __FILE__, __LINE__);     \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

static int g_pass, g_fail;
static void check(int ok, const char *what) {
    if (ok) {
        g_pass++;
    } else {
        g_fail++;
        printf("FAIL %s\n", what);
    }
}

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "bench: out of memory (%zu bytes)\n", n);
        exit(1);
    }
    return p;
}

static uint64_t g_rng;
static uint64_t rnd(void) { /* xorshift64* */
    g_rng ^= g_rng >> 12;
    g_rng ^= g_rng << 25;
    g_rng ^= g_rng >> 27;
    return g_rng * 0x2545f4914f6cdd1dull;
}
static double rnd_unif(void) { return (double)(rnd() >> 11) * 0x1p-53; }
static float rnd_gauss(void) {
    double u = rnd_unif(), v = rnd_unif();
    if (u < 1e-300) u = 1e-300;
    return (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
}

/* ‖a − ref‖ / ‖ref‖ in double; infinite if a holds a NaN or Inf. */
static double rel_l2(const float *a, const float *ref, int64_t n) {
    double num = 0.0, den = 0.0;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(a[i])) return INFINITY;
        double d = (double)a[i] - (double)ref[i];
        num += d * d;
        den += (double)ref[i] * (double)ref[i];
    }
    return den > 0.0 ? sqrt(num / den) : sqrt(num);
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

static uint64_t q4_bytes(int64_t n, int64_t k) { /* packed words + scales + biases */
    return (uint64_t)n * (uint64_t)k / 2u + 2u * (uint64_t)n * (uint64_t)(k / 64) * 2u;
}

// ---- device helpers: fill, reference, read bandwidth ------------------------------------------

static __device__ uint64_t hash64(uint64_t x) { /* splitmix64 finaliser */
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* Random packed words; per group s = ±(0.5..1.5)·0.004 and b = −7.5·s ± 0.002, the shape of
 * scales and biases that quantizing zero-mean weights gives. */
static __global__ void fill_q4_kernel(uint32_t *w, unsigned short *s, unsigned short *b,
                                      int64_t n_words, int64_t n_groups, uint64_t seed) {
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n_words; i += stride)
        w[i] = (uint32_t)hash64(seed ^ (uint64_t)i);
    for (int64_t g = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; g < n_groups; g += stride) {
        const uint64_t h = hash64(~seed ^ (uint64_t)g);
        const float u1 = (float)(h & 0xffffff) * 0x1p-24f;
        const float u2 = (float)((h >> 24) & 0xffffff) * 0x1p-24f;
        float sc = (0.5f + u1) * 0.004f;
        if ((h >> 63) != 0) sc = -sc;
        const float bi = -7.5f * sc + (u2 - 0.5f) * 0.004f;
        s[g] = __bfloat16_as_ushort(__float2bfloat16_rn(sc));
        b[g] = __bfloat16_as_ushort(__float2bfloat16_rn(bi));
    }
}

/* ref: one warp per row of W; for each row a of x, lanes stride over k with the spec's
 * dequantization fl(fl(s·q) + b), a float32 fma per weight, then a warp sum. */
static __global__ void matmul_q4_ref_kernel(const uint32_t *__restrict__ w,
                                            const unsigned short *__restrict__ scales,
                                            const unsigned short *__restrict__ biases,
                                            const float *__restrict__ x, int m,
                                            float *__restrict__ y, int64_t n, int64_t k) {
    const int lane = threadIdx.x & 31;
    const int64_t row = (int64_t)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (row >= n) return;
    for (int a = 0; a < m; a++) {
        float acc = 0.0f;
        for (int64_t j = lane; j < k; j += 32) {
            const uint32_t word = w[row * (k / 8) + j / 8];
            const float q = (float)((word >> (4 * (j % 8))) & 15u);
            const float s = loam__bf16_bits_to_f32(scales[row * (k / 64) + j / 64]);
            const float b = loam__bf16_bits_to_f32(biases[row * (k / 64) + j / 64]);
            const float wv = __fadd_rn(__fmul_rn(s, q), b);
            acc = fmaf(wv, x[(int64_t)a * k + j], acc);
        }
        for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
        if (lane == 0) y[(int64_t)a * n + row] = acc;
    }
}

/* Reads n16 16-byte words once (streaming, 4 loads in flight per thread); writes a value only
 * the compiler cannot rule out, so the loads stay. */
static __global__ void read_kernel(const uint4 *__restrict__ p, int64_t n16, unsigned *out) {
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    unsigned acc = 0;
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    for (; i + 3 * stride < n16; i += 4 * stride) {
        const uint4 a = loam__ld_stream_u4(p + i), b = loam__ld_stream_u4(p + i + stride);
        const uint4 c = loam__ld_stream_u4(p + i + 2 * stride);
        const uint4 d = loam__ld_stream_u4(p + i + 3 * stride);
        acc ^= a.x ^ a.y ^ a.z ^ a.w ^ b.x ^ b.y ^ b.z ^ b.w ^ c.x ^ c.y ^ c.z ^ c.w ^ d.x ^ d.y ^
               d.z ^ d.w;
    }
    for (; i < n16; i += stride) {
        const uint4 a = loam__ld_stream_u4(p + i);
        acc ^= a.x ^ a.y ^ a.z ^ a.w;
    }
    if (acc == 0x9e3779b9u) out[0] = acc;
}

// ---- v1: dp4a, one row per warp, no prefetch --------------------------------------------------

template <int M>
static __global__ void __launch_bounds__(128, 1)
matmul_q4_v1_kernel(const uint4 *__restrict__ w, const unsigned short *__restrict__ scales,
                    const unsigned short *__restrict__ biases, const uint4 *__restrict__ xq,
                    const float2 *__restrict__ xd, float *__restrict__ y, int64_t n, int64_t k) {
    const int lane = threadIdx.x & 31;
    const int64_t row = (int64_t)blockIdx.x * 4 + (threadIdx.x >> 5);
    if (row >= n) return;
    const int64_t nc = k / 32, ng = k / 64;
    float acc[M];
#pragma unroll
    for (int a = 0; a < M; a++) acc[a] = 0.0f;
    for (int64_t c = lane; c < nc; c += 32) {
        const uint4 wv = __ldg(w + row * nc + c);
        const float s = loam__bf16_bits_to_f32(__ldg(scales + row * ng + c / 2));
        const float b = loam__bf16_bits_to_f32(__ldg(biases + row * ng + c / 2));
        const unsigned lo0 = wv.x & 0x0F0F0F0Fu, hi0 = (wv.x >> 4) & 0x0F0F0F0Fu;
        const unsigned lo1 = wv.y & 0x0F0F0F0Fu, hi1 = (wv.y >> 4) & 0x0F0F0F0Fu;
        const unsigned lo2 = wv.z & 0x0F0F0F0Fu, hi2 = (wv.z >> 4) & 0x0F0F0F0Fu;
        const unsigned lo3 = wv.w & 0x0F0F0F0Fu, hi3 = (wv.w >> 4) & 0x0F0F0F0Fu;
#pragma unroll
        for (int a = 0; a < M; a++) {
            const uint4 x0 = __ldg(xq + (int64_t)a * (2 * nc) + 2 * c);
            const uint4 x1 = __ldg(xq + (int64_t)a * (2 * nc) + 2 * c + 1);
            const float2 dd = __ldg(xd + (int64_t)a * nc + c);
            int t = __dp4a((int)lo0, (int)x0.x, 0);
            t = __dp4a((int)hi0, (int)x0.y, t);
            t = __dp4a((int)lo1, (int)x0.z, t);
            t = __dp4a((int)hi1, (int)x0.w, t);
            t = __dp4a((int)lo2, (int)x1.x, t);
            t = __dp4a((int)hi2, (int)x1.y, t);
            t = __dp4a((int)lo3, (int)x1.z, t);
            t = __dp4a((int)hi3, (int)x1.w, t);
            acc[a] = fmaf(s * dd.x, (float)t, fmaf(b, dd.y, acc[a]));
        }
    }
#pragma unroll
    for (int a = 0; a < M; a++) {
        float v = acc[a];
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
        if (lane == a) y[(int64_t)a * n + row] = v;
    }
}

// ---- v4: fp16 activations, HFMA2 --------------------------------------------------------------

/* x -> fp16, blocks of 32; in each run of 8 inputs the order is 0,4,1,5,2,6,3,7 (half2 p holds
 * inputs p and p+4, the two nibbles that (word >> 4p) & 0x000F000F isolates); xs = Σ of the
 * fp16-rounded inputs of the block, in float32. */
static __global__ void quantize_x_f16_kernel(const float *__restrict__ x, __half *__restrict__ xh,
                                             float *__restrict__ xs, int64_t n_blocks) {
    const int lane = threadIdx.x & 31;
    const int64_t blk = (int64_t)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (blk >= n_blocks) return;
    const __half h = __float2half_rn(x[blk * 32 + lane]);
    float v = __half2float(h);
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    const int e = lane & 7;
    xh[blk * 32 + ((lane & ~7) | ((e & 3) << 1) | (e >> 2))] = h;
    if (lane == 0) xs[blk] = v;
}

static __device__ __forceinline__ __half2 u32_as_half2(unsigned u) {
    __half2 h;
    memcpy(&h, &u, 4);
    return h;
}

template <int M, int R>
static __global__ void __launch_bounds__(128, 1)
matmul_q4_hfma2_kernel(const uint4 *__restrict__ w, const unsigned short *__restrict__ scales,
                       const unsigned short *__restrict__ biases, const uint4 *__restrict__ xh,
                       const float *__restrict__ xs, float *__restrict__ y, int64_t n, int64_t k) {
    const int lane = threadIdx.x & 31;
    const int64_t row0 = ((int64_t)blockIdx.x * 4 + (threadIdx.x >> 5)) * R;
    if (row0 >= n) return;
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
    const __half2 k1024 = u32_as_half2(0x64006400u);
    float acc[M][R];
#pragma unroll
    for (int a = 0; a < M; a++)
#pragma unroll
        for (int r = 0; r < R; r++) acc[a][r] = 0.0f;
    uint4 wn[R];
    unsigned short sn[R], bn[R];
    if (lane < nc) {
#pragma unroll
        for (int r = 0; r < R; r++) {
            wn[r] = loam__ld_stream_u4(wp[r]);
            sn[r] = __ldg(sp[r]);
            bn[r] = __ldg(bp[r]);
        }
    }
    for (int64_t c = lane; c < nc; c += 32) {
        __half2 q[R][16];
        float s[R], b[R];
#pragma unroll
        for (int r = 0; r < R; r++) {
            const unsigned wv[4] = {wn[r].x, wn[r].y, wn[r].z, wn[r].w};
#pragma unroll
            for (int t = 0; t < 4; t++)
#pragma unroll
                for (int j = 0; j < 4; j++)
                    q[r][4 * t + j] = __hsub2(
                        u32_as_half2(((wv[t] >> (4 * j)) & 0x000F000Fu) | 0x64006400u), k1024);
            s[r] = loam__bf16_bits_to_f32(sn[r]);
            b[r] = loam__bf16_bits_to_f32(bn[r]);
        }
        if (c + 32 < nc) {
#pragma unroll
            for (int r = 0; r < R; r++) {
                wp[r] += 32;
                sp[r] += 16;
                bp[r] += 16;
                wn[r] = loam__ld_stream_u4(wp[r]);
                sn[r] = __ldg(sp[r]);
                bn[r] = __ldg(bp[r]);
            }
        }
#pragma unroll
        for (int a = 0; a < M; a++) {
            const uint4 *xa = xh + (int64_t)a * (4 * nc) + 4 * c;
            const uint4 xv[4] = {__ldg(xa), __ldg(xa + 1), __ldg(xa + 2), __ldg(xa + 3)};
            const float sx = __ldg(xs + (int64_t)a * nc + c);
#pragma unroll
            for (int r = 0; r < R; r++) {
                __half2 h = u32_as_half2(0u);
#pragma unroll
                for (int t = 0; t < 4; t++) {
                    h = __hfma2(q[r][4 * t + 0], u32_as_half2(xv[t].x), h);
                    h = __hfma2(q[r][4 * t + 1], u32_as_half2(xv[t].y), h);
                    h = __hfma2(q[r][4 * t + 2], u32_as_half2(xv[t].z), h);
                    h = __hfma2(q[r][4 * t + 3], u32_as_half2(xv[t].w), h);
                }
                const float2 f = __half22float2(h);
                acc[a][r] = fmaf(s[r], f.x + f.y, fmaf(b[r], sx, acc[a][r]));
            }
        }
    }
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

// ---- variant dispatch -------------------------------------------------------------------------

enum { V1, V2, V3, V4, V5, V7, V8, VLIB, VQXLIB, VPDL, VQX, N_VARIANTS };
static const char *const g_vname[N_VARIANTS] = {"v1", "v2",  "v3",     "v4",  "v5", "v7",
                                                "v8", "lib", "qx+lib", "pdl", "qx"};
static cudaStream_t g_stream; /* every launch of the lab goes to this stream */
static int g_pdl_failed;

typedef struct bench_x { /* device buffers for one x [m, k] */
    int64_t m, k;
    float *x;   /* [m, k] float32 */
    void *xq;   /* loam__cuda_xq_bytes(m, k): int8 blocks + (d, d·Σq) */
    __half *xh; /* [m, k] fp16, v4 order */
    float *xs;  /* [m, k/32] */
    float *y;   /* [m, n] */
} bench_x;

template <int M>
static cudaError_t launch_m(int v, const loam__cuda_q4mat *W, const bench_x *bx, cudaStream_t st) {
    const uint4 *w = (const uint4 *)W->w;
    const unsigned short *s = (const unsigned short *)W->scales;
    const unsigned short *b = (const unsigned short *)W->biases;
    const uint4 *xq = (const uint4 *)bx->xq;
    const float2 *xd = (const float2 *)((const int8_t *)bx->xq + (int64_t)M * W->k);
    switch (v) {
    case V1:
        matmul_q4_v1_kernel<M><<<(unsigned)((W->n + 3) / 4), 128, 0, st>>>(w, s, b, xq, xd, bx->y,
                                                                             W->n, W->k);
        return cudaGetLastError();
    case V2: return launch_matmul_q4<M, 2, 1, false>(W, bx->xq, bx->y, 0, st);
    case V3: return launch_matmul_q4<M, 4, 1, false>(W, bx->xq, bx->y, 0, st);
    case V5: return launch_matmul_q4<M, 2, 2, false>(W, bx->xq, bx->y, 0, st);
    case V7: return launch_matmul_q4<M, 4, 4, true>(W, bx->xq, bx->y, 0, st);
    case V8: return launch_matmul_q4<M, 2, 8, true>(W, bx->xq, bx->y, 0, st);
    case V4:
        matmul_q4_hfma2_kernel<M, 4><<<(unsigned)((W->n + 15) / 16), 128, 0, st>>>(
            w, s, b, (const uint4 *)bx->xh, bx->xs, bx->y, W->n, W->k);
        return cudaGetLastError();
    default: return cudaErrorInvalidValue;
    }
}

/* One launch of variant v (for VQX, VQXLIB, VPDL also the activation quantization). A failure
 * of the PDL launches is recorded in g_pdl_failed, not fatal, so the rest still runs. */
static void launch(int v, const loam__cuda_q4mat *W, const bench_x *bx, cudaStream_t st) {
    if (v == VPDL) {
        if (loam__cuda_quantize_x(bx->x, bx->m, bx->k, bx->xq, LOAM_CUDA_LAUNCH_PDL, st,
                                  &g_err) != LOAM_OK ||
            loam__cuda_matmul_q4(W, bx->xq, bx->m, bx->y, LOAM_CUDA_LAUNCH_PDL, st, &g_err) !=
                LOAM_OK) {
            if (!g_pdl_failed) printf("pdl launch failed: %s\n", g_err.msg);
            g_pdl_failed = 1;
        }
        return;
    }
    if (v == VLIB || v == VQX || v == VQXLIB) {
        if (v != VLIB)
            BENCH_OK(loam__cuda_quantize_x(bx->x, bx->m, bx->k, bx->xq, 0, st, &g_err));
        if (v != VQX) BENCH_OK(loam__cuda_matmul_q4(W, bx->xq, bx->m, bx->y, 0, st, &g_err));
        return;
    }
    cudaError_t e = cudaErrorInvalidValue;
    switch (bx->m) {
    case 1: e = launch_m<1>(v, W, bx, st); break;
    case 2: e = launch_m<2>(v, W, bx, st); break;
    case 3: e = launch_m<3>(v, W, bx, st); break;
    case 4: e = launch_m<4>(v, W, bx, st); break;
    case 5: e = launch_m<5>(v, W, bx, st); break;
    case 6: e = launch_m<6>(v, W, bx, st); break;
    case 7: e = launch_m<7>(v, W, bx, st); break;
    case 8: e = launch_m<8>(v, W, bx, st); break;
    default: break;
    }
    BENCH_CUDA(e);
}

// ---- x preparation and the host twin of quantize_x --------------------------------------------

static void bench_x_alloc(bench_x *bx, int64_t m, int64_t k, int64_t n) {
    bx->m = m;
    bx->k = k;
    BENCH_OK(loam__cuda_alloc((void **)&bx->x, (size_t)(m * k) * 4, &g_err));
    BENCH_OK(loam__cuda_alloc(&bx->xq, loam__cuda_xq_bytes(m, k), &g_err));
    BENCH_OK(loam__cuda_alloc((void **)&bx->xh, (size_t)(m * k) * 2, &g_err));
    BENCH_OK(loam__cuda_alloc((void **)&bx->xs, (size_t)(m * (k / 32)) * 4, &g_err));
    BENCH_OK(loam__cuda_alloc((void **)&bx->y, (size_t)(m * n) * 4, &g_err));
}

static void bench_x_free(bench_x *bx) {
    loam__cuda_free(bx->x);
    loam__cuda_free(bx->xq);
    loam__cuda_free(bx->xh);
    loam__cuda_free(bx->xs);
    loam__cuda_free(bx->y);
    memset(bx, 0, sizeof *bx);
}

/* Uploads x [m, k], runs both activation preparations, checks quantize_x against the host twin
 * (d = max|x|/127, q = rint(x·(127/max|x|)), order 0,2,4,6,1,3,5,7 per 8, (d, d·Σq) per block)
 * and writes x̂ = d·q in input order into xhat [m, k]. */
static void prepare_x(bench_x *bx, const float *x, float *xhat, const char *what) {
    const int64_t m = bx->m, k = bx->k, nb = m * (k / 32);
    BENCH_OK(loam__cuda_upload(bx->x, x, (size_t)(m * k) * 4, &g_err));
    BENCH_OK(loam__cuda_quantize_x(bx->x, m, k, bx->xq, 0, g_stream, &g_err));
    quantize_x_f16_kernel<<<(unsigned)((nb + 7) / 8), 256, 0, g_stream>>>(bx->x, bx->xh, bx->xs,
                                                                          nb);
    BENCH_CUDA(cudaGetLastError());
    BENCH_OK(loam__cuda_sync(g_stream, &g_err));
    const size_t bytes = loam__cuda_xq_bytes(m, k);
    uint8_t *h = (uint8_t *)xmalloc(bytes);
    BENCH_OK(loam__cuda_download(h, bx->xq, bytes, &g_err));
    const int8_t *q = (const int8_t *)h;
    int64_t bad = 0;
    for (int64_t blk = 0; blk < nb; blk++) {
        const float *xb = x + blk * 32;
        float amax = 0.0f;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(xb[j]));
        const float id = amax > 0.0f ? 127.0f / amax : 0.0f;
        int sum = 0;
        float dd[2];
        memcpy(dd, h + m * k + blk * 8, 8);
        for (int j = 0; j < 32; j++) {
            int want = (int)rintf(xb[j] * id);
            want = want < -127 ? -127 : (want > 127 ? 127 : want);
            const int pos = (j & ~7) | ((j & 1) << 2) | ((j & 7) >> 1);
            const int got = q[blk * 32 + pos];
            bad += got != want;
            sum += got;
            xhat[blk * 32 + j] = dd[0] * (float)got;
        }
        bad += dd[0] != amax / 127.0f;
        bad += dd[1] != dd[0] * (float)sum;
    }
    free(h);
    char msg[160];
    snprintf(msg, sizeof msg, "%s: quantize_x vs host twin: %lld mismatches", what, (long long)bad);
    check(bad == 0, msg);
}

static void ref_gpu(const loam__cuda_q4mat *W, const float *x_dev, int64_t m, float *y_dev) {
    matmul_q4_ref_kernel<<<(unsigned)((W->n + 7) / 8), 256, 0, g_stream>>>(
        (const uint32_t *)W->w, (const unsigned short *)W->scales,
        (const unsigned short *)W->biases, x_dev, (int)m, y_dev, W->n, W->k);
    BENCH_CUDA(cudaGetLastError());
    BENCH_CUDA(cudaStreamSynchronize(g_stream));
}

/* Runs variant v once on poisoned y and returns the result in y_host [m, n]. */
static void run_variant(int v, const loam__cuda_q4mat *W, const bench_x *bx, float *y_host) {
    BENCH_CUDA(cudaMemsetAsync(bx->y, 0xff, (size_t)(bx->m * W->n) * 4, g_stream)); /* NaNs */
    launch(v, W, bx, g_stream);
    BENCH_OK(loam__cuda_sync(g_stream, &g_err));
    BENCH_OK(loam__cuda_download(y_host, bx->y, (size_t)(bx->m * W->n) * 4, &g_err));
}

/* Validates v1..v6 and lib for one W and one x (already prepared). ref_x, ref_xhat: [m, n].
 * The check against ref(x) needs m·n >= 1000 outputs: its error is ‖W·(x̂ − x)‖ / ‖W·x‖, a
 * ratio of two norms over the outputs, which scatters widely when there are only a few. */
static void validate_variants(const loam__cuda_q4mat *W, const bench_x *bx, const float *ref_x,
                              const float *ref_xhat, const char *what, double *worst) {
    const int64_t cnt = bx->m * W->n;
    float *y = (float *)xmalloc((size_t)cnt * 4);
    for (int v = V1; v <= VPDL; v++) {
        if (v == VPDL && g_pdl_failed) continue;
        run_variant(v, W, bx, y);
        char msg[200];
        const double e = rel_l2(y, ref_x, cnt);
        snprintf(msg, sizeof msg, "%s %s: rel L2 vs ref(x) %.3g > 1e-2", what, g_vname[v], e);
        if (cnt >= 1000) check(e <= 1e-2, msg);
        else check(isfinite(e), msg);
        if (e > worst[v]) worst[v] = e;
        if (v != V4) {
            const double t = rel_l2(y, ref_xhat, cnt);
            snprintf(msg, sizeof msg, "%s %s: rel L2 vs ref(x^) %.3g > 1e-5", what, g_vname[v], t);
            check(t <= 1e-5, msg);
            if (t > worst[N_VARIANTS + v]) worst[N_VARIANTS + v] = t;
        }
    }
    free(y);
}

// ---- part 1: against the CPU spec, real MLX quantization, ragged shapes -----------------------

static void part1(void) {
    static const int64_t shapes[][2] = {{7, 64}, {130, 192}, {1001, 4096}, {333, 12288}};
    double worst[2 * N_VARIANTS] = {0};
    double worst_ref = 0.0;
    printf("\n== part 1: CPU reference (loam__matmul_ref), weights from loam_quantize\n");
    for (int si = 0; si < 4; si++) {
        const int64_t n = shapes[si][0], k = shapes[si][1];
        const loam_qformat fmt = {4, 64, LOAM_DTYPE_BF16};
        float *wf = (float *)xmalloc((size_t)(n * k) * 4);
        for (int64_t i = 0; i < n * k; i++) wf[i] = 0.02f * rnd_gauss();
        for (int64_t r = 0; r < n; r += 5) /* some rows with a larger spread */
            for (int64_t j = 0; j < k; j++) wf[r * k + j] *= 8.0f;
        void *wq = xmalloc((size_t)loam_qweight_bytes(fmt, n, k));
        void *sc = xmalloc((size_t)loam_qscale_bytes(fmt, n, k));
        void *bi = xmalloc((size_t)loam_qscale_bytes(fmt, n, k));
        BENCH_OK(loam_quantize(wf, n, k, fmt, wq, sc, bi, &g_err));
        const loam__qmat Wh = {LOAM_DTYPE_U32, fmt, wq, sc, bi, n, k};
        loam__cuda_q4mat W;
        BENCH_OK(loam__cuda_q4mat_upload(&W, &Wh, &g_err));
        for (int64_t m = 1; m <= LOAM_CUDA_Q4_MAX_M; m++) {
            bench_x bx;
            bench_x_alloc(&bx, m, k, n);
            float *x = (float *)xmalloc((size_t)(m * k) * 4);
            float *xhat = (float *)xmalloc((size_t)(m * k) * 4);
            float *y_cpu = (float *)xmalloc((size_t)(m * n) * 4);
            float *y_ref = (float *)xmalloc((size_t)(m * n) * 4);
            float *y_refh = (float *)xmalloc((size_t)(m * n) * 4);
            for (int64_t i = 0; i < m * k; i++) x[i] = rnd_gauss();
            char what[96];
            snprintf(what, sizeof what, "cpu n=%lld k=%lld m=%lld", (long long)n, (long long)k,
                     (long long)m);
            prepare_x(&bx, x, xhat, what);
            loam__matmul_ref(&Wh, x, m, y_cpu);
            ref_gpu(&W, bx.x, m, bx.y);
            BENCH_OK(loam__cuda_download(y_ref, bx.y, (size_t)(m * n) * 4, &g_err));
            const double e = rel_l2(y_ref, y_cpu, m * n);
            char msg[200];
            snprintf(msg, sizeof msg, "%s: gpu ref vs loam__matmul_ref %.3g > 1e-5", what, e);
            check(e <= 1e-5, msg);
            if (e > worst_ref) worst_ref = e;
            /* ref on x̂ */
            float *xhat_dev;
            BENCH_OK(loam__cuda_alloc((void **)&xhat_dev, (size_t)(m * k) * 4, &g_err));
            BENCH_OK(loam__cuda_upload(xhat_dev, xhat, (size_t)(m * k) * 4, &g_err));
            ref_gpu(&W, xhat_dev, m, bx.y);
            BENCH_OK(loam__cuda_download(y_refh, bx.y, (size_t)(m * n) * 4, &g_err));
            loam__cuda_free(xhat_dev);
            validate_variants(&W, &bx, y_cpu, y_refh, what, worst);
            free(x);
            free(xhat);
            free(y_cpu);
            free(y_ref);
            free(y_refh);
            bench_x_free(&bx);
        }
        loam__cuda_q4mat_free(&W);
        free(wf);
        free(wq);
        free(sc);
        free(bi);
    }
    printf("worst rel L2 over 4 shapes x m=1..8: gpu ref vs cpu ref %.2e\n", worst_ref);
    printf("  %-4s vs ref(x): ", "");
    for (int v = V1; v <= VPDL; v++) printf("%s %.2e  ", g_vname[v], worst[v]);
    printf("\n  %-4s vs ref(x^): ", "");
    for (int v = V1; v <= VPDL; v++)
        if (v != V4) printf("%s %.2e  ", g_vname[v], worst[N_VARIANTS + v]);
    printf("\n");
}

// ---- bandwidth ceilings -----------------------------------------------------------------------

static double g_copy_gbs, g_read_gbs;

static void ceilings(void) {
    const size_t bytes = (size_t)1 << 30;
    void *a, *b;
    unsigned *out;
    BENCH_CUDA(cudaMalloc(&a, bytes));
    BENCH_CUDA(cudaMalloc(&b, bytes));
    BENCH_CUDA(cudaMalloc((void **)&out, 4));
    BENCH_CUDA(cudaMemset(a, 0x5a, bytes));
    cudaEvent_t e0, e1;
    BENCH_CUDA(cudaEventCreate(&e0));
    BENCH_CUDA(cudaEventCreate(&e1));
    float t[20];
    int n_sm = 0;
    BENCH_CUDA(cudaDeviceGetAttribute(&n_sm, cudaDevAttrMultiProcessorCount, 0));
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < 23; i++) {
            BENCH_CUDA(cudaEventRecord(e0));
            if (pass == 0) {
                BENCH_CUDA(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice));
            } else {
                read_kernel<<<(unsigned)n_sm * 8, 256>>>((const uint4 *)a, (int64_t)(bytes / 16),
                                                         out);
                BENCH_CUDA(cudaGetLastError());
            }
            BENCH_CUDA(cudaEventRecord(e1));
            BENCH_CUDA(cudaEventSynchronize(e1));
            if (i >= 3) BENCH_CUDA(cudaEventElapsedTime(&t[i - 3], e0, e1));
        }
        qsort(t, 20, sizeof t[0], cmp_float);
        const double ms = 0.5 * (t[9] + t[10]);
        if (pass == 0) g_copy_gbs = 2.0 * (double)bytes / (ms * 1e-3) / 1e9;
        else g_read_gbs = (double)bytes / (ms * 1e-3) / 1e9;
    }
    printf("copy (cudaMemcpy D2D, 1 GiB, read + write counted): %.0f GB/s;  streaming read kernel: "
           "%.0f GB/s  (medians of 20)\n", g_copy_gbs, g_read_gbs);
    BENCH_CUDA(cudaEventDestroy(e0));
    BENCH_CUDA(cudaEventDestroy(e1));
    BENCH_CUDA(cudaFree(a));
    BENCH_CUDA(cudaFree(b));
    BENCH_CUDA(cudaFree(out));
}

// ---- part 2: Qwen3-8B shapes, validation against the GPU reference, timing --------------------

#define GRAPH_LAUNCHES 20
#define TIMED_REPLAYS 15

/* Median time of one launch of variant v, in microseconds (see the file comment). */
static double time_variant(int v, const loam__cuda_q4mat *copies, int n_copies, const bench_x *bx,
                           cudaStream_t st) {
    cudaGraph_t g;
    cudaGraphExec_t ge;
    if (v == VPDL && g_pdl_failed) return NAN;
    BENCH_CUDA(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
    for (int i = 0; i < GRAPH_LAUNCHES; i++) launch(v, &copies[i % n_copies], bx, st);
    cudaError_t e = cudaStreamEndCapture(st, &g);
    if (e == cudaSuccess) e = cudaGraphInstantiate(&ge, g, 0);
    if (e != cudaSuccess && v == VPDL) { /* PDL inside a graph: report, go on without it */
        printf("pdl graph failed: %s\n", cudaGetErrorString(e));
        (void)cudaGetLastError();
        g_pdl_failed = 1;
        return NAN;
    }
    BENCH_CUDA(e);
    cudaEvent_t e0, e1;
    BENCH_CUDA(cudaEventCreate(&e0));
    BENCH_CUDA(cudaEventCreate(&e1));
    float t[TIMED_REPLAYS];
    for (int i = 0; i < 3 + TIMED_REPLAYS; i++) {
        BENCH_CUDA(cudaEventRecord(e0, st));
        BENCH_CUDA(cudaGraphLaunch(ge, st));
        BENCH_CUDA(cudaEventRecord(e1, st));
        BENCH_CUDA(cudaEventSynchronize(e1));
        if (i >= 3) BENCH_CUDA(cudaEventElapsedTime(&t[i - 3], e0, e1));
    }
    BENCH_CUDA(cudaGetLastError());
    qsort(t, TIMED_REPLAYS, sizeof t[0], cmp_float);
    BENCH_CUDA(cudaEventDestroy(e0));
    BENCH_CUDA(cudaEventDestroy(e1));
    BENCH_CUDA(cudaGraphExecDestroy(ge));
    BENCH_CUDA(cudaGraphDestroy(g));
    return (double)t[TIMED_REPLAYS / 2] * 1e3 / GRAPH_LAUNCHES;
}

typedef struct row_result {
    const char *shape;
    int64_t m;
    double us[N_VARIANTS + 1]; /* + the library timed a second time */
    double gbs, pct; /* lib's */
    uint64_t bytes;  /* weight bytes per call */
} row_result;

static row_result g_rows[32];
static int g_n_rows;

static void part2(void) {
    static const struct {
        const char *name;
        int64_t n, k;
    } shapes[] = {{"q/o 4096x4096", 4096, 4096},
                  {"gate/up 12288x4096", 12288, 4096},
                  {"down 4096x12288", 4096, 12288},
                  {"head 151936x4096", 151936, 4096}};
    static const int64_t ms[] = {1, 2, 4, 8};
    cudaStream_t st = g_stream;
    printf("\n== part 2: Qwen3-8B shapes, random packed weights, GPU reference\n");
    for (int si = 0; si < 4; si++) {
        const int64_t n = shapes[si].n, k = shapes[si].k;
        const uint64_t wb = q4_bytes(n, k);
        int n_copies = (int)(((uint64_t)256 << 20) / wb + 1);
        if (n_copies < 2) n_copies = 2;
        if (n_copies > GRAPH_LAUNCHES) n_copies = GRAPH_LAUNCHES;
        loam__cuda_q4mat copies[GRAPH_LAUNCHES];
        memset(copies, 0, sizeof copies);
        for (int c = 0; c < n_copies; c++) {
            loam__cuda_q4mat *W = &copies[c];
            W->n = n;
            W->k = k;
            BENCH_OK(loam__cuda_alloc(&W->w, (size_t)(n * k / 2), &g_err));
            BENCH_OK(loam__cuda_alloc(&W->scales, (size_t)(n * (k / 64)) * 2, &g_err));
            BENCH_OK(loam__cuda_alloc(&W->biases, (size_t)(n * (k / 64)) * 2, &g_err));
            fill_q4_kernel<<<1024, 256, 0, g_stream>>>(
                (uint32_t *)W->w, (unsigned short *)W->scales, (unsigned short *)W->biases,
                n * k / 8, n * (k / 64), rnd());
            BENCH_CUDA(cudaGetLastError());
        }
        BENCH_CUDA(cudaStreamSynchronize(g_stream));
        printf("%s: %.2f MB of weights per call, %d copies (%.0f MB)\n", shapes[si].name,
               (double)wb / 1e6, n_copies, (double)wb * n_copies / 1e6);
        for (int mi = 0; mi < 4; mi++) {
            const int64_t m = ms[mi];
            bench_x bx;
            bench_x_alloc(&bx, m, k, n);
            float *x = (float *)xmalloc((size_t)(m * k) * 4);
            float *xhat = (float *)xmalloc((size_t)(m * k) * 4);
            float *y_ref = (float *)xmalloc((size_t)(m * n) * 4);
            float *y_refh = (float *)xmalloc((size_t)(m * n) * 4);
            for (int64_t i = 0; i < m * k; i++) x[i] = rnd_gauss();
            char what[96];
            snprintf(what, sizeof what, "%s m=%lld", shapes[si].name, (long long)m);
            prepare_x(&bx, x, xhat, what);
            ref_gpu(&copies[0], bx.x, m, bx.y);
            BENCH_OK(loam__cuda_download(y_ref, bx.y, (size_t)(m * n) * 4, &g_err));
            float *xhat_dev;
            BENCH_OK(loam__cuda_alloc((void **)&xhat_dev, (size_t)(m * k) * 4, &g_err));
            BENCH_OK(loam__cuda_upload(xhat_dev, xhat, (size_t)(m * k) * 4, &g_err));
            ref_gpu(&copies[0], xhat_dev, m, bx.y);
            BENCH_OK(loam__cuda_download(y_refh, bx.y, (size_t)(m * n) * 4, &g_err));
            loam__cuda_free(xhat_dev);
            double worst[2 * N_VARIANTS] = {0};
            validate_variants(&copies[0], &bx, y_ref, y_refh, what, worst);
            printf("  m=%lld |x^-x|/|x| %.2e; rel L2 vs ref(x):", (long long)m,
                   rel_l2(xhat, x, m * k));
            for (int v = V1; v <= VPDL; v++) printf(" %s %.2e", g_vname[v], worst[v]);
            printf("; vs ref(x^):");
            for (int v = V1; v <= VPDL; v++)
                if (v != V4) printf(" %s %.1e", g_vname[v], worst[N_VARIANTS + v]);
            printf("\n");
            row_result *rr = &g_rows[g_n_rows++];
            rr->shape = shapes[si].name;
            rr->bytes = wb;
            rr->m = m;
            for (int v = 0; v < N_VARIANTS; v++)
                rr->us[v] = time_variant(v, copies, n_copies, &bx, st);
            rr->us[N_VARIANTS] = time_variant(VLIB, copies, n_copies, &bx, st);
            rr->gbs = (double)wb / (rr->us[VLIB] * 1e-6) / 1e9;
            rr->pct = 100.0 * rr->gbs / g_copy_gbs;
            free(x);
            free(xhat);
            free(y_ref);
            free(y_refh);
            bench_x_free(&bx);
        }
        for (int c = 0; c < n_copies; c++) loam__cuda_q4mat_free(&copies[c]);
    }
}

// ---- argument errors (host-side checks, no kernel runs) ---------------------------------------

static void api_errors(void) {
    loam__cuda_q4mat W;
    memset(&W, 0, sizeof W);
    uint32_t w[8] = {0};
    uint16_t s[1] = {0}, b[1] = {0};
    loam__qmat bad = {LOAM_DTYPE_U32, {8, 64, LOAM_DTYPE_BF16}, w, s, b, 1, 64};
    check(loam__cuda_q4mat_upload(&W, &bad, &g_err) == LOAM_E_UNSUPPORTED && W.w == NULL,
          "upload of an 8-bit matrix is LOAM_E_UNSUPPORTED");
    bad.fmt.bits = 4;
    bad.fmt.scale_dtype = LOAM_DTYPE_F16;
    check(loam__cuda_q4mat_upload(&W, &bad, &g_err) == LOAM_E_UNSUPPORTED,
          "upload with f16 scales is LOAM_E_UNSUPPORTED");
    bad.k = 96;
    check(loam__cuda_q4mat_upload(&W, &bad, &g_err) == LOAM_E_INVAL,
          "upload with k = 96 is LOAM_E_INVAL");
    check(loam__cuda_xq_bytes(9, 64) == 0 && loam__cuda_xq_bytes(1, 96) == 0 &&
              loam__cuda_xq_bytes(1, 64) == 64 + 16,
          "loam__cuda_xq_bytes bounds");
    loam__cuda_q4mat fake = {(void *)16, (void *)16, (void *)16, 64, 64};
    check(loam__cuda_matmul_q4(&fake, (void *)16, 9, (float *)16, 0, NULL, &g_err) ==
              LOAM_E_INVAL,
          "matmul with m = 9 is LOAM_E_INVAL");
    check(loam__cuda_quantize_x((const float *)16, 1, 64, (void *)8, 0, NULL, &g_err) ==
              LOAM_E_INVAL,
          "quantize_x into an unaligned buffer is LOAM_E_INVAL");
}

// ---- main -------------------------------------------------------------------------------------

int main(int argc, char **argv) {
    uint64_t seed = (uint64_t)time(NULL);
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc) {
            seed = strtoull(argv[++i], NULL, 10);
        } else {
            fprintf(stderr, "usage: %s [--seed N]\n", argv[0]);
            return 2;
        }
    }
    g_rng = seed * 2654435761u + 1;
    cudaDeviceProp p;
    BENCH_CUDA(cudaGetDeviceProperties(&p, 0));
    printf("device: %s, sm_%d%d, %d SMs, L2 %d MB, %.1f GB; seed %llu\n", p.name, p.major,
           p.minor, p.multiProcessorCount, p.l2CacheSize >> 20,
           (double)p.totalGlobalMem / (1u << 30), (unsigned long long)seed);
    BENCH_CUDA(cudaStreamCreateWithFlags(&g_stream, cudaStreamNonBlocking));
    api_errors();
    ceilings();
    part1();
    part2();

    printf("\n== time per call (us), CUDA graph of %d launches, median of %d replays\n",
           GRAPH_LAUNCHES, TIMED_REPLAYS);
    printf("%-18s %1s %6s %6s %6s %6s %6s %6s %6s %6s %6s %6s %6s %5s %5s %4s %5s %4s\n", "shape",
           "m", "v1", "v2", "v3", "v4", "v5", "v7", "v8", "lib", "lib'", "qx+lib", "pdl", "qx",
           "GB/s", "%cp", "best", "%cp");
    for (int i = 0; i < g_n_rows; i++) {
        const row_result *r = &g_rows[i];
        int best = V1;
        for (int v = V1; v <= V8; v++)
            if (r->us[v] < r->us[best]) best = v;
        printf("%-18s %1lld %6.2f %6.2f %6.2f %6.2f %6.2f %6.2f %6.2f %6.2f %6.2f %6.2f %6.2f "
               "%5.2f %5.0f %3.0f%% %4s %4.0f%%\n",
               r->shape, (long long)r->m, r->us[V1], r->us[V2], r->us[V3], r->us[V4], r->us[V5],
               r->us[V7], r->us[V8], r->us[VLIB], r->us[N_VARIANTS], r->us[VQXLIB], r->us[VPDL],
               r->us[VQX], r->gbs, r->pct, g_vname[best],
               100.0 * (double)r->bytes / (r->us[best] * 1e-6) / 1e9 / g_copy_gbs);
    }
    printf("copy %.0f GB/s (read+write), streaming read %.0f GB/s; GB/s, %%cp: lib; best of "
           "v1..v8 and its %%cp; pdl: qx+lib launched with PDL%s\n",
           g_copy_gbs, g_read_gbs, g_pdl_failed ? " (FAILED, see above)" : "");
    check(!g_pdl_failed, "launches with LOAM_CUDA_LAUNCH_PDL (plain and in a graph)");
    printf("%d passed, %d failed\n", g_pass, g_fail);
    return g_fail ? 1 : 0;
}

/* ops.cu: the forward pass's stages other than the 4-bit matmul (matmul_q4.cu), for the CUDA
 * backend (src/cuda/backend_cuda.c): RMSNorm, q/k norm + RoPE + paged KV store, causal GQA
 * attention, residual add, SwiGLU, Linear bias, runtime LoRA. All float32, as the CPU backend,
 * whose functions these mirror one for one (src/cpu/backend_cpu.c); the contract of each is in
 * loam_cuda.h. Written for correctness first: one block per row (norms) or per (row, head)
 * (RoPE, attention), no tensor cores. The decode step's time is in the matmuls.
 */
#include "cuda/common.cuh"

#define KV_BLOCK 32 /* LOAM__KV_BLOCK (kvcache.h) */

namespace {

/* Sum over the block (blockDim.x a multiple of 32, <= 1024); every thread gets the result. */
__device__ float block_sum(float v) {
    __shared__ float part[32];
    __shared__ float total;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    __syncthreads(); /* part and total may still be read by a previous call */
    if (lane == 0) part[warp] = v;
    __syncthreads();
    if (warp == 0) {
        float s = lane < (int)(blockDim.x >> 5) ? part[lane] : 0.0f;
        for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
        if (lane == 0) total = s;
    }
    __syncthreads();
    return total;
}

/* One block of 1024 threads per row: a row of 4096 is one load per thread, so the block waits
 * for memory once (a 256-thread loop measured 16 µs a row under ncu, latency-bound). No
 * __restrict__: out may alias res. */
__global__ void add_rmsnorm_kernel(float *x, const float *res, const int32_t *rows_idx,
                                   const float *w, float *out, int32_t n, float eps) {
    const int32_t r = blockIdx.x, src = rows_idx ? rows_idx[r] : r;
    float *xr = x + (int64_t)src * n;
    const float *rr = res ? res + (int64_t)src * n : nullptr;
    float ss = 0.0f;
    for (int32_t i = threadIdx.x; i < n; i += blockDim.x) {
        float v = xr[i] + (rr ? rr[i] : 0.0f);
        if (rr && !rows_idx) xr[i] = v;
        ss += v * v;
    }
    ss = block_sum(ss);
    const float inv = 1.0f / sqrtf(ss / (float)n + eps);
    float *yr = out + (int64_t)r * n;
    for (int32_t i = threadIdx.x; i < n; i += blockDim.x) {
        float v = (rr && !rows_idx) ? xr[i] : xr[i] + (rr ? rr[i] : 0.0f);
        yr[i] = w[i] * (v * inv);
    }
}

/* grid (rows, n_head + n_head_kv), block head_dim/2 threads rounded up to a warp (<= 128):
 * thread i < half rotates the pair (i, i + half) */
__global__ void qk_rope_store_kernel(float *q, float *k, const float *v, int64_t ld,
                                     const float *q_norm,
                                     const float *k_norm, const float *cos_, const float *sin_,
                                     const int32_t *blk, const int32_t *slot, float *k_cache,
                                     float *v_cache, int32_t n_head, int32_t n_head_kv,
                                     int32_t hd, float eps) {
    const int32_t r = blockIdx.x, h = blockIdx.y, half = hd / 2, i = threadIdx.x;
    const bool is_q = h < n_head, active = i < half;
    const int32_t hk = is_q ? 0 : h - n_head;
    float *vec = is_q ? q + (int64_t)r * ld + (int64_t)h * hd : k + (int64_t)r * ld + (int64_t)hk * hd;
    const float *nw = is_q ? q_norm : k_norm;
    float x1 = active ? vec[i] : 0.0f, x2 = active ? vec[i + half] : 0.0f;
    if (nw) { /* the whole block takes part in the sum */
        float ss = block_sum(x1 * x1 + x2 * x2);
        float inv = 1.0f / sqrtf(ss / (float)hd + eps);
        x1 = active ? nw[i] * (x1 * inv) : 0.0f;
        x2 = active ? nw[i + half] * (x2 * inv) : 0.0f;
    }
    if (!active) return;
    const float c = cos_[(int64_t)r * half + i], s = sin_[(int64_t)r * half + i];
    const float y1 = x1 * c - x2 * s, y2 = x2 * c + x1 * s;
    vec[i] = y1;
    vec[i + half] = y2;
    if (!is_q) {
        int64_t at = (((int64_t)blk[r] * n_head_kv + hk) * KV_BLOCK + slot[r]) * hd;
        k_cache[at + i] = y1;
        k_cache[at + i + half] = y2;
        const float *vh = v + (int64_t)r * ld + (int64_t)hk * hd;
        v_cache[at + i] = vh[i];
        v_cache[at + i + half] = vh[i + half];
    }
}

/* grid (rows, n_head), 128 threads (4 warps). Keys in chunks of one KV block (32 keys): each
 * warp scores 8 of them (lanes split head_dim), then every thread updates the running max and
 * sum (online softmax) and its output dims (d = tid, tid + 128). */
__global__ void attention_kernel(const float *__restrict__ q, int64_t ldq,
                                 const float *__restrict__ k_cache,
                                 const float *__restrict__ v_cache,
                                 const int32_t *__restrict__ tables, int32_t table_stride,
                                 const int32_t *__restrict__ row_seq,
                                 const int32_t *__restrict__ pos, float *__restrict__ out,
                                 int32_t n_head, int32_t n_head_kv, int32_t hd, float scale) {
    const int32_t r = blockIdx.x, h = blockIdx.y, hk = h / (n_head / n_head_kv);
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    __shared__ float qs[256];
    __shared__ float sc[KV_BLOCK];
    const float *qh = q + (int64_t)r * ldq + (int64_t)h * hd;
    for (int d = tid; d < hd; d += blockDim.x) qs[d] = qh[d];
    const int32_t n_keys = pos[r] + 1;
    const int32_t *table = tables + (int64_t)row_seq[r] * table_stride;
    float m = -INFINITY, l = 0.0f, acc0 = 0.0f, acc1 = 0.0f;
    const int d0 = tid, d1 = tid + 128;
    __syncthreads();
    for (int32_t c0 = 0; c0 < n_keys; c0 += KV_BLOCK) {
        const int32_t nk = n_keys - c0 < KV_BLOCK ? n_keys - c0 : KV_BLOCK;
        const int64_t base = ((int64_t)table[c0 / KV_BLOCK] * n_head_kv + hk) * KV_BLOCK * hd;
        for (int j = warp * 8; j < warp * 8 + 8; j++) {
            float s = 0.0f;
            if (j < nk) {
                const float *kr = k_cache + base + (int64_t)j * hd;
                for (int d = lane; d < hd; d += 32) s += qs[d] * kr[d];
            }
            for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
            if (lane == 0) sc[j] = j < nk ? s * scale : -INFINITY;
        }
        __syncthreads();
        float mc = m;
        for (int j = 0; j < nk; j++) mc = fmaxf(mc, sc[j]);
        const float corr = expf(m - mc); /* m = -inf at the start: exp(-inf) = 0 */
        l *= corr;
        acc0 *= corr;
        acc1 *= corr;
        for (int j = 0; j < nk; j++) {
            const float p = expf(sc[j] - mc);
            l += p;
            const float *vr = v_cache + base + (int64_t)j * hd;
            if (d0 < hd) acc0 += p * vr[d0];
            if (d1 < hd) acc1 += p * vr[d1];
        }
        m = mc;
        __syncthreads(); /* sc is rewritten by the next chunk */
    }
    float *oh = out + ((int64_t)r * n_head + h) * hd;
    const float inv = 1.0f / l;
    if (d0 < hd) oh[d0] = acc0 * inv;
    if (d1 < hd) oh[d1] = acc1 * inv;
}

__global__ void add_kernel(float *x, const float *y, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        x[i] += y[i];
}

__global__ void silu_mul_kernel(const float *g, const float *u, int64_t ld, float *out, int32_t n,
                                int64_t total) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t r = i / n, c = i % n;
        const float gv = g[r * ld + c];
        out[i] = gv / (1.0f + expf(-gv)) * u[r * ld + c];
    }
}

__global__ void add_bias_kernel(float *y, int64_t ld, const float *b, int32_t n, int64_t total) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x)
        y[(i / n) * ld + i % n] += b[i % n];
}

/* grid (m, Σ r_i): block (row, j) is rank column j of the module it falls in:
 * t[row, j] = scale_i · Σ_k x[row, k] Aᵀ_i[j_i, k] (t rows of Σ r_i) */
__global__ void lora_down_kernel(const float *__restrict__ x, int32_t in, loam__cuda_lora_set set,
                                 int32_t r_total, float *__restrict__ t) {
    const int32_t row = blockIdx.x, j = blockIdx.y;
    int i = 0, j0 = 0;
    while (j >= j0 + set.r[i]) j0 += set.r[i++];
    const float *xr = x + (int64_t)row * in, *ar = set.at[i] + (int64_t)(j - j0) * in;
    float s = 0.0f;
    for (int32_t k = threadIdx.x; k < in; k += blockDim.x) s += xr[k] * ar[k];
    s = block_sum(s);
    if (threadIdx.x == 0) t[(int64_t)row * r_total + j] = set.scale[i] * s;
}

/* grid (m, Σ ceil(out_i / 256)): y_i[row, o] += Σ_j t[row, j] B_i[j, o] (+ scale·bias), ·dora */
__global__ void lora_up_kernel(const float *__restrict__ t, loam__cuda_lora_set set,
                               int32_t r_total) {
    const int32_t row = blockIdx.x;
    int i = 0, b0 = 0, j0 = 0;
    while ((int)blockIdx.y >= b0 + (set.out[i] + 255) / 256) {
        b0 += (set.out[i] + 255) / 256;
        j0 += set.r[i++];
    }
    const int32_t out = set.out[i], o = ((int32_t)blockIdx.y - b0) * blockDim.x + threadIdx.x;
    if (o >= out) return;
    const float *tr = t + (int64_t)row * r_total + j0, *B = set.b[i];
    float *yr = set.y[i] + (int64_t)row * set.ld[i];
    float acc = yr[o];
    for (int32_t j = 0; j < set.r[i]; j++) acc += tr[j] * B[(int64_t)j * out + o];
    if (set.bias[i]) acc += set.scale[i] * set.bias[i][o];
    if (set.dora[i]) acc *= set.dora[i][o];
    yr[o] = acc;
}

int grid_for(int64_t n) {
    int64_t g = (n + 255) / 256;
    return (int)(g < 4096 ? (g > 0 ? g : 1) : 4096);
}

} // namespace

extern "C" {

loam_status loam__cuda_add_rmsnorm(float *x, const float *res, const int32_t *rows_idx,
                                   const float *w, float *out, int32_t rows, int32_t n, float eps,
                                   void *stream, loam_err *err) {
    if (rows <= 0) return LOAM_OK;
    const int threads = n >= 1024 ? 1024 : (n + 31) / 32 * 32;
    add_rmsnorm_kernel<<<rows, threads, 0, (cudaStream_t)stream>>>(x, res, rows_idx, w, out, n,
                                                                   eps);
    LOAM_CUDA_TRY(cudaGetLastError());
    return LOAM_OK;
}

loam_status loam__cuda_qk_rope_store(float *q, float *k, const float *v, int64_t ld,
                                     const float *q_norm,
                                     const float *k_norm, const float *cos_, const float *sin_,
                                     const int32_t *blk, const int32_t *slot, float *k_cache,
                                     float *v_cache, int32_t rows, int32_t n_head,
                                     int32_t n_head_kv, int32_t head_dim, float eps, void *stream,
                                     loam_err *err) {
    if (rows <= 0) return LOAM_OK;
    if (head_dim % 2 != 0 || head_dim > 256)
        return loam__fail(err, LOAM_E_UNSUPPORTED, "cuda: head_dim %d (even, at most 256)",
                          head_dim);
    dim3 grid((unsigned)rows, (unsigned)(n_head + n_head_kv));
    const int threads = (head_dim / 2 + 31) / 32 * 32;
    qk_rope_store_kernel<<<grid, threads, 0, (cudaStream_t)stream>>>(
        q, k, v, ld, q_norm, k_norm, cos_, sin_, blk, slot, k_cache, v_cache, n_head, n_head_kv,
        head_dim, eps);
    LOAM_CUDA_TRY(cudaGetLastError());
    return LOAM_OK;
}

loam_status loam__cuda_attention(const float *q, int64_t ldq, const float *k_cache, const float *v_cache,
                                 const int32_t *tables, int32_t table_stride,
                                 const int32_t *row_seq, const int32_t *pos, float *out,
                                 int32_t rows, int32_t n_head, int32_t n_head_kv,
                                 int32_t head_dim, float scale, void *stream, loam_err *err) {
    if (rows <= 0) return LOAM_OK;
    if (head_dim > 256)
        return loam__fail(err, LOAM_E_UNSUPPORTED, "cuda: head_dim %d > 256", head_dim);
    dim3 grid((unsigned)rows, (unsigned)n_head);
    attention_kernel<<<grid, 128, 0, (cudaStream_t)stream>>>(q, ldq, k_cache, v_cache, tables,
                                                             table_stride, row_seq, pos, out,
                                                             n_head, n_head_kv, head_dim, scale);
    LOAM_CUDA_TRY(cudaGetLastError());
    return LOAM_OK;
}

loam_status loam__cuda_copy_bandwidth(double *bytes_per_s, loam_err *err) {
    const size_t n = (size_t)1 << 30;
    void *a = nullptr, *b = nullptr;
    cudaEvent_t e0 = nullptr, e1 = nullptr;
    float best = 0.0f;
    cudaError_t ce = cudaMalloc(&a, n);
    if (ce == cudaSuccess) ce = cudaMalloc(&b, n);
    if (ce == cudaSuccess) ce = cudaEventCreate(&e0);
    if (ce == cudaSuccess) ce = cudaEventCreate(&e1);
    if (ce == cudaSuccess) ce = cudaMemset(a, 1, n);
    for (int i = 0; i < 6 && ce == cudaSuccess; i++) { /* the first is a warm-up */
        float ms = 0.0f;
        ce = cudaEventRecord(e0);
        if (ce == cudaSuccess) ce = cudaMemcpy(b, a, n, cudaMemcpyDeviceToDevice);
        if (ce == cudaSuccess) ce = cudaEventRecord(e1);
        if (ce == cudaSuccess) ce = cudaEventSynchronize(e1);
        if (ce == cudaSuccess) ce = cudaEventElapsedTime(&ms, e0, e1);
        if (ce == cudaSuccess && i > 0 && (best == 0.0f || ms < best)) best = ms;
    }
    cudaFree(a);
    cudaFree(b);
    if (e0) cudaEventDestroy(e0);
    if (e1) cudaEventDestroy(e1);
    LOAM_CUDA_TRY(ce);
    *bytes_per_s = best > 0.0f ? 2.0 * (double)n / ((double)best * 1e-3) : 0.0;
    return LOAM_OK;
}

loam_status loam__cuda_copy(void *dst, const void *src, size_t bytes, loam_err *err) {
    LOAM_CUDA_TRY(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice));
    return LOAM_OK;
}

loam_status loam__cuda_stream_new(void **stream, loam_err *err) {
    cudaStream_t s = nullptr;
    *stream = nullptr;
    LOAM_CUDA_TRY(cudaStreamCreate(&s));
    *stream = s;
    return LOAM_OK;
}

void loam__cuda_stream_free(void *stream) {
    if (stream) cudaStreamDestroy((cudaStream_t)stream);
}

loam_status loam__cuda_capture_begin(void *stream, loam_err *err) {
    LOAM_CUDA_TRY(cudaStreamBeginCapture((cudaStream_t)stream, cudaStreamCaptureModeThreadLocal));
    return LOAM_OK;
}

loam_status loam__cuda_capture_end(void *stream, void **exec, loam_err *err) {
    cudaGraph_t g = nullptr;
    cudaGraphExec_t x = nullptr;
    *exec = nullptr;
    cudaError_t ce = cudaStreamEndCapture((cudaStream_t)stream, &g);
    if (ce == cudaSuccess) ce = cudaGraphInstantiate(&x, g, 0);
    if (g) cudaGraphDestroy(g);
    if (ce != cudaSuccess) (void)cudaGetLastError(); /* clear the sticky-free launch error */
    LOAM_CUDA_TRY(ce);
    *exec = x;
    return LOAM_OK;
}

loam_status loam__cuda_graph_launch(void *exec, void *stream, loam_err *err) {
    LOAM_CUDA_TRY(cudaGraphLaunch((cudaGraphExec_t)exec, (cudaStream_t)stream));
    return LOAM_OK;
}

void loam__cuda_graph_free(void *exec) {
    if (exec) cudaGraphExecDestroy((cudaGraphExec_t)exec);
}

loam_status loam__cuda_device_name(char *buf, size_t cap, loam_err *err) {
    int dev = 0;
    cudaDeviceProp prop;
    LOAM_CUDA_TRY(cudaGetDevice(&dev));
    LOAM_CUDA_TRY(cudaGetDeviceProperties(&prop, dev));
    snprintf(buf, cap, "%s", prop.name);
    return LOAM_OK;
}

loam_status loam__cuda_add(float *x, const float *y, int64_t n, void *stream, loam_err *err) {
    if (n <= 0) return LOAM_OK;
    add_kernel<<<grid_for(n), 256, 0, (cudaStream_t)stream>>>(x, y, n);
    LOAM_CUDA_TRY(cudaGetLastError());
    return LOAM_OK;
}

loam_status loam__cuda_silu_mul(const float *g, const float *u, int64_t ld, float *out,
                                int32_t rows, int32_t n, void *stream, loam_err *err) {
    const int64_t total = (int64_t)rows * n;
    if (total <= 0) return LOAM_OK;
    silu_mul_kernel<<<grid_for(total), 256, 0, (cudaStream_t)stream>>>(g, u, ld, out, n, total);
    LOAM_CUDA_TRY(cudaGetLastError());
    return LOAM_OK;
}

loam_status loam__cuda_add_bias(float *y, int64_t ld, const float *b, int32_t rows, int32_t n,
                                void *stream, loam_err *err) {
    if (rows <= 0 || n <= 0) return LOAM_OK;
    const int64_t total = (int64_t)rows * n;
    add_bias_kernel<<<grid_for(total), 256, 0, (cudaStream_t)stream>>>(y, ld, b, n, total);
    LOAM_CUDA_TRY(cudaGetLastError());
    return LOAM_OK;
}

loam_status loam__cuda_lora(const float *x, int32_t m, int32_t in, const loam__cuda_lora_set *set,
                            float *t, void *stream, loam_err *err) {
    if (m <= 0 || set->n <= 0) return LOAM_OK;
    if (set->n > LOAM_CUDA_LORA_SET)
        return loam__fail(err, LOAM_E_INVAL, "cuda: %d LoRA modules in one set", set->n);
    int32_t r_total = 0, blocks = 0;
    for (int i = 0; i < set->n; i++) {
        r_total += set->r[i];
        blocks += (set->out[i] + 255) / 256;
    }
    /* 1024 threads: a 4096-wide input is 4 loads per thread (256 threads: 16 in a row, and the
     * pair of LoRA launches cost 7 µs per module set on the H100) */
    lora_down_kernel<<<dim3((unsigned)m, (unsigned)r_total), 1024, 0, (cudaStream_t)stream>>>(
        x, in, *set, r_total, t);
    LOAM_CUDA_TRY(cudaGetLastError());
    lora_up_kernel<<<dim3((unsigned)m, (unsigned)blocks), 256, 0, (cudaStream_t)stream>>>(t, *set,
                                                                                      r_total);
    LOAM_CUDA_TRY(cudaGetLastError());
    return LOAM_OK;
}

} // extern "C"

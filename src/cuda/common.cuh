/* common.cuh: helpers shared by the CUDA files of src/cuda/ and their labs in bench/.
 *
 * - LOAM_CUDA_TRY(call): a cudaError_t other than cudaSuccess becomes
 *   `return loam__fail(err, LOAM_E_CUDA, ...)` with the call and cudaGetErrorString; the
 *   enclosing function must have a `loam_err *err` in scope and return loam_status. After every
 *   kernel launch: LOAM_CUDA_TRY(cudaGetLastError()).
 * - Loads: 16-byte streaming loads for data read once per call (weights), which skip L1 so the
 *   activations that every warp re-reads stay there.
 * - bf16 bits -> float32 (exact: a bf16 is the top half of a float32).
 * - cp.async (16-byte global -> shared copies in flight without registers) and programmatic
 *   dependent launch (griddepcontrol), both sm_90 PTX written out as inline asm.
 */
#ifndef LOAM_CUDA_COMMON_CUH
#define LOAM_CUDA_COMMON_CUH

#include "cuda/loam_cuda.h"

#include <cuda_runtime.h>

#define LOAM_CUDA_TRY(call)                                                                        \
    do {                                                                                           \
        cudaError_t loam_cuda_e_ = (call);                                                         \
        if (loam_cuda_e_ != cudaSuccess)                                                           \
            return loam__fail(err, LOAM_E_CUDA, "cuda: %s: %s (%s:%d)", #call,                    \
                              cudaGetErrorString(loam_cuda_e_), __FILE__, __LINE__);               \
    } while (0)

/* 16 bytes from global memory through the non-coherent path, not allocated in L1. p must be
 * 16-byte aligned and the data must not change during the kernel. */
static __device__ __forceinline__ uint4 loam__ld_stream_u4(const uint4 *p) {
    uint4 v;
    asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
        : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
        : "l"(p));
    return v;
}

static __device__ __forceinline__ float loam__bf16_bits_to_f32(unsigned short h) {
    return __uint_as_float((unsigned)h << 16);
}

/* 16 bytes global -> shared (smem: a shared-window address from __cvta_generic_to_shared),
 * asynchronous, L1 bypassed; completes at a later loam__cp_async_wait. */
static __device__ __forceinline__ void loam__cp_async16(unsigned smem, const void *g) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(smem), "l"(g) : "memory");
}
static __device__ __forceinline__ void loam__cp_async_commit(void) {
    asm volatile("cp.async.commit_group;" ::: "memory");
}
/* Waits until at most N of this thread's committed groups are still in flight. */
template <int N>
static __device__ __forceinline__ void loam__cp_async_wait(void) {
    asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
}

/* Programmatic dependent launch (sm_90): wait until the grids this one depends on have
 * completed and their memory is visible (a no-op when launched without the PDL attribute);
 * let the grids that depend on this one be scheduled. */
static __device__ __forceinline__ void loam__grid_dependency_wait(void) {
    asm volatile("griddepcontrol.wait;" ::: "memory");
}
static __device__ __forceinline__ void loam__launch_dependents(void) {
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
}

#endif /* LOAM_CUDA_COMMON_CUH */

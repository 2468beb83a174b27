#!/usr/bin/env bash
# tools/check.d/cuda-build.sh: the compile check of the CUDA code that CI runs on its machine,
# which has nvcc but no GPU, so nothing here runs a kernel.
#  1. `make cuda` in its own build folder (src/cuda/*.cu objects and bench/bench_matmul_q4),
#     nvcc and host-compiler warnings as errors, ptxas resource report on;
#  2. no kernel spills registers to local memory (ptxas report);
#  3. the PTX of the 4-bit matmul uses dp4a, 16-byte L1-bypassing loads, cp.async and
#     griddepcontrol (the instructions its speed rests on: DESIGN.md decision 4, bench/NOTES.md),
#     so a refactor cannot drop them silently;
#  4. `make CUDA=1` (the library and loam with the CUDA backend, and the GPU test program), and
#     that this build, on a machine without a GPU, runs on the CPU by default and answers
#     LOAM_DEVICE=cuda with a one-line error.
# nvcc: $NVCC, else on PATH, else /usr/local/cuda/bin/nvcc; without it the check fails, since
# CI must catch CUDA build breaks. Ends with "N passed, N failed".
set -u
cd "$(dirname "$0")/../.."
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "  ok  $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; [ -n "${2:-}" ] && tail -n 40 "$2"; }

nvcc=${NVCC:-$(command -v nvcc 2>/dev/null || echo /usr/local/cuda/bin/nvcc)}
if [ ! -x "$nvcc" ]; then
    echo "cuda-build: nvcc not found (set NVCC, put it on PATH or install it at /usr/local/cuda/bin)"
    echo "0 passed, 1 failed"
    exit 1
fi
b=build-cuda
mkdir -p "$b"
log=$b/cuda-build.log
if make -j"$(nproc 2>/dev/null || echo 2)" BUILD="$b" NVCC="$nvcc" \
        EXTRA_NVCCFLAGS="-Werror all-warnings -Xcompiler -Werror -Xptxas -v" cuda >"$log" 2>&1; then
    ok "make cuda ($("$nvcc" --version | grep -o 'release [0-9.]*'), sm_90): src/cuda/*.cu, bench_matmul_q4"
else
    bad "make cuda" "$log"
fi
spills=$(grep -E '[1-9][0-9]* bytes spill (stores|loads)' "$log" | wc -l)
if [ "$spills" -eq 0 ] && grep -q 'bytes spill' "$log"; then
    ok "no register spills in any kernel"
else
    bad "register spills (or no ptxas report): $spills kernels" "$log"
fi
ptx=$b/matmul_q4.ptx
if "$nvcc" -std=c++17 -O3 -gencode arch=compute_90,code=sm_90 -DLOAM_BUILD -Iinclude -Isrc \
        -ptx src/cuda/matmul_q4.cu -o "$ptx" >"$log.ptx" 2>&1 &&
    grep -q 'dp4a.s32.s32' "$ptx" && grep -q 'ld.global.nc.L1::no_allocate.v4.u32' "$ptx" &&
    grep -q 'cp.async.cg.shared.global' "$ptx" && grep -q 'griddepcontrol.wait' "$ptx"; then
    ok "matmul_q4 PTX has dp4a, 16-byte streaming loads, cp.async and griddepcontrol"
else
    bad "matmul_q4 PTX lacks dp4a, ld.global.nc.L1::no_allocate.v4, cp.async.cg or griddepcontrol" \
        "$log.ptx"
fi
# 4. the library with the CUDA backend (make CUDA=1): loam, libloam.so and the GPU test build;
#    without a GPU here, asking for CUDA must be a one-line error, not a crash.
lb=build-cuda-lib
if make -j"$(nproc 2>/dev/null || echo 2)" BUILD="$lb" CUDA=1 NVCC="$nvcc" WERROR=-Werror \
        "$lb/loam" "$lb/libloam.so" cuda-test >"$log.lib" 2>&1; then
    ok "make CUDA=1: loam, libloam.so, tests/cuda/test_backend_cuda"
    err=$(LOAM_DEVICE=cuda "$lb/loam" generate -m models/demo --prompt x --max-tokens 2 -q 2>&1 >/dev/null)
    rc=$?
    if [ "$rc" -eq 1 ] && [ "$(printf '%s\n' "$err" | wc -l)" -eq 1 ] && printf '%s' "$err" | grep -q cuda; then
        ok "LOAM_DEVICE=cuda without a usable GPU: exit 1, one line ($err)"
    elif nvidia-smi >/dev/null 2>&1; then
        ok "LOAM_DEVICE=cuda with a GPU here: exit $rc"
    else
        bad "LOAM_DEVICE=cuda without a GPU: exit $rc, stderr: $err"
    fi
    if "$lb/loam" generate -m models/demo --prompt x --max-tokens 2 -q >/dev/null 2>&1; then
        ok "the CUDA=1 build runs on the CPU by default"
    else
        bad "the CUDA=1 build fails on the CPU"
    fi
else
    bad "make CUDA=1" "$log.lib"
fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]

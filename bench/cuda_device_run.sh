#!/usr/bin/env bash
# bench/cuda_device_run.sh: everything one call of the GPU machine runs for the CUDA kernel lab,
# from a tree that holds this repository's files (the checkout, or a copy of the needed files):
#  1. the card as found (nvidia-smi: clocks, memory, temperature; nothing is changed);
#  2. the lab binary: build/bench/bench_matmul_q4 if it was built elsewhere and loads here
#     (it then reports its usage and exits 2), else `make cuda` here;
#  3. the SASS of the lab (cuobjdump, when present): per kernel, counts of IDP (dp4a), 16-byte
#     global loads, local-memory traffic, for bench/NOTES.md;
#  4. the lab itself: validation, then timing, its table last.
# Logs go to $OUT (or /tmp/loam-cuda-out): gpu.txt, sass.txt, bench_matmul_q4.log.
set -u -o pipefail
out=${OUT:-/tmp/loam-cuda-out}
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,clocks.mem,memory.total,temperature.gpu,power.draw,power.limit \
    --format=csv >"$out/gpu.txt" 2>&1
cat "$out/gpu.txt"
bin=build/bench/bench_matmul_q4
"$bin" --probe >/dev/null 2>&1
if [ $? -ne 2 ]; then
    echo "cuda_device_run: prebuilt $bin does not load here; building"
    bin=build-dev/bench/bench_matmul_q4
    make -j16 BUILD=build-dev cuda >"$out/build.log" 2>&1 || { tail -n 40 "$out/build.log"; exit 1; }
fi
if command -v cuobjdump >/dev/null 2>&1; then
    cuobjdump -sass "$bin" | awk '
        /Function :/ { if (f) printf "%-70s IDP %4d  LDG.128 %3d  LDG %4d  LDL/STL %3d  SHFL %4d\n", f, idp, l128, ldg, loc, sh;
                       f = $3; idp = l128 = ldg = loc = sh = 0 }
        /IDP/ { idp++ } /LDG.*\.128/ { l128++ } /LDG/ { ldg++ } /LDL|STL/ { loc++ } /SHFL/ { sh++ }
        END { if (f) printf "%-70s IDP %4d  LDG.128 %3d  LDG %4d  LDL/STL %3d  SHFL %4d\n", f, idp, l128, ldg, loc, sh }' \
        >"$out/sass.txt" 2>&1
    echo "sass: $(wc -l <"$out/sass.txt") kernels summarised in sass.txt"
fi
"$bin" "$@" 2>&1 | tee "$out/bench_matmul_q4.log"

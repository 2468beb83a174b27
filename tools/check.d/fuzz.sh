#!/usr/bin/env bash
# tools/check.d/fuzz.sh: bounded fuzzing of every libFuzzer target, as CI runs it.
#   1. `make fuzz` builds every fuzz/fuzz_NAME.c (clang, ASan, UBSan) into build-fuzz/fuzz/.
#   2. Each target runs for an even share of LOAM_FUZZ_SECONDS (default 60, at least 1 s each)
#      on a scratch corpus seeded from fuzz/corpus/NAME/ (when present; never modified), with
#      fuzz/NAME.dict as its dictionary (when present).
#   3. A target passes when it ran its time without a crash, sanitizer report, timeout (10 s per
#      input) or memory blow-up (2 GB); otherwise its log tail is shown and the reproducer is
#      kept under /tmp/loam-fuzz-NAME/ (run build-fuzz/fuzz/fuzz_NAME FILE to replay it).
# The last line is "N passed, N failed" (one per target).
set -u
cd "$(dirname "$0")/../.."
budget=${LOAM_FUZZ_SECONDS:-60}
shopt -s nullglob
targets=(fuzz/fuzz_*.c)
if [ ${#targets[@]} -eq 0 ]; then
    echo "fuzz: no fuzz/fuzz_*.c targets"
    echo "0 passed, 0 failed"
    exit 0
fi
log=/tmp/loam-fuzz-build.log
if ! make -j"$(nproc 2>/dev/null || echo 2)" fuzz >"$log" 2>&1; then
    tail -n 40 "$log"
    echo "fuzz: build failed (full log: $log)"
    echo "0 passed, ${#targets[@]} failed"
    exit 1
fi
per=$((budget / ${#targets[@]}))
[ "$per" -ge 1 ] || per=1
passed=0 failed=0
for src in "${targets[@]}"; do
    name=$(basename "$src" .c)
    short=${name#fuzz_}
    out=/tmp/loam-fuzz-$short
    rm -rf "$out"
    mkdir -p "$out/corpus" "$out/artifacts"
    corpora=("$out/corpus")
    [ -d "fuzz/corpus/$short" ] && corpora+=("fuzz/corpus/$short")
    opts=(-max_total_time="$per" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
          -artifact_prefix="$out/artifacts/")
    [ -f "fuzz/$short.dict" ] && opts+=(-dict="fuzz/$short.dict")
    if "build-fuzz/fuzz/$name" "${opts[@]}" "${corpora[@]}" >"$out/log" 2>&1; then
        runs=$(grep -E '^stat::number_of_executed_units' "$out/log" | awk '{print $2}')
        printf '  ok  %-24s %4ds  %s inputs\n' "$name" "$per" "${runs:-?}"
        passed=$((passed + 1))
        rm -rf "$out"
    else
        echo "FAIL $name (log and reproducer in $out)"
        grep -v '^#' "$out/log" | tail -n 30
        ls "$out/artifacts"
        failed=$((failed + 1))
    fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]

#!/usr/bin/env bash
# tools/check.sh: everything CI runs, in order, failing loudly at the first broken step:
#  1. release build with -Werror and the whole suite (unit + CLI end-to-end tests)
#  2. the same suite under ASan + UBSan
#  3. bounded fuzzing of every fuzz target on its seed corpus
#  4. the cross-compiled aarch64 (NEON) build and its kernel tests under qemu-user
# The last line is the sum over every suite run: "N passed, N failed".
set -u
cd "$(dirname "$0")/.."
jobs=$(nproc 2>/dev/null || echo 2)
total_p=0 total_f=0
step() { echo; echo "== $*"; }
tally() { # log file of a suite run
    local line; line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$1" | tail -n 1)
    [ -n "$line" ] || { echo "check: no summary line in $1"; exit 1; }
    total_p=$((total_p + ${line%% passed*})); local f=${line#*passed, }; total_f=$((total_f + ${f%% failed*}))
}
run_suite() { # build dir, make args...
    local b=$1; shift
    make -j"$jobs" BUILD="$b" WERROR=-Werror "$@" all >"/tmp/loam-check-build-$b.log" 2>&1 \
        || { cat "/tmp/loam-check-build-$b.log" | tail -n 60; echo "check: build $b failed"; exit 1; }
    tests/run.sh "$b" 2>&1 | tee "/tmp/loam-check-$b.log"
    local rc=${PIPESTATUS[0]}
    tally "/tmp/loam-check-$b.log"
    [ "$rc" -eq 0 ] || { echo "check: suite failed in $b"; echo "$total_p passed, $total_f failed"; exit 1; }
}
step "release build (-Werror) and suite"
run_suite build
step "ASan + UBSan suite"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
run_suite build-asan SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" OPT="-O1 -g"
unset ASAN_OPTIONS UBSAN_OPTIONS
for extra in tools/check.d/*.sh; do
    [ -f "$extra" ] || continue
    step "$(basename "$extra")"
    bash "$extra" 2>&1 | tee /tmp/loam-check-extra.log
    rc=${PIPESTATUS[0]}
    tally /tmp/loam-check-extra.log
    [ "$rc" -eq 0 ] || { echo "check: $extra failed"; echo "$total_p passed, $total_f failed"; exit 1; }
done
echo
echo "$total_p passed, $total_f failed"
[ "$total_f" -eq 0 ]

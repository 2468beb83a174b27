#!/usr/bin/env bash
# tools/check.d/tsan-server.sh: ThreadSanitizer on the server (STYLE.md: "CI runs ... TSan on the
# server"). Builds the library, loam and the engine API tests with -fsanitize=thread (build-tsan,
# the folder tools/check.d/examples.sh also uses), then runs against the tiny test model:
#   - build-tsan/tests/test_api (the engine: submit, queue, cancel from other threads)
#   - tests/server/test_server.mjs (every route, streams, disconnects, 429, shutdown)
#   - tests/server/load.mjs, 200 requests from 32 clients plus a tiny-queue pass (429s)
# Each server's stderr is checked for sanitizer reports and its exit status for TSan's 66.
# OMP_NUM_THREADS=1: libgomp is not instrumented, so its barriers would read as races; one
# OpenMP thread keeps it out (the session's default thread count honours OMP_NUM_THREADS).
# libmicrohttpd is not instrumented either; no suppressions are needed today. If TSan ever
# reports a race whose frames are all inside libmicrohttpd, a suppressions file limited to
# those frames belongs next to this script; a race with a loam frame is a bug to fix.
# Ends with "N passed, N failed".
set -u
cd "$(dirname "$0")/../.."
work=$(mktemp -d /tmp/loam-tsan-server.XXXXXX)
trap 'rm -rf "$work"' EXIT
pass=0 fail=0
tally() { # name, log: add the log's closing "N passed, N failed" line
    local line; line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$2" | tail -n 1)
    if [ -z "$line" ]; then
        echo "FAIL $1: no summary line"; tail -n 40 "$2"; fail=$((fail + 1)); return
    fi
    local p=${line%% passed*} f=${line#*passed, }; f=${f%% failed*}
    pass=$((pass + p)); fail=$((fail + f))
    if [ "$f" -ne 0 ] || grep -q 'WARNING: ThreadSanitizer' "$2"; then
        echo "FAIL $1: $line"; grep -v '^[0-9]* passed' "$2" | head -n 80
        [ "$f" -eq 0 ] && fail=$((fail + 1))
    else
        echo "  ok  $1: $line"
    fi
}
if ! make -j"$(nproc)" BUILD=build-tsan SAN="-fsanitize=thread" OPT="-O1 -g" \
        build-tsan/loam build-tsan/tests/tiny-model build-tsan/tests/test_api >"$work/build.log" 2>&1; then
    tail -n 40 "$work/build.log"; echo "0 passed, 1 failed"; exit 1
fi
pkg=$(tests/server/fetch-openai.sh) || { echo "0 passed, 1 failed"; exit 1; }
build-tsan/tests/tiny-model "$work/tiny" && build-tsan/tests/tiny-model "$work/nan" --nan \
    || { echo "0 passed, 1 failed"; exit 1; }
export OMP_NUM_THREADS=1 TSAN_OPTIONS="halt_on_error=0 second_deadlock_stack=1 exitcode=66"

timeout 300 build-tsan/tests/test_api >"$work/api.log" 2>&1
tally "test_api (TSan)" "$work/api.log"
timeout 300 node tests/server/test_server.mjs build-tsan/loam "$work/tiny" "$work/tiny/adapter" "$pkg" \
    "$work/nan" >"$work/server.log" 2>&1
tally "test_server.mjs (TSan)" "$work/server.log"
timeout 300 node tests/server/load.mjs --loam build-tsan/loam --model "$work/tiny" \
    --adapter "$work/tiny/adapter" --requests 200 --clients 32 --tokens 8,32 --threads 1 \
    --tiny-queue 60 --rss-bound-mib 4096 >"$work/load.log" 2>&1
tally "load.mjs (TSan)" "$work/load.log"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]

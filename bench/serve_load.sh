#!/usr/bin/env bash
# bench/serve_load.sh [BUILD]: the full serving load test and throughput figures of `loam serve`
# on loopback (tests/server/load.mjs; the suite runs a shortened load test in
# tests/cli/test_serve_load.sh).
#   1. load: 500 requests from 32 concurrent clients (mixed adapters, chat/completions,
#      streamed or not, n 1..2, max_tokens 8..64, stop strings, logprobs, clients that leave
#      mid-stream or while queued) on --parallel 8 --ctx 1024 --max-queue 64: zero failures, then
#      0 active / empty queue in /metrics, the library heap back to its warm-up size, VmRSS
#      growth under 16 MiB; then 200 requests on a tiny queue (2 slots, no queue), 429s counted.
#   2. throughput: aggregate generated tokens/s with 1, 8 and 32 concurrent streams (streamed
#      completions, 64 tokens each with ignore_eos, 20 s per point) on --parallel 32 --ctx 512.
# Model: $LOAM_MODEL if set, else models/demo (with models/demo/adapter under two names) when
# the tree has it, else the tiny random test model. Threads: $LOAM_THREADS (default: all cores).
set -u
cd "$(dirname "$0")/.."
build=${1:-build}
make -j"$(nproc)" BUILD="$build" "$build/loam" "$build/tests/tiny-model" >/dev/null || exit 1
work=$(mktemp -d /tmp/loam-serve-load.XXXXXX)
trap 'rm -rf "$work"' EXIT
if [ -n "${LOAM_MODEL:-}" ]; then model=$LOAM_MODEL adapter=${LOAM_ADAPTER:-$LOAM_MODEL/adapter}
elif [ -f models/demo/config.json ]; then model=models/demo adapter=models/demo/adapter
else "$build/tests/tiny-model" "$work/tiny" || exit 1; model=$work/tiny adapter=$work/tiny/adapter
fi
threads=${LOAM_THREADS:-0}
echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) CPUs; load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "model: $model (adapter $adapter as 'voice' and 'pirate'); threads: ${threads/#0/all cores}"
rc=0
echo "== load"
node tests/server/load.mjs --loam "$build/loam" --model "$model" --adapter "$adapter" \
    --requests 500 --clients 32 --tokens 8,64 --parallel 8 --ctx 1024 --max-queue 64 \
    --threads "$threads" --tiny-queue 200 || rc=1
echo "== throughput"
node tests/server/load.mjs --loam "$build/loam" --model "$model" --adapter "$adapter" \
    --throughput 1,8,32 --gen 64 --seconds "${LOAM_SECONDS:-20}" --parallel 32 --ctx 512 \
    --threads "$threads" || rc=1
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
exit $rc

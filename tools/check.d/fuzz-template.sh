#!/usr/bin/env bash
# tools/check.d/fuzz-template.sh: builds fuzz/fuzz_template.c with libFuzzer + ASan + UBSan
# (clang) and fuzzes the chat-template interpreter for a bounded time from the seed corpus
# fuzz/corpus/template (real model templates and language cases). Any crash, sanitizer report,
# leak, timeout (>10 s for one input) or out-of-memory fails the step.
# Prints "N passed, N failed" (1 check: the fuzz run) for tools/check.sh.
set -u
cd "$(dirname "$0")/../.."
secs=${LOAM_FUZZ_SECONDS:-60}
out=build-fuzz
mkdir -p "$out/corpus-template"
cp fuzz/corpus/template/* "$out/corpus-template/" 2>/dev/null
if ! clang -std=c11 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
        -DLOAM_BUILD -Iinclude -Isrc $(pkg-config --cflags libutf8proc) \
        fuzz/fuzz_template.c src/jinja_parse.c src/jinja_eval.c src/jinja_builtins.c src/jinja_value.c \
        src/chat_template.c src/status.c $(pkg-config --libs libutf8proc) -lm -o "$out/fuzz_template" \
        >"$out/fuzz_template.build.log" 2>&1; then
    tail -n 30 "$out/fuzz_template.build.log"
    echo "fuzz-template: build failed"
    echo "0 passed, 1 failed"
    exit 1
fi
if "$out/fuzz_template" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=8192 \
        -print_final_stats=1 -artifact_prefix="$out/" "$out/corpus-template" >"$out/fuzz_template.log" 2>&1; then
    grep -E "stat::number_of_executed_units|stat::peak_rss_mb" "$out/fuzz_template.log"
    echo "fuzz-template: ${secs}s without a finding"
    echo "1 passed, 0 failed"
else
    grep -v "^#" "$out/fuzz_template.log" | tail -n 40
    echo "fuzz-template: finding (the input is saved as $out/crash-*, timeout-* or oom-*)"
    echo "0 passed, 1 failed"
    exit 1
fi

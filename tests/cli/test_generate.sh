#!/usr/bin/env bash
# tests/cli/test_generate.sh: `loam generate` on the demo model: a seed gives the same text,
# -n, --stop, XTC (--xtc-probability / --xtc-threshold: seeded runs repeat, and removing the
# top choices changes the text), option errors.
. "$(dirname "$0")/lib.sh"
top=${LOAM_TOP:-$(cd "$(dirname "$0")/../.." && pwd)}
demo=$top/models/demo
gen() { "$LOAM" generate -m "$demo" -a "$demo/adapter" -q --max-tokens 24 --prompt "And God said" "$@"; }

expect_ok "seeded run 1" gen --seed 3 --temperature 0.9
cp "$TMPD/out" "$TMPD/a"
expect_ok "seeded run 2" gen --seed 3 --temperature 0.9
cp "$TMPD/out" "$TMPD/b"
expect_ok "same seed, same text" cmp -s "$TMPD/a" "$TMPD/b"
expect_ok "text is not empty" test -s "$TMPD/a"

expect_ok "xtc run 1" gen --seed 3 --temperature 0.9 --xtc-probability 1 --xtc-threshold 0.1
cp "$TMPD/out" "$TMPD/x"
expect_ok "xtc run 2" gen --seed 3 --temperature 0.9 --xtc-probability 1 --xtc-threshold 0.1
cp "$TMPD/out" "$TMPD/y"
expect_ok "xtc: same seed, same text" cmp -s "$TMPD/x" "$TMPD/y"
expect_ok "xtc changes the text" bash -c "! cmp -s '$TMPD/a' '$TMPD/x'"
expect_ok "xtc probability 0 is off" gen --seed 3 --temperature 0.9 --xtc-probability 0
cp "$TMPD/out" "$TMPD/z"
expect_ok "xtc probability 0: the plain text" cmp -s "$TMPD/a" "$TMPD/z"

expect_out "-n 2 writes two completions" '^--- 2 ---$' gen --seed 5 --temperature 0.9 -n 2
expect_ok "--stop" gen --seed 3 --temperature 0.9 --stop " the"
expect_ok "--stop: the stop string is not in the text" bash -c "! grep -q ' the' '$TMPD/out'"
expect_ok "greedy ignores xtc" gen --temperature 0 --xtc-probability 1
cp "$TMPD/out" "$TMPD/g"
expect_ok "greedy" gen --temperature 0
cp "$TMPD/out" "$TMPD/h"
expect_ok "greedy ignores xtc: same text" cmp -s "$TMPD/g" "$TMPD/h"

expect_fail "xtc threshold above 0.5" 2 gen --xtc-threshold 0.7
expect_fail "xtc probability above 1" 2 gen --xtc-probability 2
expect_fail "xtc probability not a number" 2 gen --xtc-probability x
expect_fail "top-p above 1" 2 gen --top-p 1.5
expect_fail "unknown option" 2 gen --frobnicate
expect_fail "LOAM_DEVICE=cuda in a build without CUDA (or without a GPU)" 1 \
    env LOAM_DEVICE=cuda "$LOAM" generate -m "$demo" --prompt x --max-tokens 2
expect_ok "LOAM_DEVICE=cpu" env LOAM_DEVICE=cpu "$LOAM" generate -m "$demo" --prompt x --max-tokens 2 -q
expect_fail "no such model" 1 "$LOAM" generate -m "$TMPD/none" --prompt x
finish

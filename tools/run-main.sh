#!/usr/bin/env bash
# tools/run-main.sh BUILD: the README's main job. With the demo model in models/demo, its voice
# adapter writes a post. Without it, the newest end-to-end path that works runs instead: the
# tiny random test model (tests/tiny_model.h) generates text, which is gibberish by design.
set -eu
b=${1:-build}
if [ -f models/demo/config.json ]; then
    exec "$b/loam" generate
fi
echo "(models/demo is not in this tree: running the tiny random test model end to end instead)"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
"$b/tests/tiny-model" "$dir/tiny"
"$b/loam" generate -m "$dir/tiny" -a "$dir/tiny/adapter" --chat --prompt "Write a post." --max-tokens 40 --seed 1

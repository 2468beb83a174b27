#!/usr/bin/env bash
# tools/demo/stage.sh [DEST]: prepares what the GPU machine needs to rebuild the demo model.
# Writes the corpus (tools/demo/prepare_corpus.py, from the Debian packages fortunes,
# fortunes-min, fortunes-bofh-excuses, bible-kjv-text) and copies it, the held-out evaluation
# texts of models/demo/eval and the scripts of tools/demo into DEST (default .carry/demo, which
# .gitignore ignores), laid out as tools/demo/device_run.sh expects:
#   DEST/tools/*.py, DEST/tools/device_run.sh, DEST/corpus/*.jsonl, DEST/eval/*.txt
# Then, on the GPU machine, from the repository root:
#   bash .carry/demo/tools/device_run.sh          (results in $OUT/demo.tgz.part-*)
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
dest=${1:-$top/.carry/demo}
python3 "$top/tools/demo/prepare_corpus.py" --out "$top/build/demo/corpus" >/dev/null
rm -rf "$dest/tools" "$dest/corpus" "$dest/eval"
mkdir -p "$dest/tools" "$dest/corpus" "$dest/eval"
cp "$top"/tools/demo/*.py "$top/tools/demo/device_run.sh" "$dest/tools/"
cp "$top"/build/demo/corpus/*.jsonl "$dest/corpus/"
cp "$top"/models/demo/eval/*.txt "$dest/eval/"
echo "staged in $dest ($(du -sh "$dest" | cut -f1))"

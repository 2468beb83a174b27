#!/usr/bin/env bash
# tests/server/fetch-openai.sh: the official `openai` npm client, pinned by version and
# SHA-256, cached in tests/.cache/openai-VERSION/package. Prints the package directory.
set -eu
version=5.23.2
sha=a2aa74ff8be1a80a215af201a3d2228e999464d166c1eaec2c9ca313395fbef1
top=$(cd "$(dirname "$0")/../.." && pwd)
dir="$top/tests/.cache/openai-$version"
if [ ! -f "$dir/package/index.mjs" ]; then
    mkdir -p "$dir"
    (cd "$dir" && npm pack --silent "openai@$version" >/dev/null)
    got=$(sha256sum "$dir/openai-$version.tgz" | cut -d' ' -f1)
    if [ "$got" != "$sha" ]; then
        echo "fetch-openai: openai-$version.tgz has SHA-256 $got, expected $sha" >&2
        exit 1
    fi
    tar -xzf "$dir/openai-$version.tgz" -C "$dir"
fi
echo "$dir/package"

#!/usr/bin/env bash
# tools/run-main.sh BUILD: the README's main job: the demo model in models/demo and its voice
# adapter write a post (loam generate with no -m).
set -eu
exec "${1:-build}/loam" generate

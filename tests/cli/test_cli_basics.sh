# The CLI front door: help, version, unknown commands.
. "$(dirname "$0")/lib.sh"
expect_out help "^usage: loam" "$LOAM" --help
expect_out version "^loam [0-9]+\.[0-9]+\.[0-9]+" "$LOAM" --version
expect_fail unknown-command 2 "$LOAM" no-such-command
finish

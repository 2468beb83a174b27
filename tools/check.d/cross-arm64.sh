#!/usr/bin/env bash
# tools/check.d/cross-arm64.sh: the aarch64 (NEON) build of the quantization library and its
# kernel test, cross-compiled with Debian's gcc-aarch64-linux-gnu and run under qemu-user.
# Only the sources test_quant needs are built (status, quant reference, every cpu/ file), so no
# aarch64 builds of libcjson & co. are required. cpu/neon.c gets -march=armv8.2-a+dotprod, as
# in the Makefile; the other ISA files compile to nothing on aarch64. qemu's default CPU has
# the dot-product extension, so the neon table is selected and tested against the reference.
# Ends with test_quant's own "N passed, N failed" line.
set -eu
cd "$(dirname "$0")/../.."
cc=${CROSS_CC:-aarch64-linux-gnu-gcc}
out=build-arm64
command -v "$cc" >/dev/null || { echo "cross-arm64: $cc not installed (tools/deps.sh)"; exit 1; }
command -v qemu-aarch64 >/dev/null || { echo "cross-arm64: qemu-aarch64 not installed (tools/deps.sh)"; exit 1; }
mkdir -p "$out/obj"
flags=(-std=c11 -O2 -g -Wall -Wextra -Wshadow -Wconversion -Wno-sign-conversion -Wstrict-prototypes
       -Wmissing-prototypes -Wformat=2 -Wno-format-nonliteral -Werror -fopenmp -DLOAM_BUILD
       -Iinclude -Isrc)
objs=()
for src in src/status.c src/quant_ref.c src/cpu/*.c; do
    case "$src" in src/cpu/backend*) continue;; esac  # the forward pass needs the whole library
    obj="$out/obj/$(echo "$src" | tr / _).o"
    extra=()
    [ "$src" = src/cpu/neon.c ] && extra=(-march=armv8.2-a+dotprod)
    "$cc" "${flags[@]}" "${extra[@]}" -c "$src" -o "$obj"
    objs+=("$obj")
done
"$cc" "${flags[@]}" -UNDEBUG -DLOAM_TEST_DIR="\"$PWD/tests\"" -o "$out/test_quant" \
    tests/test_quant.c "${objs[@]}" -fopenmp -lm -lpthread
echo "cross-arm64: running $out/test_quant under qemu-aarch64"
qemu-aarch64 -L /usr/aarch64-linux-gnu "$out/test_quant"

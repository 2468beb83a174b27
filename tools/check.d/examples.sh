#!/usr/bin/env bash
# tools/check.d/examples.sh: install libloam into a scratch prefix, build every program in
# examples/ against the *installed* library through pkg-config alone, and run them on the demo
# model. The threaded example also runs under ThreadSanitizer (built against the sources, since
# the installed library is not instrumented). Ends with "N passed, N failed".
set -u
cd "$(dirname "$0")/../.."
prefix=$(mktemp -d /tmp/loam-prefix.XXXXXX)
work=$(mktemp -d /tmp/loam-examples.XXXXXX)
trap 'rm -rf "$prefix" "$work"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "  ok  $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; [ -n "${2:-}" ] && tail -n 30 "$2"; }

if make -j"$(nproc)" install PREFIX="$prefix" >"$work/install.log" 2>&1; then ok "make install"; else bad "make install" "$work/install.log"; fi
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
export LD_LIBRARY_PATH="$prefix/lib"
[ -f "$prefix/include/loam.h" ] && [ -f "$prefix/lib/libloam.a" ] && [ -L "$prefix/lib/libloam.so" ] \
    && readelf -d "$prefix/lib/libloam.so" | grep -q 'SONAME.*libloam.so.0' && ok "installed files, soname" \
    || bad "installed files, soname"
# no private symbol leaks from the shared library: every exported function is loam_*
leaks=$(nm -D --defined-only "$prefix/lib/libloam.so" | awk '$2 ~ /[TDB]/ {print $3}' | grep -v -E '^loam_[a-z0-9]' | grep -v '^_' \
    | grep -v '^\.gomp_critical_user_' || true)  # named OpenMP critical sections' locks are global by design
[ -z "$leaks" ] && ok "only loam_* symbols exported" || { echo "$leaks" | head; bad "exported non-API symbols"; }

cflags=$(pkg-config --cflags loam) libs=$(pkg-config --libs loam)
for src in examples/*.c; do
    name=$(basename "$src" .c)
    if cc -std=c11 -Wall -Wextra -Werror $cflags "$src" -o "$work/$name" $libs -lpthread >"$work/$name.build.log" 2>&1; then
        ok "build $name (pkg-config)"
    else
        bad "build $name" "$work/$name.build.log"
    fi
done
# the demo model when the tree has it, else the tiny test model (random weights)
if [ -f models/demo/config.json ]; then demo=models/demo
else
    make -j"$(nproc)" build/tests/tiny-model >/dev/null 2>&1 && build/tests/tiny-model "$work/tiny" || bad "tiny model"
    demo=$work/tiny
fi
run() { # name, expected regex, command...
    local name=$1 pat=$2; shift 2
    if timeout 300 "$@" >"$work/$name.out" 2>&1 && grep -E -q -- "$pat" "$work/$name.out"; then ok "run $name"
    else bad "run $name" "$work/$name.out"; fi
}
run posts '^--- post 3 ---' "$work/posts" "$demo" "$demo/adapter"
run stream_chat '^\[[0-9]+ prompt tokens, [0-9]+ generated\]' sh -c "printf 'Hello\nWrite a post.\n' | '$work/stream_chat' '$demo'"
run two_adapters '^\[b\] ' "$work/two_adapters" "$demo" "$demo/adapter" "$demo/adapter"

# ThreadSanitizer on the threaded example (library built from source with -fsanitize=thread)
if make -j"$(nproc)" BUILD=build-tsan SAN="-fsanitize=thread" OPT="-O1 -g" build-tsan/libloam.a >"$work/tsan.build.log" 2>&1 \
   && cc -std=c11 -fsanitize=thread -g -Iinclude examples/two_adapters.c build-tsan/libloam.a \
        $(pkg-config --libs-only-l libcjson libpcre2-8 libutf8proc libmicrohttpd) -fopenmp -lm -lpthread \
        -o "$work/two_adapters_tsan" >>"$work/tsan.build.log" 2>&1; then
    ok "build two_adapters (TSan)"
    # libgomp is not TSan-instrumented: one OpenMP thread keeps its runtime out of the report
    run two_adapters_tsan '^\[b\] ' env OMP_NUM_THREADS=1 TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" \
        "$work/two_adapters_tsan" "$demo" "$demo/adapter" "$demo/adapter"
else
    bad "build two_adapters (TSan)" "$work/tsan.build.log"
fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]

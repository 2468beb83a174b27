#!/usr/bin/env bash
# tests/cli/test_demo_model.sh: the demo model shipped in models/demo (issue 6) is intact and
# loads: checksums, the 25 MB size budget, `loam inspect` of the model and the adapter, and
# `loam logits --reference` against the PyTorch float32 reference logits of
# tests/data/demo/logits_{base,lora}.npy (tools/demo/reference.py; measured max |diff| 1.1e-5,
# tolerance 1e-3). The fast path runs too; its int8-activation error is not judged here.
. "$(dirname "$0")/lib.sh"
top=${LOAM_TOP:-$(cd "$(dirname "$0")/../.." && pwd)}
demo=$top/models/demo
data=$top/tests/data/demo

expect_ok "demo checksums" bash -c "cd '$demo' && sha256sum --quiet -c SHA256SUMS"
size=$(du -sb "$demo" | cut -f1)
expect_ok "demo size $size <= 25 MB" test "$size" -le 25000000
expect_out "inspect demo model" 'quantization: affine, 4 bits, group size 64' "$LOAM" inspect "$demo"
expect_out "inspect demo model arch" 'layers 6, hidden 384, heads 6, kv heads 2, head_dim 64, vocab 4096' \
    "$LOAM" inspect "$demo"
expect_out "inspect demo adapter" 'lora, rank 8, scale 20, num_layers 4' "$LOAM" inspect "$demo/adapter"

# "And God said, Let there be" (tests/data/demo/golden.json "logits_prompt")
ids=313,422,414,11,1350,404,298
npy_floats() { # file -> one float per line (little-endian float32 .npy, format 1.0)
    local hl; hl=$(od -An -tu2 -j8 -N2 "$1" | tr -d ' ')
    od -An -v -tf4 -j $((10 + hl)) "$1" | tr -s ' ' '\n' | grep -v '^$'
}
max_abs_diff() { # a.npy b.npy -> max |a-b| (and the element counts must agree)
    paste <(npy_floats "$1") <(npy_floats "$2") |
        awk 'NF != 2 { bad = 1 } { d = $1 - $2; if (d < 0) d = -d; if (d > m) m = d; n++ }
             END { if (bad || n != 7 * 4096) print "count-mismatch"; else printf "%.3g\n", m }'
}
within() { awk -v d="$1" -v t="$2" 'BEGIN { exit !(d != "count-mismatch" && d + 0 <= t + 0) }'; }
for variant in base lora; do
    extra=()
    [ "$variant" = lora ] && extra=(-a "$demo/adapter")
    out=$TMPD/logits_$variant.npy
    expect_ok "logits $variant (reference path)" "$LOAM" logits -m "$demo" "${extra[@]}" --ids $ids -o "$out" --reference
    d=$(max_abs_diff "$out" "$data/logits_$variant.npy")
    expect_ok "logits $variant vs PyTorch: max |diff| $d <= 1e-3" within "$d" 1e-3
    expect_ok "logits $variant (fast path)" "$LOAM" logits -m "$demo" "${extra[@]}" --ids $ids -o "$TMPD/fast.npy"
done
finish

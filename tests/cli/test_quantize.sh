# `loam synth` and `loam quantize` end to end: a float checkpoint from `loam synth --float`
# quantized by `loam quantize` gives the same layout as `loam synth` writes directly; the
# results open in `loam inspect` and run in `loam logits`; bad input exits 1 (one stderr line),
# bad usage exits 2.
. "$(dirname "$0")/lib.sh"
export LC_ALL=C
D=$TMPD

# synth
expect_out synth-help "presets: tiny qwen3-0.6b" "$LOAM" synth --help
expect_out synth-tiny "preset tiny, 57 tensors in 1 shard" "$LOAM" synth --preset tiny "$D/q4"
expect_out synth-lora "adapter: LoRA rank 4 on the last 2 layers" \
    "$LOAM" synth --preset tiny "$D/q4l" --lora-rank 4 --lora-layers 2
expect_out synth-lora-inspect "lora, rank 4" "$LOAM" inspect "$D/q4l/adapter"
expect_fail synth-lora-bad 2 "$LOAM" synth --preset tiny "$D/q4m" --lora-rank 0
expect_ok synth-same-seed "$LOAM" synth --preset tiny "$D/q4b"
expect_ok same-bytes cmp "$D/q4/model.safetensors" "$D/q4b/model.safetensors"
expect_ok synth-seed-2 "$LOAM" synth --preset tiny --seed 2 "$D/q4c"
if cmp -s "$D/q4/model.safetensors" "$D/q4c/model.safetensors"; then _t_fail other-seed "same bytes"; else _t_pass; fi
expect_out synth-3bit "3-bit group 128" "$LOAM" synth --preset tiny --bits 3 --group-size 128 "$D/q3"
expect_out synth-float "bf16 \(not quantized\)" "$LOAM" synth --preset tiny --float "$D/f"
expect_out inspect-synth "quantization: affine, 4 bits, group size 64" "$LOAM" inspect "$D/q4"
expect_out inspect-3bit "affine 3-bit g128" "$LOAM" inspect "$D/q3"
expect_ok logits-synth "$LOAM" logits -m "$D/q4" --ids 1,2,3 -o "$D/l4.npy"
expect_fail synth-not-empty 1 "$LOAM" synth --preset tiny "$D/q4"
expect_fail synth-unknown 2 "$LOAM" synth --preset qwen9-1t "$D/x"
expect_fail synth-no-preset 2 "$LOAM" synth "$D/x"
expect_fail synth-bits 2 "$LOAM" synth --preset tiny --bits 7 "$D/x"
expect_fail synth-group 2 "$LOAM" synth --preset tiny --group-size 48 "$D/x"

# quantize
expect_out quantize-help "mlx_lm.convert -q" "$LOAM" quantize --help
expect_out quantize "57 tensors in 1 shard, 0.00 GB, 4-bit group 64" "$LOAM" quantize "$D/f" "$D/fq"
"$LOAM" inspect "$D/q4" | sed 1,3d >"$D/a.txt"
"$LOAM" inspect "$D/fq" | sed 1,3d >"$D/b.txt"
expect_ok same-layout-as-synth cmp "$D/a.txt" "$D/b.txt"
expect_ok same-config cmp "$D/q4/config.json" "$D/fq/config.json"
expect_ok logits-quantized "$LOAM" logits -m "$D/fq" --ids 1,2,3 -o "$D/lq.npy"
expect_out quantize-f16 "8-bit group 32" "$LOAM" quantize "$D/f" "$D/f16" --bits 8 --group-size 32 --dtype f16 --threads 1
expect_out inspect-f16 "model.norm.weight +F16" "$LOAM" inspect "$D/f16"
expect_out quantize-1-thread "2-bit group 128" "$LOAM" quantize --bits 2 --group-size 128 "$D/f" "$D/q2"
expect_fail quantize-again 1 "$LOAM" quantize "$D/fq" "$D/x"
expect_fail quantize-not-empty 1 "$LOAM" quantize "$D/f" "$D/fq"
expect_fail quantize-missing 1 "$LOAM" quantize "$D/nothing" "$D/x"
expect_fail quantize-bits 2 "$LOAM" quantize --bits 7 "$D/f" "$D/x"
expect_fail quantize-group 2 "$LOAM" quantize --group-size 100 "$D/f" "$D/x"
expect_fail quantize-dtype 2 "$LOAM" quantize --dtype f64 "$D/f" "$D/x"
expect_fail quantize-args 2 "$LOAM" quantize "$D/f"
expect_fail quantize-option 2 "$LOAM" quantize --fast "$D/f" "$D/x"
finish

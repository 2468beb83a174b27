# `loam fuse`: a one-layer quantized model and an mlx-lm adapter made here with printf; the
# fused directory must be a model `loam inspect` reads, with the files mlx_lm.fuse writes;
# --dequantize drops the quantization; usage errors exit 2, bad inputs exit 1 with one stderr
# line naming the problem, and a failed fuse leaves no output behind. (The numbers are checked
# in tests/test_fuse.c.)
. "$(dirname "$0")/lib.sh"
export LC_ALL=C

le64() { # the 8 little-endian bytes of N as printf escapes
    local n=$1 s="" i
    for i in 0 1 2 3 4 5 6 7; do s="$s\\x$(printf %02x $((n & 255)))"; n=$((n >> 8)); done
    printf '%s' "$s"
}
st() { # FILE "name DTYPE s0,s1 BYTES" ...: a safetensors file, every data byte 0x01
    local f=$1 h='{' off=0 spec name dt shape nb sep=''
    shift
    for spec in "$@"; do
        read -r name dt shape nb <<<"$spec"
        h="$h$sep\"$name\":{\"dtype\":\"$dt\",\"shape\":[$shape],\"data_offsets\":[$off,$((off + nb))]}"
        sep=, off=$((off + nb))
    done
    h="$h}"
    printf "$(le64 ${#h})" >"$f"
    printf '%s' "$h" >>"$f"
    head -c "$off" /dev/zero | tr '\0' '\1' >>"$f"
}
out_has() { # NAME FILE PATTERN: FILE exists and matches the extended regex
    if [ -f "$2" ] && grep -E -q -- "$3" "$2"; then _t_pass; else _t_fail "$1" "$2 lacks /$3/"; fi
}
out_lacks() { # NAME FILE PATTERN
    if [ -f "$2" ] && ! grep -E -q -- "$3" "$2"; then _t_pass; else _t_fail "$1" "$2 has /$3/ or is missing"; fi
}
absent() { # NAME PATH
    if [ ! -e "$2" ]; then _t_pass; else _t_fail "$1" "$2 exists"; fi
}

M=$TMPD/model A=$TMPD/adapter
mkdir -p "$M" "$A"
st "$M/model.safetensors" \
    "model.embed_tokens.weight BF16 8,32 512" \
    "model.layers.0.self_attn.q_proj.weight U32 32,4 512" \
    "model.layers.0.self_attn.q_proj.scales BF16 32,1 64" \
    "model.layers.0.self_attn.q_proj.biases BF16 32,1 64" \
    "model.layers.0.input_layernorm.weight BF16 32 64" \
    "model.norm.weight BF16 32 64"
printf '{"num_hidden_layers": 1, "hidden_size": 32, "_name_or_path": "x", "attention_dropout": 0.0,\n "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "quantization": {"group_size": 32, "bits": 4}}\n' >"$M/config.json"
printf '{"version": "1.0"}\n' >"$M/tokenizer.json"
printf '{"eos_token_id": 2}\n' >"$M/generation_config.json"
st "$A/adapters.safetensors" \
    "model.layers.0.self_attn.q_proj.lora_a F32 32,2 256" \
    "model.layers.0.self_attn.q_proj.lora_b F32 2,32 256"
printf '{"fine_tune_type": "lora", "num_layers": -1, "lora_parameters": {"rank": 2, "scale": 1.0}}\n' >"$A/adapter_config.json"

# usage
expect_out help "^usage: loam fuse" "$LOAM" fuse --help
expect_fail no-args 2 "$LOAM" fuse
expect_fail no-adapter 2 "$LOAM" fuse -m "$M" "$TMPD/o"
expect_fail no-out 2 "$LOAM" fuse -m "$M" -a "$A"
expect_fail two-outs 2 "$LOAM" fuse -m "$M" -a "$A" "$TMPD/o1" "$TMPD/o2"
expect_fail bad-option 2 "$LOAM" fuse -m "$M" -a "$A" --bits 3 "$TMPD/o"
expect_fail dangling-m 2 "$LOAM" fuse -a "$A" "$TMPD/o" -m

# fuse, then the output is a model directory
expect_out fuse "^fused " "$LOAM" fuse -m "$M" -a "$A" "$TMPD/fused"
expect_out inspect-fused "self_attn.q_proj" "$LOAM" inspect "$TMPD/fused"
out_has config-sorted "$TMPD/fused/config.json" '^    "hidden_size": 32,$'
out_has config-qc "$TMPD/fused/config.json" '"quantization_config": \{'
out_lacks config-name "$TMPD/fused/config.json" '_name_or_path'
# numbers as Python writes them back: floats stay floats (json.load then json.dump)
out_has config-float-zero "$TMPD/fused/config.json" '^    "attention_dropout": 0\.0,$'
out_has config-float-exp "$TMPD/fused/config.json" '^    "rms_norm_eps": 1e-06,$'
out_has config-float-big "$TMPD/fused/config.json" '^    "rope_theta": 1000000\.0$'
out_has index "$TMPD/fused/model.safetensors.index.json" '"model.layers.0.self_attn.q_proj.scales": "model.safetensors"'
out_has tokenizer "$TMPD/fused/tokenizer.json" 'version'
out_has generation "$TMPD/fused/generation_config.json" 'eos_token_id'
expect_fail exists 1 "$LOAM" fuse -m "$M" -a "$A" "$TMPD/fused"
out_has exists-untouched "$TMPD/fused/config.json" 'quantization'

# --dequantize: float weights, no quantization keys
expect_ok dequantize "$LOAM" fuse --dequantize -a "$A" -m "$M" "$TMPD/deq"
out_lacks deq-config "$TMPD/deq/config.json" 'quantization'
out_lacks deq-index "$TMPD/deq/model.safetensors.index.json" 'scales|biases'
expect_out deq-inspect "q_proj" "$LOAM" inspect "$TMPD/deq"

# bad inputs: exit 1, one line naming the problem, no output left
B=$TMPD/bad-adapter
mkdir -p "$B"
cp "$A/adapter_config.json" "$B/"
st "$B/adapters.safetensors" \
    "model.layers.0.self_attn.q_proj.lora_a F32 31,2 248" \
    "model.layers.0.self_attn.q_proj.lora_b F32 2,32 256"
expect_fail bad-shape 1 "$LOAM" fuse -m "$M" -a "$B" "$TMPD/never"
if grep -q 'model.layers.0.self_attn.q_proj.lora_a' "$TMPD/err"; then _t_pass; else _t_fail bad-shape-msg "$(cat "$TMPD/err")"; fi
absent bad-shape-no-output "$TMPD/never"
expect_fail no-model 1 "$LOAM" fuse -m "$TMPD/none" -a "$A" "$TMPD/never"
expect_fail no-adapter-dir 1 "$LOAM" fuse -m "$M" -a "$TMPD/none" "$TMPD/never"
printf '{"fine_tune_type": "full"}' >"$B/adapter_config.json"
expect_fail full-finetune 1 "$LOAM" fuse -m "$M" -a "$B" "$TMPD/never"
absent no-output "$TMPD/never"
if ls "$TMPD" | grep -q '\.tmp\.'; then _t_fail no-tmp "$(ls "$TMPD")"; else _t_pass; fi
finish

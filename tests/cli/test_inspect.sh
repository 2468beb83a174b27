# `loam inspect`: a sharded quantized model directory, a single file, mlx-lm and PEFT adapter
# directories (facts checked in text and --json), and every kind of malformed input: exit 1
# with one stderr line naming the file, no crash and no sanitizer report (the ASan suite runs
# this same script). All files are made here with printf; no binary fixtures.
. "$(dirname "$0")/lib.sh"
export LC_ALL=C

# le64 N: the 8 little-endian bytes of N as printf escapes
le64() {
    local n=$1 s="" i
    for i in 0 1 2 3 4 5 6 7; do s="$s\\x$(printf %02x $((n & 255)))"; n=$((n >> 8)); done
    printf '%s' "$s"
}
# raw_st FILE HEADER DATA_BYTES [N]: 8-byte length (N, default the header length), the header,
# DATA_BYTES bytes of 0x01
raw_st() {
    local f=$1 h=$2 d=$3 n=${4:-${#2}}
    printf "$(le64 "$n")" >"$f"
    printf '%s' "$h" >>"$f"
    head -c "$d" /dev/zero | tr '\0' '\1' >>"$f"
}
# st FILE META_JSON "name DTYPE s0,s1 BYTES" ...: a valid file, offsets in the order given
st() {
    local f=$1 meta=$2; shift 2
    local h="{\"__metadata__\":$meta" off=0 total=0 spec name dt shape nb
    for spec in "$@"; do
        read -r name dt shape nb <<<"$spec"
        h="$h,\"$name\":{\"dtype\":\"$dt\",\"shape\":[$shape],\"data_offsets\":[$off,$((off + nb))]}"
        off=$((off + nb))
    done
    raw_st "$f" "$h}" "$off"
}
json_has() { # NAME JS_EXPR CMD...: stdout is one JSON object o for which JS_EXPR is true
    local name=$1 expr=$2; shift 2
    if "$@" >"$TMPD/out" 2>"$TMPD/err"; then
        if node -e "const o = JSON.parse(require('fs').readFileSync('$TMPD/out', 'utf8')); process.exit(($expr) ? 0 : 1)" 2>>"$TMPD/err"
        then _t_pass; else _t_fail "$name" "JSON check failed: $expr: $(head -c 300 "$TMPD/err")"; fi
    else _t_fail "$name" "exit $?: $(head -c 300 "$TMPD/err")"; fi
}
fail_naming() { # NAME WHAT CMD...: exit 1, one stderr line, which contains WHAT
    local name=$1 what=$2; shift 2
    expect_fail "$name" 1 "$@"
    if grep -qF -- "$what" "$TMPD/err"; then _t_pass
    else _t_fail "$name" "stderr does not name $what: $(head -c 300 "$TMPD/err")"; fi
}

# ---- a sharded, quantized model directory ---------------------------------------------------
M=$TMPD/model
mkdir -p "$M"
cat >"$M/config.json" <<'EOF'
{"architectures":["Qwen3ForCausalLM"],"model_type":"qwen3","hidden_size":32,"num_hidden_layers":2,
 "num_attention_heads":4,"num_key_value_heads":2,"head_dim":8,"vocab_size":16,"intermediate_size":64,
 "tie_word_embeddings":true,"rope_theta":1000000,"rope_scaling":null,"max_position_embeddings":128,
 "torch_dtype":"bfloat16",
 "quantization":{"group_size":32,"bits":4,"mode":"affine",
   "model.layers.0.self_attn.q_proj":{"group_size":32,"bits":8},"model.norm":false}}
EOF
st "$M/model-00001-of-00002.safetensors" '{"format":"mlx"}' \
    "model.embed_tokens.weight U32 16,4 256" "model.embed_tokens.scales BF16 16,1 32" \
    "model.embed_tokens.biases BF16 16,1 32"
st "$M/model-00002-of-00002.safetensors" '{"format":"mlx"}' \
    "model.layers.0.self_attn.q_proj.weight U32 32,8 1024" \
    "model.layers.0.self_attn.q_proj.scales BF16 32,1 64" \
    "model.layers.0.self_attn.q_proj.biases BF16 32,1 64" "model.norm.weight BF16 32 64"
idx='{"metadata":{"total_size":1536},"weight_map":{'
for t in weight scales biases; do idx="$idx\"model.embed_tokens.$t\":\"model-00001-of-00002.safetensors\","; done
for t in weight scales biases; do idx="$idx\"model.layers.0.self_attn.q_proj.$t\":\"model-00002-of-00002.safetensors\","; done
printf '%s' "$idx\"model.norm.weight\":\"model-00002-of-00002.safetensors\"}}" >"$M/model.safetensors.index.json"

expect_ok help "$LOAM" inspect --help
expect_out help-text "^usage: loam inspect PATH" "$LOAM" inspect --help
expect_out model-kind "model directory, 2 shards \(from model.safetensors.index.json\)" "$LOAM" inspect "$M"
expect_out model-config "layers 2, hidden 32, heads 4, kv heads 2, head_dim 8, vocab 16, ffn 64, tied embeddings yes" "$LOAM" inspect "$M"
expect_out model-rope "rope theta 1000000, rope scaling none, max positions 128, dtype bfloat16" "$LOAM" inspect "$M"
expect_out model-quant "quantization: affine, 4 bits, group size 32 \(config \"quantization\"\)" "$LOAM" inspect "$M"
expect_out model-overrides "overrides: model.layers.0.self_attn.q_proj affine 8 bits, group 32; model.norm not quantized" "$LOAM" inspect "$M"
expect_out model-qcount "quantized weights: 2 of 7 tensors" "$LOAM" inspect "$M"
expect_out model-row "model.layers.0.self_attn.q_proj.weight +U32 +\[32, 8\] +1024 +1  affine 8-bit g32" "$LOAM" inspect "$M"
expect_out model-totals "totals: 7 tensors, 1568 parameters .*1536 bytes of tensor data" "$LOAM" inspect "$M"
expect_out model-dtypes "BF16 +5 tensors +128 elements +256 bytes" "$LOAM" inspect "$M"
json_has model-json "o.kind === 'model' && o.index === true && o.shards.length === 2 && o.shards[0].metadata.format === 'mlx'" "$LOAM" inspect --json "$M"
json_has model-json-config "o.config.architecture === 'Qwen3ForCausalLM' && o.config.num_key_value_heads === 2 && o.config.head_dim === 8 && o.config.tie_word_embeddings === true && o.config.rope_theta === 1e6 && o.config.rope_scaling === null" "$LOAM" inspect --json "$M"
json_has model-json-quant "o.quantization.bits === 4 && o.quantization.group_size === 32 && o.quantization.overrides['model.norm'] === false && o.quantization.quantized_tensors.join() === 'model.embed_tokens.weight,model.layers.0.self_attn.q_proj.weight'" "$LOAM" inspect --json "$M"
json_has model-json-totals "o.totals.parameters === 1568 && o.totals.bytes === 1536 && o.totals.tensors === 7 && o.totals.dtypes.U32.tensors === 2" "$LOAM" inspect --json "$M"
json_has model-json-tensor "o.tensors.find(t => t.name === 'model.embed_tokens.weight').parameters === 512 && o.tensors.find(t => t.name === 'model.embed_tokens.scales').parameters === 0 && o.tensors.find(t => t.name === 'model.layers.0.self_attn.q_proj.weight').quantized.bits === 8" "$LOAM" inspect --json "$M"

# ---- one file, with and without a config.json next to it ------------------------------------
expect_out file-with-config "quantized weights: 1 of 4 tensors" "$LOAM" inspect "$M/model-00002-of-00002.safetensors"
mkdir -p "$TMPD/lone"
cp "$M/model-00001-of-00002.safetensors" "$TMPD/lone/x.safetensors"
expect_out file-alone "parameters unknown" "$LOAM" inspect "$TMPD/lone/x.safetensors"
json_has file-json "o.kind === 'file' && o.config === null && o.totals.parameters === null && o.quantization.source === null" "$LOAM" inspect --json "$TMPD/lone/x.safetensors"
raw_st "$TMPD/lone/empty.safetensors" '{}      ' 0
expect_out empty-file "totals: 0 tensors, 0 parameters" "$LOAM" inspect "$TMPD/lone/empty.safetensors"
raw_st "$TMPD/lone/mlx.safetensors" '{"__metadata__":null,"s":{"dtype":"F32","shape":[],"data_offsets":[0,4]},"z":{"dtype":"F32","shape":[0,3],"data_offsets":[4,4]}}' 4
json_has scalar-and-empty "o.tensors[0].shape.length === 0 && o.tensors[0].parameters === 1 && o.tensors[1].bytes === 0" "$LOAM" inspect --json "$TMPD/lone/mlx.safetensors"

# ---- adapters -------------------------------------------------------------------------------
A=$TMPD/mlx_adapter
mkdir -p "$A"
st "$A/adapters.safetensors" null \
    "model.layers.1.mlp.down_proj.lora_a F32 64,4 1024" "model.layers.1.mlp.down_proj.lora_b F32 4,32 512" \
    "model.layers.1.self_attn.q_proj.lora_a F32 32,4 512" "model.layers.1.self_attn.q_proj.lora_b F32 4,32 512"
printf '%s' '{"fine_tune_type":"lora","num_layers":1,"lora_parameters":{"rank":4,"scale":10.0,"dropout":0.0,"keys":["self_attn.q_proj","mlp.down_proj"]}}' >"$A/adapter_config.json"
expect_out mlx-adapter "adapter: mlx-lm \(adapters.safetensors \+ adapter_config.json\)" "$LOAM" inspect "$A"
expect_out mlx-adapter-rank "lora, rank 4, scale 10, num_layers 1, dropout 0" "$LOAM" inspect "$A"
expect_out mlx-adapter-layers "adapted layers: 1 \(1\)" "$LOAM" inspect "$A"
expect_out mlx-adapter-mods "adapted modules: mlp.down_proj, self_attn.q_proj" "$LOAM" inspect "$A"
json_has mlx-adapter-json "o.kind === 'adapter' && o.adapter.format === 'mlx-lm' && o.adapter.rank === 4 && o.adapter.scale === 10 && o.adapter.keys.length === 2 && o.adapter.adapted_layers.join() === '1' && o.adapter.tensor_ranks.join() === '4' && o.totals.parameters === 640" "$LOAM" inspect --json "$A"

P=$TMPD/peft_adapter
mkdir -p "$P"
st "$P/adapter_model.safetensors" '{"format":"pt"}' \
    "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight F32 4,32 512" \
    "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight F32 32,4 512" \
    "base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight F32 4,32 512" \
    "base_model.model.model.layers.3.self_attn.q_proj.lora_B.weight F32 32,4 512"
printf '%s' '{"peft_type":"LORA","r":4,"lora_alpha":8,"use_rslora":false,"use_dora":false,"target_modules":["q_proj"],"base_model_name_or_path":"Qwen/Qwen3-0.6B"}' >"$P/adapter_config.json"
expect_out peft-adapter "lora, rank 4, scale 2 \(lora_alpha 8 / 4\)" "$LOAM" inspect "$P"
expect_out peft-layers "adapted layers: 2 \(0, 3\)" "$LOAM" inspect "$P"
json_has peft-json "o.adapter.format === 'peft' && o.adapter.scale === 2 && o.adapter.use_rslora === false && o.adapter.target_modules[0] === 'q_proj' && o.adapter.adapted_modules.join() === 'self_attn.q_proj'" "$LOAM" inspect --json "$P"
printf '%s' '{"peft_type":"LORA","r":4,"lora_alpha":8,"use_rslora":true}' >"$P/adapter_config.json"
json_has peft-rslora "o.adapter.scale === 4" "$LOAM" inspect --json "$P"

# ---- usage errors: exit 2 -------------------------------------------------------------------
expect_fail usage-none 2 "$LOAM" inspect
expect_fail usage-option 2 "$LOAM" inspect --bogus "$M"
expect_fail usage-two 2 "$LOAM" inspect "$M" "$A"

# ---- malformed files: exit 1, one line naming the file --------------------------------------
B=$TMPD/bad
mkdir -p "$B"
ok='{"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}'
raw_st "$B/truncated.safetensors" "$ok" 10
fail_naming truncated "$B/truncated.safetensors: file is truncated" "$LOAM" inspect "$B/truncated.safetensors"
raw_st "$B/trailing.safetensors" "$ok" 20
fail_naming trailing "$B/trailing.safetensors: 4 trailing bytes" "$LOAM" inspect "$B/trailing.safetensors"
raw_st "$B/huge_header.safetensors" "$ok" 16 200000000
fail_naming header-too-large "$B/huge_header.safetensors: header length 200000000 exceeds" "$LOAM" inspect "$B/huge_header.safetensors"
raw_st "$B/past_end.safetensors" "$ok" 0 1000
fail_naming header-past-end "$B/past_end.safetensors: header length 1000 runs past" "$LOAM" inspect "$B/past_end.safetensors"
: >"$B/empty.safetensors"
fail_naming empty "$B/empty.safetensors: file is 0 bytes" "$LOAM" inspect "$B/empty.safetensors"
printf 'abc' >"$B/tiny.safetensors"
fail_naming too-small "$B/tiny.safetensors: file is 3 bytes" "$LOAM" inspect "$B/tiny.safetensors"
raw_st "$B/overlap.safetensors" '{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}}' 6
fail_naming overlap "$B/overlap.safetensors: tensor 'b': data_offsets [2, 6) overlap tensor 'a'" "$LOAM" inspect "$B/overlap.safetensors"
raw_st "$B/gap.safetensors" '{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],"data_offsets":[8,12]}}' 12
fail_naming gap "$B/gap.safetensors: tensor 'b': data_offsets [8, 12) leave a gap of 4 bytes" "$LOAM" inspect "$B/gap.safetensors"
raw_st "$B/bytes.safetensors" '{"w":{"dtype":"BF16","shape":[3,4],"data_offsets":[0,12]}}' 12
fail_naming wrong-bytes "$B/bytes.safetensors: tensor 'w': BF16 [3, 4] needs 24 bytes but data_offsets [0, 12) hold 12" "$LOAM" inspect "$B/bytes.safetensors"
raw_st "$B/json.safetensors" '{"w":{"dtype":"F32",}}' 0
fail_naming bad-json "$B/json.safetensors: header: invalid JSON" "$LOAM" inspect "$B/json.safetensors"
raw_st "$B/notobj.safetensors" '[1,2]' 0
fail_naming not-object "$B/notobj.safetensors: header is not a JSON object" "$LOAM" inspect "$B/notobj.safetensors"
raw_st "$B/utf8.safetensors" "$(printf '{"w\xc3\x28":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}')" 1
fail_naming bad-utf8 "$B/utf8.safetensors: header: invalid UTF-8 at byte 3" "$LOAM" inspect "$B/utf8.safetensors"
raw_st "$B/dtype.safetensors" '{"w":{"dtype":"Q4_K","shape":[1],"data_offsets":[0,1]}}' 1
fail_naming unknown-dtype "$B/dtype.safetensors: tensor 'w': unknown dtype \"Q4_K\"" "$LOAM" inspect "$B/dtype.safetensors"
raw_st "$B/overflow.safetensors" '{"w":{"dtype":"U8","shape":[4503599627370496,4503599627370496,2],"data_offsets":[0,1]}}' 1
fail_naming overflow-shape "$B/overflow.safetensors: tensor 'w': shape [4503599627370496, 4503599627370496, 2] has more elements than 64 bits hold" "$LOAM" inspect "$B/overflow.safetensors"
raw_st "$B/big.safetensors" '{"w":{"dtype":"I32","shape":[2,18446744073709551614],"data_offsets":[0,16]}}' 16
fail_naming shape-2-53 "$B/big.safetensors: tensor 'w': shape[1] is 2^53 or more" "$LOAM" inspect "$B/big.safetensors"
raw_st "$B/neg.safetensors" '{"w":{"dtype":"U8","shape":[-1],"data_offsets":[0,1]}}' 1
fail_naming negative-shape "$B/neg.safetensors: tensor 'w': shape[0] is negative" "$LOAM" inspect "$B/neg.safetensors"
raw_st "$B/dup.safetensors" '{"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"w":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}' 2
fail_naming duplicate-keys "$B/dup.safetensors: header: duplicate key \"w\"" "$LOAM" inspect "$B/dup.safetensors"
raw_st "$B/dims.safetensors" '{"w":{"dtype":"U8","shape":[1,1,1,1,1,1,1,1,1],"data_offsets":[0,1]}}' 1
fail_naming too-many-dims "$B/dims.safetensors: tensor 'w': shape has 9 dimensions" "$LOAM" inspect "$B/dims.safetensors"
raw_st "$B/meta.safetensors" '{"__metadata__":{"format":1}}' 0
fail_naming metadata-not-string "$B/meta.safetensors: __metadata__ value of \"format\" is not a string" "$LOAM" inspect "$B/meta.safetensors"
raw_st "$B/nl.safetensors" '{"a\nb":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}' 2
fail_naming newline-in-name "$B/nl.safetensors: tensor 'a?b'" "$LOAM" inspect "$B/nl.safetensors"
fail_naming missing-path "$B/nope.safetensors" "$LOAM" inspect "$B/nope.safetensors"

# ---- malformed directories ------------------------------------------------------------------
D=$TMPD/dirs
mkdir -p "$D/none" "$D/dup" "$D/stale" "$D/missing" "$D/cfg" "$D/noacfg" "$D/badacfg" "$D/badshard"
fail_naming no-shards "$D/none: no model*.safetensors shards" "$LOAM" inspect "$D/none"
st "$D/dup/model-1.safetensors" null "x U8 1 1"
st "$D/dup/model-2.safetensors" null "x U8 1 1"
fail_naming dup-across-shards "$D/dup: tensor 'x' is in both model-1.safetensors and model-2.safetensors" "$LOAM" inspect "$D/dup"
st "$D/stale/model.safetensors" null "x U8 1 1" "y U8 1 1"
printf '%s' '{"weight_map":{"x":"model.safetensors"}}' >"$D/stale/model.safetensors.index.json"
fail_naming stale-index "$D/stale/model.safetensors.index.json: does not list tensor 'y' of model.safetensors" "$LOAM" inspect "$D/stale"
printf '%s' '{"weight_map":{"x":"model-00001-of-00002.safetensors"}}' >"$D/missing/model.safetensors.index.json"
fail_naming missing-shard "$D/missing/model.safetensors.index.json: names shard model-00001-of-00002.safetensors, which is missing" "$LOAM" inspect "$D/missing"
st "$D/cfg/model.safetensors" null "x U8 1 1"
printf '{"hidden_size": 32,' >"$D/cfg/config.json"
fail_naming bad-config "$D/cfg/config.json: invalid JSON" "$LOAM" inspect "$D/cfg"
printf '{"hidden_size": "32"}' >"$D/cfg/config.json"
fail_naming config-type "$D/cfg/config.json: hidden_size is not an integer" "$LOAM" inspect "$D/cfg"
printf '{"quantization": {"bits": 4.5}}' >"$D/cfg/config.json"
fail_naming config-bits "$D/cfg/config.json: quantization.bits is not a positive integer" "$LOAM" inspect "$D/cfg"
st "$D/badshard/model.safetensors" null "x U8 1 1"
printf 'garbage!' >"$D/badshard/model-2.safetensors"
fail_naming bad-shard "$D/badshard/model-2.safetensors: header length 2406443243860549991 exceeds" "$LOAM" inspect "$D/badshard"
st "$D/noacfg/adapters.safetensors" null "model.layers.0.self_attn.q_proj.lora_a F32 2,1 8"
fail_naming adapter-no-config "$D/noacfg/adapter_config.json: missing" "$LOAM" inspect "$D/noacfg"
st "$D/badacfg/adapter_model.safetensors" null "x U8 1 1"
printf '{"r": 4' >"$D/badacfg/adapter_config.json"
fail_naming adapter-bad-config "$D/badacfg/adapter_config.json: invalid JSON" "$LOAM" inspect "$D/badacfg"
printf '{"peft_type": "PREFIX_TUNING"}' >"$D/badacfg/adapter_config.json"
fail_naming adapter-not-lora "$D/badacfg/adapter_config.json: peft_type is \"PREFIX_TUNING\", not LORA" "$LOAM" inspect "$D/badacfg"
raw_st "$D/badacfg/adapter_model.safetensors" '{"w":' 0
fail_naming adapter-bad-file "$D/badacfg/adapter_model.safetensors: header: invalid JSON" "$LOAM" inspect "$D/badacfg"
finish

# `loam logits` and `loam bench` on the committed transformers fixtures (tests/data/models):
# the .npy layout and its logits against transformers' (fast and --reference path), the bench
# table and JSON, a synthetic adapter, and the usage / model errors (exit 2 / 1, one line).
. "$(dirname "$0")/lib.sh"
export LC_ALL=C
D="$LOAM_TOP/tests/data/models/qwen3_q4_g64_tied"
IDS=$(node -e "console.log(require('$D/reference.json').ids.join(','))")

# npy_close NAME NPY F32 TOL: .npy v1.0 '<f4' C-order [24, 384] whose data is within relative
# L2 error TOL of the raw float32 file
npy_close() {
    local name=$1 npy=$2 f32=$3 tol=$4
    if node -e "
const fs = require('fs');
const b = fs.readFileSync('$npy'), want = fs.readFileSync('$f32');
if (b.slice(0, 8).toString('latin1') !== '\x93NUMPY\x01\x00') throw 'magic';
const hl = b.readUInt16LE(8), hdr = b.slice(10, 10 + hl).toString('latin1');
if ((10 + hl) % 64 || !hdr.endsWith('\n')) throw 'alignment';
if (!hdr.includes(\"'descr': '<f4'\") || !hdr.includes(\"'fortran_order': False\") ||
    !hdr.includes(\"'shape': (24, 384)\")) throw 'header ' + hdr;
const got = b.slice(10 + hl);
if (got.length !== want.length) throw 'size';
let num = 0, den = 0;
for (let i = 0; i < got.length; i += 4) {
  const g = got.readFloatLE(i), w = want.readFloatLE(i);
  num += (g - w) * (g - w); den += w * w;
}
const r = Math.sqrt(num / den);
if (!(r < $tol)) throw 'rel L2 ' + r;
" 2>"$TMPD/node.err"; then _t_pass; else _t_fail "$name" "$(head -c 300 "$TMPD/node.err")"; fi
}

expect_ok logits-base "$LOAM" logits -m "$D" --ids "$IDS" -o "$TMPD/base.npy" -t 2
npy_close logits-base-values "$TMPD/base.npy" "$D/logits_base.f32" 3e-2
expect_ok logits-ref "$LOAM" logits -m "$D" --ids "$IDS" -o "$TMPD/ref.npy" --reference
npy_close logits-ref-values "$TMPD/ref.npy" "$D/logits_base.f32" 1e-4
expect_ok logits-mlx "$LOAM" logits -m "$D" -a "$D/adapter_mlx" --ids "$IDS" -o "$TMPD/mlx.npy" --reference
npy_close logits-mlx-values "$TMPD/mlx.npy" "$D/logits_mlx.f32" 1e-4
expect_ok logits-peft "$LOAM" logits -m "$D" -a "$D/adapter_peft" --ids "$IDS" -o "$TMPD/peft.npy"
npy_close logits-peft-values "$TMPD/peft.npy" "$D/logits_peft.f32" 3e-2

expect_fail logits-no-ids 2 "$LOAM" logits -m "$D" -o "$TMPD/x.npy"
expect_fail logits-bad-ids 2 "$LOAM" logits -m "$D" --ids 1,,2 -o "$TMPD/x.npy"
expect_fail logits-token-range 1 "$LOAM" logits -m "$D" --ids 1,384 -o "$TMPD/x.npy"
[ ! -e "$TMPD/x.npy" ] && _t_pass || _t_fail logits-no-partial-file "x.npy was left behind"
expect_fail logits-no-model 1 "$LOAM" logits -m "$TMPD/none" --ids 1 -o "$TMPD/x.npy"
expect_fail logits-bad-adapter 1 "$LOAM" logits -m "$D" -a "$TMPD" --ids 1 -o "$TMPD/x.npy"

expect_out bench-table '^\| Qwen3ForCausalLM 4-bit g64 .*\| tg8 ' \
    "$LOAM" bench -m "$D" -p 16 -n 8 -r 2 --batch 1,3 -t 2
grep -q 'memory read bandwidth (2 threads): [0-9.]* GB/s' "$TMPD/out" && _t_pass \
    || _t_fail bench-bandwidth "no bandwidth line: $(tail -n 2 "$TMPD/out")"
mkdir "$TMPD/t"
if TMPDIR="$TMPD/t" "$LOAM" bench -m "$D" -p 16 -n 8 -r 2 --batch 2 --lora-rank 4 --lora-layers 1 --json \
    >"$TMPD/b.json" 2>"$TMPD/err" && node -e "
const o = JSON.parse(require('fs').readFileSync('$TMPD/b.json', 'utf8'));
const t = o.tests.map(x => x.test).join(' ');
if (t !== 'pp16 tg8 base tg8 +lora b2 tg32' || !(typeof o.lora_decode_cost === 'number') || !(o.tests[2].tps > 0) || !(o.read_bandwidth_gbs > 0) ||
    o.adapter !== ' +lora r4 x1' || !(o.tests[1].of_ceiling > 0)) throw t;
"; then _t_pass; else _t_fail bench-json "$(head -c 300 "$TMPD/err")"; fi
[ -z "$(ls -A "$TMPD/t")" ] && _t_pass || _t_fail bench-tmp "temporary adapter left behind"
expect_fail bench-bad-batch 2 "$LOAM" bench -m "$D" --batch 1,x
expect_fail bench-lora-and-a 2 "$LOAM" bench -m "$D" -a "$D/adapter_mlx" --lora-rank 4
expect_fail bench-no-model 1 "$LOAM" bench -m "$TMPD/none"
expect_fail bench-bad-backend 2 "$LOAM" bench -m "$D" --backend gpu
expect_out bench-backend-cpu '\| cpu ' "$LOAM" bench -m "$D" --backend cpu -p 0 -n 2 -r 1 --batch ""
finish

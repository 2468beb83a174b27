# `loam perplexity` on the tiny test model (random weights, byte-level tokenizer): its NLL equals
# one recomputed here from `loam tokenize` ids and `loam logits` output, window by window
# (both on the reference path); with an adapter it differs; errors exit 1 or 2 with one line.
. "$(dirname "$0")/lib.sh"
export LC_ALL=C
"$LOAM_BUILD/tests/tiny-model" "$TMPD/tiny" || { echo "0 passed, 1 failed"; exit 1; }
M="$TMPD/tiny"
printf 'Hello world, this is a small text for perplexity. It has a few sentences.\nAnd a second line!\n' >"$TMPD/t.txt"

expect_ok tokenize "$LOAM" tokenize -m "$M" --json --file "$TMPD/t.txt"
cp "$TMPD/out" "$TMPD/ids.json"
expect_ok ppl "$LOAM" perplexity -m "$M" "$TMPD/t.txt" --ctx 16 --reference --json
cp "$TMPD/out" "$TMPD/ppl.json"
# the windows' ids, one comma-separated line each
node -e "
const ids = JSON.parse(require('fs').readFileSync('$TMPD/ids.json', 'utf8'));
for (let i = 0; i < ids.length; i += 16) if (ids.length - i >= 2) console.log(ids.slice(i, i + 16).join(','));
" >"$TMPD/windows"
w=0
while read -r line; do
    w=$((w + 1))
    "$LOAM" logits -m "$M" --ids "$line" -o "$TMPD/w$w.npy" --reference 2>>"$TMPD/err" || _t_fail logits "window $w"
done <"$TMPD/windows"
if node -e "
const fs = require('fs');
const wins = fs.readFileSync('$TMPD/windows', 'utf8').trim().split('\n').map(l => l.split(',').map(Number));
let total = 0, scored = 0;
wins.forEach((ids, k) => {
  const b = fs.readFileSync('$TMPD/w' + (k + 1) + '.npy'), hl = b.readUInt16LE(8), V = 272;
  for (let i = 0; i + 1 < ids.length; i++) {
    const row = [];
    for (let j = 0; j < V; j++) row.push(b.readFloatLE(10 + hl + (i * V + j) * 4));
    const mx = Math.max(...row);
    const lse = mx + Math.log(row.reduce((s, x) => s + Math.exp(x - mx), 0));
    total += lse - row[ids[i + 1]]; scored++;
  }
});
const o = JSON.parse(fs.readFileSync('$TMPD/ppl.json', 'utf8'));
const n = JSON.parse(fs.readFileSync('$TMPD/ids.json', 'utf8')).length;
if (o.tokens !== n || o.scored !== scored || o.windows !== wins.length) throw 'counts ' + JSON.stringify(o);
if (Math.abs(o.nll - total / scored) > 1e-4 * Math.abs(o.nll)) throw 'nll ' + o.nll + ' vs ' + total / scored;
if (Math.abs(Math.log(o.perplexity) - o.nll) > 1e-5) throw 'perplexity';
" 2>"$TMPD/node.err"; then _t_pass; else _t_fail ppl-matches-logits "$(head -c 300 "$TMPD/node.err")"; fi

expect_out ppl-text '^tokens [0-9]+, scored [0-9]+ in [0-9]+ window\(s\) of 16, NLL [0-9.]+, perplexity [0-9.]+$' \
    "$LOAM" perplexity -m "$M" "$TMPD/t.txt" --ctx 16
expect_ok ppl-adapter "$LOAM" perplexity -m "$M" -a "$M/adapter" "$TMPD/t.txt" --ctx 16 --json
node -e "
const fs = require('fs');
const a = JSON.parse(fs.readFileSync('$TMPD/out', 'utf8')), b = JSON.parse(fs.readFileSync('$TMPD/ppl.json', 'utf8'));
if (a.nll === b.nll || a.scored !== b.scored) throw 'adapter made no difference';
" 2>"$TMPD/node.err" && _t_pass || _t_fail ppl-adapter-differs "$(head -c 300 "$TMPD/node.err")"

expect_fail ppl-no-file 2 "$LOAM" perplexity -m "$M"
expect_fail ppl-missing-file 1 "$LOAM" perplexity -m "$M" "$TMPD/none.txt"
expect_fail ppl-bad-ctx 2 "$LOAM" perplexity -m "$M" "$TMPD/t.txt" --ctx 1
printf 'x' >"$TMPD/one.txt"
expect_fail ppl-too-short 1 "$LOAM" perplexity -m "$M" "$TMPD/one.txt"
expect_fail ppl-no-tokenizer 1 "$LOAM" perplexity -m "$LOAM_TOP/tests/data/models/qwen3_bf16" "$TMPD/t.txt"
finish

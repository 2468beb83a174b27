# loam tokenize: output formats, options, errors (exit 1 bad files, 2 bad usage).
. "$(dirname "$0")/lib.sh"
T="$LOAM_TOP/tests/data/tokenizer/byte_level.json"
QWEN="$LOAM_TOP/tests/.cache/tokenizer-qwen3/package/models"
expect_out help "^usage: loam tokenize" "$LOAM" tokenize --help
expect_out pieces "^260	Ġhello$" "$LOAM" tokenize --tokenizer "$T" "hello world"
expect_out bos "^267	<\|endoftext\|>$" "$LOAM" tokenize --tokenizer "$T" "hello"
expect_out json "^\[267,260,265,267\]$" "$LOAM" tokenize --tokenizer "$T" --json "hello world"
expect_out no-special "^\[260,265\]$" "$LOAM" tokenize --tokenizer "$T" --json --no-special "hello world"
printf '{"model":{"type":"BPE","vocab":{"\\n":0,"\\\\":1,"\\u0001":2},"merges":[]}}' >"$TMPD/ctl.json"
expect_out escapes '^0	\\n$' "$LOAM" tokenize --tokenizer "$TMPD/ctl.json" $'\n'
expect_out escapes2 '^1	\\\\$' "$LOAM" tokenize --tokenizer "$TMPD/ctl.json" '\'
expect_out escapes3 '^2	\\x01$' "$LOAM" tokenize --tokenizer "$TMPD/ctl.json" "$(printf '\001')"
printf 'hello world' >"$TMPD/in.txt"
expect_out file "^\[260,265\]$" "$LOAM" tokenize --tokenizer "$T" --json --no-special --file "$TMPD/in.txt"
printf '\xff' >"$TMPD/bad.txt"
expect_out invalid-utf8 "^\[32,239,191,189\]$" "$LOAM" tokenize --tokenizer "$T" --json --no-special --file "$TMPD/bad.txt"
expect_out model-dir "^\[9707,1879\]$" "$LOAM" tokenize -m "$QWEN" --json "Hello world"
expect_out bench "MB/s" "$LOAM" tokenize --tokenizer "$T" --bench --file "$TMPD/in.txt" --repeat 1
printf '{"model": 1' >"$TMPD/broken.json"
expect_fail bad-json 1 "$LOAM" tokenize --tokenizer "$TMPD/broken.json" "x"
expect_fail missing-file 1 "$LOAM" tokenize --tokenizer "$TMPD/none.json" "x"
expect_fail missing-input 1 "$LOAM" tokenize --tokenizer "$T" --file "$TMPD/none.txt"
printf '{"model":{"type":"WordPiece","vocab":{}}}' >"$TMPD/wp.json"
expect_fail unsupported 1 "$LOAM" tokenize --tokenizer "$TMPD/wp.json" "x"
expect_fail no-text 2 "$LOAM" tokenize --tokenizer "$T"
expect_fail two-texts 2 "$LOAM" tokenize --tokenizer "$T" a b
expect_fail both-sources 2 "$LOAM" tokenize --tokenizer "$T" -m "$QWEN" x
expect_fail bad-option 2 "$LOAM" tokenize --tokenizer "$T" --frobnicate x
expect_fail bench-no-file 2 "$LOAM" tokenize --tokenizer "$T" --bench
finish

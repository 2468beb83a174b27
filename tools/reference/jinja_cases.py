#!/usr/bin/env python3
"""jinja_cases.py: writes tests/data/templates/unit_cases.json, the language-level truth for
tests/test_chat_template.c, by rendering each case below with jinja2 configured exactly as
Hugging Face transformers configures it for apply_chat_template:

    ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                  extensions=[jinja2.ext.loopcontrols, the generation tag])
    filters["tojson"]  = json.dumps(x, ensure_ascii=False, indent=, separators=, sort_keys=)
    globals["raise_exception"], globals["strftime_now"]

Each case is {"name", "template", "expected" (rendered text) or "error" (the Python exception
type)}, rendered with the file's "context" (JSON text, passed to loam as is) unless the case has
its own. Run from the repository root:

    python3 tools/reference/jinja_cases.py      # needs jinja2 (3.1.x used: see "jinja2" key)
"""
import itertools
import json
import os
import sys
from datetime import datetime

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment


class GenerationTag(jinja2.ext.Extension):
    """transformers' AssistantTracker as far as rendering goes: {% generation %}...{% endgeneration %}
    renders its body as a call block (a macro body: its sets stay inside)."""
    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_render"), [], [], body).set_lineno(lineno)

    def _render(self, caller):
        return caller()


def make_env():
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[jinja2.ext.loopcontrols, GenerationTag])

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def strftime_now(fmt):
        return datetime.now().strftime(fmt)

    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


CTX = {
    "messages": [
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": "Hello!", "tool_calls": [
            {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris", "days": 3}}}]},
        {"role": "tool", "content": "{\"temp\": 21.5}"},
    ],
    "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather é 天気",
                                                "parameters": {"type": "object", "properties": {
                                                    "city": {"type": "string"}, "days": {"type": "integer", "default": 1}},
                                                    "required": ["city"]}}}],
    "l": [3, 1, 2],
    "words": ["banana", "Apple", "cherry", "apple"],
    "d": {"b": 2, "a": 1, "items": "key-items", "c": None},
    "s": "  Hello, World!  ",
    "u8": "héllo wörld ñ 日本語 😀",
    "n": None,
    "t": True,
    "f": 1.5,
    "fi": 1.0,
    "big": 12345678901234,
    "neg": -7,
    "empty": [],
    "edict": {},
    "nested": [[1, 2], [3, 4]],
    "people": [{"name": "Ann", "age": 31, "tags": ["a"]}, {"name": "bob", "age": 25},
               {"name": "Cid", "age": 31, "admin": True}],
    "floats": [0.1, 1e16, 1e-05, 123.456, 2.5, -0.0, 1e100, 3.0],
    "add_generation_prompt": True,
    "bos_token": "<s>",
}

PARTS_CTX = dict(CTX, parts_messages=[
    {"role": "user", "content": [{"type": "text", "text": "Look: "}, {"type": "image"}, {"type": "text", "text": "what?"}]},
    {"role": "assistant", "content": "A cat."}])

# (name, template[, context override])
CASES = [
    # output and literals
    ("text", "plain text"),
    ("var", "{{ s }}"),
    ("none", "{{ n }}|{{ none }}|{{ None }}"),
    ("bools", "{{ t }} {{ true }} {{ false }} {{ True }}"),
    ("ints", "{{ 42 }} {{ -7 }} {{ big }} {{ 1_000 }} {{ 0x1f }} {{ 0o17 }} {{ 0b101 }}"),
    ("floats", "{% for x in floats %}{{ x }} {% endfor %}{{ 1.5e3 }} {{ 2e-7 }} {{ 1E5 }}"),
    ("float_int_kept", "{{ f }} {{ fi }} {{ 10 / 2 }} {{ 7 / 2 }}"),
    ("strings", "{{ 'a' }}{{ \"b\" }}{{ 'it''s' }}{{ 'x' 'y' }}"),
    ("escapes", "{{ 'tab\\tnl\\nq\\'dq\\\"bs\\\\' }}|{{ '\\x41\\u00e9\\U0001F600\\101' }}|{{ '\\d' }}"),
    ("list_repr", "{{ [1, 'a', none, true, 1.0, {'x': []}] }}"),
    ("dict_repr", "{{ d }}|{{ {'k': 'v\\'q'} }}|{{ {'k': 'v\"q'} }}|{{ {'k': 'both\\'\"'} }}"),
    ("tuple_repr", "{{ (1, 2) }} {{ (1,) }} {{ () }}"),
    ("repr_escapes", "{{ ['a\\nb', 'tab\\t', '\\x07', 'é', '\\u200b', '\\xa0'] }}"),
    ("undefined_print", "[{{ nope }}][{{ d.zz }}][{{ n.x }}][{{ s.x }}][{{ l[10] }}]"),
    # arithmetic and operators
    ("arith", "{{ 1 + 2 }} {{ 7 - 10 }} {{ 3 * 4 }} {{ 7 / 2 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 2 ** 10 }}"),
    ("arith_float", "{{ 1.5 + 1 }} {{ 0.1 + 0.2 }} {{ 7.5 // 2 }} {{ -7.5 % 2 }} {{ 2 ** -1 }} {{ 2.0 ** 0.5 }}"),
    ("pow_assoc", "{{ 2 ** 3 ** 2 }} {{ -2 ** 2 }} {{ (-2) ** 3 }}"),
    ("concat", "{{ 'a' ~ 1 ~ none ~ nope ~ true ~ 1.0 }}"),
    ("str_plus", "{{ 'a' + 'b' }} {{ [1] + [2, 3] }} {{ 'ab' * 3 }} {{ [0] * 3 }} {{ 3 * 'x' }}"),
    ("bool_arith", "{{ true + 1 }} {{ true * 3 }}"),
    ("compare", "{{ 1 < 2 }} {{ 2 <= 2 }} {{ 3 > 4 }} {{ 'a' < 'b' }} {{ 1 == 1.0 }} {{ 1 != 2 }} {{ [1,2] < [1,3] }} {{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }}"),
    ("eq_types", "{{ 1 == '1' }} {{ none == none }} {{ nope == nope }} {{ nope == none }} {{ true == 1 }} {{ d == {'b': 2, 'a': 1, 'items': 'key-items', 'c': none} }}"),
    ("in", "{{ 1 in l }} {{ 5 in l }} {{ 'a' in d }} {{ 'ell' in s }} {{ 'x' not in s }} {{ 'a' in nope }} {{ 'items' in d }}"),
    ("logic", "{{ true and false }} {{ true or false }} {{ not true }} {{ 0 or 'x' }} {{ 'a' and 'b' }} {{ none or [] }} {{ not nope }}"),
    ("condexpr", "{{ 'yes' if t else 'no' }} {{ 'yes' if n else 'no' }} [{{ 'y' if false }}] {{ 1 if false else 2 if true else 3 }}"),
    ("precedence", "{{ 1 + 2 * 3 }} {{ (1 + 2) * 3 }} {{ 2 * 3 ~ 4 }} {{ not 1 == 2 }} {{ -1|abs }} {{ 1 + 2|string }}"),
    # attribute and item access
    ("getattr", "{{ messages[0].role }} {{ messages[0]['content'] }} {{ d.a }} {{ d['b'] }} {{ nested[1][0] }} {{ nested.0 }}"),
    ("dict_method_vs_key", "{{ d['items'] }} {{ d.items() | list }} {{ d.get('a') }} {{ d.get('zz') }} {{ d.get('zz', 5) }}"),
    ("negative_index", "{{ l[-1] }} {{ s[0] }} {{ s[-3] }} {{ u8[1] }} {{ u8[-1] }}"),
    ("slices", "{{ l[1:] }} {{ l[:2] }} {{ l[::-1] }} {{ l[::2] }} {{ l[-2:] }} {{ s[2:7] }} {{ u8[::-1] }} {{ u8[1:4] }} {{ l[5:] }} {{ l[1:-1] }}"),
    ("slice_neg_step", "{{ [0,1,2,3,4,5][4:1:-1] }} {{ [0,1,2,3,4,5][-1:-4:-2] }} {{ 'abcdef'[::-2] }}"),
    ("messages_slice", "{% for m in messages[1:] %}{{ m.role }},{% endfor %}"),
    ("defined_tests", "{{ d.a is defined }} {{ d.zz is defined }} {{ nope is undefined }} {{ messages[2].tool_calls is defined }} {{ messages[0].tool_calls is defined }}"),
    # tests
    ("tests_types", "{{ 1 is integer }} {{ true is integer }} {{ 1.0 is float }} {{ true is number }} {{ 'a' is string }} {{ d is mapping }} {{ l is mapping }} {{ n is none }} {{ t is boolean }} {{ 1 is boolean }}"),
    ("tests_iter", "{{ l is iterable }} {{ 's' is iterable }} {{ d is iterable }} {{ 1 is iterable }} {{ nope is iterable }} {{ l is sequence }} {{ n is sequence }} {{ nope is sequence }}"),
    ("tests_tf", "{{ true is true }} {{ 1 is true }} {{ false is false }} {{ 0 is false }} {{ n is not none }}"),
    ("tests_num", "{{ 3 is odd }} {{ 4 is even }} {{ 9 is divisibleby 3 }} {{ 9 is divisibleby(4) }} {{ 3.0 is odd }}"),
    ("tests_cmp", "{{ 1 is eq 1 }} {{ 1 is equalto 2 }} {{ 2 is gt 1 }} {{ 2 is lt 1 }} {{ 2 is ge 2 }} {{ 2 is le 1 }} {{ 1 is ne 2 }} {{ 2 is in l }} {{ 'ab' is lower }} {{ 'AB' is upper }} {{ none is sameas none }}"),
    ("test_in_if", "{% if messages[0].role is eq('system') and not (messages[1].content is none) %}ok{% endif %}"),
    # filters
    ("f_default", "{{ nope | default('dflt') }} {{ d.a | d(5) }} {{ '' | default('e', true) }} {{ n | default('x') }} {{ nope | default }}|"),
    ("f_length", "{{ l | length }} {{ u8 | length }} {{ d | count }} {{ nope | length }} {{ edict | length }}"),
    ("f_case", "{{ 'hello WORLD' | upper }} {{ 'HeLLo' | lower }} {{ 'hello world' | capitalize }} {{ \"hello-world o'neil (x)y\" | title }} {{ u8 | upper }}"),
    ("f_trim", "[{{ s | trim }}] [{{ 'xxhixx' | trim('x') }}] [{{ '\\n\\t a \\u3000' | trim }}] [{{ n | trim }}]"),
    ("f_join", "{{ l | join(', ') }} {{ ['a', 'b'] | join }} {{ people | join(';', attribute='name') }} {{ [1, none, 'x'] | join('-') }}"),
    ("f_first_last", "{{ l | first }} {{ l | last }} {{ 'abc' | first }} {{ 'abc' | last }} {{ d | first }} [{{ empty | first }}]"),
    ("f_list_string", "{{ 'abc' | list }} {{ d | list }} {{ 12 | string }} {{ none | string }} {{ [1] | string }}"),
    ("f_int_float", "{{ '42' | int }} {{ '4.7' | int }} {{ 4.7 | int }} {{ 'x' | int }} {{ 'x' | int(7) }} {{ ' 12 ' | int }} {{ '1_000' | int }} {{ '0x1f' | int(base=16) }} {{ '3.5' | float }} {{ 2 | float }} {{ 'nan?' | float }} {{ true | int }}"),
    ("f_replace", "{{ 'aXbXc' | replace('X', '-') }} {{ 'aaa' | replace('a', 'b', 2) }} {{ 'ab' | replace('', '.') }} {{ s.replace('l', 'L') }}"),
    ("f_round_abs", "{{ 2.5 | round }} {{ 3.5 | round }} {{ 2.675 | round(2) }} {{ 1.234 | round(1, 'ceil') }} {{ 1.99 | round(1, 'floor') }} {{ 5 | round }} {{ -3 | abs }} {{ -2.5 | abs }} {{ 1234.5 | round(-2) }}"),
    ("f_reverse", "{{ 'abc' | reverse }} {{ l | reverse | list }} {{ u8 | reverse }}"),
    ("f_sort", "{{ words | sort }} {{ words | sort(case_sensitive=true) }} {{ l | sort(reverse=true) }} {{ people | sort(attribute='age') | map(attribute='name') | list }} {{ people | sort(attribute='age', reverse=true) | map(attribute='name') | list }}"),
    ("f_sort_multi", "{{ people | sort(attribute='age,name') | map(attribute='name') | join(',') }} {{ people | sort(attribute='age,name', reverse=true) | map(attribute='name') | join(',') }}"),
    ("f_unique", "{{ words | unique | list }} {{ words | unique(case_sensitive=true) | list }} {{ [1, 2, 1, 3] | unique | list }}"),
    ("f_minmax_sum", "{{ l | min }} {{ l | max }} {{ words | max }} {{ people | sum(attribute='age') }} {{ [0.5, 1] | sum }} {{ people | max(attribute='age') }}"),
    ("f_dictsort", "{{ {'b': 1, 'A': 3, 'c': 2} | dictsort }} {{ {'b': 1, 'A': 3, 'c': 2} | dictsort(by='value') }} {{ {'b': 1, 'A': 3, 'c': 2} | dictsort(reverse=true) }}"),
    ("f_items", "{% for k, v in d | items %}{{ k }}={{ v }};{% endfor %}{% for k, v in d.items() %}{{ k }}:{{ v }},{% endfor %}[{{ nope | items | list }}]"),
    ("f_select", "{{ [0, 1, 2, 3, none] | select | list }} {{ l | select('odd') | list }} {{ l | reject('odd') | list }} {{ [1, 5, 9] | select('gt', 4) | list }}"),
    ("f_selectattr", "{{ people | selectattr('admin') | map(attribute='name') | list }} {{ people | rejectattr('admin') | map(attribute='name') | list }} {{ people | selectattr('age', 'equalto', 31) | map(attribute='name') | join(',') }} {{ messages | selectattr('role', 'eq', 'user') | list | length }}"),
    ("f_map", "{{ people | map(attribute='name') | join(',') }} {{ ['a', 'b'] | map('upper') | list }} {{ people | map(attribute='admin', default=false) | list }} {{ [1.5, 2.7] | map('int') | list }} {{ nested | map(attribute='0') | list }}"),
    ("f_tojson", "{{ tools | tojson }}"),
    ("f_tojson_indent", "{{ tools[0] | tojson(indent=4) }}|{{ {'a': [1, {'b': 2}], 'e': [], 'f': {}} | tojson(indent=2) }}"),
    ("f_tojson_opts", "{{ d | tojson(sort_keys=true) }} {{ d | tojson(separators=(',', ':')) }} {{ 'é😀' | tojson(ensure_ascii=true) }} {{ 'é\\n\\u0001\"\\\\/' | tojson }}"),
    ("f_tojson_values", "{{ [1, 1.0, 0.1, 1e16, 1e-05, -0.0, true, none, 'x'] | tojson }} {{ {1: 'a', none: 2, true: 3, 2.5: 4} | tojson }}"),
    ("f_tojson_str_args", "{{ messages[2].tool_calls[0].function.arguments | tojson }}"),
    ("f_indent", "{{ 'a\\nb\\n\\nc' | indent }}|{{ 'a\\nb' | indent(2, true) }}|{{ 'a\\n\\nb' | indent(2, blank=true) }}|{{ 'x\\ny' | indent('> ') }}|{{ 'a\\r\\nb\\n' | indent(1) }}"),
    ("f_escape_safe", "{{ '<a href=\"x\">&\\'</a>' | e }} {{ '<b>' | safe }} {{ '<i>' | escape }}"),
    ("f_misc", "{{ 'hello big world' | wordcount }} [{{ 'ab' | center(6) }}] {{ l | batch(2) | list }} {{ '%s-%d' | format('a', 3) }} {{ d | attr('keys') is defined }} {{ d | attr('a') is defined }}"),
    ("f_chain", "{{ '  A,b ,C ' | trim | lower | replace(' ', '') }}"),
    ("percent_format", "{{ '%s and %s' % ('a', 1) }} {{ '%d%%' % 50 }} {{ '%.2f' % 3.14159 }} {{ '%r' % 'x' }}"),
    # string methods
    ("m_startswith", "{{ s.startswith('  He') }} {{ s.endswith('!  ') }} {{ 'abc'.startswith(('x', 'a')) }} {{ 'abc'.startswith('b', 1) }} {{ 'abc'.endswith('b', 0, 2) }}"),
    ("m_split", "{{ 'a,b,,c'.split(',') }} {{ ' a  b \\t c '.split() }} {{ 'a,b,c'.split(',', 1) }} {{ 'a,b,c'.rsplit(',', 1) }} {{ '  a b  '.split(none, 1) }} {{ '  a b  '.rsplit(none, 1) }} {{ ''.split() }} {{ ''.split(',') }}"),
    ("m_strip", "[{{ s.strip() }}] [{{ s.lstrip() }}] [{{ s.rstrip() }}] [{{ '\\n\\nx\\n'.strip('\\n') }}] [{{ 'xyhixy'.strip('yx') }}] [{{ 'aab'.lstrip('a') }}]"),
    ("m_case", "{{ 'hello world'.title() }} {{ \"they're bill's\".title() }} {{ 'ABC def'.swapcase() }} {{ 'hELLO'.capitalize() }} {{ 'x'.upper() }}{{ 'Y'.lower() }}"),
    ("m_find", "{{ 'hello'.find('l') }} {{ 'hello'.rfind('l') }} {{ 'hello'.find('z') }} {{ 'hello'.count('l') }} {{ u8.find('wörld') }} {{ 'hello'.index('e') }} {{ 'aaaa'.count('aa') }} {{ 'abc'.count('') }}"),
    ("m_format", "{{ '{} + {} = {}'.format(1, 2, 3) }} {{ '{0}{1}{0}'.format('a', 'b') }} {{ '{name}!'.format(name='x') }} {{ '{{}} {!r}'.format('q') }} {{ '{0[role]}'.format(messages[0]) }}"),
    ("m_join_lines", "{{ '-'.join(['a', 'b']) }} {{ ''.join('abc') }} {{ 'a\\nb\\r\\nc'.splitlines() }} {{ 'a\\nb\\n'.splitlines(true) }}"),
    ("m_is", "{{ '123'.isdigit() }} {{ '12a'.isdigit() }} {{ 'abc'.isalpha() }} {{ 'a1'.isalnum() }} {{ ' \\t'.isspace() }} {{ 'ABC'.isupper() }} {{ 'abc'.islower() }} {{ ''.isdigit() }}"),
    ("m_replace_count", "{{ 'a-b-c'.replace('-', '+', 1) }}"),
    ("m_dict", "{{ d.keys() | list }} {{ d.values() | list }} {% for k in d %}{{ k }}{% endfor %}"),
    ("m_list", "{{ l.index(2) }} {{ [1, 1, 2].count(1) }}"),
    ("qwen_reasoning", "{% set c = '<think>\\nplan\\n</think>\\n\\nanswer' %}{{ c.split('</think>')[-1].lstrip('\\n') }}|{{ c.split('</think>')[0].rstrip('\\n').split('<think>')[-1].lstrip('\\n') }}"),
    # statements
    ("if_elif", "{% for i in [1, 2, 3, 4] %}{% if i == 1 %}one{% elif i == 2 %}two{% elif i == 3 %}three{% else %}other{% endif %} {% endfor %}"),
    ("for_loop_vars", "{% for x in l %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}{{ loop.depth }}|{% endfor %}"),
    ("for_prev_next", "{% for x in l %}{{ loop.previtem }}<{{ x }}>{{ loop.nextitem }};{% endfor %}"),
    ("for_cycle_changed", "{% for x in [1, 1, 2, 2, 3] %}{{ loop.cycle('a', 'b') }}{% if loop.changed(x) %}!{% endif %}{% endfor %}"),
    ("for_else", "{% for x in empty %}x{% else %}empty{% endfor %}|{% for x in l %}{{ x }}{% else %}no{% endfor %}"),
    ("for_filter", "{% for x in [1, 2, 3, 4, 5, 6] if x is even %}{{ x }}:{{ loop.index }}/{{ loop.length }}{{ ',' if not loop.last }}{% endfor %}"),
    ("for_filter_else", "{% for x in l if x > 10 %}{{ x }}{% else %}none{% endfor %}"),
    ("for_dict", "{% for k in d %}{{ k }}{% endfor %} {% for k, v in d.items() %}{{ k }}{{ v }}{% endfor %}"),
    ("for_string", "{% for c in 'héy' %}[{{ c }}]{% endfor %}"),
    ("for_unpack", "{% for a, b in nested %}{{ a }}+{{ b }}={{ a + b }} {% endfor %}"),
    ("for_break_continue", "{% for x in range(10) %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 5 %}{% break %}{% endif %}{{ x }}{% endfor %}"),
    ("for_nested_loop", "{% for a in [1, 2] %}{% for b in [3, 4] %}{{ loop.index }}{{ a }}{{ b }} {% endfor %}{{ loop.index }};{% endfor %}"),
    ("for_recursive", "{% for item in [{'n': 'a', 'c': [{'n': 'b', 'c': [{'n': 'c', 'c': []}]}]}, {'n': 'd', 'c': []}] recursive %}{{ loop.depth }}{{ item.n }}({{ loop(item.c) }}){% endfor %}"),
    ("for_reverse_index", "{% for message in messages[::-1] %}{% set index = (messages|length - 1) - loop.index0 %}{{ index }}{{ message.role[0] }} {% endfor %}"),
    ("for_undefined_iter", "[{% for x in nope %}{{ x }}{% endfor %}]"),
    ("range", "{{ range(3) | list }} {{ range(1, 10, 3) | list }} {{ range(5, 0, -2) | list }} {{ range(0) | list }}"),
    ("set_scope", "{% set x = 1 %}{% for i in l %}{% set x = i %}{{ x }}{% endfor %}|{{ x }}"),
    ("set_scope_iter", "{% set x = 0 %}{% for i in [1, 2] %}{{ x }}{% set x = i %}{{ x }}{% endfor %}|{{ x }}"),
    ("set_if_leaks", "{% if true %}{% set q = 'in-if' %}{% endif %}{{ q }}"),
    ("set_tuple", "{% set a, b = 1, 2 %}{{ a }}{{ b }}{% set c = 1, 2 %}{{ c }}"),
    ("set_block", "{% set blk %}Hello {{ 'x' }}!{% endset %}[{{ blk }}]{% set up | upper %}abc{% endset %}{{ up }}"),
    ("namespace", "{% set ns = namespace(count=0, found=false) %}{% for x in l %}{% set ns.count = ns.count + x %}{% if x == 2 %}{% set ns.found = true %}{% endif %}{% endfor %}{{ ns.count }} {{ ns.found }} {{ ns.missing is defined }}"),
    ("namespace_item", "{% set ns = namespace(a=1) %}{{ ns['a'] }}{% set ns.b = 2 %}{{ ns.b }}"),
    ("macro", "{% macro greet(name, greeting='Hello') %}{{ greeting }}, {{ name }}!{% endmacro %}{{ greet('Ann') }} {{ greet('Bob', 'Hi') }} {{ greet(greeting='Yo', name='Cid') }} [{{ greet() }}]"),
    ("macro_scope", "{% set x = 5 %}{% macro m() %}{{ x }}{{ z }}{% endmacro %}{% set z = 7 %}{{ m() }}{% set x = 6 %}{{ m() }}"),
    ("macro_recursion", "{% macro fact(n) %}{% if n <= 1 %}1{% else %}{{ n * (fact(n - 1) | int) }}{% endif %}{% endmacro %}{{ fact(5) }}"),
    ("macro_varargs", "{% macro m(a) %}{{ a }}{{ varargs }}{{ kwargs }}{% endmacro %}{{ m(1, 2, 3, k='v') }}"),
    ("macro_render_json", "{% macro render(v) %}{% if v is mapping %}{{ v | tojson }}{% elif v is string %}{{ v }}{% else %}{{ v | string }}{% endif %}{% endmacro %}{{ render({'a': 1}) }} {{ render('s') }} {{ render(3) }}"),
    ("call_block", "{% macro wrap(tag) %}<{{ tag }}>{{ caller() }}</{{ tag }}>{% endmacro %}{% call wrap('b') %}inner {{ 1 + 1 }}{% endcall %}"),
    ("call_block_args", "{% macro each(items) %}{% for i in items %}{{ caller(i) }}{% endfor %}{% endmacro %}{% call(x) each([1, 2]) %}<{{ x }}>{% endcall %}"),
    ("filter_block", "{% filter upper %}hello {{ 'world' }}{% endfilter %}"),
    ("with_block", "{% with a = 1, b = 'x' %}{{ a }}{{ b }}{% endwith %}[{{ a }}]"),
    ("raw_block", "{% raw %}{{ not evaluated }} {% if %}{% endraw %}"),
    ("comment", "a{# comment {{ x }} #}b{#- trimmed -#}  c"),
    ("dict_literal", "{% set m = {'role': 'user', 'n': 1, 2: 'two'} %}{{ m.role }} {{ m[2] }} {{ m | length }}"),
    ("list_literal_trailing", "{{ [1, 2, ] }} {{ {'a': 1, } }}"),
    ("dict_global", "{{ dict(a=1, b='x') }} {{ dict(d, z=0) | length }}"),
    ("strftime_defined", "{{ strftime_now is defined }} {{ raise_exception is defined }}"),
    ("tool_call_args_string", "{% for tc in messages[2].tool_calls %}{% if tc.function.arguments is string %}{{ tc.function.arguments }}{% else %}{{ tc.function.arguments | tojson }}{% endif %}{% endfor %}"),
    # whitespace control
    ("ws_trim_blocks", "{% if true %}\nline\n{% endif %}\nafter"),
    ("ws_lstrip", "start\n    {% if true %}\n    body\n    {% endif %}\nend"),
    ("ws_minus", "a   {%- if true -%}   b   {%- endif -%}   c"),
    ("ws_var_minus", "a  {{- 'x' -}}  b {{ 'y' }} \n c"),
    ("ws_plus", "a\n    {%+ if true %}b{% endif %}\n"),
    ("ws_var_no_lstrip", "a\n    {{ 'x' }}\n    {% if true %}y{% endif %}"),
    ("ws_comment_lines", "a\n  {# c #}\nb\n{#- c2 #}\n  c"),
    ("ws_crlf", "a\r\n{% if true %}\r\nb\r\n{% endif %}\r\nc\r\n"),
    ("ws_trailing_newline", "text\n"),
    ("ws_trailing_two_newlines", "text\n\n"),
    ("ws_inline_tag", "x {% if true %}y{% endif %} z"),
    ("ws_tabs", "\t\t{% for x in [1,2] %}\n\t{{ x }}\n\t\t{% endfor %}\n"),
    ("ws_raw", "  {% raw %}\n  keep {{ x }}\n  {% endraw %}\nafter"),
    ("ws_unicode_space", "a\u3000{% if true %}b{% endif %}\n\u00a0 {% if true %}c{% endif %}"),
    ("ws_minus_newlines", "{%- set x = 1 -%}\n\n\n{{ x }}\n\n{%- if true %}\n  y\n{%- endif %}"),
    ("ws_block_end_at_eof", "{% if true %}a{% endif %}"),
    ("ws_nested_dict_braces", "{{ {'a': {'b': 1}} }}"),
    ("ws_braces_in_string", "{{ '}}' }}{{ '%}' }}{% set x = '{{' %}{{ x }}"),
    # idioms of other published chat templates (Mistral, Phi, Hermes, Granite, Gemma, DeepSeek...)
    ("idiom_content_parts", "{% for m in parts_messages %}{% if m.content is string %}{{ m.content }}{% else %}{% for p in m.content %}{% if p.type == 'text' %}{{ p.text }}{% elif p['type'] == 'image' %}<img>{% endif %}{% endfor %}{% endif %};{% endfor %}", PARTS_CTX),
    ("idiom_alternation", "{% for m in messages[1:] %}{% if (m.role == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{{ m.role }} {% endfor %}"),
    ("idiom_mistral_inst", "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}{{ '[INST] ' + m['content'] + ' [/INST]' }}{% elif m['role'] == 'assistant' %}{{ m['content'] + eos_token }}{% endif %}{% endfor %}", {**CTX, "eos_token": "</s>"}),
    ("idiom_system_split", "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{{ system_message }}|{{ loop_messages | length }}"),
    ("idiom_tools_map_tojson", "{{ tools | map('tojson') | join('\\n') }}|{{ tools | map('tojson', indent=2) | first }}"),
    ("idiom_tool_function_unwrap", "{% for tool in tools %}{% if tool.function is defined %}{% set tool = tool.function %}{% endif %}{{ tool.name }}({% for name, spec in tool.parameters.properties | items %}{{ name }}: {{ spec.type }}{% if spec.default is defined %} = {{ spec.default }}{% endif %}{{ ', ' if not loop.last }}{% endfor %}){% endfor %}"),
    ("idiom_dictsort_params", "{% for k, v in tools[0].function.parameters.properties | dictsort %}{{ k }}={{ v | tojson }};{% endfor %}"),
    ("idiom_selectattr_system", "{{ messages | selectattr('role', 'equalto', 'system') | list | length }} {{ (messages | selectattr('role', 'eq', 'user') | first).content }} {{ messages | rejectattr('role', 'in', ['system', 'tool']) | map(attribute='role') | join(',') }}"),
    ("idiom_ns_accumulate", "{% set ns = namespace(parts=[], n=0) %}{% for m in messages %}{% set ns.parts = ns.parts + [m.role[:1]] %}{% set ns.n = ns.n + m.content | length %}{% endfor %}{{ ns.parts | join }} {{ ns.n }}"),
    ("idiom_bos_conditional", "{{- bos_token if bos_token is defined else '' }}{{- eos_token if eos_token is defined else '(no eos)' }}"),
    ("idiom_macro_ws", "{%- macro render(m) -%}\n  <{{ m.role }}>\n{%- endmacro -%}\n{%- for m in messages -%}\n  {{ render(m) }}\n{%- endfor -%}"),
    ("idiom_generation_tag", "{% for m in messages %}{% if m.role == 'assistant' %}{% generation %}{{ m.content }}{% set inner = 1 %}{% endgeneration %}{% else %}{{ m.content }}{% endif %}|{% endfor %}[{{ inner }}]"),
    ("idiom_generation_ws", "{%- for m in messages %}\n  {%- if m.role == 'assistant' %}\n    {% generation %}\n    {{- m.content -}}\n    {% endgeneration %}\n  {%- endif %}\n{%- endfor %}"),
    ("idiom_content_tojson_safe", "{{ messages[3].content | tojson | safe }} {{ messages[2].tool_calls | tojson }}"),
    ("idiom_reasoning_split", "{% for m in [{'content': '<think>a</think>b'}, {'content': 'plain'}] %}{% if '</think>' in m.content %}{{ m.content.split('</think>')[0].split('<think>')[-1] }}/{{ m.content.split('</think>')[-1] }}{% else %}{{ m.content }}{% endif %};{% endfor %}"),
    ("idiom_truncate_slice", "{{ messages[0].content[:3] }}|{{ messages[0].content[-5:] }}|{{ messages[0].content[100:] }}|"),
    ("idiom_last_user_index", "{% set ns = namespace(idx=-1) %}{% for m in messages %}{% if m.role == 'user' %}{% set ns.idx = loop.index0 %}{% endif %}{% endfor %}{{ ns.idx }}"),
    ("idiom_json_args_string", "{% set args = messages[2].tool_calls[0].function.arguments %}{{ args if args is string else args | tojson }}"),
    ("idiom_strftime_guard", "{% if not date_string is defined %}{% if strftime_now is defined %}{% set date_string = 'has-clock' %}{% else %}{% set date_string = '26 Jul 2024' %}{% endif %}{% endif %}{{ date_string }}"),
    ("idiom_tool_response_wrap", "{% for m in messages %}{% if m.role == 'tool' %}{% if loop.first or messages[loop.index0 - 1].role != 'tool' %}<|user|>{% endif %}\n<tool_response>\n{{ m.content }}\n</tool_response>{% if loop.last or messages[loop.index0 + 1].role != 'tool' %}<|end|>{% endif %}{% endif %}{% endfor %}"),
    ("idiom_message_keys", "{% for m in messages %}{{ m.keys() | list | length }}{{ 'tool_calls' in m }}{{ m.get('name', '-') }} {% endfor %}"),
    ("idiom_loop_cycle_roles", "{% for m in messages %}{{ loop.cycle('A', 'B', 'C') }}{% endfor %}"),
    ("idiom_replace_newlines", "{{ 'a\\nb\\n\\nc' | replace('\\n', '<br>') }} {{ 'x  y' | replace(' ', '') }}"),
    ("idiom_trim_chain", "{{ ('  ' ~ messages[1].content ~ '\\n\\n') | trim }}|"),
    ("idiom_is_not_none_defined", "{% for m in messages %}{{ m.tool_calls is defined and m.tool_calls is not none and m.tool_calls | length > 0 }} {% endfor %}"),
    # errors (jinja2 raises; loam must fail too)
    ("err_raise", "{{ raise_exception('custom failure') }}"),
    ("err_undefined_attr", "{{ nope.attr }}"),
    ("err_undefined_attr2", "{{ d.zz.y }}"),
    ("err_undefined_call", "{{ nope() }}"),
    ("err_undefined_add", "{{ nope + 1 }}"),
    ("err_type_add", "{{ 'a' + 1 }}"),
    ("err_div_zero", "{{ 1 / 0 }}"),
    ("err_mod_zero", "{{ 5 % 0 }}"),
    ("err_unsafe_append", "{% set x = l.append(4) %}"),
    ("err_unsafe_update", "{% set x = d.update({'q': 1}) %}"),
    ("err_in_none", "{{ 1 in n }}"),
    ("err_not_iterable", "{% for x in 42 %}{% endfor %}"),
    ("err_set_attr_non_ns", "{% set d.x = 1 %}"),
    ("err_compare", "{{ 1 < 'a' }}"),
    ("err_syntax_unclosed_if", "{% if true %}no end"),
    ("err_syntax_unknown_tag", "{% frobnicate %}"),
    ("err_syntax_bad_expr", "{{ 1 + }}"),
    ("err_syntax_unclosed_var", "{{ x "),
    ("err_syntax_unclosed_comment", "{# never closed"),
    ("err_syntax_stray_end", "{% endif %}"),
    ("err_syntax_bracket", "{{ (1 + 2 }}"),
    ("err_range_too_big", "{% for x in range(200000) %}{% endfor %}"),
    ("err_no_filter", "{{ 1 | nosuchfilter }}"),
    ("err_no_test", "{{ 1 is nosuchtest }}"),
    ("err_index_str", "{{ 'abc'.index('z') }}"),
    ("err_unpack", "{% set a, b = [1, 2, 3] %}"),
    ("err_int_none", "{{ none + 1 }}"),
    ("err_join_int", "{{ '-'.join([1, 2]) }}"),
    ("err_tojson_undefined", "{{ nope | tojson }}"),
]


def ws_matrix():
    """Every combination of a tag form and the text around it, for the whitespace rules."""
    tags = ["{% if true %}X{% endif %}", "{%- if true %}X{% endif %}", "{% if true -%}X{%- endif %}",
            "{%+ if true %}X{% endif %}", "{# c #}", "{#- c -#}", "{{ 'X' }}", "{{- 'X' -}}",
            "{% set v = 1 %}", "{% for i in [1] %}\nX\n{% endfor %}"]
    before = ["", " ", "  ", "\n", "a\n  ", "a  ", "\n\t \n", " \n "]
    after = ["", " ", "\n", "\n\n", " \nb", "b"]
    out = []
    for i, (t, b, a) in enumerate(itertools.product(tags, before, after)):
        out.append((f"wsm_{i:03d}", b + t + a))
    return out


def main():
    env = make_env()
    cases = []
    for item in CASES + ws_matrix():
        name, src = item[0], item[1]
        ctx = item[2] if len(item) > 2 else CTX
        rec = {"name": name, "template": src}
        if ctx is not CTX:
            rec["context"] = json.dumps(ctx, ensure_ascii=False)
        try:
            rec["expected"] = env.from_string(src).render(**ctx)
        except Exception as e:  # noqa: BLE001 - the error type is the expectation
            rec["error"] = type(e).__name__
        cases.append(rec)
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
    path = os.path.join(root, "tests", "data", "templates", "unit_cases.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"generator": "tools/reference/jinja_cases.py", "jinja2": jinja2.__version__,
                   "python": sys.version.split()[0], "context": json.dumps(CTX, ensure_ascii=False),
                   "cases": cases}, f, ensure_ascii=False, indent=1)
        f.write("\n")
    n_err = sum(1 for c in cases if "error" in c)
    print(f"wrote {path}: {len(cases)} cases ({n_err} expect an error)")


if __name__ == "__main__":
    main()

"""Deterministic tokenizer test inputs (pure Python, no third-party modules).

inputs() returns the list of strings that tokenizer_fixtures.py encodes with Hugging Face
`tokenizers`; bench_text() returns the benchmark text of bench/RESULTS.md. Both are fully
determined by this file (and, for bench_text, by Debian 12's /usr/share/common-licenses, whose
files are listed in LICENSE_FILES with their sizes).
"""

import os
import random

HANDWRITTEN = [
    "",
    " ",
    "Hello world",
    "Hello, world! How are you today?",
    "The quick brown fox jumps over the lazy dog.",
    "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG",
    "hello", " hello", "  hello", "hello ", "hello  ", "\thello", "\nhello", "hello\n",
    "Mr. O'Neil's dog isn't here; they're out, we've gone, I'd go, she'll stay, I'm done.",
    "I'M DONE, YOU'RE LATE, SHE'LL WAIT, WE'VE SEEN, HE'D KNOW, IT'S FINE, DON'T.",
    "I'm I'M i'M I'm; you'll YOU'LL You'Ll yOu'lL; we've WE'VE We'Ve; 's 'S 't 'T 're 'RE 'Re 'rE 've 'VE 'Ve 'vE 'm 'M 'll 'LL 'Ll 'lL 'd 'D",
    "'s", "'S", "'t", "'T", "'re", "'RE", "'ve", "'VE", "'m", "'M", "'ll", "'LL", "'Ll", "'d", "'D",
    "don't", "DON'T", "Don'T", "rock'n'roll", "''", "'''", "' s", "'  ll", "x's", "X'S", "1's", "日本's",
    "1", "12", "123", "1234", "12345", "123456789", "1234567890123456789012345678901234567890",
    "3.14159265358979", "-42", "+7", "1,000,000", "1.000.000,50", "0x1F2E3D", "0b101010", "1e-7",
    "6.022e23", "2024-11-26T23:59:59Z", "+1 (555) 123-4567", "$1,234.56", "50%", "½ ¼ ¾", "²³¹",
    "١٢٣٤٥", "१२३४५", "一二三", "①②③", "Ⅻ", "v1.2.3-rc.4+build.5", "127.0.0.1:8080", "99 bottles",
    "a1b2c3", "abc123def456", "1st 2nd 3rd 4th", "100km/h", "3x4=12", "9999999999999999",
    "  ", "   ", "    ", "        ", " " * 16, " " * 33, "\t", "\t\t", "\t\t\t\t", "\n", "\n\n", "\n\n\n",
    "\n" * 10, "\r\n", "\r\n\r\n", "\r", "\r\r\n", " \n ", " \n\n ", "\t \n \t", "a  b", "a   b", "a\t\tb",
    "a \t b", "a\n\nb", "a\r\nb", "line1\nline2\r\nline3\rline4", "   leading", "trailing   ",
    "  both  ", "\u00a0nbsp\u00a0", "a\u3000b", "\u2003em space", "x\u200by", "\ufeffBOM at start",
    "\v\f", "tab\tseparated\tvalues\t1\t2", "end with space ", "end with newline\n",
    "    def f(x):\n        return x\n", "\n\n\n\nfour newlines then text",
    "你好，世界！", "我爱自然语言处理。", "中华人民共和国成立于1949年。", "繁體中文測試，這是一個句子。",
    "こんにちは、世界。", "ひらがなとカタカナとカンジ", "東京タワーは333メートルです。", "ｶﾀｶﾅ半角",
    "안녕하세요, 세계!", "한국어 문장을 토큰화합니다.", "مرحبا بالعالم", "اللغة العربية جميلة جدا.",
    "שלום עולם", "עברית נכתבת מימין לשמאל.", "नमस्ते दुनिया", "हिन्दी भाषा में वाक्य।",
    "สวัสดีชาวโลก", "ภาษาไทยไม่มีช่องว่างระหว่างคำ", "Привет, мир!", "Съешь же ещё этих мягких французских булок.",
    "Ґанок, їжак, Єва — українська.", "Γειά σου Κόσμε", "Ξεσκεπάζω την ψυχοφθόρα βδελυγμία.",
    "Բարեւ աշխարհ", "გამარჯობა მსოფლიო", "হ্যালো ওয়ার্ল্ড", "வணக்கம் உலகம்", "Xin chào thế giới, tiếng Việt có dấu.",
    "İstanbul'da ılık bir gün; IĞDIR ığdır", "Straße, STRASSE, ß ẞ", "Ærøskøbing Åse Ødegård",
    "Ελληνικά και English mixed 中文 日本語 한국어", "ﬁ ﬂ ﬀ ligatures", "Ａｂｃ１２３ fullwidth",
    "😀", "😀😃😄😁", "Hello 😀 world", "👍", "👍🏻👍🏼👍🏽👍🏾👍🏿", "👨‍👩‍👧‍👦", "👩🏽‍💻", "🧑‍🤝‍🧑",
    "🏳️‍🌈", "🏴‍☠️", "🇯🇵🇺🇸🇩🇪🇫🇷", "🇺🇸", "1️⃣2️⃣3️⃣", "#️⃣", "❤️", "❤", "☺️☺", "🏴󠁧󠁢󠁳󠁣󠁴󠁿",
    "👁️‍🗨️", "🤷‍♀️🤷‍♂️", "emoji at end 🎉", "🎉emoji at start", "a😀b😀c", "😀 😀  😀",
    "e\u0301", "cafe\u0301", "caf\u00e9", "A\u030a", "\u212b", "\u2126", "n\u0303", "o\u0308\u0304",
    "\u1100\u1161\u11a8", "\u0065\u0301\u0302", "Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d\u034f\u0334\u0319",
    "\u0915\u094d\u0937", "e\u0301e\u0301e\u0301", "\u00c5ngstr\u00f6m vs A\u030angstro\u0308m",
    "\u1e9b\u0323", "\u0387", "\u037e", "\uf900", "\u2fc0", "\u0958", "\u30ac vs \u30ab\u3099",
    "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    "#include <stdio.h>\nint main(void) {\n\tprintf(\"hello, %s\\n\", \"world\");\n\treturn 0;\n}\n",
    "const add = (a, b) => a + b; // arrow\nconsole.log(`sum: ${add(1, 2)}`);",
    "fn main() {\n    let v: Vec<u32> = (0..10).map(|x| x * x).collect();\n    println!(\"{:?}\", v);\n}",
    "package main\n\nimport \"fmt\"\n\nfunc main() {\n\tfmt.Println(\"hi\")\n}\n",
    "<html><head><title>Test</title></head><body><p class=\"x\">Hi &amp; bye</p></body></html>",
    "SELECT id, name FROM users WHERE age >= 18 ORDER BY name DESC LIMIT 10;",
    "{\"key\": [1, 2.5, true, null], \"nested\": {\"a\": \"b\"}}",
    "for f in *.txt; do echo \"$f\" | tr a-z A-Z >> out.log 2>&1; done",
    "x = [i**2 for i in range(10) if i % 2 == 0]  # squares",
    "    \n    \n", "if (a && b || !c) { x += 1; } else { y -= 2; }", "a->b, a::b, a=>b, a!=b, a===b, a<=>b",
    "public static void main(String[] args) throws Exception {}", "\\n \\t \\\\ \\\" \\u00e9",
    "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n", "<|endoftext|>", "<|im_start|>",
    "<|im_end|>", "text<|endoftext|>more text", "<|im_end|><|im_start|>", " <|im_end|> ",
    "<think>\nreasoning here\n</think>\n\nanswer", "<think></think>", "<tool_call>\n{\"name\": \"f\"}\n</tool_call>",
    "<tool_response>ok</tool_response>", "<|fim_prefix|>def<|fim_suffix|>return<|fim_middle|>",
    "<|im_start", "<|im_start|", "< |im_start|>", "<|IM_START|>", "<<|im_start|>>", "<|im_start|><|im_start|>",
    "<|vision_start|><|image_pad|><|vision_end|>", "<|box_start|>(1,2)<|box_end|>",
    "<|begin_of_text|>Hello", "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>", "<|eot_id|>",
    "<|end_of_text|>", "<|reserved_special_token_0|>", "<|python_tag|>", "<|finetune_right_pad_id|>",
    "<s></s><unk>", "[INST] hi [/INST]", "<|endoftext|><|endoftext|>", "a<|im_end|>b<|im_end|>c",
    "\ufffd", "\ufffd\ufffd", "a\x1bb", "\x1b[31mred\x1b[0m", "\x01\x02\x03\x1f", "\x7f", "\u0085", "\u2028\u2029",
    "\ue000\uf8ff", "\uffff", "\U0010ffff", "\U0001d518\U0001d52b\U0001d526\U0001d520\U0001d52c\U0001d521\U0001d522",
    "\u00c3\u00a9 mojibake \u00e2\u20ac\u2122", "\\x80\\xff", "%E2%9C%93 url-encoded", "&#x1F600; &amp; &lt;",
    "\u202eRTL override\u202c", "\u200d", "\u200c\u200d\u2060", "\ufe0f", "\U000e0041", "\x08backspace\x07bell",
    "a" * 100, "a" * 1000, "abc" * 300, "supercalifragilisticexpialidocious" * 20, "=" * 300, "-" * 80,
    "1" * 200, "0" * 50 + "1", "ab" * 257, "\u00e9" * 200, "\u4e2d" * 300, "😀" * 50, " a" * 200,
    "Pneumonoultramicroscopicsilicovolcanoconiosis", "Donaudampfschifffahrtsgesellschaftskapitän",
    "https://example.com/a/very/long/path/with-many_segments/and?query=string&x=1&y=%20#fragment",
    "aGVsbG8gd29ybGQgdGhpcyBpcyBiYXNlNjQgZW5jb2RlZCBkYXRhIGZvciB0ZXN0aW5nIHB1cnBvc2Vz==",
    "user@example.com", "@mention #hashtag $TICKER", "C++ C# F# .NET node.js", "e.g. i.e. etc. vs.",
    "...", "…", "—–-", "«»‹›„“”‘’", "!?!?", "¿Qué? ¡Sí!", "(parens) [brackets] {braces} <angles>",
    "Mixed: English, 中文, русский, العربية, 😀, 123, <|im_end|>, e\u0301, \t\n end.",
    "Title Case Words And UPPER lower MiXeD", "camelCaseIdentifier snake_case_identifier kebab-case-id",
    "HTTPServerError XMLHttpRequest iPhone eBay", "ALLCAPS123 lower456 MiXeD789",
]


def _random_strings(n, seed):
    rng = random.Random(seed)
    pools = [
        "abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "0123456789", " \t\n\r",
        "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~", "你好世界中文字符测试", "こんにちはカタカナ", "안녕하세요",
        "مرحبا", "שלום", "नमस्ते", "สวัสดี", "Привет", "Γειά", "éèêëçñøåæœß", "😀👍🏽❤️🇯🇵👨‍👩‍👧",
        "\u0301\u0308\u0303", "\u200b\u200d\ufeff\u00a0", "'s'S'll'VE'd'M're't",
    ]
    specials = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<think>", "</think>",
                "<|begin_of_text|>", "<|eot_id|>", "<tool_call>"]
    out = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(1, 12)):
            r = rng.random()
            if r < 0.08:
                parts.append(rng.choice(specials))
            elif r < 0.3:
                parts.append(" " * rng.randint(1, 5))
            else:
                pool = rng.choice(pools)
                parts.append("".join(rng.choice(pool) for _ in range(rng.randint(1, 10))))
        out.append("".join(parts))
    return out


def _sentences(seed):
    rng = random.Random(seed)
    words = ("the of and to in is was for on that with as by at from it an be this are which or had "
             "model token adapter quantize group scale bias layer attention norm rope kernel batch "
             "server request stream cache memory weight matrix vector float integer byte").split()
    out = []
    for _ in range(60):
        n = rng.randint(3, 30)
        s = " ".join(rng.choice(words) for _ in range(n))
        s = s[0].upper() + s[1:] + rng.choice([".", "!", "?", "...", ",", ""])
        if rng.random() < 0.3:
            s += " " + str(rng.randint(0, 10 ** rng.randint(1, 12)))
        if rng.random() < 0.2:
            s = s.upper()
        out.append(s)
    return out


def inputs():
    seen, out = set(), []
    for s in HANDWRITTEN + _sentences(7) + _random_strings(220, 11):
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out


# Debian 12 (base-files 12.4+deb12u11) /usr/share/common-licenses, regular files only, in this order.
LICENSE_FILES = [("Apache-2.0", 11358), ("Artistic", 6111), ("BSD", 1499), ("CC0-1.0", 7048),
                 ("GFDL-1.2", 20432), ("GFDL-1.3", 22955), ("GPL-1", 12632), ("GPL-2", 18092),
                 ("GPL-3", 35149), ("LGPL-2", 25381), ("LGPL-2.1", 26530), ("LGPL-3", 7652),
                 ("MPL-1.1", 25755), ("MPL-2.0", 16726)]
BENCH_REPEAT = 10


def bench_text(licenses_dir="/usr/share/common-licenses"):
    """The tokenizer benchmark text: (the 14 license files concatenated, then every input of
    inputs() followed by '\\n') repeated BENCH_REPEAT times. About 3 MB of UTF-8."""
    parts = []
    for name, size in LICENSE_FILES:
        with open(os.path.join(licenses_dir, name), "rb") as f:
            data = f.read()
        if len(data) != size:
            raise ValueError("%s: %d bytes, expected %d" % (name, len(data), size))
        parts.append(data.decode("utf-8"))
    one = "".join(parts) + "".join(s + "\n" for s in inputs())
    return one * BENCH_REPEAT


if __name__ == "__main__":
    import hashlib
    import sys
    ins = inputs()
    print("%d inputs" % len(ins))
    if len(sys.argv) > 1:
        t = bench_text().encode("utf-8")
        with open(sys.argv[1], "wb") as f:
            f.write(t)
        print("bench text: %d bytes, sha256 %s" % (len(t), hashlib.sha256(t).hexdigest()))

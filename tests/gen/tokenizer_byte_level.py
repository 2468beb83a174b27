"""Writes tests/data/tokenizer/byte_level.json: a small byte-level BPE tokenizer for
tests/test_tokenizer.c (pure Python, deterministic).

Vocab: the 256 byte-level characters (GPT-2 bytes_to_unicode) with id = byte value, then the
merged pieces of MERGES in order (ids 256...). Added tokens follow (ids after the merges).
Pipeline: Lowercase normalizer, ByteLevel pre-tokenizer (add_prefix_space, GPT-2 regex),
post-processor Sequence[ByteLevel, TemplateProcessing("<|endoftext|> $A <|endoftext|>")],
ByteLevel decoder.

    python3 tests/gen/tokenizer_byte_level.py tests/data/tokenizer/byte_level.json
"""
import json
import sys


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


MERGES = ["h e", "l l", "he ll", "hell o", "\u0120 hello", "\u0120 w", "o r", "\u0120w or",
          "l d", "\u0120wor ld", "\u00c3 \u00a9"]

ADDED = [  # content, special, lstrip, rstrip, single_word, normalized
    ("<|endoftext|>", True, False, False, False, False),
    ("<mask>", True, True, False, False, False),
    ("[R]", False, False, True, False, False),
    ("word", False, False, False, True, False),
    ("ABC", False, False, False, False, True),
]


def main(path):
    b2u = bytes_to_unicode()
    vocab = {b2u[b]: b for b in range(256)}
    for m in MERGES:
        a, b = m.split(" ")
        vocab[a + b] = len(vocab)
    added = []
    for content, special, lstrip, rstrip, single, normalized in ADDED:
        added.append({"id": len(vocab) + len(added), "content": content, "single_word": single,
                      "lstrip": lstrip, "rstrip": rstrip, "normalized": normalized,
                      "special": special})
    eot = added[0]["id"]
    tok = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": {"type": "Lowercase"},
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                          "use_regex": True},
        "post_processor": {"type": "Sequence", "processors": [
            {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
            {"type": "TemplateProcessing",
             "single": [{"SpecialToken": {"id": "<|endoftext|>", "type_id": 0}},
                        {"Sequence": {"id": "A", "type_id": 0}},
                        {"SpecialToken": {"id": "<|endoftext|>", "type_id": 0}}],
             "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
             "special_tokens": {"<|endoftext|>": {"id": "<|endoftext|>", "ids": [eot],
                                                  "tokens": ["<|endoftext|>"]}}}]},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                    "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None,
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": MERGES},
    }
    with open(path, "w", encoding="utf-8") as f:
        json.dump(tok, f, ensure_ascii=False, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main(sys.argv[1])

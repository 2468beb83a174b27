#!/usr/bin/env python3
"""Trains the demo model's byte-level BPE tokenizer and writes the tokenizer files.

The tokenizer has Qwen2/Qwen3's pipeline exactly (FORMATS.md §6.8; compare the real Qwen3
tokenizer.json): NFC normalizer; pre-tokenizer Sequence[Split(Qwen regex, Isolated),
ByteLevel(add_prefix_space=false, use_regex=false)]; BPE without unk/byte-fallback; ByteLevel
post-processor and decoder. The merges are learnt with Hugging Face `tokenizers` BpeTrainer on the
training splits of both corpora (base + voice) to VOCAB_BPE tokens (256 byte symbols included);
the three ChatML specials are then appended, so <|endoftext|>, <|im_start|>, <|im_end|> are the
last ids, as in Qwen. Also writes tokenizer_config.json (ChatML template, eos <|im_end|>, pad
<|endoftext|>) and generation_config.json (eos ids for both end tokens, sampling defaults), and
checks that transformers' AutoTokenizer gives the same ids and the same chat rendering.

Usage (GPU machine): python3 train_tokenizer.py CORPUS_DIR OUT_DIR [--vocab 4096]
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import demo_lib as L  # noqa: E402

QWEN_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
              r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

CHAT_TEMPLATE = (
    "{%- for message in messages %}\n"
    "    {{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}\n"
    "{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n"
    "    {{- '<|im_start|>assistant\\n' }}\n"
    "{%- endif %}\n")


def read_texts(corpus, names):
    out = []
    for n in names:
        with open(os.path.join(corpus, n), encoding="utf-8") as f:
            out += [json.loads(l)["text"] for l in f]
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("corpus")
    ap.add_argument("out")
    ap.add_argument("--vocab", type=int, default=4096, help="total size including 3 specials")
    args = ap.parse_args()
    from tokenizers import (AddedToken, Regex, Tokenizer, decoders, models, normalizers,
                            pre_tokenizers, processors, trainers)
    os.makedirs(args.out, exist_ok=True)
    texts = read_texts(args.corpus, ["base_train.jsonl", "voice_train.jsonl"])
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)])
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=args.vocab - len(L.SPECIALS), min_frequency=2,
                                  show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    n_bpe = tok.get_vocab_size()
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False, lstrip=False,
                                       rstrip=False, single_word=False) for s in L.SPECIALS])
    path = os.path.join(args.out, "tokenizer.json")
    tok.save(path)
    # Make the model section read exactly like Qwen's (empty strings instead of nulls).
    j = json.load(open(path, encoding="utf-8"))
    bl = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}
    j["post_processor"] = dict(bl)
    j["decoder"] = dict(bl)
    assert j["normalizer"] == {"type": "NFC"}, j["normalizer"]
    assert j["pre_tokenizer"] == {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": QWEN_REGEX}, "behavior": "Isolated", "invert": False},
        dict(bl)]}, j["pre_tokenizer"]
    m = j["model"]
    for k, v in (("dropout", None), ("unk_token", None), ("continuing_subword_prefix", ""),
                 ("end_of_word_suffix", ""), ("fuse_unk", False), ("byte_fallback", False),
                 ("ignore_merges", False)):
        m[k] = v
    with open(path, "w", encoding="utf-8") as f:
        json.dump(j, f, ensure_ascii=False, indent=2)
        f.write("\n")
    tok2 = Tokenizer.from_file(path)
    ids = {s: tok2.token_to_id(s) for s in L.SPECIALS}
    total = tok2.get_vocab_size()
    print("bpe vocab %d, total %d, specials %s" % (n_bpe, total, ids))
    assert ids["<|endoftext|>"] == n_bpe and total == n_bpe + 3
    sample = texts[:200] + texts[-200:]
    for t in sample:
        assert tok.encode(t).ids == tok2.encode(t).ids

    added = {str(ids[s]): {"content": s, "lstrip": False, "normalized": False, "rstrip": False,
                           "single_word": False, "special": True} for s in L.SPECIALS}
    tcfg = {"add_bos_token": False, "add_prefix_space": False, "added_tokens_decoder": added,
            "additional_special_tokens": ["<|im_start|>", "<|im_end|>"], "bos_token": None,
            "chat_template": CHAT_TEMPLATE, "clean_up_tokenization_spaces": False,
            "eos_token": "<|im_end|>", "errors": "replace", "model_max_length": 2048,
            "pad_token": "<|endoftext|>", "split_special_tokens": False,
            "tokenizer_class": "Qwen2Tokenizer", "unk_token": None}
    gcfg = {"bos_token_id": ids["<|endoftext|>"], "do_sample": True,
            "eos_token_id": [ids["<|im_end|>"], ids["<|endoftext|>"]],
            "pad_token_id": ids["<|endoftext|>"], "temperature": 0.8, "top_p": 0.9}
    L.write_json(os.path.join(args.out, "generation_config.json"), gcfg)

    # transformers must read these files the same way; fall back to the generic fast class.
    from transformers import AutoTokenizer
    probe = sample[:50] + ["Hello  world!\n\n  x = 3.14159; // café ÿ 😀 ﬁ", "  leading\tand trailing  "]
    msgs = [{"role": "user", "content": "Write a post"}]
    want_chat = L.chat_prompt("Write a post")
    for cls in ("Qwen2Tokenizer", "PreTrainedTokenizerFast"):
        tcfg["tokenizer_class"] = cls
        L.write_json(os.path.join(args.out, "tokenizer_config.json"), tcfg)
        ok = True
        try:
            at = AutoTokenizer.from_pretrained(args.out)
            for t in probe:
                if at(t, add_special_tokens=False)["input_ids"] != tok2.encode(t).ids:
                    print("  %s: ids differ on %r" % (cls, t[:60]))
                    ok = False
                    break
            r = at.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
            if r != want_chat:
                print("  %s: chat template renders %r" % (cls, r))
                ok = False
            cid = at.apply_chat_template(msgs, tokenize=True, add_generation_prompt=True)
            if hasattr(cid, "keys"):
                cid = cid["input_ids"]
            if list(cid) != tok2.encode(want_chat).ids:
                print("  %s: chat ids differ" % cls)
                ok = False
        except Exception as e:  # noqa: BLE001
            print("  %s: %r" % (cls, e))
            ok = False
        print("tokenizer_class %s: %s" % (cls, "ok" if ok else "MISMATCH"))
        if ok:
            break
    print("chat prompt ids:", tok2.encode(want_chat).ids)
    print("example:", tok2.encode("And the LORD said unto Moses, thou shalt not.").tokens)


if __name__ == "__main__":
    main()

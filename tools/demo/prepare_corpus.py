#!/usr/bin/env python3
"""Builds the text corpus of the loam demo model from Debian packages (development time only).

Sources (all installed from Debian 12 packages; licences in models/demo/README.md):
  base "posts"  fortune cookies from `fortunes-min` and `fortunes` (/usr/share/games/fortunes/*)
                and the BOFH excuses of `fortunes-bofh-excuses`;
  voice         the King James Version of the Bible from `bible-kjv-text`, read through the
                package's own `bible` program (its data file is compressed in a private format),
                cut into short "posts" of one to three consecutive verses.

Fortune files are records separated by lines holding a single '%'. Each record is cleaned:
overstrike sequences (X BACKSPACE Y) keep Y, tabs expand, hard-wrapped lines (50 or more
characters, the mark of a paragraph filled to a right margin) are joined with the next line,
short lines (verse, dialogue, lists) keep their line breaks, attributions ("-- Name") go on a
line of their own, runs of spaces collapse. Records that look like ASCII art or tables (a run of
4+ spaces inside a line, or under 60% letters) are dropped, as are a few categories that make
poor demo text (ascii-art, ethnic, men-women, politics, drugs, translate-me, perl).
Records of at most POST_MAX characters are posts; longer ones (up to LONG_MAX) are plain-text
documents for the base model only.

Splits are deterministic and independent of file order: a document goes to held-out if
sha256(text) mod 100 < 5, to validation if < 10, else to training. KJV posts are split by
chapter (sha256 of "Book chapter"), so no held-out verse has a neighbour in training.

Output (default build/demo/corpus/, git-ignored): {base,voice}_{train,val,heldout}.jsonl, one
JSON object per line {"text": ..., "kind": "post"|"long", "src": ...}, and stats.json.
With --eval-dir, also the small committed evaluation texts: voice_heldout.txt and
base_heldout.txt (the first EVAL_POSTS held-out posts in hash order, separated by blank lines).

Usage: python3 tools/demo/prepare_corpus.py [--out DIR] [--eval-dir models/demo/eval]
Plain python3 (3.9+), standard library only.
"""
import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import unicodedata

FORTUNE_DIR = "/usr/share/games/fortunes"
EXCLUDE = {"ascii-art", "ethnic", "men-women", "politics", "drugs", "translate-me", "perl",
           "bofh-excuses"}
POST_MAX = 320
LONG_MAX = 2000
WRAP_MIN = 50
EVAL_POSTS = 160
VOICE_POST_MAX = 300


def h100(s):
    return int(hashlib.sha256(s.encode("utf-8")).hexdigest(), 16) % 100


def split_of(key):
    v = h100(key)
    return "heldout" if v < 5 else ("val" if v < 10 else "train")


def clean_fortune(raw):
    """Returns the cleaned text of one fortune record, or None if it should be dropped."""
    s = raw
    while "\b" in s:
        s2 = re.sub(r"[^\n]\x08", "", s)
        if s2 == s:
            s = s.replace("\b", "")
            break
        s = s2
    s = unicodedata.normalize("NFC", s)
    if any((ord(c) < 32 and c not in "\n\t") or ord(c) == 127 for c in s):
        return None
    lines = [ln.expandtabs(8).rstrip() for ln in s.split("\n")]
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        return None
    body = []      # (text, raw_len) or None for a blank line
    attrib = []
    for ln in lines:
        st = ln.strip()
        m = re.match(r"^--+\s*(\S.*)$", st)
        if m and (len(ln) - len(ln.lstrip()) >= 4 or not body):
            attrib.append(re.sub(r"\s+", " ", m.group(1)))
            continue
        if attrib and st:          # text after an attribution: a multi-quote record, keep simple
            return None
        if not st:
            body.append(None)
            continue
        if re.search(r"\S {4,}\S", st):
            return None
        body.append((re.sub(r" {2,}", " ", st), len(ln)))
    text_chars = [c for c in "".join(b[0] for b in body if b) if not c.isspace()]
    if not text_chars:
        return None
    letters = sum(1 for c in text_chars if c.isalpha())
    if letters < 0.6 * len(text_chars):
        return None
    out = []
    prev = None
    for b in body:
        if b is None:
            if out and out[-1] != "\n\n":
                out.append("\n\n")
            prev = None
            continue
        t, raw_len = b
        if prev is not None:
            out.append(" " if prev >= WRAP_MIN else "\n")
        out.append(t)
        prev = raw_len
    text = "".join(out).strip()
    text = re.sub(r"\n\n+", "\n\n", text)
    for a in attrib:
        text += "\n-- " + a
    return text


def read_fortunes():
    docs = []
    names = sorted(n for n in os.listdir(FORTUNE_DIR)
                   if "." not in n and os.path.isfile(os.path.join(FORTUNE_DIR, n)))
    for name in names:
        if name in EXCLUDE:
            continue
        with open(os.path.join(FORTUNE_DIR, name), "rb") as f:
            data = f.read().decode("utf-8", errors="strict")
        for rec in re.split(r"\n%\n", "\n" + data):
            t = clean_fortune(rec)
            if t is None or len(t) < 12 or len(t) > LONG_MAX:
                continue
            docs.append({"text": t, "kind": "post" if len(t) <= POST_MAX else "long",
                         "src": "fortunes/" + name})
    return docs


def read_bofh():
    path = os.path.join(FORTUNE_DIR, "bofh-excuses")
    with open(path, encoding="utf-8") as f:
        data = f.read()
    docs = []
    for rec in re.split(r"\n%\n", "\n" + data):
        m = re.match(r"\s*BOFH excuse #(\d+):\s*\n\s*(.+?)\s*$", rec, re.S)
        if not m:
            continue
        excuse = re.sub(r"\s+", " ", m.group(2)).strip()
        if excuse:
            docs.append({"text": "BOFH excuse #%s: %s" % (m.group(1), excuse),
                         "kind": "post", "src": "bofh-excuses"})
    return docs


def read_kjv():
    """Returns [(chapter_title, [verse texts])] in canonical order, via the `bible` program."""
    res = subprocess.run(["bible", "-l", "100000", "Genesis 1:1-Revelation 22:21"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, check=True)
    chapters = []
    for ln in res.stdout.decode("utf-8").split("\n"):
        if not ln.strip():
            continue
        m = re.match(r"^  (\d+) (.+)$", ln)
        if m:
            if not chapters:
                raise SystemExit("prepare_corpus: verse before any chapter title")
            chapters[-1][1].append(re.sub(r"\s+", " ", m.group(2)).strip())
        elif not ln.startswith(" "):
            chapters.append((ln.strip(), []))
        else:
            raise SystemExit("prepare_corpus: unexpected line from bible: %r" % ln)
    nverses = sum(len(v) for _, v in chapters)
    if nverses != 31102 or len(chapters) != 1189:
        raise SystemExit("prepare_corpus: expected 31102 verses in 1189 chapters, got %d in %d"
                         % (nverses, len(chapters)))
    return chapters


def kjv_posts(chapters):
    """Cuts each chapter into posts of 1-3 consecutive verses of at most VOICE_POST_MAX chars.
    The wanted number of verses cycles 2,1,3,2,3,1 (deterministic, no RNG)."""
    cycle = [2, 1, 3, 2, 3, 1]
    docs = []
    k = 0
    for title, verses in chapters:
        i = 0
        while i < len(verses):
            want = cycle[k % len(cycle)]
            k += 1
            text = verses[i]
            n = 1
            while n < want and i + n < len(verses) and \
                    len(text) + 1 + len(verses[i + n]) <= VOICE_POST_MAX:
                text += " " + verses[i + n]
                n += 1
            i += n
            if len(text) <= VOICE_POST_MAX + 250:
                docs.append({"text": unicodedata.normalize("NFC", text), "kind": "post",
                             "src": "kjv/" + title})
    return docs


def write_jsonl(path, docs):
    with open(path, "w", encoding="utf-8") as f:
        for d in docs:
            f.write(json.dumps(d, ensure_ascii=False, sort_keys=True) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap.add_argument("--out", default=os.path.join(root, "build", "demo", "corpus"))
    ap.add_argument("--eval-dir", default=None,
                    help="also write voice_heldout.txt and base_heldout.txt here")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)

    base = read_fortunes() + read_bofh()
    seen = set()
    uniq = []
    for d in base:
        if d["text"] not in seen:
            seen.add(d["text"])
            uniq.append(d)
    base = uniq
    voice = kjv_posts(read_kjv())

    splits = {}
    for d in base:
        splits.setdefault(("base", split_of(d["text"])), []).append(d)
    for d in voice:
        splits.setdefault(("voice", split_of(d["src"])), []).append(d)
    stats = {}
    for corpus in ("base", "voice"):
        for sp in ("train", "val", "heldout"):
            docs = splits.get((corpus, sp), [])
            # canonical order: by hash of the text, so output never depends on directory order
            docs.sort(key=lambda d: (hashlib.sha256(d["text"].encode()).hexdigest(), d["src"]))
            splits[(corpus, sp)] = docs
            write_jsonl(os.path.join(args.out, "%s_%s.jsonl" % (corpus, sp)), docs)
            stats["%s_%s" % (corpus, sp)] = {
                "docs": len(docs), "posts": sum(1 for d in docs if d["kind"] == "post"),
                "chars": sum(len(d["text"]) for d in docs)}
    with open(os.path.join(args.out, "stats.json"), "w") as f:
        json.dump(stats, f, indent=1, sort_keys=True)
        f.write("\n")
    if args.eval_dir:
        os.makedirs(args.eval_dir, exist_ok=True)
        for corpus in ("voice", "base"):
            posts = [d["text"] for d in splits[(corpus, "heldout")] if d["kind"] == "post"]
            with open(os.path.join(args.eval_dir, corpus + "_heldout.txt"), "w",
                      encoding="utf-8") as f:
                f.write("\n\n".join(posts[:EVAL_POSTS]) + "\n")
    json.dump(stats, sys.stdout, indent=1, sort_keys=True)
    print()


if __name__ == "__main__":
    main()

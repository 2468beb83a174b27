#!/usr/bin/env python3
"""bench/serve_throughput.py: aggregate generated tokens/s of a running `loam serve` at several
numbers of concurrent clients, for machines without Node (the GPU machine); the standard
library only. Each client posts non-streamed /v1/completions (max_tokens N, ignore_eos, a
model drawn in turn from --models, so batches mix adapters) back to back for --seconds; the
figure is the sum of usage.completion_tokens over the wall time. Every answer must be a 200
with N tokens, else the run fails (exit 1).

    python3 bench/serve_throughput.py --url http://127.0.0.1:18080 --models base,voice \\
        --streams 1,8,32 --seconds 10 --max-tokens 64
"""
import argparse
import json
import threading
import time
import urllib.request


def client(url, models, idx, max_tokens, deadline, out):
    n_tok = n_req = bad = 0
    lat = 0.0
    k = idx
    while time.time() < deadline:
        body = json.dumps({"model": models[k % len(models)], "prompt": "The quick brown fox",
                           "max_tokens": max_tokens, "temperature": 0.8, "seed": k,
                           "ignore_eos": True}).encode()
        k += 1
        req = urllib.request.Request(url + "/v1/completions", data=body,
                                     headers={"Content-Type": "application/json"})
        t0 = time.time()
        try:
            with urllib.request.urlopen(req, timeout=120) as r:
                ans = json.load(r)
            got = ans["usage"]["completion_tokens"]
            if got != max_tokens:
                bad += 1
            n_tok += got
        except Exception as e:  # any failure counts; the run then fails
            detail = e.read()[:300] if hasattr(e, "read") else b""
            if bad < 2:
                print("request failed:", e, detail.decode(errors="replace"))
            bad += 1
        lat += time.time() - t0
        n_req += 1
    out[idx] = (n_tok, n_req, bad, lat)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--models", required=True)
    ap.add_argument("--streams", default="1,8,32")
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--max-tokens", type=int, default=64)
    a = ap.parse_args()
    models = a.models.split(",")
    failed = False
    print("| concurrent streams | requests | generated tokens | seconds | aggregate tok/s | "
          "mean request latency |")
    print("|---|---|---|---|---|---|")
    for c in [int(x) for x in a.streams.split(",")]:
        out = [None] * c
        t0 = time.time()
        ths = [threading.Thread(target=client, args=(a.url, models, i, a.max_tokens,
                                                     t0 + a.seconds, out)) for i in range(c)]
        for t in ths:
            t.start()
        for t in ths:
            t.join()
        wall = time.time() - t0
        tok = sum(o[0] for o in out)
        req = sum(o[1] for o in out)
        bad = sum(o[2] for o in out)
        lat = sum(o[3] for o in out) / max(req, 1)
        failed |= bad > 0
        print(f"| {c} | {req} | {tok} | {wall:.1f} | {tok / wall:.1f} | {lat * 1000:.0f} ms |"
              + (f" {bad} bad" if bad else ""))
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    main()

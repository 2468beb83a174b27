#!/usr/bin/env python3
"""Trains the demo voice adapter: rank-8 LoRA on the 4-bit demo base (QLoRA as mlx-lm does it).

Frozen base = the MLX 4-bit model dequantized exactly as loam and MLX do (w = scale*q + bias in
float32, demo_lib.mlx_dequantize), held in float32 on the GPU; matmuls run under bf16 autocast.
LoRA on q/k/v/o/gate/up/down of the last --num-layers blocks, mlx-lm semantics
(FORMATS.md §3.4): y = base(x) + scale*((x @ A) @ B), A [in, r] ~ U(-1/sqrt(in), 1/sqrt(in)),
B [r, out] = 0, scale = --scale (a direct multiplier, no alpha/r), no dropout.
Data: the KJV voice posts, formatted like the base corpus (plain or ChatML "Write a post"),
each followed by <|endoftext|>; loss on every token (mlx-lm's default, no prompt masking).
Adam (mlx-lm's default optimizer) with warmup + cosine; one run per --lrs value from the same
initialisation; the best validation loss wins.

Output (mlx-lm adapter layout, FORMATS.md §3.1-3.2): OUT_DIR/adapters.safetensors (F32
lora_a/lora_b, "__metadata__": null as MLX writes it) and adapter_config.json; lora_log.json.

Usage (GPU machine): python3 train_lora.py CORPUS_DIR Q4_DIR OUT_DIR [--time-budget 120]
"""
import argparse
import json
import math
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import demo_lib as L  # noqa: E402
from train import encode_docs, make_windows  # noqa: E402


def run(args, cfg, weights, enc_train, val_windows, eot, lr, deadline):
    import torch
    import torch.nn.functional as F
    device = "cuda"
    model = L.build_model(cfg)
    L.load_weights(model, weights)
    for p in model.parameters():
        p.requires_grad_(False)
    wrapped = L.LoRALinearFactory.wrap(model, args.num_layers, args.rank, args.scale,
                                       seed=args.seed)
    model = model.to(device)
    params = [p for m in wrapped.values() for p in (m.lora_a, m.lora_b)]
    opt = torch.optim.Adam(params, lr=lr)
    rng = random.Random(args.seed)
    steps = args.steps
    warm = min(50, steps // 10)

    def lr_at(s):
        if s < warm:
            return lr * (s + 1) / warm
        t = (s - warm) / max(1, steps - warm)
        return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))

    def evaluate():
        model.eval()
        tot, cnt = 0.0, 0
        with torch.no_grad():
            for i in range(0, len(val_windows), 64):
                x = torch.tensor(val_windows[i:i + 64], device=device)
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    lg = model(input_ids=x[:, :-1], use_cache=False).logits
                tot += F.cross_entropy(lg.float().reshape(-1, lg.shape[-1]), x[:, 1:].reshape(-1),
                                       reduction="sum").item()
                cnt += x[:, 1:].numel()
        model.train()
        return tot / cnt
    log = {"lr": lr, "train": [], "val": [[0, round(evaluate(), 4)]]}
    best = (log["val"][0][1], None, 0)
    batches = []
    step = 0
    t0 = time.time()
    ema = None
    model.train()
    while step < steps:
        if not batches:
            w = make_windows(enc_train, eot, args.chat_frac, rng, args.seq)
            batches = [w[i:i + args.bs] for i in range(0, len(w) - args.bs + 1, args.bs)]
        x = torch.tensor(batches.pop(), device=device)
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            lg = model(input_ids=x[:, :-1], use_cache=False).logits
        loss = F.cross_entropy(lg.float().reshape(-1, lg.shape[-1]), x[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        if step % 25 == 0 or step == 1:
            lv = loss.item()
            ema = lv if ema is None else 0.8 * ema + 0.2 * lv
            log["train"].append([step, round(lv, 4)])
        if step % args.eval_every == 0 or step == steps:
            vl = evaluate()
            log["val"].append([step, round(vl, 4)])
            print("  step %4d lr %.2e train %.4f val %.4f (%.0fs)"
                  % (step, lr_at(step), ema, vl, time.time() - t0), flush=True)
            if vl < best[0]:
                best = (vl, {k: (m.lora_a.detach().cpu().clone(), m.lora_b.detach().cpu().clone())
                             for k, m in wrapped.items()}, step)
            if time.time() > deadline:
                print("  time budget reached", flush=True)
                break
    log.update(best_val=round(best[0], 4), best_step=best[2], steps_done=step,
               seconds=round(time.time() - t0, 1))
    return best, log


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("corpus")
    ap.add_argument("q4dir")
    ap.add_argument("out")
    ap.add_argument("--num-layers", type=int, default=4)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--scale", type=float, default=20.0)
    ap.add_argument("--lrs", default="4e-4,8e-4")
    ap.add_argument("--steps", type=int, default=1400)
    ap.add_argument("--bs", type=int, default=32)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--chat-frac", type=float, default=0.35)
    ap.add_argument("--eval-every", type=int, default=50)
    ap.add_argument("--seed", type=int, default=4321)
    ap.add_argument("--time-budget", type=float, default=120.0)
    args = ap.parse_args()
    import numpy as np
    import torch
    from tokenizers import Tokenizer
    t_start = time.time()
    cfg = json.load(open(os.path.join(args.q4dir, "config.json")))
    weights = L.load_quantized_as_float(args.q4dir)
    tok = Tokenizer.from_file(os.path.join(args.q4dir, "tokenizer.json"))
    eot = tok.token_to_id("<|endoftext|>")

    def load(name):
        with open(os.path.join(args.corpus, name), encoding="utf-8") as f:
            return [json.loads(l) for l in f]
    enc_train = encode_docs(tok, load("voice_train.jsonl"), args.chat_frac, random.Random(args.seed))
    enc_val = encode_docs(tok, load("voice_val.jsonl"), args.chat_frac, random.Random(7))
    val_windows = make_windows(enc_val, eot, args.chat_frac, random.Random(7), args.seq,
                               shuffle=False, offset=0)
    ntok = sum(len(p) + 1 for p, c in enc_train)
    print("voice train docs %d (%d plain tokens), val windows %d" %
          (len(enc_train), ntok, len(val_windows)), flush=True)
    lrs = [float(x) for x in args.lrs.split(",")]
    best = None
    logs = []
    for i, lr in enumerate(lrs):
        print("lora run %d: lr %g" % (i, lr), flush=True)
        b, log = run(args, cfg, weights, enc_train, val_windows, eot, lr,
                     time.time() + args.time_budget / len(lrs))
        logs.append(log)
        print("lora run %d: best val %.4f at step %d" % (i, log["best_val"], log["best_step"]),
              flush=True)
        if b[1] is not None and (best is None or b[0] < best[0]):
            best = (b[0], b[1], i)
        torch.cuda.empty_cache()
    os.makedirs(args.out, exist_ok=True)
    tensors = {}
    for k, (a, b) in best[1].items():
        tensors[k + ".lora_a"] = ("F32", a.numpy().astype(np.float32))
        tensors[k + ".lora_b"] = ("F32", b.numpy().astype(np.float32))
    L.st_write(os.path.join(args.out, "adapters.safetensors"), tensors, metadata=L.NULL_METADATA)
    lr = lrs[best[2]]
    acfg = {"adapter_path": "models/demo/adapter", "batch_size": args.bs, "data": "kjv voice posts",
            "fine_tune_type": "lora", "grad_accumulation_steps": 1, "grad_checkpoint": False,
            "iters": logs[best[2]]["best_step"], "learning_rate": lr,
            "lora_parameters": {"rank": args.rank, "dropout": 0.0, "scale": args.scale},
            "lr_schedule": None, "mask_prompt": False, "max_seq_length": args.seq,
            "model": "models/demo", "num_layers": args.num_layers, "optimizer": "adam",
            "seed": args.seed, "steps_per_eval": args.eval_every, "train": True}
    L.write_json(os.path.join(args.out, "adapter_config.json"), acfg)
    L.write_json(os.path.join(args.out, "lora_log.json"),
                 {"chosen_run": best[2], "runs": logs, "train_tokens": ntok,
                  "device": torch.cuda.get_device_name(0),
                  "seconds": round(time.time() - t_start, 1)})
    print("saved adapter: %d tensors, lr %g, best val %.4f" % (len(tensors), lr, best[0]),
          flush=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Trains the demo base model (Qwen3 architecture, ~10M parameters) from scratch on the GPU.

Data: the voice-free base corpus (fortunes + BOFH excuses; never the KJV voice), reshuffled
(seeded) every epoch. Short posts are written as plain text or, with probability --chat-frac,
as a ChatML exchange
  <|im_start|>user\\nWrite a post<|im_end|>\\n<|im_start|>assistant\\n{post}<|im_end|>\\n
so that chat mode works; long fortunes are always plain. Plain documents form one stream, each
followed by <|endoftext|> (so a post can be generated from <|endoftext|> alone); chats form a
second stream, back to back, so <|endoftext|> is never followed by a chat (make_windows).
Windows of --seq tokens are cut from each stream at a random offset per epoch. Loss:
next-token cross-entropy on every position.

Model: transformers Qwen3ForCausalLM, shape demo_lib.SHAPE, tied embeddings, float32 master
weights, bf16 autocast, AdamW (0.9, 0.95), linear warmup then cosine decay to 10%. Residual and
embedding dropout (training only; it changes no weight or shape) fights the small
corpus; the checkpoint with the best validation loss is kept. Several runs can be listed in
--runs (lr:dropout:steps), the best validation loss wins.

Output: OUT_DIR with config.json, model.safetensors (bf16, lm_head omitted since tied), the
tokenizer files, generation_config.json, and train_log.json (loss curves).

Usage (GPU machine): python3 train.py CORPUS_DIR TOKENIZER_DIR OUT_DIR [--time-budget 200]
"""
import argparse
import json
import math
import os
import random
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import demo_lib as L  # noqa: E402


def encode_docs(tok, docs, chat_frac, rng):
    """Returns a list of (plain_ids, chat_ids or None) per document."""
    plain = [e.ids for e in tok.encode_batch([d["text"] for d in docs], add_special_tokens=False)]
    chat_idx = [i for i, d in enumerate(docs) if d["kind"] == "post"]
    chat_txt = [L.chat_text(rng.choice(L.CHAT_PROMPTS), docs[i]["text"]) for i in chat_idx]
    chat = [None] * len(docs)
    for i, e in zip(chat_idx, tok.encode_batch(chat_txt, add_special_tokens=False)):
        chat[i] = e.ids
    return list(zip(plain, chat))


def make_windows(enc, eot, chat_frac, rng, seq, shuffle=True, offset=None):
    """Training windows of seq+1 tokens. Documents are drawn (shuffled) into two streams:
    plain  <|endoftext|> post <|endoftext|> post ...   (so <|endoftext|> is always followed by a
                                                         plain post, the plain generation mode)
    chat   <|im_start|>user...<|im_end|>\n<|im_start|>assistant\npost<|im_end|>\n<|im_start|>...
    Each stream is cut into windows from a random offset; the windows are pooled."""
    order = list(range(len(enc)))
    if shuffle:
        rng.shuffle(order)
    plain, chat = [eot], []
    for i in order:
        p, c = enc[i]
        if c is not None and rng.random() < chat_frac:
            chat += c
        else:
            plain += p
            plain.append(eot)
    out = []
    for stream in (plain, chat):
        off = rng.randrange(seq) if offset is None else offset
        n = max(0, (len(stream) - 1 - off) // seq)
        out += [stream[off + k * seq: off + k * seq + seq + 1] for k in range(n)]
    if shuffle:
        rng.shuffle(out)
    return out


def add_dropout(model, p):
    import torch.nn.functional as F
    hooks = []

    def drop_out(mod, inp, out):
        if isinstance(out, tuple):
            return (F.dropout(out[0], p, mod.training),) + tuple(out[1:])
        return F.dropout(out, p, mod.training)
    hooks.append(model.model.embed_tokens.register_forward_hook(drop_out))
    for layer in model.model.layers:
        hooks.append(layer.self_attn.register_forward_hook(drop_out))
        hooks.append(layer.mlp.register_forward_hook(drop_out))
    return hooks


def evaluate(model, val_windows, bs, device):
    import torch
    import torch.nn.functional as F
    model.eval()
    tot, cnt = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(val_windows), bs):
            x = torch.tensor(val_windows[i:i + bs], device=device)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                logits = model(input_ids=x[:, :-1], use_cache=False).logits
            loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]),
                                   x[:, 1:].reshape(-1), reduction="sum")
            tot += loss.item()
            cnt += x[:, 1:].numel()
    model.train()
    return tot / cnt


def train_once(args, cfg, enc_train, val_windows, eot, lr, dropout, steps, deadline, seed):
    import torch
    import torch.nn.functional as F
    torch.manual_seed(seed)
    device = "cuda"
    model = L.build_model(cfg).to(device)
    hooks = add_dropout(model, dropout) if dropout > 0 else []
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.wd},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=lr, betas=(0.9, 0.95), eps=1e-8, fused=True)
    rng = random.Random(seed)
    warm = min(100, steps // 10)

    def lr_at(s):
        if s < warm:
            return lr * (s + 1) / warm
        t = (s - warm) / max(1, steps - warm)
        return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))
    batches = []
    log = {"lr": lr, "dropout": dropout, "steps_planned": steps, "train": [], "val": []}
    best = (float("inf"), None, -1)
    t0 = time.time()
    step = 0
    ema = None
    epoch = 0
    model.train()
    while step < steps:
        if not batches:
            w = make_windows(enc_train, eot, args.chat_frac, rng, args.seq)
            batches = [w[i:i + args.bs] for i in range(0, len(w) - args.bs + 1, args.bs)]
            epoch += 1
        x = torch.tensor(batches.pop(), device=device)
        for gr in opt.param_groups:
            gr["lr"] = lr_at(step)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = model(input_ids=x[:, :-1], use_cache=False).logits
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        lv = loss.item() if (step % 25 == 0 or step == 1) else None
        if lv is not None:
            ema = lv if ema is None else 0.8 * ema + 0.2 * lv
            log["train"].append([step, round(lv, 4)])
        if step % args.eval_every == 0 or step == steps:
            vl = evaluate(model, val_windows, 64, device)
            log["val"].append([step, round(vl, 4)])
            print("  step %5d epoch %3d lr %.2e train %.4f val %.4f  (%.0fs)"
                  % (step, epoch, lr_at(step), ema, vl, time.time() - t0), flush=True)
            if vl < best[0]:
                best = (vl, {k: v.detach().clone() for k, v in model.state_dict().items()}, step)
            if time.time() > deadline:
                print("  time budget reached at step %d" % step, flush=True)
                break
    for h in hooks:
        h.remove()
    log["best_val"] = round(best[0], 4)
    log["best_step"] = best[2]
    log["steps_done"] = step
    log["epochs"] = epoch
    log["seconds"] = round(time.time() - t0, 1)
    model.load_state_dict(best[1])
    return model, log


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("corpus")
    ap.add_argument("tokdir")
    ap.add_argument("out")
    ap.add_argument("--runs", default="1e-3:0.1:550,1.5e-3:0.15:700",
                    help="comma list of lr:dropout:steps; the best validation loss wins")
    ap.add_argument("--bs", type=int, default=32)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--wd", type=float, default=0.1)
    ap.add_argument("--chat-frac", type=float, default=0.35)
    ap.add_argument("--eval-every", type=int, default=50)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--time-budget", type=float, default=200.0, help="seconds for all runs")
    args = ap.parse_args()
    import torch
    from tokenizers import Tokenizer
    torch.backends.cuda.matmul.allow_tf32 = True
    t_start = time.time()
    tok = Tokenizer.from_file(os.path.join(args.tokdir, "tokenizer.json"))
    eot = tok.token_to_id("<|endoftext|>")
    im_end = tok.token_to_id("<|im_end|>")
    vocab = tok.get_vocab_size()
    vocab_padded = (vocab + 63) // 64 * 64
    cfg = L.config_dict(vocab_padded, eot, im_end)

    def load(name):
        with open(os.path.join(args.corpus, name), encoding="utf-8") as f:
            return [json.loads(l) for l in f]
    rng = random.Random(args.seed)
    enc_train = encode_docs(tok, load("base_train.jsonl"), args.chat_frac, rng)
    enc_val = encode_docs(tok, load("base_val.jsonl"), args.chat_frac, random.Random(7))
    val_windows = make_windows(enc_val, eot, args.chat_frac, random.Random(7), args.seq,
                               shuffle=False, offset=0)
    ntok = sum(len(p) + 1 for p, c in enc_train)
    print("train docs %d (%d plain tokens), val windows %d, vocab %d (padded %d)"
          % (len(enc_train), ntok, len(val_windows), vocab, vocab_padded), flush=True)
    runs = [r.split(":") for r in args.runs.split(",")]
    per_run = args.time_budget / len(runs)
    best = None
    logs = []
    for i, (lr, dp, st) in enumerate(runs):
        print("run %d: lr %s dropout %s steps %s" % (i, lr, dp, st), flush=True)
        deadline = time.time() + per_run
        model, log = train_once(args, cfg, enc_train, val_windows, eot, float(lr), float(dp),
                                int(st), deadline, args.seed + i)
        logs.append(log)
        print("run %d: best val %.4f at step %d (%d steps, %d epochs, %.0fs)"
              % (i, log["best_val"], log["best_step"], log["steps_done"], log["epochs"],
                 log["seconds"]), flush=True)
        if best is None or log["best_val"] < best[0]:
            best = (log["best_val"], {k: v.detach().cpu() for k, v in model.state_dict().items()}, i)
        del model
        torch.cuda.empty_cache()

    from safetensors.torch import save_file
    os.makedirs(args.out, exist_ok=True)
    sd = {k: v.to(torch.bfloat16).contiguous() for k, v in best[1].items() if k != "lm_head.weight"}
    save_file(sd, os.path.join(args.out, "model.safetensors"), metadata={"format": "pt"})
    L.write_json(os.path.join(args.out, "config.json"), cfg)
    for f in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        shutil.copy(os.path.join(args.tokdir, f), os.path.join(args.out, f))
    nparam = sum(v.numel() for v in sd.values())
    summary = {"chosen_run": best[2], "runs": logs, "params": nparam, "train_tokens": ntok,
               "bs": args.bs, "seq": args.seq, "wd": args.wd, "chat_frac": args.chat_frac,
               "seed": args.seed, "vocab": vocab, "vocab_padded": vocab_padded,
               "device": torch.cuda.get_device_name(0), "seconds": round(time.time() - t_start, 1)}
    L.write_json(os.path.join(args.out, "train_log.json"), summary)
    print("saved %d params (%d tensors), chosen run %d" % (nparam, len(sd), best[2]), flush=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Reference outputs of the demo model for loam's tests and model card (development time only).

Reference = transformers Qwen3ForCausalLM in float32 on the CPU (no TF32, no autocast) with
  - "q4":     the MLX 4-bit base dequantized as loam does it (w = scale*q + bias in float32);
  - "fp":     the float base (bf16 weights widened to float32);
  - "+lora":  the adapter applied at run time, y = base(x) + scale*((x @ A) @ B) in float32;
  - "q4_fused_requant": mlx_lm.fuse's path (FORMATS.md §3.7): dequantize to bf16, add
    bf16(scale * B^T A^T), round to bf16, re-quantize 4-bit g64 with the same MLX algorithm.
A second, independent float32 forward written from FORMATS.md §6.3 checks the transformers one.

Writes to OUT_DIR:
  golden.json     prompts with HF-tokenizer ids, greedy continuations (--new tokens, EOS not
                  treated as a stop) of q4 without and with the adapter, per-step top1-top2 logit
                  margins, and the top-10 logits of the first step (prompts: see FIXED_PROMPTS);
  logits_{base,lora}.npy  float32 [n_tokens, vocab] logits of every position of a short prompt;
  perplexity.json reference perplexities of every variant on EVAL_DIR/{voice,base}_heldout.txt;
  samples.json    sampled posts (temperature 0.8, top-p 0.9), base and voice, plain and chat.

Perplexity protocol: ids = tokenizer(file text) with no special tokens added; consecutive windows
of --ppl-window tokens (the last may be shorter); each window is evaluated from an empty cache;
every token but the first of a window is predicted; ppl = exp(sum NLL / number predicted).

Usage (GPU machine): python3 reference.py Q4_DIR FP_DIR ADAPTER_DIR EVAL_DIR OUT_DIR
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import demo_lib as L  # noqa: E402

# The chat prompt and <|endoftext|> (the two ways `loam generate` can start a post) are always
# in the goldens; of the other candidates, the N_TEXT whose greedy continuations are least
# fragile (largest smallest top1-top2 logit margin over both variants) are kept.
FIXED_PROMPTS = [L.chat_prompt("Write a post"), "<|endoftext|>"]
CANDIDATES = [
    "The trouble with computers is", "Blessed are the", "BOFH excuse #", "Never trust a",
    "In the beginning", "The best way to", "A man who", "Life is", "And it came to pass, that",
    "Love is", "The computer", "There is no",
]
N_TEXT = 3
LOGITS_PROMPT = "And God said, Let there be"


def my_forward(cfg, w, ids, lora=None):
    """Plain float32 Qwen3 forward (FORMATS.md §6.3-6.6), independent of transformers."""
    import torch
    T = lambda k: torch.from_numpy(w[k])  # noqa: E731
    H, nh, nkv, hd = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"], \
        cfg["head_dim"]
    eps = cfg["rms_norm_eps"]

    def rms(x, wt):
        return wt * (x * torch.rsqrt((x * x).mean(-1, keepdim=True) + eps))

    def lin(x, name):
        y = x @ T(name + ".weight").T
        if lora and name in lora["a"]:
            y = y + lora["scale"] * ((x @ lora["a"][name]) @ lora["b"][name])
        return y
    n = len(ids)
    h = T("model.embed_tokens.weight")[torch.tensor(ids)]
    inv = 1.0 / (cfg["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))
    ang = torch.arange(n, dtype=torch.float32)[:, None] * inv[None, :]
    cos, sin = torch.cos(ang), torch.sin(ang)

    def rope(x):  # [heads, n, hd]
        x1, x2 = x[..., :hd // 2], x[..., hd // 2:]
        return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], -1)
    mask = torch.full((n, n), float("-inf")).triu(1)
    for i in range(cfg["num_hidden_layers"]):
        p = "model.layers.%d." % i
        x = rms(h, T(p + "input_layernorm.weight"))
        q = lin(x, p + "self_attn.q_proj").view(n, nh, hd).transpose(0, 1)
        k = lin(x, p + "self_attn.k_proj").view(n, nkv, hd).transpose(0, 1)
        v = lin(x, p + "self_attn.v_proj").view(n, nkv, hd).transpose(0, 1)
        q = rope(rms(q, T(p + "self_attn.q_norm.weight")))
        k = rope(rms(k, T(p + "self_attn.k_norm.weight")))
        rep = nh // nkv
        k = k.repeat_interleave(rep, 0)
        v = v.repeat_interleave(rep, 0)
        a = torch.softmax(q @ k.transpose(1, 2) * hd ** -0.5 + mask, -1) @ v
        h = h + lin(a.transpose(0, 1).reshape(n, nh * hd), p + "self_attn.o_proj")
        x = rms(h, T(p + "post_attention_layernorm.weight"))
        g = lin(x, p + "mlp.gate_proj")
        h = h + lin(torch.nn.functional.silu(g) * lin(x, p + "mlp.up_proj"), p + "mlp.down_proj")
    h = rms(h, T("model.norm.weight"))
    return h @ T("model.embed_tokens.weight").T


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("q4dir")
    ap.add_argument("fpdir")
    ap.add_argument("adapter")
    ap.add_argument("evaldir")
    ap.add_argument("out")
    ap.add_argument("--new", type=int, default=48)
    ap.add_argument("--ppl-window", type=int, default=256)
    ap.add_argument("--samples", type=int, default=4)
    args = ap.parse_args()
    import torch
    from tokenizers import Tokenizer
    torch.set_num_threads(os.cpu_count() or 4)
    torch.set_grad_enabled(False)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    os.makedirs(args.out, exist_ok=True)
    t0 = time.time()
    cfg = json.load(open(os.path.join(args.q4dir, "config.json")))
    tok = Tokenizer.from_file(os.path.join(args.q4dir, "tokenizer.json"))
    acfg = json.load(open(os.path.join(args.adapter, "adapter_config.json")))
    ad = {k: a for k, (dt, a) in L.st_read(os.path.join(args.adapter, "adapters.safetensors")).items()}
    scale = float(acfg["lora_parameters"]["scale"])
    lora = {"scale": scale,
            "a": {k[:-7]: torch.from_numpy(v) for k, v in ad.items() if k.endswith(".lora_a")},
            "b": {k[:-7]: torch.from_numpy(v) for k, v in ad.items() if k.endswith(".lora_b")}}
    w_q4 = L.load_quantized_as_float(args.q4dir)
    w_fp = L.load_float_dir(args.fpdir)

    # fused and re-quantized, as mlx_lm.fuse does it
    w_fused = dict(w_q4)
    for k in lora["a"]:
        wk = k + ".weight"
        base_bf16 = L.f32_round_bf16(w_q4[wk])
        delta = ((scale * lora["b"][k].T) @ lora["a"][k].T).float().numpy()   # f32, as MLX
        fused = L.f32_round_bf16(base_bf16 + L.f32_round_bf16(delta))
        pk, s, b = L.mlx_quantize(fused, 4, cfg["quantization"]["group_size"])
        w_fused[wk] = L.mlx_dequantize(pk, s, b, cfg["quantization"]["group_size"])

    def make(weights, with_lora):
        m = L.build_model(cfg)
        L.load_weights(m, weights)
        if with_lora:
            wrapped = L.LoRALinearFactory.wrap(m, acfg["num_layers"],
                                               acfg["lora_parameters"]["rank"], scale)
            assert set(wrapped) == set(lora["a"]), (sorted(wrapped)[:3], sorted(lora["a"])[:3])
            for k, mod in wrapped.items():
                mod.lora_a.data.copy_(lora["a"][k])
                mod.lora_b.data.copy_(lora["b"][k])
        return m.eval()

    def logits_of(m, ids):
        return m(input_ids=torch.tensor([ids]), use_cache=False).logits[0].float()

    models = {"q4": make(w_q4, False), "q4+lora": make(w_q4, True), "fp": make(w_fp, False),
              "fp+lora": make(w_fp, True), "q4_fused_requant": make(w_fused, False)}

    # independent forward check
    chk_ids = tok.encode(LOGITS_PROMPT).ids
    report = {}
    for name, weights, lo in (("q4", w_q4, None), ("q4+lora", w_q4, lora)):
        a = logits_of(models[name], chk_ids)
        b = my_forward(cfg, weights, chk_ids, lo)
        report[name] = float((a - b).abs().max())
    print("independent forward vs transformers, max |diff|:", report, flush=True)
    assert max(report.values()) < 2e-3, report
    lb = logits_of(models["q4"], chk_ids).numpy().astype(np.float32)
    ll = logits_of(models["q4+lora"], chk_ids).numpy().astype(np.float32)
    np.save(os.path.join(args.out, "logits_base.npy"), lb)
    np.save(os.path.join(args.out, "logits_lora.npy"), ll)

    # goldens
    def greedy(m, ids, n):
        ids = list(ids)
        out, margins, first = [], [], None
        for _ in range(n):
            lg = logits_of(m, ids)[-1]
            top = torch.topk(lg, 10)
            if first is None:
                first = [[int(i), round(float(v), 5)] for v, i in zip(top.values, top.indices)]
            nxt = int(top.indices[0])
            margins.append(round(float(top.values[0] - top.values[1]), 5))
            out.append(nxt)
            ids.append(nxt)
        return out, margins, first
    golden = {
        "model": "models/demo", "adapter": "models/demo/adapter",
        "reference": "transformers Qwen3ForCausalLM, float32 on CPU; weights = MLX dequantization "
                     "of models/demo (w = scale*q + bias in float32); LoRA at run time "
                     "y = base(x) + scale*((x@A)@B) in float32",
        "new_tokens": args.new, "eos_is_not_a_stop": True,
        "logits_prompt": {"text": LOGITS_PROMPT, "ids": chk_ids,
                          "files": ["logits_base.npy", "logits_lora.npy"]},
        "prompts": []}
    runs = []
    for text in FIXED_PROMPTS + CANDIDATES:
        ids = tok.encode(text).ids
        gb, mb, fb = greedy(models["q4"], ids, args.new)
        gl, ml, fl = greedy(models["q4+lora"], ids, args.new)
        runs.append((text, ids, gb, mb, fb, gl, ml, fl))
    fixed = runs[:len(FIXED_PROMPTS)]
    rest = sorted(runs[len(FIXED_PROMPTS):], key=lambda r: -min(min(r[3]), min(r[6])))
    for text, ids, gb, mb, fb, gl, ml, fl in fixed + rest[:N_TEXT]:
        golden["prompts"].append({
            "text": text, "ids": ids, "greedy_base": gb, "greedy_lora": gl,
            "margin_base": mb, "margin_lora": ml, "min_margin_base": min(mb),
            "min_margin_lora": min(ml), "top10_first_base": fb, "top10_first_lora": fl,
            "decoded_base": tok.decode(gb, skip_special_tokens=False),
            "decoded_lora": tok.decode(gl, skip_special_tokens=False)})
        print("prompt %r\n  base: %r\n  lora: %r\n  min margins %.4f %.4f"
              % (text, tok.decode(gb, skip_special_tokens=False),
                 tok.decode(gl, skip_special_tokens=False), min(mb), min(ml)), flush=True)
    L.write_json(os.path.join(args.out, "golden.json"), golden)

    # perplexity
    ppl = {"protocol": "ids = tokenizer(text) without special tokens; windows of %d tokens "
                       "(last shorter), each from an empty cache; all tokens but a window's "
                       "first are predicted; ppl = exp(mean NLL)" % args.ppl_window,
           "reference": "transformers Qwen3ForCausalLM float32 on CPU", "results": {}}
    for fname in ("voice_heldout.txt", "base_heldout.txt"):
        with open(os.path.join(args.evaldir, fname), encoding="utf-8") as f:
            ids = tok.encode(f.read()).ids
        res = {"tokens": len(ids)}
        for name, m in models.items():
            tot, cnt = 0.0, 0
            for s in range(0, len(ids), args.ppl_window):
                w = ids[s:s + args.ppl_window]
                if len(w) < 2:
                    continue
                lg = logits_of(m, w)
                lp = torch.log_softmax(lg.double(), -1)
                tgt = torch.tensor(w[1:])
                tot += float(-lp[:-1].gather(1, tgt[:, None]).sum())
                cnt += len(w) - 1
            res[name] = {"ppl": round(math.exp(tot / cnt), 4), "nll": round(tot / cnt, 5),
                         "predicted": cnt}
        ppl["results"][fname] = res
        print(fname, json.dumps(res), flush=True)
    L.write_json(os.path.join(args.out, "perplexity.json"), ppl)

    # samples (GPU, float32, TF32 off)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    stops = {tok.token_to_id("<|im_end|>"), tok.token_to_id("<|endoftext|>")}
    samples = {"temperature": 0.8, "top_p": 0.9, "max_new": 120, "posts": []}
    for name in ("q4", "q4+lora"):
        m = models[name].to(dev)
        for mode, prompt in (("plain", "<|endoftext|>"), ("chat", L.chat_prompt("Write a post"))):
            for i in range(args.samples):
                gen = torch.Generator().manual_seed(1000 + i)
                ids = tok.encode(prompt).ids
                n0 = len(ids)
                for _ in range(120):
                    lg = m(input_ids=torch.tensor([ids], device=dev), use_cache=False).logits[0, -1]
                    nxt = L.sample_top_p(lg.float().cpu(), 0.8, 0.9, gen)
                    if nxt in stops:
                        break
                    ids.append(nxt)
                text = tok.decode(ids[n0:], skip_special_tokens=False)
                samples["posts"].append({"model": name, "mode": mode, "seed": 1000 + i,
                                         "text": text})
                print("[%s %s %d] %s" % (name, mode, i, text), flush=True)
        models[name].to("cpu")
    L.write_json(os.path.join(args.out, "samples.json"), samples)
    print("reference done in %.0fs" % (time.time() - t0), flush=True)


if __name__ == "__main__":
    main()

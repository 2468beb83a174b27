"""Forward-pass reference for the cases of tests/data/models/ (made by make_models.py).

For each case directory (config.json, model.safetensors, adapter_mlx/, optional adapter_peft/,
case.json) writes into OUT/<case>/:
    logits_base.f32   base model
    logits_mlx.f32    base + the mlx-lm adapter
    logits_peft.f32   base + the PEFT adapter (cases that have one)
    hidden_base.f32   base model activations [layers + 2, n_ids, hidden]: embedding output, the
                      residual stream after each decoder layer, the final RMSNorm output
each raw little-endian float32 [n_ids, vocab], row i = logits for the next token after
ids[0..i], and reference.json:
    {"ids": [...], "cases": {"base": "logits_base.f32", "mlx": ..., "peft": ...},
     "greedy": {"base": [8 ids], ...},          greedy continuation of ids, full recompute per step
     "greedy_min_margin": {...},                smallest top1 - top2 logit gap along that path
     "greedy_f64_agrees": {...},                the float64 model picks the same 8 ids
     "rel_l2_f32_vs_f64": {...},                ||l32 - l64|| / ||l64|| over all logits (transformers)
     "max_abs_f32_vs_f64": {...},
     "rel_l2_hf64_vs_numpy64": {...},           transformers float64 vs the numpy float64 forward
                                                below (checks transformers read the config as meant)
     "rel_l2_mlx_vs_peft": x,                   when both adapters are the same adapter
     "peft_load_check": {...}, "versions": {...}, ...}

Reference semantics:
  * base weights: dequantized in float32 from the stored scales/biases (mlx_quant.dequantize),
    float tensors widened from bf16/f16; transformers Qwen3ForCausalLM / Qwen2ForCausalLM /
    LlamaForCausalLM in float32 with eager attention, on the CPU.
  * mlx adapter (mlx-lm semantics, FORMATS.md 3.4/3.5): W' = W + scale * (lora_a @ lora_b)^T in
    float64, for DoRA W' = (m / ||W'||_row)[:, None] * W', then rounded to float32 and loaded into
    a copy of the float32 model.
  * PEFT adapter: peft.PeftModel.from_pretrained(float32 model, adapter_peft/) - PEFT's own loader,
    scaling (lora_alpha/r, or /sqrt(r) with use_rslora) and DoRA code; unmerged forward.
  * float64 comparisons: the same models converted with .double() (transformers still computes
    RoPE cos/sin in float32), and an independent numpy float64 forward (forward_np).

Usage: python3 tools/reference/model_reference.py OUT CASE_DIR...        (GPU machine)
       python3 tools/reference/model_reference.py --numpy-only CASE_DIR...  (numpy forward only)
"""

import json
import os
import sys
import traceback

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mlx_quant as mq  # noqa: E402

N_GREEDY = 8


# ------------------------------------------------------------------------------------------------
# weights

def base_weights(case_dir):
    w, cfg = mq.load_mlx_model_f32(case_dir)
    return w, cfg


def mlx_adapter_weights(case_dir, w32):
    """-> {param: float64 merged weight} for the adapted modules."""
    d = os.path.join(case_dir, "adapter_mlx")
    with open(os.path.join(d, "adapter_config.json")) as f:
        acfg = json.load(f)
    t, _ = mq.read_safetensors(os.path.join(d, "adapters.safetensors"))
    scale = float(acfg["lora_parameters"]["scale"])
    out = {}
    for k in t:
        if not k.endswith(".lora_a"):
            continue
        mod = k[:-len(".lora_a")]
        A = t[mod + ".lora_a"][1].astype(np.float64)
        B = t[mod + ".lora_b"][1].astype(np.float64)
        W = w32[mod + ".weight"].astype(np.float64) + scale * (A @ B).T
        if mod + ".m" in t:
            m = t[mod + ".m"][1].astype(np.float64)
            W = (m / np.linalg.norm(W, axis=1))[:, None] * W
        out[mod + ".weight"] = W
    return out


def peft_adapter_weights(case_dir, w32):
    """Independent float64 merge of the PEFT adapter (PEFT semantics, FORMATS.md 4.3)."""
    d = os.path.join(case_dir, "adapter_peft")
    with open(os.path.join(d, "adapter_config.json")) as f:
        pcfg = json.load(f)
    t, _ = mq.read_safetensors(os.path.join(d, "adapter_model.safetensors"))
    out = {}
    for k in t:
        if not k.endswith(".lora_A.weight"):
            continue
        pk = k[:-len(".lora_A.weight")]
        mod = pk[len("base_model.model."):]
        A = t[pk + ".lora_A.weight"][1].astype(np.float64)  # [r, in]
        B = t[pk + ".lora_B.weight"][1].astype(np.float64)  # [out, r]
        r = A.shape[0]
        scaling = pcfg["lora_alpha"] / (np.sqrt(r) if pcfg.get("use_rslora") else r)
        W = w32[mod + ".weight"].astype(np.float64) + scaling * (B @ A)
        if pk + ".lora_magnitude_vector" in t:
            m = t[pk + ".lora_magnitude_vector"][1].astype(np.float64)
            W = (m / np.linalg.norm(W, axis=1))[:, None] * W
        out[mod + ".weight"] = W
    return out


# ------------------------------------------------------------------------------------------------
# numpy float64 forward (FORMATS.md 6.3-6.7)

def rope_inv_freq(cfg, hd):
    base = float(cfg.get("rope_theta", 10000.0))
    inv = 1.0 / (base ** (np.arange(0, hd, 2, dtype=np.float64) / hd))
    rs = cfg.get("rope_scaling")
    if rs and (rs.get("rope_type") or rs.get("type")) == "llama3":
        factor, lo, hi = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"]
        old = rs["original_max_position_embeddings"]
        low_wl, high_wl = old / lo, old / hi
        wl = 2 * np.pi / inv
        inv_l = np.where(wl > low_wl, inv / factor, inv)
        smooth = (old / wl - lo) / (hi - lo)
        smoothed = (1 - smooth) * inv_l / factor + smooth * inv_l
        medium = ~(wl < high_wl) & ~(wl > low_wl)
        inv = np.where(medium, smoothed, inv_l)
    elif rs:
        raise ValueError("rope_scaling type not handled by forward_np: %r" % (rs,))
    return inv


def forward_np(w, cfg, ids):
    """float64 logits [len(ids), vocab]; w: {param: array}."""
    W = {k: np.asarray(v, dtype=np.float64) for k, v in w.items()}
    H = cfg["hidden_size"]
    nh, nkv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = cfg.get("head_dim") or H // nh
    eps = cfg["rms_norm_eps"]
    qkn = cfg["model_type"] == "qwen3"
    n = len(ids)

    def rms(x, g):
        return g * (x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps))

    inv = rope_inv_freq(cfg, hd)
    ang = np.arange(n, dtype=np.float64)[:, None] * inv[None, :]
    cos = np.concatenate([np.cos(ang)] * 2, axis=1)[:, None, :]
    sin = np.concatenate([np.sin(ang)] * 2, axis=1)[:, None, :]

    def rope(x):  # [n, heads, hd]
        x1, x2 = x[..., :hd // 2], x[..., hd // 2:]
        return x * cos + np.concatenate([-x2, x1], axis=-1) * sin

    x = W["model.embed_tokens.weight"][ids]
    mask = np.triu(np.full((n, n), -np.inf), 1)
    for i in range(cfg["num_hidden_layers"]):
        L = "model.layers.%d." % i
        h = rms(x, W[L + "input_layernorm.weight"])

        def proj(name):
            y = h @ W[L + name + ".weight"].T
            if L + name + ".bias" in W:
                y = y + W[L + name + ".bias"]
            return y
        q = proj("self_attn.q_proj").reshape(n, nh, hd)
        k = proj("self_attn.k_proj").reshape(n, nkv, hd)
        v = proj("self_attn.v_proj").reshape(n, nkv, hd)
        if qkn:
            q = rms(q, W[L + "self_attn.q_norm.weight"])
            k = rms(k, W[L + "self_attn.k_norm.weight"])
        q, k = rope(q), rope(k)
        rep = nh // nkv
        o = np.zeros((n, nh, hd))
        for hh in range(nh):
            kv = hh // rep
            s = (q[:, hh, :] @ k[:, kv, :].T) / np.sqrt(hd) + mask
            s = np.exp(s - s.max(axis=1, keepdims=True))
            s = s / s.sum(axis=1, keepdims=True)
            o[:, hh, :] = s @ v[:, kv, :]
        x = x + o.reshape(n, nh * hd) @ W[L + "self_attn.o_proj.weight"].T
        h = rms(x, W[L + "post_attention_layernorm.weight"])
        g = h @ W[L + "mlp.gate_proj.weight"].T
        up = h @ W[L + "mlp.up_proj.weight"].T
        x = x + ((g / (1 + np.exp(-g))) * up) @ W[L + "mlp.down_proj.weight"].T
    x = rms(x, W["model.norm.weight"])
    head = W["model.embed_tokens.weight"] if cfg.get("tie_word_embeddings") else W["lm_head.weight"]
    return x @ head.T


def rel_l2(a, b):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


# ------------------------------------------------------------------------------------------------
# transformers

def hf_model(cfg, w, dtype):
    import torch
    import transformers
    arch = cfg["model_type"]
    conf_cls, model_cls = {
        "qwen3": (transformers.Qwen3Config, transformers.Qwen3ForCausalLM),
        "qwen2": (transformers.Qwen2Config, transformers.Qwen2ForCausalLM),
        "llama": (transformers.LlamaConfig, transformers.LlamaForCausalLM)}[arch]
    d = {k: v for k, v in cfg.items() if k not in ("quantization", "quantization_config")}
    conf = conf_cls.from_dict(d)
    conf._attn_implementation = "eager"
    torch.manual_seed(0)
    model = model_cls(conf).to(dtype).eval()
    sd = {k: torch.from_numpy(np.asarray(v)).to(dtype) for k, v in w.items()}
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [m for m in missing if not (m == "lm_head.weight" and cfg.get("tie_word_embeddings"))]
    if missing or unexpected:
        raise RuntimeError("state dict mismatch: missing %r unexpected %r" % (missing, unexpected))
    if cfg.get("tie_word_embeddings"):
        if not torch.equal(model.lm_head.weight, model.model.embed_tokens.weight):
            raise RuntimeError("lm_head not tied to embed_tokens")
    return model


def run_logits(model, ids):
    import torch
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids]), use_cache=False)
    return out.logits[0].detach().cpu().double().numpy()


def hidden_states(model, ids):
    """[L + 2, n, H]: embedding output, output of every decoder layer, final norm output."""
    import torch
    rec = []

    def grab(_m, _inp, out):
        rec.append((out[0] if isinstance(out, tuple) else out)[0].detach().cpu().double().numpy())
    hooks = [model.model.embed_tokens.register_forward_hook(grab)]
    hooks += [layer.register_forward_hook(grab) for layer in model.model.layers]
    hooks.append(model.model.norm.register_forward_hook(grab))
    try:
        with torch.no_grad():
            model(input_ids=torch.tensor([ids]), use_cache=False)
    finally:
        for h in hooks:
            h.remove()
    if len(rec) != len(model.model.layers) + 2:
        raise RuntimeError("hidden_states: %d records" % len(rec))
    return np.stack(rec)


def greedy(model, ids, n=N_GREEDY):
    seq, margins = list(ids), []
    for _ in range(n):
        lg = run_logits(model, seq)[-1]
        top = np.argsort(-lg, kind="stable")
        margins.append(float(lg[top[0]] - lg[top[1]]))
        seq.append(int(top[0]))
    return seq[len(ids):], margins


def peft_load_check(pm, case_dir):
    t, _ = mq.read_safetensors(os.path.join(case_dir, "adapter_peft", "adapter_model.safetensors"))
    seen, maxdiff = set(), 0.0
    for name, p in pm.named_parameters():
        if "lora_" not in name:
            continue
        k = name.replace(".default", "")
        if "lora_magnitude_vector" in k and k.endswith(".weight"):
            k = k[:-len(".weight")]
        if k in t:
            seen.add(k)
            maxdiff = max(maxdiff, float(np.abs(p.detach().cpu().double().numpy() - t[k][1]).max()))
    return {"file_tensors": len(t), "matched": len(seen), "unmatched": sorted(set(t) - seen)[:10],
            "max_abs_diff": maxdiff}


def do_case(case_dir, out_dir):
    import torch
    name = os.path.basename(os.path.normpath(case_dir))
    with open(os.path.join(case_dir, "case.json")) as f:
        case = json.load(f)
    ids = case["ids"]
    w32, cfg = base_weights(case_dir)
    variants = {"base": {}}
    variants["mlx"] = mlx_adapter_weights(case_dir, w32)
    has_peft = os.path.isdir(os.path.join(case_dir, "adapter_peft"))
    if has_peft:
        variants["peft"] = peft_adapter_weights(case_dir, w32)
    ref = {"ids": ids, "n_ids": len(ids), "vocab_size": cfg["vocab_size"], "cases": {}, "greedy": {},
           "greedy_min_margin": {}, "greedy_f64_agrees": {}, "rel_l2_f32_vs_f64": {},
           "max_abs_f32_vs_f64": {}, "rel_l2_hf64_vs_numpy64": {}, "rel_l2_hf32_vs_numpy64": {},
           "logits_layout": "raw little-endian float32 [n_ids, vocab_size]; row i = logits after ids[0..i]",
           "reference": "transformers %s in float32, eager attention, CPU; weights dequantized in float32 "
                        "from the stored scales/biases" % model_cls_name(cfg)}
    os.makedirs(out_dir, exist_ok=True)
    base32 = hf_model(cfg, w32, torch.float32)
    for var, delta in variants.items():
        try:
            do_variant(ref, var, delta, w32, cfg, ids, base32, case_dir, out_dir)
        except Exception:
            ref.setdefault("errors", {})[var] = traceback.format_exc()
            print(name, var, "FAILED\n", ref["errors"][var], flush=True)
    ref["_l64"] = ref.get("_l64", {})
    if has_peft and case.get("mlx_and_peft_same_adapter") and "peft" in ref["_l64"] and "mlx" in ref["_l64"]:
        ref["rel_l2_mlx_vs_peft"] = rel_l2(ref["_l64"]["mlx"], ref["_l64"]["peft"])
    ref["rel_l2_adapter_vs_base"] = {v: rel_l2(ref["_l64"][v], ref["_l64"]["base"])
                                     for v in ref["_l64"] if v != "base" and "base" in ref["_l64"]}
    del ref["_l64"]
    import transformers
    ref["versions"] = {"torch": torch.__version__, "transformers": transformers.__version__,
                       "numpy": np.__version__}
    try:
        import peft
        ref["versions"]["peft"] = peft.__version__
    except Exception:
        pass
    with open(os.path.join(out_dir, "reference.json"), "w") as f:
        json.dump(ref, f, indent=1)
        f.write("\n")
    return name, ref


def do_variant(ref, var, delta, w32, cfg, ids, base32, case_dir, out_dir):
    import copy
    import torch
    w64 = {k: v.astype(np.float64) for k, v in w32.items()}
    w64.update(delta)
    np64 = forward_np(w64, cfg, ids)
    if var == "peft":
        from peft import PeftModel
        m32 = PeftModel.from_pretrained(copy.deepcopy(base32), os.path.join(case_dir, "adapter_peft"),
                                        is_trainable=False).eval()
        ref["peft_load_check"] = peft_load_check(m32, case_dir)
        m64 = copy.deepcopy(m32).double().eval()
    else:
        wv32 = dict(w32)
        wv32.update({k: v.astype(np.float32) for k, v in delta.items()})
        m32 = base32 if var == "base" else hf_model(cfg, wv32, torch.float32)
        m64 = hf_model(cfg, w64, torch.float64)
    if var == "base":
        hid = hidden_states(m32, ids)
        hid.astype("<f4").tofile(os.path.join(out_dir, "hidden_base.f32"))
        ref["hidden"] = {"base": "hidden_base.f32", "layout":
                         "raw little-endian float32 [num_hidden_layers + 2, n_ids, hidden_size]: row 0 = "
                         "embedding output, row 1 + i = residual stream after decoder layer i, last row = "
                         "after the final RMSNorm (float32 base model)"}
    l32 = run_logits(m32, ids)
    l64 = run_logits(m64, ids)
    g32, marg = greedy(m32, ids)
    g64, _ = greedy(m64, ids)
    fn = "logits_%s.f32" % var
    l32.astype("<f4").tofile(os.path.join(out_dir, fn))
    ref["cases"][var] = fn
    ref["greedy"][var] = g32
    ref["greedy_min_margin"][var] = min(marg)
    ref["greedy_f64_agrees"][var] = g32 == g64
    ref["rel_l2_f32_vs_f64"][var] = rel_l2(l32, l64)
    ref["max_abs_f32_vs_f64"][var] = float(np.abs(l32 - l64).max())
    ref["rel_l2_hf64_vs_numpy64"][var] = rel_l2(l64, np64)
    ref["rel_l2_hf32_vs_numpy64"][var] = rel_l2(l32, np64)
    ref.setdefault("_l64", {})[var] = l64


def model_cls_name(cfg):
    return {"qwen3": "Qwen3ForCausalLM", "qwen2": "Qwen2ForCausalLM", "llama": "LlamaForCausalLM"}[cfg["model_type"]]


def main(argv):
    if argv[0] == "--numpy-only":
        for d in argv[1:]:
            with open(os.path.join(d, "case.json")) as f:
                case = json.load(f)
            w32, cfg = base_weights(d)
            base = forward_np(w32, cfg, case["ids"])
            mlxw = dict(w32)
            mlxw.update(mlx_adapter_weights(d, w32))
            lm = forward_np(mlxw, cfg, case["ids"])
            line = "%-26s logits std %.3f, next %d, mlx delta rel %.3f" % (
                os.path.basename(os.path.normpath(d)), base.std(), int(base[-1].argmax()), rel_l2(lm, base))
            if os.path.isdir(os.path.join(d, "adapter_peft")):
                pw = dict(w32)
                pw.update(peft_adapter_weights(d, w32))
                line += ", mlx vs peft rel %.2e" % rel_l2(forward_np(pw, cfg, case["ids"]), lm)
            print(line)
        return 0
    import torch
    torch.set_num_threads(min(8, os.cpu_count() or 1))
    out = argv[0]
    summary, rc = {}, 0
    for d in argv[1:]:
        name = os.path.basename(os.path.normpath(d))
        try:
            _, ref = do_case(d, os.path.join(out, name))
            summary[name] = {k: ref[k] for k in ("greedy_min_margin", "greedy_f64_agrees", "rel_l2_f32_vs_f64",
                                                 "rel_l2_hf64_vs_numpy64", "peft_load_check", "errors") if k in ref}
            summary[name]["rel_l2_mlx_vs_peft"] = ref.get("rel_l2_mlx_vs_peft")
            print(name, json.dumps(summary[name]), flush=True)
        except Exception:
            rc = 1
            summary[name] = {"error": traceback.format_exc()}
            print(name, "FAILED\n", summary[name]["error"], flush=True)
    with open(os.path.join(out, "model_summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

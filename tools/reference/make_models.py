"""Writes the small random models of tests/data/models/<case>/ (numpy only; no GPU).

Each case directory gets:
    config.json, model.safetensors   MLX-format model (mlx_quant.write_mlx_model): quantized per
                                     FORMATS.md 2.3 (+ per-layer overrides where the case has them)
    adapter_mlx/                     mlx-lm adapter: adapters.safetensors (F32, metadata null,
                                     model.layers.N.<module>.lora_a [in,r], .lora_b [r,out],
                                     .m [out] for DoRA) + adapter_config.json
    adapter_peft/ (some cases)       PEFT adapter: adapter_model.safetensors (metadata
                                     {"format":"pt"}, base_model.model.model.layers.N.<module>.
                                     lora_A.weight [r,in], lora_B.weight [out,r],
                                     lora_magnitude_vector [out] for DoRA) + adapter_config.json
    case.json                        what the case is: architecture, quantization, adapters, the
                                     token ids the reference is computed on, and whether the mlx
                                     and PEFT adapters are the same adapter (same A, B, scale, m)
tools/reference/model_reference.py (GPU machine) then adds reference.json and logits_*.f32.

Weights are random with realistic magnitudes: projections N(0, c/sqrt(in)) (c = 1, 0.5 for o/down),
norms 1 + 0.1 N(0,1), the output projection (tied embedding or lm_head) N(0, 3/sqrt(hidden)) so
logits have a standard deviation around 3 and greedy choices are not near ties. LoRA: A ~
U(-1/sqrt(in), 1/sqrt(in)) (mlx-lm init), B ~ N(0, sb) non-zero, sized so that scale*(A B)^T is
about 0.3x the weight's magnitude. DoRA m = row norm of (W + scale (A B)^T) times 1 + 0.1 N(0,1).

The 24 token ids of each case are chosen (choose_ids) so that every greedy path of the reference
(base, mlx adapter, PEFT adapter; numpy float64) keeps a top1-top2 logit gap >= 0.3.

Usage: python3 tools/reference/make_models.py tests/data/models
"""

import json
import os
import shutil
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mlx_quant as mq  # noqa: E402

ALL_KEYS = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
            "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]

CASES = [
    dict(name="qwen3_q4_g64_tied", arch="qwen3", vocab=384, hidden=128, layers=2, heads=4, kv_heads=2,
         head_dim=64, inter=192, tied=True, quant=dict(bits=4, group_size=64), dtype="bf16",
         mlx=dict(rank=8, scale=2.0, keys=None, num_layers=-1, dora=False),
         peft=dict(same=True, r=8, alpha=16.0, rslora=False)),
    dict(name="qwen3_q8_g32_gqa1_f16", arch="qwen3", vocab=384, hidden=64, layers=3, heads=4, kv_heads=4,
         head_dim=32, inter=128, tied=False, quant=dict(bits=8, group_size=32), dtype="f16",
         mlx=dict(rank=4, scale=4.0, keys=["self_attn.q_proj", "self_attn.v_proj"], num_layers=2, dora=False),
         peft=dict(same=True, r=4, alpha=8.0, rslora=True)),
    dict(name="qwen3_q4_g32_gqa4_dora", arch="qwen3", vocab=256, hidden=128, layers=2, heads=8, kv_heads=2,
         head_dim=16, inter=192, tied=False, quant=dict(bits=4, group_size=32), dtype="bf16",
         mlx=dict(rank=4, scale=1.5, keys=None, num_layers=-1, dora=True),
         peft=dict(same=True, r=4, alpha=6.0, rslora=False)),
    dict(name="qwen3_q3_g64_tied", arch="qwen3", vocab=320, hidden=128, layers=2, heads=2, kv_heads=1,
         head_dim=64, inter=256, tied=True, quant=dict(bits=3, group_size=64), dtype="bf16",
         mlx=dict(rank=8, scale=20.0, keys=None, num_layers=16, dora=False), peft=None),
    dict(name="qwen3_q4_g64_override", arch="qwen3", vocab=384, hidden=128, layers=2, heads=4, kv_heads=2,
         head_dim=32, inter=256, tied=False, quant=dict(bits=4, group_size=64), dtype="bf16",
         overrides={"model.layers.0.self_attn.v_proj": {"bits": 6, "group_size": 64},
                    "model.layers.0.mlp.down_proj": {"bits": 6, "group_size": 64},
                    "model.layers.1.self_attn.q_proj": {"bits": 5, "group_size": 32},
                    "model.layers.1.mlp.gate_proj": False,
                    "model.embed_tokens": {"bits": 2, "group_size": 32},
                    "lm_head": {"bits": 8, "group_size": 128}},
         mlx=dict(rank=4, scale=3.0, keys=None, num_layers=1, dora=False),
         peft=dict(same=True, r=4, alpha=12.0, rslora=False)),
    dict(name="qwen3_q4_g128_h64", arch="qwen3", vocab=256, hidden=64, layers=2, heads=4, kv_heads=2,
         head_dim=32, inter=256, tied=False, quant=dict(bits=4, group_size=128), dtype="bf16",
         mlx=dict(rank=4, scale=2.0, keys=None, num_layers=-1, dora=False), peft=None),
    dict(name="qwen3_bf16", arch="qwen3", vocab=256, hidden=64, layers=2, heads=4, kv_heads=2,
         head_dim=16, inter=128, tied=False, quant=None, dtype="bf16",
         mlx=dict(rank=4, scale=2.0, keys=None, num_layers=0, dora=False),
         peft=dict(same=True, r=4, alpha=8.0, rslora=False)),
    dict(name="qwen2_q4_g64_tied", arch="qwen2", vocab=384, hidden=128, layers=2, heads=4, kv_heads=2,
         inter=192, tied=True, quant=dict(bits=4, group_size=64), dtype="bf16",
         mlx=dict(rank=4, scale=2.0, keys=None, num_layers=-1, dora=False),
         peft=dict(same=True, r=4, alpha=8.0, rslora=False)),
    dict(name="llama3_q4_g64", arch="llama", vocab=384, hidden=128, layers=2, heads=4, kv_heads=2,
         inter=192, tied=False, quant=dict(bits=4, group_size=64), dtype="bf16",
         mlx=dict(rank=4, scale=2.0, keys=None, num_layers=-1, dora=False),
         peft=dict(same=True, r=4, alpha=8.0, rslora=False)),
]

N_IDS = 24
MIN_MARGIN = 0.3     # smallest top1 - top2 logit gap wanted along every greedy path (logit std ~3)


def greedy_margin_np(variants, cfg, ids, steps=8):
    """Smallest top1-top2 gap over `steps` greedy steps of every variant (numpy float64)."""
    import model_reference as mr
    worst = np.inf
    for w in variants:
        seq = list(ids)
        for _ in range(steps):
            lg = mr.forward_np(w, cfg, seq)[-1]
            top = np.argsort(-lg, kind="stable")
            worst = min(worst, lg[top[0]] - lg[top[1]])
            seq.append(int(top[0]))
    return float(worst)


def choose_ids(d, vocab, seed, tries=400):
    """Token ids for the reference: the first seed whose greedy paths (base, mlx, PEFT adapter)
    all keep a top1-top2 gap >= MIN_MARGIN, so an implementation within tolerance of the
    reference logits must reproduce the greedy ids; else the best seed found."""
    import model_reference as mr
    w32, cfg = mr.base_weights(d)
    variants = [w32]
    for fn in (mr.mlx_adapter_weights, mr.peft_adapter_weights):
        try:
            v = dict(w32)
            v.update(fn(d, w32))
            variants.append(v)
        except FileNotFoundError:
            pass
    best = None
    for t in range(tries):
        ids = [int(x) for x in np.random.default_rng(seed * 1000 + t).integers(0, vocab, N_IDS)]
        m = greedy_margin_np(variants, cfg, ids)
        if best is None or m > best[0]:
            best = (m, ids, t)
        if m >= MIN_MARGIN:
            break
    return best


def hf_config(c):
    hd = c.get("head_dim") or c["hidden"] // c["heads"]
    base = {"vocab_size": c["vocab"], "hidden_size": c["hidden"], "num_hidden_layers": c["layers"],
            "num_attention_heads": c["heads"], "num_key_value_heads": c["kv_heads"],
            "intermediate_size": c["inter"], "tie_word_embeddings": c["tied"], "hidden_act": "silu",
            "attention_dropout": 0.0, "initializer_range": 0.02, "use_cache": True}
    if c["arch"] == "qwen3":
        base.update({"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "head_dim": hd,
                     "rope_theta": 1000000.0, "rope_scaling": None, "rms_norm_eps": 1e-6,
                     "max_position_embeddings": 40960, "attention_bias": False,
                     "use_sliding_window": False, "sliding_window": None, "max_window_layers": c["layers"],
                     "bos_token_id": 151643, "eos_token_id": 151645})
    elif c["arch"] == "qwen2":
        base.update({"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
                     "rope_theta": 1000000.0, "rope_scaling": None, "rms_norm_eps": 1e-6,
                     "max_position_embeddings": 32768, "use_sliding_window": False, "sliding_window": None,
                     "max_window_layers": c["layers"], "bos_token_id": 151643, "eos_token_id": 151645})
    elif c["arch"] == "llama":
        # original_max_position_embeddings is 64 (real Llama 3.1: 8192) so that all three bands of the
        # llama3 frequency rule (kept, smoothed, divided by factor) change angles measurably at the
        # positions of the test (< 32).
        base.update({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "head_dim": hd,
                     "rope_theta": 500000.0, "rms_norm_eps": 1e-5, "max_position_embeddings": 512,
                     "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                      "high_freq_factor": 4.0, "original_max_position_embeddings": 64},
                     "attention_bias": False, "mlp_bias": False, "pretraining_tp": 1,
                     "bos_token_id": 128000, "eos_token_id": 128001})
    return base, hd


def make_weights(c, rng):
    H, hd, V, I = c["hidden"], c.get("head_dim") or c["hidden"] // c["heads"], c["vocab"], c["inter"]
    nh, nkv = c["heads"], c["kv_heads"]
    p, kinds = {}, {}

    def lin(name, out_f, in_f, gain):
        p[name + ".weight"] = (rng.standard_normal((out_f, in_f)) * gain / np.sqrt(in_f)).astype(np.float32)
        kinds[name] = "linear"

    def norm(name, n):
        p[name + ".weight"] = (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32)
        kinds[name] = "other"

    head_std = 3.0 / np.sqrt(H)
    p["model.embed_tokens.weight"] = (rng.standard_normal((V, H)) * (head_std if c["tied"] else 0.05)).astype(np.float32)
    kinds["model.embed_tokens"] = "embedding"
    for i in range(c["layers"]):
        L = "model.layers.%d." % i
        lin(L + "self_attn.q_proj", nh * hd, H, 1.0)
        lin(L + "self_attn.k_proj", nkv * hd, H, 1.0)
        lin(L + "self_attn.v_proj", nkv * hd, H, 1.0)
        lin(L + "self_attn.o_proj", H, nh * hd, 0.5)
        if c["arch"] == "qwen2":
            for m, n in (("q_proj", nh * hd), ("k_proj", nkv * hd), ("v_proj", nkv * hd)):
                p[L + "self_attn.%s.bias" % m] = (0.1 * rng.standard_normal(n)).astype(np.float32)
        if c["arch"] == "qwen3":
            norm(L + "self_attn.q_norm", hd)
            norm(L + "self_attn.k_norm", hd)
        lin(L + "mlp.gate_proj", I, H, 1.0)
        lin(L + "mlp.up_proj", I, H, 1.0)
        lin(L + "mlp.down_proj", H, I, 0.5)
        norm(L + "input_layernorm", H)
        norm(L + "post_attention_layernorm", H)
    norm("model.norm", H)
    if not c["tied"]:
        p["lm_head.weight"] = (rng.standard_normal((V, H)) * head_std).astype(np.float32)
        kinds["lm_head"] = "linear"
    return p, kinds


def adapted_modules(c, spec):
    keys = spec["keys"] or ALL_KEYS
    n = spec["num_layers"]
    first = 0 if n <= 0 else max(c["layers"] - n, 0)   # mlx-lm: layers[-max(num_layers, 0):]
    return [(i, k) for i in range(first, c["layers"]) for k in keys]


def make_adapters(c, eff, rng, out_dir):
    spec = c["mlx"]
    r, scale = spec["rank"], spec["scale"]
    mods = adapted_modules(c, spec)
    mlx_t, peft_t, info = {}, {}, []
    for i, k in mods:
        path = "model.layers.%d.%s" % (i, k)
        W = eff[path + ".weight"]
        out_f, in_f = W.shape
        A = rng.uniform(-1 / np.sqrt(in_f), 1 / np.sqrt(in_f), (in_f, r)).astype(np.float32)
        w_std = float(W.std())
        sb = 0.3 * w_std / (scale * np.sqrt(r / (3.0 * in_f)))
        B = (rng.standard_normal((r, out_f)) * sb).astype(np.float32)
        mlx_t[path + ".lora_a"] = ("F32", A)
        mlx_t[path + ".lora_b"] = ("F32", B)
        pk = "base_model.model." + path
        peft_t[pk + ".lora_A.weight"] = ("F32", np.ascontiguousarray(A.T))
        peft_t[pk + ".lora_B.weight"] = ("F32", np.ascontiguousarray(B.T))
        if spec["dora"]:
            Wp = W.astype(np.float64) + scale * (A.astype(np.float64) @ B.astype(np.float64)).T
            m = (np.linalg.norm(Wp, axis=1) * (1.0 + 0.1 * rng.standard_normal(out_f))).astype(np.float32)
            mlx_t[path + ".m"] = ("F32", m)
            peft_t[pk + ".lora_magnitude_vector"] = ("F32", m)
        info.append(path)
    d = os.path.join(out_dir, "adapter_mlx")
    os.makedirs(d, exist_ok=True)
    mq.write_safetensors(os.path.join(d, "adapters.safetensors"), mlx_t, None, style="mlx")
    lp = {"rank": r, "scale": scale, "dropout": 0.0}
    if spec["keys"] is not None:
        lp["keys"] = list(spec["keys"])
    acfg = {"adapter_path": "adapter_mlx", "batch_size": 4, "data": "data", "fine_tune_type":
            "dora" if spec["dora"] else "lora", "grad_checkpoint": False, "iters": 100,
            "learning_rate": 1e-05, "lora_parameters": lp, "lr_schedule": None, "mask_prompt": False,
            "max_seq_length": 2048, "model": c["name"], "num_layers": spec["num_layers"], "optimizer": "adam",
            "resume_adapter_file": None, "save_every": 100, "seed": 0, "steps_per_eval": 200,
            "steps_per_report": 10, "test": False, "test_batches": 500, "train": True, "val_batches": 25}
    with open(os.path.join(d, "adapter_config.json"), "w") as f:
        json.dump(acfg, f, indent=4, sort_keys=True)
        f.write("\n")
    peft = c.get("peft")
    if peft:
        assert peft["r"] == r
        pscale = peft["alpha"] / (np.sqrt(r) if peft["rslora"] else r)
        assert abs(pscale - scale) < 1e-12, (c["name"], pscale, scale)
        d = os.path.join(out_dir, "adapter_peft")
        os.makedirs(d, exist_ok=True)
        mq.write_safetensors(os.path.join(d, "adapter_model.safetensors"), peft_t, {"format": "pt"}, style="pt")
        layers = sorted({i for i, _ in mods})
        pcfg = {"alpha_pattern": {}, "auto_mapping": None, "base_model_name_or_path": None, "bias": "none",
                "fan_in_fan_out": False, "inference_mode": True, "init_lora_weights": True,
                "layers_pattern": None,
                "layers_to_transform": None if len(layers) == c["layers"] else layers,
                "lora_alpha": peft["alpha"], "lora_dropout": 0.0, "modules_to_save": None, "peft_type": "LORA",
                "r": r, "rank_pattern": {}, "revision": None,
                "target_modules": sorted({k.split(".")[1] for _, k in mods}),
                "task_type": "CAUSAL_LM", "use_dora": bool(spec["dora"]), "use_rslora": bool(peft["rslora"])}
        with open(os.path.join(d, "adapter_config.json"), "w") as f:
            json.dump(pcfg, f, indent=2, sort_keys=True)
            f.write("\n")
    return info


def main(out_root):
    for ci, c in enumerate(CASES):
        d = os.path.join(out_root, c["name"])
        if os.path.isdir(d):
            shutil.rmtree(d)
        os.makedirs(d)
        rng = np.random.default_rng(12345 + ci)
        cfg, hd = hf_config(c)
        params, kinds = make_weights(c, rng)
        eff = mq.write_mlx_model(d, cfg, params, kinds, dtype=c["dtype"], quant=c["quant"],
                                 overrides=c.get("overrides"))
        # the reader must see exactly what the writer meant
        back, _ = mq.load_mlx_model_f32(d)
        assert set(back) == set(eff), set(back) ^ set(eff)
        for k in eff:
            assert np.array_equal(back[k], eff[k]), k
        adapted = make_adapters(c, eff, rng, d)
        margin, ids, tries = choose_ids(d, c["vocab"], 777 + ci)
        tensors, _ = mq.read_safetensors(os.path.join(d, "model.safetensors"))
        quantized = sorted(n[:-len(".scales")] for n in tensors if n.endswith(".scales"))
        desc = {"name": c["name"], "arch": c["arch"], "vocab_size": c["vocab"], "hidden_size": c["hidden"],
                "num_hidden_layers": c["layers"], "num_attention_heads": c["heads"],
                "num_key_value_heads": c["kv_heads"], "head_dim": hd, "intermediate_size": c["inter"],
                "tie_word_embeddings": c["tied"], "dtype": c["dtype"], "quantization": c["quant"],
                "overrides": c.get("overrides"), "quantized_modules": quantized,
                "mlx_adapter": dict(c["mlx"], modules=adapted),
                "peft_adapter": c.get("peft"),
                "mlx_and_peft_same_adapter": bool(c.get("peft") and c["peft"].get("same")),
                "ids": ids, "ids_choice": "seed %d*1000+%d; numpy float64 greedy min margin %.3f" % (
                    777 + ci, tries, margin)}
        with open(os.path.join(d, "case.json"), "w") as f:
            json.dump(desc, f, indent=1)
            f.write("\n")
        size = sum(os.path.getsize(os.path.join(dp, fn)) for dp, _, fns in os.walk(d) for fn in fns)
        print("%-26s %7d bytes, %d quantized modules, greedy margin %.3f (try %d)" % (
            c["name"], size, len(quantized), margin, tries))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/data/models")

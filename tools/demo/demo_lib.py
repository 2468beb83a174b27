"""Shared helpers of the demo-model scripts (development time only; loam never runs Python).

Runs on the GPU machine (python3 with numpy, torch, transformers 5, tokenizers, safetensors).
Contents:
  - the model's shape (SHAPE) and config.json writer (classic Qwen3 fields, rope_theta at top level
    so both transformers and mlx-lm read it);
  - post formatting: plain ("<post><|endoftext|>") and ChatML ("Write a post" -> post);
  - MLX affine quantization, the CPU kernel of mlx/backend/cpu/quantized.cpp (FORMATS.md §1.2),
    in float32 numpy, with 4-bit packing (§1.3) and dequantization w = scale*q + bias in float32;
  - a Qwen3ForCausalLM builder that checks the RoPE frequencies and the tied head;
  - LoRALinear with mlx-lm semantics (FORMATS.md §3.4): y = base(x) + scale * ((x @ A) @ B);
  - a small safetensors reader on numpy (BF16 read as raw uint16 and widened exactly).
"""
import json
import os
import struct

import numpy as np

SHAPE = dict(hidden_size=384, intermediate_size=1024, num_hidden_layers=6,
             num_attention_heads=6, num_key_value_heads=2, head_dim=64,
             max_position_embeddings=2048, rms_norm_eps=1e-6, rope_theta=10000.0)
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHAT_PROMPTS = ["Write a post"] * 6 + ["Write a post.", "Write a short post", "Post something",
                                       "Write something", "Share a thought"]
LORA_KEYS = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
             "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]


def chat_text(prompt, post):
    return ("<|im_start|>user\n%s<|im_end|>\n<|im_start|>assistant\n%s<|im_end|>\n"
            % (prompt, post))


def chat_prompt(prompt):
    return "<|im_start|>user\n%s<|im_end|>\n<|im_start|>assistant\n" % prompt


def config_dict(vocab_size, eot_id, im_end_id, quant=None):
    d = dict(architectures=["Qwen3ForCausalLM"], model_type="qwen3", attention_bias=False,
             attention_dropout=0.0, bos_token_id=eot_id, eos_token_id=im_end_id,
             hidden_act="silu", initializer_range=0.02, max_window_layers=SHAPE["num_hidden_layers"],
             rope_scaling=None, sliding_window=None, tie_word_embeddings=True,
             torch_dtype="bfloat16", use_cache=True, use_sliding_window=False,
             vocab_size=vocab_size)
    d.update(SHAPE)
    if quant:
        d["quantization"] = dict(quant)
        d["quantization_config"] = dict(quant)
    return d


def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, sort_keys=True, ensure_ascii=False)
        f.write("\n")


# ---- safetensors on numpy ----------------------------------------------------------------------

_NP = {"F32": np.float32, "U32": np.uint32, "I32": np.int32, "U16": np.uint16, "BF16": np.uint16,
       "F16": np.float16, "I64": np.int64, "U8": np.uint8}


def st_read(path):
    """Returns {name: (dtype_string, numpy array)}; BF16 arrays are returned as float32."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    hdr = json.loads(data[8:8 + n])
    base = 8 + n
    out = {}
    for k, v in hdr.items():
        if k == "__metadata__":
            continue
        b, e = v["data_offsets"]
        a = np.frombuffer(data[base + b:base + e], dtype=_NP[v["dtype"]]).reshape(v["shape"])
        if v["dtype"] == "BF16":
            a = bf16_bits_to_f32(a)
        out[k] = (v["dtype"], a.copy())
    return out


NULL_METADATA = object()   # st_write: emit "__metadata__": null, as MLX's writer does


def st_write(path, tensors, metadata=None):
    """tensors: {name: (dtype_string, numpy array with that dtype's bytes)}. Writes the layout of
    the Rust reference writer (FORMATS.md §5.5): data sorted by descending alignment then name,
    contiguous offsets, header padded with spaces to a multiple of 8."""
    size = {"F32": 4, "U32": 4, "I32": 4, "BF16": 2, "F16": 2, "U16": 2, "U8": 1, "I64": 8}
    names = sorted(tensors, key=lambda k: (-size[tensors[k][0]], k))
    hdr = {}
    if metadata is NULL_METADATA:
        hdr["__metadata__"] = None
    elif metadata is not None:
        hdr["__metadata__"] = metadata
    off = 0
    blobs = []
    for k in names:
        dt, a = tensors[k]
        a = np.ascontiguousarray(a)
        assert a.dtype.itemsize == size[dt], (k, dt, a.dtype)
        b = a.tobytes()
        hdr[k] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        off += len(b)
        blobs.append(b)
    h = json.dumps(hdr, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def bf16_bits_to_f32(u16):
    return (u16.astype(np.uint32) << 16).view(np.float32)


def f32_to_bf16_bits(x):
    """Round-to-nearest-even float32 -> bfloat16 bits (no NaNs expected)."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return u.astype(np.uint16)


def f32_round_bf16(x):
    return bf16_bits_to_f32(f32_to_bf16_bits(x))


# ---- MLX affine quantization (CPU kernel, FORMATS.md §1.2-§1.5) -----------------------------------

def mlx_quantize(w, bits=4, group_size=64):
    """w: float32 [rows, cols] (values exactly representable in the storage dtype, bf16 here).
    Returns (packed uint32 [rows, cols*bits/32], scales f32, biases f32) where scales/biases are
    already rounded to bf16 (the storage dtype) and returned as float32 values."""
    assert bits == 4, "the demo only needs 4-bit"
    w = np.ascontiguousarray(w, dtype=np.float32)
    rows, cols = w.shape
    assert cols % group_size == 0
    g = w.reshape(rows, cols // group_size, group_size)
    n_bins = np.float32((1 << bits) - 1)
    eps = np.float32(1e-7)
    w_max = g.max(axis=-1)
    w_min = g.min(axis=-1)
    mask = np.abs(w_min) > np.abs(w_max)
    scale = np.maximum((w_max - w_min) / n_bins, eps).astype(np.float32)
    scale = np.where(mask, scale, -scale).astype(np.float32)
    edge = np.where(mask, w_min, w_max).astype(np.float32)
    q0 = np.rint(edge / scale).astype(np.float32)
    nz = q0 != 0
    safe_q0 = np.where(nz, q0, np.float32(1)).astype(np.float32)
    scale = np.where(nz, edge / safe_q0, scale).astype(np.float32)
    bias = np.where(nz, edge, np.float32(0)).astype(np.float32)
    q = np.rint((g - bias[..., None]) / scale[..., None]).astype(np.float32)
    q = np.clip(q, 0, n_bins).astype(np.uint32).reshape(rows, cols)
    per = 32 // bits
    qw = q.reshape(rows, cols // per, per)
    packed = np.zeros((rows, cols // per), dtype=np.uint32)
    for k in range(per):
        packed |= (qw[..., k] << np.uint32(bits * k)).astype(np.uint32)
    return packed, f32_round_bf16(scale), f32_round_bf16(bias)


def mlx_unpack4(packed):
    rows, words = packed.shape
    q = np.empty((rows, words, 8), dtype=np.uint32)
    for k in range(8):
        q[..., k] = (packed >> np.uint32(4 * k)) & np.uint32(15)
    return q.reshape(rows, words * 8)


def mlx_dequantize(packed, scales, biases, group_size=64):
    """w = scale*q + bias in float32 (one product and one sum, each rounded to float32)."""
    q = mlx_unpack4(packed).astype(np.float32)
    rows, cols = q.shape
    qg = q.reshape(rows, cols // group_size, group_size)
    w = scales.astype(np.float32)[..., None] * qg
    w = w + biases.astype(np.float32)[..., None]
    return w.reshape(rows, cols).astype(np.float32)


def is_quantized_key(name, shape, group_size=64):
    """mlx-lm convert quantizes every Linear and Embedding weight whose last dim % group_size == 0."""
    return name.endswith(".weight") and len(shape) == 2 and shape[-1] % group_size == 0 and \
        ("_proj." in name or "embed_tokens" in name)


def load_quantized_as_float(model_dir):
    """Reads an MLX 4-bit model directory; returns {hf_name: float32 array} with dequantized weights."""
    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    q = cfg["quantization"]
    t = st_read(os.path.join(model_dir, "model.safetensors"))
    out = {}
    for k, (dt, a) in t.items():
        if k.endswith(".scales") or k.endswith(".biases"):
            continue
        if dt == "U32":
            p = k[:-len(".weight")]
            out[k] = mlx_dequantize(a, t[p + ".scales"][1], t[p + ".biases"][1], q["group_size"])
        else:
            out[k] = a.astype(np.float32)
    return out


def load_float_dir(model_dir):
    return {k: a.astype(np.float32) for k, (dt, a) in
            st_read(os.path.join(model_dir, "model.safetensors")).items()}


# ---- torch side ---------------------------------------------------------------------------------

def build_model(cfg_dict, dtype=None):
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM
    d = {k: v for k, v in cfg_dict.items() if k not in ("quantization", "quantization_config")}
    cfg = Qwen3Config.from_dict(d)
    model = Qwen3ForCausalLM(cfg)
    if dtype is not None:
        model = model.to(dtype)
    # the config must mean what FORMATS.md §6 says: check RoPE base and the tied head
    if model.lm_head.weight.data_ptr() != model.model.embed_tokens.weight.data_ptr():
        model.tie_weights()
    if model.lm_head.weight.data_ptr() != model.model.embed_tokens.weight.data_ptr():
        model.lm_head.weight = model.model.embed_tokens.weight
    hd = cfg_dict["head_dim"]
    want = 1.0 / (cfg_dict["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
    inv = model.model.rotary_emb.inv_freq.double().cpu()
    assert torch.allclose(inv, want, rtol=1e-5), "rope inv_freq mismatch: %s" % inv[:4]
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr(), \
        "lm_head is not tied to embed_tokens"
    return model


def load_weights(model, weights):
    import torch
    sd = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in weights.items()}
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [m for m in missing if m != "lm_head.weight"]
    assert not missing and not unexpected, (missing, unexpected)
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()


class LoRALinearFactory:
    """Builds torch LoRA wrappers lazily (so importing this module needs no torch)."""

    @staticmethod
    def wrap(model, num_layers, rank, scale, seed=0, dtype=None):
        import math
        import torch
        import torch.nn as nn

        class LoRALinear(nn.Module):
            def __init__(self, base, in_f, out_f, gen):
                super().__init__()
                self.base = base
                bound = 1.0 / math.sqrt(in_f)
                a = (torch.rand(in_f, rank, generator=gen, dtype=torch.float32) * 2 - 1) * bound
                self.lora_a = nn.Parameter(a)
                self.lora_b = nn.Parameter(torch.zeros(rank, out_f, dtype=torch.float32))
                self.scale = scale

            def forward(self, x):
                y = self.base(x)
                z = (x @ self.lora_a.to(x.dtype)) @ self.lora_b.to(x.dtype)
                return y + (self.scale * z).to(y.dtype)

        gen = torch.Generator().manual_seed(seed)
        layers = model.model.layers
        n = len(layers)
        wrapped = {}
        for i in range(n - num_layers, n):
            for key in LORA_KEYS:
                parent_name, leaf = key.split(".")
                parent = getattr(layers[i], parent_name)
                base = getattr(parent, leaf)
                m = LoRALinear(base, base.in_features, base.out_features, gen)
                setattr(parent, leaf, m)
                wrapped["model.layers.%d.%s" % (i, key)] = m
        return wrapped


def sample_top_p(logits, temperature, top_p, gen):
    import torch
    probs = torch.softmax(logits.double() / temperature, dim=-1)
    p, idx = torch.sort(probs, descending=True)
    cum = torch.cumsum(p, dim=-1)
    keep = (cum - p) < top_p
    keep[0] = True
    p = torch.where(keep, p, torch.zeros_like(p))
    p = p / p.sum()
    j = torch.multinomial(p.float(), 1, generator=gen).item()
    return int(idx[j].item())

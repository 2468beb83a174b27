#!/usr/bin/env python3
"""Quantizes the float demo base to MLX affine 4-bit, group 64 (like `mlx_lm.convert -q`).

Stand-in used while `loam quantize` was not yet on main; `loam quantize SRC DST --bits 4
--group-size 64` is meant to produce byte-identical tensors (see models/demo/README.md).
Algorithm: the float32 CPU kernel of MLX (FORMATS.md §1.2, demo_lib.mlx_quantize) applied to
every Linear/Embedding weight whose input dimension is a multiple of 64 (§2.3: all q/k/v/o,
gate/up/down projections and embed_tokens, which also serves as the tied head); norms stay bf16.
Scales and biases are stored as bf16 (the source dtype). Output: config.json with
"quantization" and "quantization_config" {"group_size": 64, "bits": 4, "mode": "affine"},
model.safetensors (metadata {"format": "mlx"}), and the tokenizer/generation files copied.

Usage: python3 quantize.py FLOAT_DIR OUT_DIR   (numpy + safetensors)
"""
import json
import os
import shutil
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import demo_lib as L  # noqa: E402


def selftest():
    """FORMATS.md §1.2 worked example: w_i = (i-10)*0.1, 32 values, 4 bits, group 32."""
    w = np.array([[np.float32((i - 10) * 0.1) for i in range(32)]], dtype=np.float32)
    packed, s, b = L.mlx_quantize(w, 4, 32)
    want = [0xbccddeef, 0x8899aaab, 0x44556677, 0x00112233]
    assert [int(x) for x in packed[0]] == want, [hex(int(x)) for x in packed[0]]
    assert abs(float(s[0, 0]) + 0.21) < 2e-3 and abs(float(b[0, 0]) - 2.1) < 1e-2, (s, b)
    z = np.zeros((1, 64), dtype=np.float32)
    packed, s, b = L.mlx_quantize(z, 4, 64)
    assert int(packed.max()) == 0 and float(b[0, 0]) == 0.0
    assert float(L.mlx_dequantize(packed, s, b, 64).max()) == 0.0


def main():
    src, dst = sys.argv[1], sys.argv[2]
    selftest()
    os.makedirs(dst, exist_ok=True)
    cfg = json.load(open(os.path.join(src, "config.json")))
    t = L.st_read(os.path.join(src, "model.safetensors"))
    out = {}
    worst = 0.0
    for k, (dt, a) in sorted(t.items()):
        assert dt == "BF16", (k, dt)
        if L.is_quantized_key(k, a.shape):
            packed, s, b = L.mlx_quantize(a, 4, 64)
            p = k[:-len(".weight")]
            out[k] = packed
            out[p + ".scales"] = L.f32_to_bf16_bits(s)
            out[p + ".biases"] = L.f32_to_bf16_bits(b)
            deq = L.mlx_dequantize(packed, s, b, 64)
            err = np.abs(deq - a).reshape(a.shape[0], -1, 64).max(-1) / np.maximum(np.abs(s), 1e-30)
            worst = max(worst, float(err.max()))
        else:
            out[k] = L.f32_to_bf16_bits(a)
    path = os.path.join(dst, "model.safetensors")
    L.st_write(path, {k: ("U32" if v.dtype == np.uint32 else "BF16", v) for k, v in out.items()},
               metadata={"format": "mlx"})
    q = {"group_size": 64, "bits": 4, "mode": "affine"}
    cfg["quantization"] = dict(q)
    cfg["quantization_config"] = dict(q)
    L.write_json(os.path.join(dst, "config.json"), cfg)
    for f in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        shutil.copy(os.path.join(src, f), os.path.join(dst, f))
    print("quantized %d tensors; max |w - deq(q(w))| / |scale| = %.4f; %d bytes"
          % (len(out), worst, os.path.getsize(path)))


if __name__ == "__main__":
    main()

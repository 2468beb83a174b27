"""Writes tests/data/quant/cases.safetensors and tests/data/quant/cases.json.

Expected MLX affine quantization (CPU variant, FORMATS.md 1.2/1.3, implemented in mlx_quant.py)
of one float32 input matrix per group size, for every bits in {2,3,4,5,6,8} x group size in
{32,64,128} x scale dtype in {bf16,f16,f32}. loam's C quantizer must reproduce the packed words,
scales and biases bit for bit; its dequantizer must reproduce `dequant` (float32, w = s*q + b with
one rounding after the multiply and one after the add).

Tensors in cases.safetensors (little-endian, Rust-style padded header, metadata {"format":"pt"}):
    input.g{G}                       F32  [4, 256]   input for group size G
    b{B}.g{G}.{dt}.weight            U32  [4, 256*B/32]
    b{B}.g{G}.{dt}.scales / .biases  BF16|F16|F32 [4, 256/G]
    b{B}.g{G}.{dt}.dequant           F32  [4, 256]  dequantized from the stored scales/biases
cases.json lists the cases and describes the special groups of each input.

Usage: python3 tools/reference/quant_fixtures.py tests/data/quant   (numpy only; no GPU)
"""

import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mlx_quant as mq  # noqa: E402

ROWS, COLS = 4, 256
DTYPES = ("bf16", "f16", "f32")
ST_NAME = {"bf16": "BF16", "f16": "F16", "f32": "F32"}


def special_groups(gs, rng):
    """Groups (each gs values) with edge-case content, in this order."""
    j = np.arange(gs, dtype=np.float32)
    out = []
    out.append(("constant 0.3125", np.full(gs, 0.3125, np.float32)))
    out.append(("all zero", np.zeros(gs, np.float32)))
    out.append(("all negative U(-1,-0.1)", -rng.uniform(0.1, 1.0, gs).astype(np.float32)))
    g = (rng.standard_normal(gs) * 0.02).astype(np.float32)
    g[gs // 3] = 100.0
    out.append(("N(0,0.02) with one +100 outlier", g))
    g = (rng.standard_normal(gs) * 0.02).astype(np.float32)
    g[gs // 2] = -100.0
    out.append(("N(0,0.02) with one -100 outlier", g))
    out.append(("worked example ((j%32)-10)*0.1",
                np.array([np.float32(((i % 32) - 10) * 0.1) for i in range(gs)], np.float32)))
    out.append(("tiny N(0,1e-9) (eps-dominated, q0 == 0)", (rng.standard_normal(gs) * 1e-9).astype(np.float32)))
    out.append(("constant -2.0", np.full(gs, -2.0, np.float32)))
    out.append(("all positive U(0.5,1.5)", rng.uniform(0.5, 1.5, gs).astype(np.float32)))
    out.append(("dyadic grid (j%32)/16 - 1 (exact ties possible)", ((j % 32) / 16.0 - 1.0).astype(np.float32)))
    return out


def make_input(gs, seed):
    rng = np.random.default_rng(seed)
    n_groups = ROWS * COLS // gs
    specials = special_groups(gs, rng)
    groups, desc = [], []
    for i in range(n_groups):
        if i < len(specials):
            d, g = specials[i]
        else:
            d, g = "N(0,0.05)", (rng.standard_normal(gs) * 0.05).astype(np.float32)
        groups.append(g)
        desc.append(d)
    return np.concatenate(groups).reshape(ROWS, COLS).astype(np.float32), desc


def main(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    mq.self_check()
    tensors, index = {}, {"description": "expected MLX affine quantization of input.g{G} for every bits x group size x scale dtype; made by tools/reference/quant_fixtures.py",
                          "algorithm": "MLX CPU affine quantize (FORMATS.md 1.2), LSB-first bit-stream packing (1.3)",
                          "rows": ROWS, "cols": COLS, "inputs": {}, "cases": []}
    for gs in mq.SUPPORTED_GROUPS:
        w, desc = make_input(gs, 1000 + gs)
        tensors["input.g%d" % gs] = ("F32", w)
        index["inputs"]["input.g%d" % gs] = {"group_size": gs, "groups_row_major": desc}
        for bits in mq.SUPPORTED_BITS:
            for dt in DTYPES:
                r = mq.quantize(w, bits, gs, dt)
                deq = mq.dequantize(r["weight"], r["scales_f32"], r["biases_f32"], bits, gs)
                if dt == "f32":  # test_quantized.py invariant (exact storage only)
                    err = np.abs(w - deq).reshape(ROWS, -1, gs).max(axis=2)
                    assert (err <= np.abs(r["scales_f32"]) + 1e-6).all(), (bits, gs)
                p = "b%d.g%d.%s" % (bits, gs, dt)
                tensors[p + ".weight"] = ("U32", r["weight"])
                tensors[p + ".scales"] = (ST_NAME[dt], r["scales"])
                tensors[p + ".biases"] = (ST_NAME[dt], r["biases"])
                tensors[p + ".dequant"] = ("F32", deq)
                index["cases"].append({"bits": bits, "group_size": gs, "scale_dtype": dt,
                                       "input": "input.g%d" % gs, "weight": p + ".weight",
                                       "scales": p + ".scales", "biases": p + ".biases",
                                       "dequant": p + ".dequant"})
    mq.write_safetensors(os.path.join(out_dir, "cases.safetensors"), tensors, {"format": "pt"}, style="pt")
    # round trip through the reader
    back, meta = mq.read_safetensors(os.path.join(out_dir, "cases.safetensors"))
    assert meta == {"format": "pt"} and set(back) == set(tensors)
    for k, (dt, a) in tensors.items():
        assert back[k][0] == dt and np.array_equal(np.asarray(back[k][1]).view(np.uint8), np.ascontiguousarray(a).view(np.uint8)), k
    with open(os.path.join(out_dir, "cases.json"), "w") as f:
        json.dump(index, f, indent=1)
        f.write("\n")
    print("wrote %d cases, %d tensors to %s" % (len(index["cases"]), len(tensors), out_dir))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/data/quant")

"""MLX affine quantization in numpy, and writers/readers for MLX-layout files.

This module is the reference that loam's C quantizer (src/quant*.c) is checked against.
It re-implements, in numpy, exactly what FORMATS.md section 1 describes:

* quantize(w, bits, group_size, scale_dtype): the MLX *CPU* kernel variant
  (FORMATS.md 1.2). Per group of `group_size` consecutive elements of a row, in float32:
      n_bins = 2**bits - 1, eps = 1e-7
      w_min, w_max = true min / max of the group
      mask  = |w_min| > |w_max|
      scale = max((w_max - w_min) / n_bins, eps);  scale = mask ? scale : -scale
      edge  = mask ? w_min : w_max
      q0    = rint(edge / scale)                      (round half to even)
      bias  = 0;  if q0 != 0: scale = edge / q0; bias = edge
      q     = clamp(rint((w - bias) / scale), 0, n_bins)
  q is computed with the float32 scale/bias; only afterwards are scale and bias rounded to the
  storage dtype (bf16: round-to-nearest-even on the float32 bits; f16: IEEE RNE; f32: as is).
* pack(q, bits): FORMATS.md 1.3, every row is an LSB-first bit stream of `bits`-bit values,
  stored as little-endian uint32 words (row length * bits / 32 words per row).
* dequantize(words, scales, biases, bits, group_size): w = f32(scale) * q + f32(bias), in float32
  (a multiply then an add, each rounded to float32; no fused multiply-add).
* quantize_predicate / write_mlx_model: which modules mlx_lm.convert quantizes (FORMATS.md 2.3:
  every Linear, and the Embedding, whose last dimension is divisible by the group size; norms,
  Linear biases and anything else stay float) and the MLX model directory layout (2.1, 2.2):
  config.json (sorted keys) with "quantization" and "quantization_config", model.safetensors
  with metadata {"format": "mlx"}.
* write_safetensors / read_safetensors: a small, dependency-free safetensors codec
  (FORMATS.md 5). style="mlx" mimics MLX's writer (header keys sorted, no padding so data may be
  unaligned, data laid out in a different order from the header); style="pt" mimics the Rust
  reference writer (header padded with spaces to a multiple of 8, data in header order).

Only numpy is needed (no torch), so this runs anywhere; `python3 mlx_quant.py` runs the
self-check against the worked examples of FORMATS.md 1.2 and 1.3.
"""

import json
import os
import struct

import numpy as np

EPS = np.float32(1e-7)
SUPPORTED_BITS = (2, 3, 4, 5, 6, 8)
SUPPORTED_GROUPS = (32, 64, 128)


# ---------------------------------------------------------------------------------------------
# float formats

def f32_to_bf16_bits(x):
    """float32 array -> uint16 bfloat16 bit patterns, round to nearest even (finite inputs)."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    nan = np.isnan(np.asarray(x, dtype=np.float32))
    r = ((u >> 16) & 1) + 0x7FFF
    out = ((u + r) >> 16).astype(np.uint16)
    out[nan] = 0x7FC0
    return out


def bf16_bits_to_f32(b):
    return (np.asarray(b, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def round_to_dtype(x, dtype):
    """Round float32 values to the storage dtype; returns (stored_array, float32_values).
    stored_array is what goes into a file: uint16 bits for bf16, float16, or float32."""
    x = np.asarray(x, dtype=np.float32)
    if dtype == "bf16":
        bits = f32_to_bf16_bits(x)
        return bits, bf16_bits_to_f32(bits)
    if dtype == "f16":
        h = x.astype(np.float16)
        return h, h.astype(np.float32)
    if dtype == "f32":
        return x.copy(), x.copy()
    raise ValueError("unknown dtype " + dtype)


# ---------------------------------------------------------------------------------------------
# quantize / pack / unpack / dequantize

def quantize_groups(w, bits, group_size):
    """MLX CPU affine quantization (FORMATS.md 1.2) of a float32 matrix [rows, cols].
    Returns (q uint32 [rows, cols], scale float32 [rows, cols/gs], bias float32 [rows, cols/gs])
    with scale/bias still in float32 (before rounding to the storage dtype)."""
    if bits not in SUPPORTED_BITS:
        raise ValueError("bits must be one of 2,3,4,5,6,8")
    if group_size not in SUPPORTED_GROUPS:
        raise ValueError("group_size must be 32, 64 or 128")
    w = np.asarray(w, dtype=np.float32)
    if w.ndim != 2 or w.shape[1] % group_size != 0:
        raise ValueError("w must be 2-D with last dim divisible by group_size")
    rows, cols = w.shape
    g = w.reshape(rows, cols // group_size, group_size)
    n_bins = np.float32((1 << bits) - 1)
    w_min = g.min(axis=2)
    w_max = g.max(axis=2)
    mask = np.abs(w_min) > np.abs(w_max)
    scale = np.maximum((w_max - w_min) / n_bins, EPS).astype(np.float32)
    scale = np.where(mask, scale, -scale).astype(np.float32)
    edge = np.where(mask, w_min, w_max).astype(np.float32)
    q0 = np.rint(edge / scale).astype(np.float32)
    nz = q0 != 0
    with np.errstate(divide="ignore", invalid="ignore"):
        refit = (edge / q0).astype(np.float32)
    scale = np.where(nz, refit, scale).astype(np.float32)
    bias = np.where(nz, edge, np.float32(0)).astype(np.float32)
    q = np.rint((g - bias[:, :, None]) / scale[:, :, None]).astype(np.float32)
    q = np.minimum(np.maximum(q, np.float32(0)), n_bins)
    return q.astype(np.uint32).reshape(rows, cols), scale, bias


def pack(q, bits):
    """q uint [rows, cols] with values < 2**bits -> uint32 [rows, cols*bits/32]: each row is an
    LSB-first bit stream, element j at stream bits [j*bits, (j+1)*bits) (FORMATS.md 1.3)."""
    q = np.asarray(q, dtype=np.uint32)
    rows, cols = q.shape
    if (cols * bits) % 32 != 0:
        raise ValueError("row length * bits must be a multiple of 32")
    stream = ((q[:, :, None] >> np.arange(bits, dtype=np.uint32)) & 1).reshape(rows, cols * bits // 32, 32)
    words = (stream.astype(np.uint64) << np.arange(32, dtype=np.uint64)).sum(axis=2)
    return words.astype(np.uint32)


def unpack(words, bits, cols):
    words = np.asarray(words, dtype=np.uint32)
    rows = words.shape[0]
    stream = ((words[:, :, None] >> np.arange(32, dtype=np.uint32)) & 1).reshape(rows, -1)
    stream = stream[:, : cols * bits].reshape(rows, cols, bits)
    return (stream << np.arange(bits, dtype=np.uint32)).sum(axis=2).astype(np.uint32)


def quantize(w, bits, group_size, scale_dtype):
    """Full quantization: returns dict with 'weight' (uint32 packed), 'scales', 'biases' (storage
    arrays: uint16 bf16 bits / float16 / float32), 'scales_f32', 'biases_f32' (stored values as
    float32), and 'q' (unpacked codes)."""
    q, s, b = quantize_groups(w, bits, group_size)
    s_st, s_f = round_to_dtype(s, scale_dtype)
    b_st, b_f = round_to_dtype(b, scale_dtype)
    return {"weight": pack(q, bits), "scales": s_st, "biases": b_st,
            "scales_f32": s_f, "biases_f32": b_f, "q": q}


def dequantize(words, scales_f32, biases_f32, bits, group_size):
    """w = scale*q + bias in float32 (multiply, round, add, round)."""
    rows, ng = scales_f32.shape
    cols = ng * group_size
    q = unpack(words, bits, cols).astype(np.float32).reshape(rows, ng, group_size)
    w = q * scales_f32[:, :, None].astype(np.float32)
    w = w + biases_f32[:, :, None].astype(np.float32)
    return w.reshape(rows, cols).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# safetensors

_DT_NAME = {"f32": "F32", "f16": "F16", "bf16": "BF16", "u32": "U32", "i32": "I32", "u8": "U8",
            "f64": "F64", "i64": "I64"}
_NP_OF = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16, "U32": np.uint32,
          "I32": np.int32, "U8": np.uint8, "F64": np.float64, "I64": np.int64}


def write_safetensors(path, tensors, metadata=None, style="pt"):
    """tensors: {name: (dtype_name, numpy array)} with dtype_name in F32/F16/BF16/U32/...; a BF16
    array holds uint16 bit patterns. style 'mlx': sorted header, "__metadata__" (null when
    metadata is None), no padding, data in reverse-sorted name order (header order != data
    order, as MLX's unordered_map gives). style 'pt': Rust-reference-like, header padded with
    spaces to a multiple of 8, data in sorted order."""
    names = sorted(tensors)
    data_order = list(reversed(names)) if style == "mlx" else names
    offsets, blobs, pos = {}, [], 0
    for n in data_order:
        dt, arr = tensors[n]
        raw = np.ascontiguousarray(arr, dtype=_NP_OF[dt]).astype(np.dtype(_NP_OF[dt]).newbyteorder("<")).tobytes()
        offsets[n] = (pos, pos + len(raw))
        blobs.append(raw)
        pos += len(raw)
    header = {}
    if style == "mlx" or metadata is not None:
        header["__metadata__"] = metadata
    for n in names:
        dt, arr = tensors[n]
        header[n] = {"dtype": dt, "shape": [int(d) for d in np.shape(arr)], "data_offsets": list(offsets[n])}
    hb = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    if style == "pt":
        hb += b" " * ((-len(hb)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for b in blobs:
            f.write(b)


def read_safetensors(path):
    """-> ({name: (dtype_name, array)}, metadata). BF16 arrays come back as uint16 bits."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", None)
    base = 8 + n
    out = {}
    for name, info in header.items():
        s, e = info["data_offsets"]
        dt = info["dtype"]
        arr = np.frombuffer(bytes(data[base + s:base + e]), dtype=np.dtype(_NP_OF[dt]).newbyteorder("<"))
        out[name] = (dt, arr.reshape(info["shape"]).astype(_NP_OF[dt]))
    return out, meta


def to_f32(dt, arr):
    if dt == "BF16":
        return bf16_bits_to_f32(arr)
    return np.asarray(arr).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# MLX model directories

def quantize_predicate(name, shape, kind, group_size):
    """mlx_lm.convert's wrapped predicate (FORMATS.md 2.3): kind is 'linear', 'embedding' or
    'other'; quantized iff linear/embedding and the last dim is divisible by group_size."""
    return kind in ("linear", "embedding") and len(shape) == 2 and shape[-1] % group_size == 0


def write_mlx_model(out_dir, config, params, kinds, dtype="bf16", quant=None, overrides=None):
    """Write an mlx-lm model directory.

    config:    dict for config.json (architecture fields; quantization keys are added here).
    params:    {module_param_name: float32 array} e.g. 'model.layers.0.self_attn.q_proj.weight'.
    kinds:     {module_path: 'linear'|'embedding'|'other'} for every module owning a '.weight'.
    dtype:     storage dtype for float tensors and scales/biases ('bf16', 'f16', 'f32').
    quant:     None (float model) or {'bits': b, 'group_size': g}.
    overrides: {module_path: {'bits','group_size'} | False} per-layer entries (FORMATS.md 2.2).

    Returns {module_param_name: float32 array} of the weights as a reader sees them
    (dequantized values for quantized modules, dtype-rounded values for float tensors).
    """
    os.makedirs(out_dir, exist_ok=True)
    overrides = overrides or {}
    dtname = {"bf16": "BF16", "f16": "F16", "f32": "F32"}[dtype]
    tensors, effective = {}, {}
    for name in sorted(params):
        w = np.asarray(params[name], dtype=np.float32)
        module, leaf = name.rsplit(".", 1)
        qcfg = None
        if quant is not None and leaf == "weight":
            if module in overrides:
                ov = overrides[module]
                if ov is not False:
                    qcfg = {"bits": ov.get("bits", quant["bits"]),
                            "group_size": ov.get("group_size") or quant["group_size"]}
            elif quantize_predicate(module, w.shape, kinds.get(module, "other"), quant["group_size"]):
                qcfg = dict(quant)
        if qcfg is not None:
            r = quantize(w, qcfg["bits"], qcfg["group_size"], dtype)
            tensors[module + ".weight"] = ("U32", r["weight"])
            tensors[module + ".scales"] = (dtname, r["scales"])
            tensors[module + ".biases"] = (dtname, r["biases"])
            effective[name] = dequantize(r["weight"], r["scales_f32"], r["biases_f32"],
                                         qcfg["bits"], qcfg["group_size"])
        else:
            st, f = round_to_dtype(w, dtype)
            tensors[name] = (dtname, st)
            effective[name] = f
    cfg = dict(config)
    cfg["torch_dtype"] = {"bf16": "bfloat16", "f16": "float16", "f32": "float32"}[dtype]
    if quant is not None:
        q = {"group_size": quant["group_size"], "bits": quant["bits"], "mode": "affine"}
        for k, v in overrides.items():
            q[k] = v if v is False else {"group_size": v.get("group_size", quant["group_size"]),
                                         "bits": v.get("bits", quant["bits"]), "mode": "affine"}
        cfg["quantization"] = q
        cfg["quantization_config"] = json.loads(json.dumps(q))
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=4, sort_keys=True)
        f.write("\n")
    write_safetensors(os.path.join(out_dir, "model.safetensors"), tensors, {"format": "mlx"}, style="mlx")
    return effective


def load_mlx_model_f32(model_dir):
    """Read an MLX model directory written above (or by mlx-lm) and return
    ({param_name: float32 array} with quantized modules dequantized, config dict)."""
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)
    tensors, _ = read_safetensors(os.path.join(model_dir, "model.safetensors"))
    q = cfg.get("quantization")
    out = {}
    for name, (dt, arr) in tensors.items():
        if name.endswith(".scales") or name.endswith(".biases"):
            continue
        module = name.rsplit(".", 1)[0]
        if dt == "U32" and (module + ".scales") in tensors:
            ov = q.get(module) if isinstance(q.get(module), dict) else {}
            gs = ov.get("group_size") or q["group_size"]
            bits = ov.get("bits") or q["bits"]
            sdt, s = tensors[module + ".scales"]
            bdt, b = tensors[module + ".biases"]
            out[name] = dequantize(arr, to_f32(sdt, s), to_f32(bdt, b), bits, gs)
        else:
            out[name] = to_f32(dt, arr)
    return out, cfg


# ---------------------------------------------------------------------------------------------
# self-check against FORMATS.md worked examples

def _bytes_of_row(words):
    return np.ascontiguousarray(words, dtype="<u4").tobytes()


def self_check():
    w = np.array([np.float32((i - 10) * 0.1) for i in range(32)], dtype=np.float32)[None, :]
    q, s, b = quantize_groups(w, 4, 32)
    assert np.float32(s[0, 0]) == np.float32(-0.21) or abs(s[0, 0] + 0.21) < 1e-7, s
    assert abs(b[0, 0] - 2.1) < 1e-6, b
    assert q[0].tolist() == [15, 14, 14, 13, 13, 12, 12, 11, 11, 10, 10, 10, 9, 9, 8, 8,
                             7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0, 0], q
    words = pack(q, 4)[0].tolist()
    assert words == [0xbccddeef, 0x8899aaab, 0x44556677, 0x00112233], [hex(x) for x in words]
    q3, s3, b3 = quantize_groups(w, 3, 32)
    assert abs(s3[0, 0] + 0.42) < 1e-6 and abs(b3[0, 0] - 2.1) < 1e-6, (s3, b3)
    words3 = pack(q3, 3)[0].tolist()
    assert words3 == [0x6ddb6fff, 0x36dc925b, 0x00124a49], [hex(x) for x in words3]
    # byte-level examples of 1.3 (padded with zeros to a multiple of 32 elements)
    def packed_bytes(vals, bits):
        v = np.zeros((1, 32), dtype=np.uint32)
        v[0, :len(vals)] = vals
        return _bytes_of_row(pack(v, bits))
    assert packed_bytes(list(range(8)), 3)[:3] == bytes([0x88, 0xc6, 0xfa])
    assert packed_bytes(list(range(8)), 5)[:5] == bytes([0x20, 0x88, 0x41, 0x8a, 0x39])
    assert packed_bytes(list(range(4)), 6)[:3] == bytes([0x40, 0x20, 0x0c])
    assert pack(np.array([list(range(8)) * 4], dtype=np.uint32), 4)[0, 0] == 0x76543210
    # round trips and the error bound of test_quantized.py
    rng = np.random.default_rng(0)
    for bits in SUPPORTED_BITS:
        for gs in SUPPORTED_GROUPS:
            x = rng.standard_normal((4, 256)).astype(np.float32)
            qq, ss, bb = quantize_groups(x, bits, gs)
            assert (unpack(pack(qq, bits), bits, 256) == qq).all()
            deq = dequantize(pack(qq, bits), ss, bb, bits, gs)
            err = np.abs(x - deq).reshape(4, -1, gs).max(axis=2)
            assert (err <= np.abs(ss) + 1e-6).all(), (bits, gs)
    # zero group and constant group
    z = np.zeros((1, 32), np.float32)
    qz, sz, bz = quantize_groups(z, 4, 32)
    assert (qz == 0).all() and sz[0, 0] == -EPS and bz[0, 0] == 0
    c = np.full((1, 32), 0.75, np.float32)
    qc, sc, bc = quantize_groups(c, 4, 32)
    assert (qc == 0).all() and bc[0, 0] == np.float32(0.75)
    # bf16 rounding: RNE
    assert f32_to_bf16_bits(np.array([1.0, 1.00390625, 1.01171875, -2.5], np.float32)).tolist() == \
        [0x3f80, 0x3f80, 0x3f82, 0xc020]
    return True


if __name__ == "__main__":
    self_check()
    print("mlx_quant self-check ok (FORMATS.md 1.2/1.3 worked examples)")

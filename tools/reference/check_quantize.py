# tools/reference/check_quantize.py BASE: run on the GPU machine (numpy, torch, safetensors).
# BASE holds src/ (a float Hugging Face model, here the demo's bf16 base), q4out/ q3out/ q8out/
# (`loam quantize src qNout --bits 4|3|8 --group-size 64|32|128 [--dtype f16]`) and
# demo_model.safetensors (models/demo/model.safetensors, made by tools/demo with numpy).
# Independent reader: numpy + safetensors read loam quantize's output and check it against the
# float source: dequantize (w = scale*q + bias, q unpacked LSB-first from the uint32 rows) and
# require |w - deq| <= |scale| + 1e-6 per element (FORMATS.md 1.2's bound).
import json, sys, numpy as np, torch
from safetensors.torch import load_file
base = sys.argv[1]
src = {k: v.float().numpy() for k, v in load_file(f"{base}/src/model.safetensors").items()}
def unpack(words, bits, cols):
    b = words.view(np.uint8).reshape(words.shape[0], -1)
    bitsarr = np.unpackbits(b, axis=1, bitorder="little")
    n = cols * bits
    bitsarr = bitsarr[:, :n].reshape(words.shape[0], cols, bits).astype(np.uint32)
    return (bitsarr << np.arange(bits, dtype=np.uint32)).sum(axis=2)
ok = True
for name in ["q4out", "q3out", "q8out"]:
    cfg = json.load(open(f"{base}/{name}/config.json"))
    q = cfg["quantization"]; bits, gs = q["bits"], q["group_size"]
    assert cfg["quantization_config"] == q, "quantization_config differs"
    t = {k: v.float().numpy() if v.dtype != torch.uint32 else v.numpy() for k, v in load_file(f"{base}/{name}/model.safetensors").items()}
    n_q = n_f = 0; worst = 0.0
    for k, w in src.items():
        stem = k[:-len(".weight")] if k.endswith(".weight") else None
        if stem and stem + ".scales" in t:
            words = t[k]; s = t[stem + ".scales"]; b = t[stem + ".biases"]
            rows, cols = w.shape
            qv = unpack(words, bits, cols).astype(np.float32)
            deq = qv * np.repeat(s, gs, axis=1) + np.repeat(b, gs, axis=1)
            err = np.abs(w - deq) - (np.abs(np.repeat(s, gs, axis=1)) + 1e-6)
            worst = max(worst, float(err.max()))
            n_q += 1
        else:
            assert np.array_equal(t[k].astype(np.float32), w.astype(np.float32)) or np.allclose(t[k], w, rtol=1e-3, atol=1e-6), k
            n_f += 1
    line = f"{name}: bits {bits} gs {gs}: {n_q} quantized tensors within |scale| (worst excess {worst:.3g}), {n_f} float tensors equal"
    print(line); ok &= worst <= 0
# byte-identical tensors with the demo's committed 4-bit model (made by tools/demo with numpy)
a = load_file(f"{base}/q4out/model.safetensors"); d = load_file(f"{base}/demo_model.safetensors")
same = sorted(a) == sorted(d) and all(torch.equal(a[k], d[k]) for k in a)
print(f"q4out vs models/demo tensors identical: {same} ({len(a)} tensors)")
print("ALL OK" if ok and same else "MISMATCH")

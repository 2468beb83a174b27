#!/usr/bin/env bash
# bench/cuda_backend_run.sh: one call of the GPU machine for the CUDA backend, from the
# repository root, with build-cuda/ built here by `make CUDA=1 BUILD=build-cuda loam cuda-test`
# (the binaries link cudart statically; the Debian libraries they need are carried in
# $LOAM_LIBS, default .carry/probe/lib, since the GPU machine has no network):
#  1. tests/cuda/test_backend_cuda: logits against transformers on the reference fixtures;
#  2. the demo model, greedy, on the GPU and on the CPU: the same text is expected;
#  3. loam bench on `loam synth --preset qwen3-8b` (written there), on the GPU: decode with and
#     without a rank-8 adapter on the last 16 layers, prompt 512, batches 1, 4, 16.
set -u
export LD_LIBRARY_PATH=${LOAM_LIBS:-$PWD/.carry/probe/lib}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
b=${BUILD:-build-cuda}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
rc=0
echo "== test_backend_cuda"
timeout 300 "$b/tests/cuda/test_backend_cuda" || rc=1
echo "== demo, greedy: GPU then CPU"
gen() { "$b/loam" generate -m models/demo -a models/demo/adapter --prompt "And God said" \
        --max-tokens 40 --temperature 0 -q; }
LOAM_DEVICE=cuda gen >/tmp/gpu.txt || rc=1
LOAM_DEVICE=cpu gen >/tmp/cpu.txt || rc=1
echo "gpu: $(cat /tmp/gpu.txt)"
echo "cpu: $(cat /tmp/cpu.txt)"
cmp -s /tmp/gpu.txt /tmp/cpu.txt && echo "demo: same text" || echo "demo: texts differ"
echo "== loam bench, qwen3-8b synth, GPU"
rm -rf /tmp/q8b
"$b/loam" synth --preset qwen3-8b /tmp/q8b >/dev/null || rc=1
LOAM_DEVICE=cuda timeout 400 "$b/loam" bench -m /tmp/q8b -p 512 -n 128 -r 3 --batch 1,4,16 \
    --lora-rank 8 || rc=1
exit $rc

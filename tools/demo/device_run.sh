#!/usr/bin/env bash
# tools/demo/device_run.sh: the whole demo-model pipeline on the GPU machine, in one go.
#   D   = a folder holding tools/ (these scripts), corpus/ (prepare_corpus.py output) and eval/
#         (models/demo/eval); OUT = where results go; WORK = scratch.
# Stages (each logs to OUT/log.txt; a failed stage stops the ones that need it):
#   tok   train_tokenizer.py  byte-level BPE + tokenizer/generation configs
#   base  train.py            float base model (bf16 safetensors)
#   quant quantize.py         MLX affine 4-bit g64 base
#   lora  train_lora.py       rank-8 LoRA voice adapter on the dequantized 4-bit base
#   ref   reference.py        goldens, reference perplexities, samples
# Everything produced is packed into OUT/demo.tgz.part-* (split under the 16 MiB return limit).
# STAGES="lora ref" runs a subset, reusing IN (an unpacked earlier result) for the inputs.
set -u
D=${D:-.carry/demo}
OUT=${OUT:?}
WORK=${WORK:-/tmp/demo}
STAGES=${STAGES:-"tok base quant lora ref"}
BUDGET=${BUDGET:-560}
BASE_SECONDS=${BASE_SECONDS:-170}
LORA_SECONDS=${LORA_SECONDS:-90}
export PYTHONUNBUFFERED=1
mkdir -p "$WORK" "$OUT"
LOG=$OUT/log.txt
if [ -n "${IN:-}" ]; then cp -r "$IN"/. "$WORK"/; fi
{ nvidia-smi -L; python3 -c 'import torch, transformers, tokenizers, safetensors, numpy;
print("torch", torch.__version__, "transformers", transformers.__version__, "tokenizers",
      tokenizers.__version__, "numpy", numpy.__version__, "cpus", __import__("os").cpu_count())'; } >>"$LOG" 2>&1
left() { echo $((BUDGET - SECONDS)); }
stage() { # name max_seconds command...
    local name=$1 max=$2; shift 2
    local t=$(left); t=$((t - 30)); [ "$t" -gt "$max" ] && t=$max
    if [ "$t" -lt 20 ]; then echo "== $name skipped: out of time" | tee -a "$LOG"; return 1; fi
    echo "== $name (limit ${t}s) at ${SECONDS}s" | tee -a "$LOG"
    timeout "$t" "$@" >>"$LOG" 2>&1
    local rc=$?
    echo "== $name rc=$rc at ${SECONDS}s" | tee -a "$LOG"
    return $rc
}
want() { case " $STAGES " in *" $1 "*) return 0;; esac; return 1; }
ok=1
if want tok; then stage tok 120 python3 "$D/tools/train_tokenizer.py" "$D/corpus" "$WORK/tok" || ok=0; fi
if [ $ok = 1 ] && want base; then
    stage base $((BASE_SECONDS + 60)) python3 "$D/tools/train.py" "$D/corpus" "$WORK/tok" "$WORK/demo-fp" \
        --time-budget "$BASE_SECONDS" || ok=0; fi
if [ $ok = 1 ] && want quant; then
    stage quant 90 python3 "$D/tools/quantize.py" "$WORK/demo-fp" "$WORK/demo-q4" || ok=0; fi
if [ $ok = 1 ] && want lora; then
    stage lora $((LORA_SECONDS + 60)) python3 "$D/tools/train_lora.py" "$D/corpus" "$WORK/demo-q4" \
        "$WORK/adapter" --time-budget "$LORA_SECONDS" || ok=0; fi
if [ $ok = 1 ] && want ref; then
    stage ref 240 python3 "$D/tools/reference.py" "$WORK/demo-q4" "$WORK/demo-fp" "$WORK/adapter" \
        "$D/eval" "$WORK/ref" || ok=0; fi
cd "$WORK" && tar czf "$OUT/demo.tgz" --exclude='*.pyc' . && \
    split -b 15M "$OUT/demo.tgz" "$OUT/demo.tgz.part-" && rm "$OUT/demo.tgz"
ls -la "$OUT"
grep -v '^  step' "$LOG" | tail -n 150

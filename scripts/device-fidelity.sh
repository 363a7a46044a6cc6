#!/usr/bin/env bash
# On the GPU node, after a Week 3 run through the driver (scripts/device-week03.sh): the same points
# through the vLLM CLI (`vllm bench latency`, one engine start each), same engine arguments and
# iterations as config/h100-validation.yaml, for the same-lease driver-vs-CLI fidelity check.
#   scripts/device-fidelity.sh [decode] [BATCH_SIZES...]   (default: decode 1 64)   -> results/cli/bs<N>.json
#   scripts/device-fidelity.sh prefill INPUT_LENS...        (batch 1, output 1)      -> results/cli/in<L>.json
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=/tmp/site HF_HUB_OFFLINE=1 VLLM_USE_FLASHINFER_SAMPLER=0
export VLLM_CACHE_ROOT=$PWD/.cache/inferlab/compile/vllm TORCHINDUCTOR_CACHE_DIR=$PWD/.cache/inferlab/compile/inductor
mode=decode
case "${1:-}" in decode|prefill) mode=$1; shift ;; esac
points=("$@")
[ ${#points[@]} -gt 0 ] || points=(1 64)
mkdir -p results/cli
for p in "${points[@]}"; do
  if [ "$mode" = decode ]; then
    name=bs$p; shape=(--batch-size "$p" --input-len 128 --output-len 64); extra=(--max-num-seqs 512)
  else
    name=in$p; shape=(--batch-size 1 --input-len "$p" --output-len 1); extra=()
  fi
  /tmp/vllmenv/bin/vllm bench latency --model .cache/inferlab/models/built/llama-3.1-8b-arch "${shape[@]}" \
    --num-iters 10 --num-iters-warmup 3 --dtype bfloat16 --load-format dummy --max-model-len 8192 \
    --no-enable-prefix-caching "${extra[@]}" --output-json "results/cli/$name.json" > "results/cli/$name.log" 2>&1
  python3 -c "import json; print('cli $name', round(json.load(open('results/cli/$name.json'))['avg_latency'] * 1e3, 2), 'ms')"
done

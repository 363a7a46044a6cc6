#!/usr/bin/env bash
# On an air-gapped GPU node (the device machine): assemble the wheelhouse relayed in parts
# (.relay/p*/part*), install it with no network into /tmp/site, and make /tmp/vllmenv, the engine
# environment config/h100-validation.yaml names. Idempotent. Usage: scripts/device-h100.sh install
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-install}" in
  stash)  # one relay call: keep this part where the next calls find it
    mkdir -p /tmp/parts && cp .relay/p*/* /tmp/parts/ && ls -la /tmp/parts ;;
  install)
    if [ ! -f /tmp/site/.installed ]; then
      mkdir -p /tmp/parts && cp .relay/p*/* /tmp/parts/ 2>/dev/null || true
      cat /tmp/parts/part? > /tmp/whl.tar
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
esac

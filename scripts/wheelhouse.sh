#!/usr/bin/env bash
# Build an offline wheelhouse on a machine with PyPI access, for an air-gapped GPU node, and split it
# into parts small enough to relay (e.g. the device tool's 64 MiB working-tree limit).
#   scripts/wheelhouse.sh build [LIST...]   download the pinned wheels of the lists into .whl/ for the
#                                           node's Python/ABI/platform (default: Python 3.12, manylinux x86_64)
#   scripts/wheelhouse.sh split             pack .whl/ into .relay/p<N>/part<N> (60 MB each) + sha256
# On the node: scripts/device-h100.sh install (reassembles, verifies, pip install --no-index --no-deps).
# The lists (envs/wheelhouse-*.txt) are the resolver's closure for the engine version, Python version
# and CUDA variant, minus what the node's image already has (its torch build among them): regenerate
# them with `pip install --dry-run --report` against the node's `pip list` when any of those change.
set -euo pipefail
cd "$(dirname "$0")/.."
PYVER=${PYVER:-312}
case "${1:-build}" in
  build)
    shift || true
    lists=("$@")
    [ ${#lists[@]} -eq 0 ] && lists=(envs/wheelhouse-vllm-0.26.0-cu130-py312.txt envs/wheelhouse-workflow-py312.txt)
    mkdir -p .whl
    plat=()
    for v in 2_39 2_38 2_36 2_35 2_34 2_31 2_28 2_27 2_17; do plat+=(--platform "manylinux_${v}_x86_64"); done
    for req in $(grep -hvE '^\s*(#|$)' "${lists[@]}"); do
      # a binary wheel for the node's Python/ABI/platform; else (a pure-Python sdist) build the wheel here
      python3 -m pip download -q --no-deps --only-binary=:all: --dest .whl --python-version "$PYVER" \
        --implementation cp --abi "cp$PYVER" --abi abi3 --abi none "${plat[@]}" --platform manylinux2014_x86_64 \
        --platform linux_x86_64 --platform any "$req" > /dev/null 2>&1 \
      || python3 -m pip wheel -q --no-deps --wheel-dir .whl "$req" > /dev/null 2>&1 \
      || echo "[wheelhouse] FAILED: $req"
    done
    n=$(grep -hcvE '^\s*(#|$)' "${lists[@]}" | paste -sd+ | bc)
    echo "[wheelhouse] $(ls .whl/*.whl | wc -l) wheels in .whl/ (lists pin $n), $(du -sh .whl | cut -f1)" ;;
  split)
    rm -rf .relay && mkdir -p .relay
    tar cf .relay/whl.tar -C .whl .
    (cd .relay && split -b 60m -d -a 1 whl.tar part && sha256sum whl.tar > whl.tar.sha256 && rm whl.tar)
    i=0
    for p in .relay/part?; do mkdir -p .relay/p$i; mv "$p" .relay/p$i/; i=$((i+1)); done
    cp .relay/whl.tar.sha256 .relay/p0/
    ls -la .relay/p* ;;
esac

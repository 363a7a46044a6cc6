#!/usr/bin/env bash
# Build an offline wheelhouse on a machine with PyPI access, for an air-gapped GPU node, and split it
# into parts small enough to relay (e.g. the device tool's 64 MiB working-tree limit).
#   scripts/wheelhouse.sh build [LIST...]   download the pinned wheels of the lists into $WHL for the
#                                           node's Python/ABI/platform (default: Python 3.12, manylinux x86_64)
#   scripts/wheelhouse.sh split             pack $WHL into $RELAY/p<N>/part<NN> (PART, default 40m: a device call carries the tracked tree (~20 MiB) + one part, <= 64 MiB) + sha256
#   scripts/wheelhouse.sh check ROOT... [--share LIST]   offline: install $WHL with --no-index --no-deps
#                                           into a scratch target (PYTHON: the node's version) and check
#                                           every requirement from ROOTs (scripts/wheelcheck.py)
# WHL (default .whl) and RELAY (default .relay) name the folders, so engines relay separately:
#   WHL=.whl-sglang RELAY=.relay-sglang scripts/wheelhouse.sh build envs/wheelhouse-sglang-0.5.17-cu130-py312.txt
# On the node: scripts/device-h100.sh install | install-sglang (reassemble, verify, pip install --no-index --no-deps).
# The lists (envs/wheelhouse-*.txt) are the resolver's closure for the engine version, Python version
# and CUDA variant, minus what the node's image already has (its torch build among them): regenerate
# them with scripts/wheelhouse_lock.py (`pip install --dry-run --report` against
# envs/device-cuda-image-py312.txt, the node's package list) when any of those change.
set -euo pipefail
cd "$(dirname "$0")/.."
PYVER=${PYVER:-312}
WHL=${WHL:-.whl}
RELAY=${RELAY:-.relay}
case "${1:-build}" in
  build)
    shift || true
    lists=("$@")
    [ ${#lists[@]} -eq 0 ] && lists=(envs/wheelhouse-vllm-0.26.0-cu130-py312.txt envs/wheelhouse-workflow-py312.txt)
    mkdir -p "$WHL"
    plat=()
    for v in 2_39 2_38 2_36 2_35 2_34 2_31 2_28 2_27 2_17; do plat+=(--platform "manylinux_${v}_x86_64"); done
    for req in $(grep -hvE '^\s*(#|$)' "${lists[@]}"); do
      # a binary wheel for the node's Python/ABI/platform; else (a pure-Python sdist) build the wheel here
      python3 -m pip download -q --no-deps --only-binary=:all: --dest "$WHL" --python-version "$PYVER" \
        --implementation cp --abi "cp$PYVER" --abi abi3 --abi none "${plat[@]}" --platform manylinux2014_x86_64 \
        --platform linux_x86_64 --platform any "$req" > /dev/null 2>&1 \
      || python3 -m pip wheel -q --no-deps --wheel-dir "$WHL" "$req" > /dev/null 2>&1 \
      || echo "[wheelhouse] FAILED: $req"
    done
    n=$(grep -hcvE '^\s*(#|$)' "${lists[@]}" | paste -sd+ | bc)
    echo "[wheelhouse] $(ls "$WHL"/*.whl | wc -l) wheels in $WHL/ (lists pin $n), $(du -sh "$WHL" | cut -f1)" ;;
  split)
    rm -rf "$RELAY" && mkdir -p "$RELAY"
    tar cf "$RELAY/whl.tar" -C "$WHL" .
    (cd "$RELAY" && split -b "${PART:-40m}" -d -a 2 whl.tar part && sha256sum whl.tar > whl.tar.sha256 && rm whl.tar)
    i=0
    for p in "$RELAY"/part??; do mkdir -p "$RELAY/p$i"; mv "$p" "$RELAY/p$i/"; i=$((i+1)); done
    cp "$RELAY/whl.tar.sha256" "$RELAY/p0/"
    ls -la "$RELAY"/p* ;;
  check)
    shift || true
    t=${CHECK_TARGET:-/tmp/wheelhouse-check}
    rm -rf "$t"
    py=${PYTHON:-python3}   # the node's Python version (3.12), or pip refuses its wheels
    "$py" -m pip install -q --no-index --no-deps --no-compile --target "$t" "$WHL"/*.whl
    "$py" scripts/wheelcheck.py --site "$t" --node envs/device-cuda-image-py312.txt "$@" ;;
esac

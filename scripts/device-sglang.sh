#!/usr/bin/env bash
# Lease plan: Week 1 with SGLang's server (and vLLM, same workload) on the device's H100 (issue 16,
# item 2). Record: docs/validation/h100-sglang/ (README.md says what is expected).
#
# Here (a machine with PyPI), once:
#   scripts/device-sglang.sh prepare   build + split both wheelhouses (.relay/ for vLLM, .relay-sglang/)
#   scripts/device-sglang.sh plan      print the exact sequence of device `run` calls
# On the device (what the printed calls run):
#   scripts/device-sglang.sh go        install both wheelhouses, start week01_all detached (setsid) with
#                                      config/h100-validation-sglang.yaml, wait while the call has time
#                                      (BUDGET_S, default 540 s of the call's 600) and collect into $OUT
#   scripts/device-sglang.sh wait      wait again within the call's budget, then collect (repeat until done)
#   scripts/device-sglang.sh collect   collect now: docs/validation/h100-sglang/ + $OUT/h100-results.tgz
# Every call ends by collecting, so a lease that ends early keeps what the last call brought back.
set -uo pipefail
cd "$(dirname "$0")/.."
PRESET=${PRESET:-config/h100-validation-sglang.yaml}
RECORD=${RECORD:-docs/validation/h100-sglang}
BUDGET_S=${BUDGET_S:-540}   # this call's seconds (the run call's timeout_s is 600): collecting takes the rest
EXTRA_WEEKS=${EXTRA_WEEKS:-}   # more weeks in the same run (PRESET must list them), e.g. "week10 week05"
export PRESET RECORD EXTRA_WEEKS

running() { [ -f results/run.pid ] && kill -0 "$(cat results/run.pid)" 2>/dev/null; }

collect() {
  WEEKS=week01 GPU=h100 scripts/device-week03.sh collect > /dev/null
  # the other weeks of the run (EXTRA_WEEKS), each into docs/validation/h100-<week>
  for w in ${EXTRA_WEEKS:-}; do RECORD= WEEKS=$w GPU=h100 scripts/device-week03.sh collect > /dev/null; done
  tail -n 40 results/run.log > "$RECORD/run.tail.txt" 2>/dev/null
  for e in results/week01/*/sglang/h100/*/_engine; do   # SGLang's own start-up lines (device-week03's are vLLM's)
    [ -d "$e" ] && grep -hiE "load weight|cuda graph|KV Cache is allocated|max_total_num_tokens|attention backend|fired up" \
      "$e"/*.log > "$RECORD/cells/$(echo "$e" | cut -d/ -f3,4,6 | tr / _)_sglang-startup.txt" 2>/dev/null
  done
  [ -f /tmp/install.log ] && cp /tmp/install.log "$RECORD/install.log"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > "$RECORD/gpu.txt" 2>/dev/null
  extra=(); for w in ${EXTRA_WEEKS:-}; do [ -d "docs/validation/h100-$w" ] && extra+=("docs/validation/h100-$w"); done
  [ -n "${OUT:-}" ] && tar czf "$OUT/h100-sglang-record.tgz" "$RECORD" "${extra[@]}" 2>/dev/null
  WEEKS=week01 GPU=h100 scripts/device-week03.sh status
  ls -la "${OUT:-.}" | tail -n +2
}

wait_run() {
  while running && [ "$SECONDS" -lt $((BUDGET_S - 40)) ]; do sleep 10; done
  if running; then echo "[device-sglang] still running after ${SECONDS}s of this call: call \`scripts/device-sglang.sh wait\` next"
  else echo "[device-sglang] workflow finished: $(grep -cE '^Finished job|Finished jobid' results/run.log) jobs finished"; fi
  collect
}

case "${1:-plan}" in
  prepare)
    scripts/wheelhouse.sh build && scripts/wheelhouse.sh split
    WHL=.whl-sglang RELAY=.relay-sglang scripts/wheelhouse.sh build envs/wheelhouse-sglang-0.5.17-cu130-py312.txt
    WHL=.whl-sglang RELAY=.relay-sglang scripts/wheelhouse.sh split ;;
  plan)
    mapfile -t v < <(ls -d .relay/p* 2>/dev/null | sort -V)
    mapfile -t s < <(ls -d .relay-sglang/p* 2>/dev/null | sort -V)
    if [ ${#v[@]} -eq 0 ] || [ ${#s[@]} -eq 0 ]; then
      echo "no relay parts here: run scripts/device-sglang.sh prepare first"; exit 1
    fi
    # a call carries the working tree too, 64 MiB in all: part + tree must fit
    tree=$( (git ls-files -z; git ls-files -z -o --exclude-standard) | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
    part=$(du -b "${s[0]}"/part* | sort -n | tail -1 | cut -f1)
    if [ $((tree + part)) -gt $((63 * 1024 * 1024)) ]; then
      echo "WARNING: working tree $((tree / 1024)) KiB + a part $((part / 1024)) KiB exceeds 63 MiB of the 64 MiB a call"
      echo "carries: re-split smaller, e.g. PART=30m WHL=.whl-sglang RELAY=.relay-sglang scripts/wheelhouse.sh split"
    fi
    n=$(( ${#v[@]} + ${#s[@]} ))
    echo "# ${#v[@]} vLLM parts + ${#s[@]} SGLang parts: $n device run calls in a row, each within 30 s"
    echo "# of the last (the machine goes back after 30 s idle). kind: nvidia-h100-x1."
    echo "# A call that fails mid-relay: start again from call 1 (a fresh machine has none of the parts)."
    i=1
    for p in "${v[@]}"; do
      echo "run  carry=[\"$p\"]  timeout_s=120  command: scripts/device-h100.sh stash"; i=$((i + 1))
    done
    for p in "${s[@]::${#s[@]}-1}"; do
      echo "run  carry=[\"$p\"]  timeout_s=120  command: scripts/device-h100.sh stash-sglang"; i=$((i + 1))
    done
    # the last part rides with the install and the start
    echo "run  carry=[\"${s[-1]}\"]  timeout_s=600  command: scripts/device-h100.sh stash-sglang && scripts/device-sglang.sh go"
    echo "# then, while it says 'still running':"
    echo "run  timeout_s=600  command: scripts/device-sglang.sh wait"
    echo "# each call's files: h100-results.tgz (results/week01, run.log), h100-sglang-record.tgz ($RECORD);"
    echo "# unpack the record here: tar xzf <files_at>/h100-sglang-record.tgz" ;;
  go)
    export PYTHONUNBUFFERED=1
    {
      scripts/device-h100.sh install && scripts/device-h100.sh install-sglang
    } 2>&1 | tee /tmp/install.log
    if [ "${PIPESTATUS[0]}" -ne 0 ]; then mkdir -p "$RECORD"; collect; exit 1; fi
    if ! running; then
      PRESET=$PRESET TARGETS="week01_all ${EXTRA_WEEKS:+$(printf '%s_all ' $EXTRA_WEEKS)}" scripts/device-week03.sh start | tee /tmp/start.txt
      sed -n 's/^started //p' /tmp/start.txt > results/run.pid
    fi
    wait_run ;;
  wait) wait_run ;;
  collect) collect ;;
  *) sed -n '2,16p' "$0"; exit 2 ;;
esac

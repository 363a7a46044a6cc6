#!/usr/bin/env bash
# A week on the device's GPU through the workflow (local executor), in a session that outlives one
# tool call: `start` launches it detached (setsid), `status` shows progress, `collect` packs the
# validation record of each week in WEEKS (default week03) into RECORD (default
# docs/validation/h100-<week>) and $OUT; `snapshot` is `status` plus every result so far into $OUT
# (poll with `sleep 180; scripts/device-week03.sh snapshot`: the device releases an idle machine after
# 30 s and may take a busy one back, so each poll keeps the call busy and brings results home).
# Needs scripts/device-h100.sh install first. PRESET and TARGETS choose what runs; GPU (default h100)
# names the catalog GPU. SEQ="targets;PRESET=config/other.yaml targets;..." runs several plans in turn.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1
BASE=(python3 -m snakemake --profile profiles/local --configfile ${PRESET:-config/h100-validation.yaml}
      --replace-workflow-config --cores 16)
SMK=("${BASE[@]}" ${TARGETS:-week03_all})
case "${1:-status}" in
  start)
    mkdir -p results; echo "${SMK[*]}" > results/run.cmd
    if [ -n "${SEQ:-}" ]; then
      # SEQ="targets A;targets B;...": one Snakemake run after the other, in this order (the most
      # wanted first, so a lease that ends early has them); each line of run.cmd is one run
      IFS=';' read -ra groups <<< "$SEQ"
      : > results/run.cmd
      # a group may start with its own preset ("PRESET=config/x.yaml targets"): one lease, several plans
      for g in "${groups[@]}"; do
        g="${g# }"
        if [[ "$g" == PRESET=* ]]; then
          p="${g%% *}"; b=("${BASE[@]}"); b[6]="${p#PRESET=}"; echo "${b[*]} ${g#* }" >> results/run.cmd
        else
          echo "${BASE[*]} $g" >> results/run.cmd
        fi
      done
      setsid nohup bash -c 'while read -r line; do $line; done < results/run.cmd' > results/run.log 2>&1 < /dev/null &
    else
      setsid nohup "${SMK[@]}" > results/run.log 2>&1 < /dev/null &
    fi
    echo "started $!" ;;
  status)
    grep -E "steps \(|Error in|Nothing to be done|inferlab: done" results/run.log | tail -3
    for f in results/week*/*/*/${GPU:-h100}/*/*/cell.json; do
      [ -f "$f" ] && python3 -c "import json; r=json.load(open('$f')); print(r['experiment'], r['cell'], r['status'], r['reason'] or '', r['wall_s'], (r['detail'] or '')[:120])"
    done
    nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader ;;
  snapshot)  # status, then every result so far into $OUT: a lease can end (or the machine be taken
             # back) between two calls, so each poll brings home what finished (learned on the H200)
    "$0" status
    tar czf "$OUT/snapshot.tgz" results/week* results/run.cmd results/run.log 2>/dev/null
    ls -la "$OUT/snapshot.tgz" ;;
  collect)
    for w in ${WEEKS:-week03}; do
      d=${RECORD:-docs/validation/${GPU:-h100}-$w}
      mkdir -p "$d/cells"
      cp -r results/$w/tables results/$w/figures results/$w/report.md results/$w/$w.parquet "$d"/ 2>/dev/null
      for c in results/$w/*/*/${GPU:-h100}/*/*; do
        n=$(echo "$c" | cut -d/ -f3,4,6,7 | tr / _)   # <experiment>_<engine>_<configuration>_<cell>
        case "$c" in
          */_engine)   # one engine start per configuration: its timings and start-up lines
            cp "$c/configuration.json" "$d/cells/$n.json" 2>/dev/null
            cp "$c/session.json" "$d/cells/$n.session.json" 2>/dev/null
            cp "$c/gauges.csv" "$d/cells/$n.gauges.csv" 2>/dev/null   # /metrics gauges over the session
            grep -hE "torch.compile|init engine|Loading weights took|Model loading took|Graph capturing|KV cache|compile|CUDA graph" \
              "$c"/*.log > "$d/cells/$n.startup.txt" 2>/dev/null ;;
          *)
            cp "$c/cell.json" "$d/cells/$n.cell.json" 2>/dev/null
            cp "$c/raw.json" "$d/cells/$n.raw.json" 2>/dev/null ;;
        esac
      done
      cp results/run.cmd results/run.log "$d"/ 2>/dev/null
    done
    tar czf "$OUT/h100-results.tgz" results/week* results/run.cmd results/run.log 2>/dev/null; ls -la "$OUT" | tail -1 ;;
esac

"""Benchmark: fidelity of the one-engine driver against a kept per-cell CLI record (prints figures).

Compares, point by point, the latency a results folder measured (e.g. Week 3 on the H100 through
the driver: one engine start per configuration) with a kept validation record of the same points
measured by `vllm bench latency`, one engine start per cell (``docs/validation/h100-week03/cells``),
and prints value, record, ratio, plus the median and worst |ratio - 1| (goal: within 5%; the H100's
run-to-run noise is ~2%).

    .venv/bin/python benchmarks/bench_driver_vs_record.py --results results \
        --record docs/validation/h100-week03/cells [--gpu h100]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=Path, required=True)
    ap.add_argument("--record", type=Path, required=True)
    ap.add_argument("--gpu", default="h100")
    ap.add_argument("--week", default="week03")
    a = ap.parse_args()
    diffs = []
    print(f"{'point':16s} {'by':7s} {'this run ms':>12s} {'record ms':>10s} {'ratio':>7s}")
    for rec_f in sorted(a.record.glob("*.cell.json")):
        old = json.loads(rec_f.read_text())
        raw_old = rec_f.with_name(rec_f.name.replace(".cell.json", ".raw.json"))
        if old.get("status") != "ok" or not raw_old.exists():
            continue
        new_f = next(
            iter((a.results / a.week / old["experiment"] / "vllm" / a.gpu).glob(f"*/{old['cell']}/cell.json")), None
        )
        if new_f is None:
            continue
        new = json.loads(new_f.read_text())
        if new.get("status") != "ok":
            print(f"{old['experiment']}/{old['cell']:10s} {new.get('status')} ({new.get('reason')})")
            continue
        v_new = json.loads((new_f.parent / "raw.json").read_text())["avg_latency"] * 1e3
        v_old = json.loads(raw_old.read_text())["avg_latency"] * 1e3
        r = v_new / v_old
        diffs.append(abs(r - 1))
        print(
            f"{old['experiment'] + '/' + old['cell']:16s} {new.get('measured_by', '?'):7s} {v_new:12.2f} {v_old:10.2f} {r:7.3f}"
        )
    if not diffs:
        print("no common points")
        return 1
    print(
        f"{len(diffs)} points: median |ratio - 1| {100 * statistics.median(diffs):.1f}%, "
        f"worst {100 * max(diffs):.1f}%   goal <= 5%"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

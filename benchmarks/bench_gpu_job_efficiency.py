"""Benchmark: GPU-job efficiency of the experiment model (prints figures; not a test).

Efficiency = time spent measuring / the measuring job's wall time, per engine configuration (one
job, one engine start). The offline driver measures all points of a configuration against one
engine start; before it, every offline cell started its own engine.

- With no argument: runs the real `week03_all` on the embedded default (vLLM's CPU build, the
  preset's reduced sweep) in a scratch folder and reports each configuration's job from its
  ``_engine/configuration.json`` (engine start-up, measuring, wall).
- ``--results DIR``: reads a results folder instead (e.g. the H100 device's).
- ``--per-cell-record DIR``: the old model's baseline from a kept record of one job per cell
  (``docs/validation/h100-week03/cells``): sum of the benchmark's own time / sum of job wall times.

    .venv/bin/python benchmarks/bench_gpu_job_efficiency.py [--results results] [--week week03]
    .venv/bin/python benchmarks/bench_gpu_job_efficiency.py --per-cell-record docs/validation/h100-week03/cells
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def run_week(work: Path, week: str) -> Path:
    p = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    p["catalog"] = str(ROOT / "config")
    p["weeks"] = [week]
    for e in p["engines"].values():
        for k in ("env", "client_env"):
            if k in e and not Path(e[k]).is_absolute():
                e[k] = str(ROOT / e[k])
    (work / "preset.yaml").write_text(yaml.safe_dump(p))
    smk = Path(sys.executable).parent / "snakemake"
    cmd = [str(smk), "-s", str(ROOT / "Snakefile"), "-d", str(work), "--profile", str(ROOT / "profiles/local")]
    cmd += ["--configfile", str(work / "preset.yaml"), "--replace-workflow-config", f"{week}_all"]
    print("running:", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return work / "results"


def report(results: Path, week: str) -> None:
    confs = sorted((results / week).glob("*/*/*/*/_engine/configuration.json"))
    if not confs:
        print(f"no configuration jobs under {results / week}")
        return
    tot_m = tot_w = 0.0
    print(
        f"{'configuration':45s} {'by':7s} {'cells':>5s} {'start-up s':>10s} {'measuring s':>11s} {'wall s':>8s} {'eff.':>6s}"
    )
    for f in confs:
        c = json.loads(f.read_text())
        name = "/".join(f.parent.parent.relative_to(results).parts)
        start = c.get("startup_s") or c.get("server_ready_s")
        print(
            f"{name:45s} {c.get('measured_by', '?'):7s} {len(c['cells']):5d} "
            f"{start if start is not None else float('nan'):10.1f} {c['measuring_s']:11.1f} {c['wall_s']:8.1f} "
            f"{c['measuring_fraction'] or 0:6.3f}"
        )
        tot_m += c["measuring_s"]
        tot_w += c["wall_s"]
    print(
        f"{'all configurations':45s} {'':7s} {'':5s} {'':10s} {tot_m:11.1f} {tot_w:8.1f} {tot_m / tot_w:6.3f}   goal >= 0.9 (GPU, warm compile cache)"
    )


def per_cell_baseline(cells_dir: Path) -> None:
    """One job per cell (the old model): measuring = the latency bench's own timed work."""
    meas = wall = 0.0
    n = 0
    for rec_f in sorted(cells_dir.glob("*.cell.json")):
        rec = json.loads(rec_f.read_text())
        raw_f = rec_f.with_name(rec_f.name.replace(".cell.json", ".raw.json"))
        if rec.get("status") != "ok" or not raw_f.exists() or not rec.get("wall_s"):
            continue
        raw = json.loads(raw_f.read_text())
        p = rec["params"]
        iters = p.get("num_iters", 30) + p.get("num_iters_warmup", 10)
        meas += raw["avg_latency"] * iters
        wall += rec["wall_s"]
        n += 1
    print(
        f"one job per cell ({cells_dir}): {n} cells, measuring {meas:.1f} s of {wall:.1f} s job wall: {meas / wall:.3f}"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=Path)
    ap.add_argument("--week", default="week03")
    ap.add_argument("--per-cell-record", type=Path)
    a = ap.parse_args()
    if a.per_cell_record:
        per_cell_baseline(a.per_cell_record)
        return 0
    if a.results:
        report(a.results, a.week)
        return 0
    work = Path(tempfile.mkdtemp(prefix="inferlab-bench-efficiency-"))
    try:
        report(run_week(work, a.week), a.week)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

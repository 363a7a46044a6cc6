"""Benchmark: planning and aggregation costs (prints figures; not a test).

1. Dry-run time of week03_all with the Week 3 matrix expanded to the cluster's 4 GPUs (56 cells):
   the wall time of `snakemake -n` as a user experiences it (Python start-up, DAG, config validation).
2. Extract + aggregate time for N synthetic cell records (default 1,000): each record -> Parquet rows
   with the roofline guard (stage 3), then all of them -> the week's tables, figures and report (stage 4).

    .venv/bin/python benchmarks/bench_workflow.py [--cells 1000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from inferlab import aggregate, config, guard, io, records  # noqa: E402


def dry_run(repeat: int) -> list[float]:
    smk = Path(sys.executable).parent / "snakemake"
    times = []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as d:
            t0 = time.perf_counter()
            r = subprocess.run(
                [
                    str(smk),
                    "-s",
                    str(ROOT / "Snakefile"),
                    "-d",
                    d,
                    "-n",
                    "-q",
                    "--cores",
                    "1",
                    "--configfile",
                    str(ROOT / "config/cluster.yaml"),
                    "--replace-workflow-config",
                    "--config",
                    f"catalog={ROOT / 'config'}",
                    "cache=.cache",
                    "--",
                    "week03_all",
                ],
                capture_output=True,
                text=True,
            )
            times.append(time.perf_counter() - t0)
            if r.returncode != 0:
                raise SystemExit(r.stdout + r.stderr)
    return times


def synth(n: int, work: Path, cfg):
    """n cell records with raw outputs, spread over 4 GPUs x decode/prefill points."""
    gpus = ["h200", "h100", "a100", "l40s"]
    paths = []
    for i in range(n):
        g = gpus[i % 4]
        k = i // 4
        if k % 2 == 0:
            exp, params, cid = "decode", {"batch_size": 1 + k, "input_len": 128, "output_len": 64}, f"bs{1 + k}"
        else:
            exp, params, cid = "prefill", {"batch_size": 1, "input_len": 64 + k, "output_len": 1}, f"in{64 + k}"
        d = work / exp / g / cid
        d.mkdir(parents=True)
        avg = 0.5 + 0.001 * k
        (d / "raw.json").write_text(
            json.dumps(
                {
                    "avg_latency": avg,
                    "latencies": [avg] * 3,
                    "percentiles": {q: avg for q in ("10", "25", "50", "75", "90", "99")},
                }
            )
        )
        rec = {
            "week": "week03",
            "experiment": exp,
            "engine": "vllm",
            "gpu": g,
            "model": cfg.model_id,
            "cell": cid,
            "tool": "vllm_bench_latency",
            "status": "ok" if i % 50 else "failed",
            "reason": None if i % 50 else "oom",
            "raw": "raw.json",
            "params": params,
            "provenance": {},
        }
        (d / "cell.json").write_text(json.dumps(rec))
        paths.append(d)
    return paths


def extract_and_aggregate(n: int, cfg) -> tuple[float, float]:
    work = Path(tempfile.mkdtemp())
    try:
        cells = synth(n, work, cfg)
        model = cfg.model()
        t0 = time.perf_counter()
        outs = []
        for d in cells:
            rec = records.read_record(d / "cell.json")
            df = records.record_to_frame(rec, d / "raw.json")
            df = guard.apply(df, model["architecture"], model["dtype"], cfg.gpu(rec["gpu"]))
            io.write_parquet(d / "metrics.parquet", df)
            outs.append(d / "metrics.parquet")
        t1 = time.perf_counter()
        aggregate.run("week03", outs, cfg, work / "week03")
        t2 = time.perf_counter()
        return t1 - t0, t2 - t1
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cells", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    cfg = config.load("config/cluster.yaml", base_dir=ROOT)
    dr = dry_run(a.repeat)
    print(
        f"dry-run week03_all, 4 GPUs (56 cells): median {statistics.median(dr):.2f} s "
        f"(min {min(dr):.2f}, max {max(dr):.2f}, n={len(dr)})"
    )
    ex, ag = extract_and_aggregate(a.cells, cfg)
    print(f"extract {a.cells} records: {ex:.2f} s ({1e3 * ex / a.cells:.1f} ms/record)")
    print(f"aggregate {a.cells} records (tables, figures, report): {ag:.2f} s")
    print(f"extract + aggregate: {ex + ag:.2f} s (goal < 10 s)")


if __name__ == "__main__":
    main()

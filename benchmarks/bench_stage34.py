"""Benchmark: stages 3 + 4 through Snakemake at cluster scale (prints figures; not a test).

Writes N synthetic cell records (no engine: raw outputs shaped like `vllm bench latency`'s, 2% of
them failed) for a Week 3 matrix widened to N cells over the cluster's four GPUs, then times, with
the real Snakefile and the local executor:

1. extract + aggregate of all N cells (`snakemake week03_all`; the measuring jobs' outputs are
   present, so only stage 3 (one in-process job per week) and stage 4 run) - goal < 60 s for 2,000;
2. a no-op rerun of the same target - goal < 5 s;
3. `snakemake -n all` of the full cluster matrix (every configured week, 4 GPUs) - goal < 5 s.

    .venv/bin/python benchmarks/bench_stage34.py [--cells 2000]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from inferlab import config, matrix  # noqa: E402

SMK = str(Path(sys.executable).parent / "snakemake")


def preset(work: Path, n: int) -> Path:
    p = yaml.safe_load((ROOT / "config" / "cluster.yaml").read_text())
    p["catalog"] = str(ROOT / "config")
    p["weeks"] = ["week03"]
    p["cache"] = str(work / "cache")
    per = n // (2 * len(p["gpus"]))
    p["overrides"] = {
        "week03": {
            "decode": {"sweep": {"batch_size": list(range(1, per + 1))}},
            "prefill": {"sweep": {"input_len": list(range(64, 64 + per))}},
        }
    }
    f = work / "preset.yaml"
    f.write_text(yaml.safe_dump(p))
    return f


def synth(work: Path, preset_file: Path) -> int:
    cfg = config.load(yaml.safe_load(preset_file.read_text()), base_dir=ROOT)
    cells = matrix.expand(cfg)
    (work / "cache" / "models" / "hub" / cfg.model_id).mkdir(parents=True, exist_ok=True)
    for i, c in enumerate(cells.values()):
        d = work / "results" / c.path
        d.mkdir(parents=True)
        avg = 0.05 + 0.0001 * i
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
            **c.to_dict(),
            "status": "ok" if i % 50 else "failed",
            "reason": None if i % 50 else "oom",
            "raw": "raw.json",
            "provenance": {},
            "measured_by": "driver",
        }
        (d / "cell.json").write_text(json.dumps(rec))
    return len(cells)


def smk(work: Path, preset_file: Path, *args) -> float:
    cmd = [SMK, "-s", str(ROOT / "Snakefile"), "-d", str(work), "--cores", "2", "--configfile", str(preset_file)]
    cmd += ["--replace-workflow-config", *args]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit((r.stdout + r.stderr)[-3000:])
    return dt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", type=int, default=2000)
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="inferlab-bench-stage34-"))
    try:
        pf = preset(work, a.cells)
        n = synth(work, pf)
        t = smk(work, pf, "week03_all")
        print(f"stage 3 + 4 of {n} cells through Snakemake: {t:.1f} s   goal < 60 s")
        t = smk(work, pf, "week03_all")
        print(f"no-op rerun of week03_all ({n} cells): {t:.1f} s   goal < 5 s")
        full = work / "full.yaml"
        p = yaml.safe_load((ROOT / "config" / "cluster.yaml").read_text())
        p["catalog"] = str(ROOT / "config")
        p["cache"] = str(work / "cache")
        full.write_text(yaml.safe_dump(p))
        cfg = config.load(p, base_dir=ROOT)
        cells = matrix.expand(cfg)
        t = smk(work / "dry", full, "-n", "all")
        print(
            f"snakemake -n all, cluster matrix ({len(cfg.weeks)} weeks, {len(cells)} cells, "
            f"{len(matrix.configurations(cells))} configurations): {t:.1f} s   goal < 5 s"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

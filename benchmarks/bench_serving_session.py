"""Benchmark: how much of a serving session job's wall time is spent measuring (prints figures).

Runs the real `week01_all` on the embedded default (vLLM's CPU server, `vllm bench serve`, the
preset's four request rates) in a scratch folder, or reads an existing results folder, and
reports for the vLLM session job:
- server start-up (until /health answered), teardown, and each cell's wall time;
- measuring fraction = time the load clients ran / session job wall time (goal >= 0.8 on the CPU
  default); and the stricter load fraction = the clients' own benchmark durations / wall time;
- the same figures for the course harness's protocol (a server start per rate plus a 30 s sleep),
  estimated from this run's own start-up and cell times.

    .venv/bin/python benchmarks/bench_serving_session.py [--results results] [--gpu cpu]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_week01(work: Path) -> Path:
    smk = Path(sys.executable).parent / "snakemake"
    cmd = [
        str(smk),
        "-s",
        str(ROOT / "Snakefile"),
        "-d",
        str(work),
        "--profile",
        str(ROOT / "profiles/local"),
        "week01_all",
    ]
    preset = ROOT / "config" / "config.yaml"
    import yaml

    p = yaml.safe_load(preset.read_text())
    p["catalog"] = str(ROOT / "config")
    for e in p["engines"].values():
        for k in ("env", "client_env"):
            if k in e and not Path(e[k]).is_absolute():
                e[k] = str(ROOT / e[k])
    (work / "preset.yaml").write_text(yaml.safe_dump(p))
    cmd += ["--configfile", str(work / "preset.yaml"), "--replace-workflow-config"]
    print("running:", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return work / "results"


def report(results: Path, gpu: str) -> None:
    sdir = results / "week01" / "serving" / "vllm" / gpu / "default" / "_engine"
    s = json.loads((sdir / "session.json").read_text())
    durations = {}
    for c in s["cells"]:
        raw = results / "week01" / "serving" / "vllm" / gpu / "default" / c / "raw.json"
        durations[c] = json.loads(raw.read_text())["duration"] if raw.exists() else 0.0
    wall = s["wall_s"]
    cells = sum(v for v in s["cells_s"].values() if v)
    load = sum(durations.values())
    print(f"vLLM session on {gpu}: {len(s['cells'])} cells, server port {s.get('port')}")
    print(f"  server start-up (until /health 200): {s.get('server_ready_s')} s")
    for c in s["cells"]:
        print(f"  cell {c:6s} wall {s['cells_s'].get(c)} s, of which load {durations[c]:.1f} s")
    print(
        f"  teardown (group gone{', GPU drained' if s.get('teardown', {}).get('gpu_drain') == 'ok' else ''}): {s.get('teardown_s')} s"
    )
    print(f"  session job wall: {wall:.1f} s")
    print(f"  measuring fraction (clients running / wall): {cells / wall:.3f}   goal >= 0.8")
    print(f"  load fraction (clients' benchmark duration / wall): {load / wall:.3f}")
    # the course harness: restart the server for every rate and sleep 30 s between rates
    ready = s.get("server_ready_s") or 0.0
    harness = len(s["cells"]) * (ready + 30.0) + cells
    print(
        f"  course protocol (start per rate + 30 s sleep), estimated from these timings: wall {harness:.1f} s, "
        f"measuring fraction {cells / harness:.3f}, load fraction {load / harness:.3f}"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=Path, help="read this results folder instead of running week01_all")
    ap.add_argument("--gpu", default="cpu")
    a = ap.parse_args()
    if a.results:
        report(a.results, a.gpu)
        return 0
    work = Path(tempfile.mkdtemp(prefix="inferlab-bench-serving-"))
    try:
        report(run_week01(work), a.gpu)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: the fault table (issue 18). Injects each fault kind for real (tests/faults/scenarios.py:
the session and server code on the toy engine, signals delivered as scancel/Ctrl-C would, a disk
that fills while a record is written) and prints, per kind, the typed status/reason observed, the
processes of the run still alive (found by the run's own environment tag, not by name), the finished
results lost, the recovery command and whether the rerun recovered. Goal: every row typed, 0 left,
0 lost. Exit status 1 when a row misses the goal.

The workflow-level kinds (tests/faults/workflow_faults.py: Snakemake itself interrupted by Ctrl-C,
SIGTERM and SIGINT to its pid, mid-cell of a real ``vllm serve`` session on the embedded default;
scancel of the workflow's serving session during start-up and mid-cell, and NODE_FAIL (or a
requeue) on the test Slurm) follow the toy-session rows, from their own scenarios, where the vLLM
CPU engine (and, for the Slurm rows, the test Slurm as root) is here; ``--no-workflow`` leaves them out.
The Slurm rows count processes left as the test Slurm tracks them (scripts/slurm-up.sh:
proctrack/cgroup where the kernel has it, as a real cluster; the header line says which).
Wrap it in ``flock /tmp/inferlab-engine.lock``: the workflow rows start vLLM.

    .venv/bin/python benchmarks/bench_faults.py [--kind KIND ...] [--no-workflow | --only-workflow] [--requeue] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests" / "faults"), str(ROOT / "src")]

import scenarios  # noqa: E402
import workflow_faults  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kind", action="append", help="only these kinds (default: all)")
    ap.add_argument("--json", type=Path, help="also write the rows here")
    ap.add_argument("--no-workflow", action="store_true", help="only the toy-session kinds (seconds, no vLLM)")
    ap.add_argument("--only-workflow", action="store_true", help="only the workflow-level kinds (vLLM)")
    ap.add_argument("--requeue", action="store_true", help="Slurm: scontrol requeue instead of a node set down")
    a = ap.parse_args(argv)
    kinds = [] if a.only_workflow else (a.kind or scenarios.KINDS)
    rows = []
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-faults-") as tmp:
        for i, kind in enumerate(kinds):
            rows.append(scenarios.run(kind, Path(tmp) / f"k{i:02d}"))
            r = rows[-1]
            print(f"[{i + 1}/{len(kinds)}] {kind}: {r['status']}/{r['reason']}", file=sys.stderr, flush=True)
        if not (a.kind or a.no_workflow):
            if workflow_faults.engine_ready():
                print("[workflow] Snakemake interrupted mid-cell (vLLM, ~3 min)", file=sys.stderr, flush=True)
                rows += workflow_faults.run_snakemake_interrupted(Path(tmp) / "snakemake", sigint_pid=True)
                if workflow_faults.slurm_ready():
                    print(
                        f"[workflow] Slurm kills of a serving session (vLLM, ~4 min; {workflow_faults.proctrack()})",
                        file=sys.stderr,
                        flush=True,
                    )
                    rows += workflow_faults.run_slurm_session_faults(Path(tmp) / "slurm", requeue=a.requeue)
                else:
                    print("[workflow] no test Slurm here (scripts/slurm-up.sh, as root): Slurm rows left out")
            else:
                print(f"[workflow] no vLLM CPU engine at {workflow_faults.ENGINE_ENV}: workflow rows left out")
    head = ("fault kind", "typed status / reason", "left", "lost", "recovered", "recovery command")
    table = [
        (
            r["kind"],
            f"{r['status']} / {r['reason'] or '-'}" + ("" if r["typed"] else "  (NOT TYPED)"),
            str(r["processes_left"]),
            str(r["results_lost"]),
            "yes" if r.get("recovered") else "NO",
            r["recovery"],
        )
        for r in rows
    ]
    w = [max(len(x[i]) for x in [head, *table]) for i in range(len(head) - 1)]
    for line in [head, tuple("-" * n for n in w) + ("-" * 16,), *table]:
        print("  ".join(c.ljust(w[i]) if i < len(w) else c for i, c in enumerate(line)))
    bad = [
        r["kind"] for r in rows if not r["typed"] or r["processes_left"] or r["results_lost"] or not r.get("recovered")
    ]
    print(
        f"\n{len(rows)} kinds, {sum(r['typed'] for r in rows)} typed, "
        f"{sum(r['processes_left'] for r in rows)} processes left, {sum(r['results_lost'] for r in rows)} results lost, "
        f"{sum(bool(r.get('recovered')) for r in rows)} recovered; {time.monotonic() - t0:.0f} s"
    )
    if a.json:
        a.json.write_text(json.dumps(rows, indent=2))
    if bad:
        print("missing the goal: " + ", ".join(bad))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

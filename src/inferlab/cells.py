"""List the cells that did not produce numbers and print the command that reruns each; type the
cells whose job the scheduler killed before the runner could write a record.

    python -m inferlab.cells failed    [--results results] [--profile profiles/slurm] [--week week03]
    python -m inferlab.cells reconcile [--results results] [--slurm-logs logs/slurm]

``failed`` reads the per-cell Parquet files (and records not yet extracted). ``reconcile`` looks for
configuration jobs (offline and serving alike) that left a Slurm log but cells without ``cell.json`` (a TIMEOUT, OUT_OF_MEMORY, CANCELLED or
NODE_FAIL decided by Slurm, not by the runner), asks Slurm for the job's state (``sacct`` where
accounting runs, else ``squeue``/``scontrol`` while the job is still remembered), and writes a typed
record for the cell so the week's tables show the failure instead of stalling on a missing file.
A cell the job had finished before Slurm's signal (its copy kept in ``interrupted.json`` with
``finished_before_signal``; Snakemake deletes a failed job's outputs) is restored as measured.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd

from . import io, provenance

SLURM_REASON = {
    "TIMEOUT": "timeout",
    "OUT_OF_MEMORY": "oom",
    "CANCELLED": "cancelled",
    "FAILED": "engine_error",
    "NODE_FAIL": "node_fail",
    "PREEMPTED": "cancelled",
    "DEADLINE": "timeout",
    "BOOT_FAIL": "node_fail",
}
CELL_RE = re.compile(
    r"(?P<week>week\d\d)/(?P<experiment>[^/]+)/(?P<engine>[^/]+)/(?P<gpu>[^/]+)/(?P<configuration>[^/]+)/(?P<cell>[^/]+)$"
)


def failed_cells(results: Path, week: str | None = None) -> pd.DataFrame:
    rows = []
    for rec_path in sorted(results.glob("week*/*/*/*/*/*/cell.json")):
        rec = json.loads(rec_path.read_text())
        if week and rec["week"] != week:
            continue
        if rec["status"] != "ok":
            rows.append(
                {
                    "path": str(rec_path.parent),
                    "status": rec["status"],
                    "reason": rec.get("reason"),
                    "detail": rec.get("detail"),
                    "slurm_job": (rec.get("provenance", {}).get("slurm") or {}).get("SLURM_JOB_ID"),
                }
            )
    return pd.DataFrame(rows, columns=["path", "status", "reason", "detail", "slurm_job"])


def rerun_command(cell_dir: str, profile: str, snakemake: str = ".venv/bin/snakemake") -> str:
    """Re-measure one cell (on its partition, via the profile) and refresh its week's tables."""
    m = CELL_RE.search(str(cell_dir))
    week = m.group("week")
    rec = f"{cell_dir}/cell.json"
    cell = m.group(0).strip("/")
    # `cells=` narrows a serving session to this cell (one server start, siblings untouched);
    # the target first: --forcerun takes several values, so nothing positional may follow it
    return (
        f"{snakemake} {week}_all --profile {profile} --config cells={shlex.quote(cell)} --forcerun {shlex.quote(rec)}"
    )


def slurm_state(job_id: str) -> str | None:
    cmds = []
    if shutil.which("sacct"):
        cmds.append(["sacct", "-n", "-X", "-P", "-o", "State", "-j", job_id])
    if shutil.which("squeue"):
        cmds.append(["squeue", "-h", "-t", "all", "-o", "%T", "-j", job_id])
    for cmd in cmds:
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        out = r.stdout.strip().split()
        if r.returncode == 0 and out:
            return out[0].split("+")[0].rstrip("+")
    return None


def reconcile(results: Path, slurm_logs: Path, cells: dict, dry: bool = False) -> list[dict]:
    """Type cells whose Slurm job died without a record. ``cells``: the run's matrix
    (:func:`inferlab.matrix.expand`), which gives each record its parameters. Returns the records.

    Every cell is measured by its engine configuration's job (offline or serving alike), named
    ``measure_<week>_<experiment>_<engine>_<gpu>_<configuration>``; the Slurm plugin writes its log
    under ``logs/slurm/rule_<job name>/[<wildcards>/]<jobid>[_<array>].log``. A job Slurm ended
    (TIMEOUT, OUT_OF_MEMORY, CANCELLED, NODE_FAIL...) types each of its cells that has no record."""
    from .matrix import configurations, job_name

    written = []
    by_rule = {f"rule_{job_name(k)}": cs for k, cs in configurations(cells).items()}
    logs = [p for p in slurm_logs.glob("rule_measure_*/**/*.log")]
    for log in sorted(logs, key=lambda p: p.stat().st_mtime, reverse=True):
        rule_dir = log.relative_to(slurm_logs).parts[0]
        specs = by_rule.get(rule_dir)
        if not specs:
            continue
        missing = [c for c in specs if not (results / c.path / "cell.json").exists()]
        if not missing:
            continue
        job = re.match(r"\d+", log.stem)
        if not job:
            continue
        job = job.group(0)
        state = slurm_state(job)
        if state in (None, "RUNNING", "PENDING", "COMPLETING", "COMPLETED", "CONFIGURING"):
            continue  # still running, or not a Slurm-side failure
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
        reason = SLURM_REASON.get(state, "engine_error")
        detail = f"Slurm job {job} ended {state} before the workflow kept a record (typed by reconcile)"
        for spec in missing:
            cell_dir = results / spec.path
            interrupted = cell_dir / "interrupted.json"
            saw = json.loads(interrupted.read_text()) if interrupted.exists() else {}
            if (saw.get("provenance", {}).get("slurm") or {}).get("SLURM_JOB_ID") == job:
                # the job saw Slurm's signal: its record has the engine's log tail
                rec = saw
                if rec.pop("finished_before_signal", False):
                    # measured (or typed by the runner) before Slurm ended the job: restored as it was
                    rec["restored"] = f"record kept by the job before Slurm job {job} ended {state}"
                else:
                    rec.update(reason=reason, detail=f"{detail}; job: {rec.get('detail')}")
                rec.setdefault("provenance", {}).setdefault("slurm", {}).update(state=state, log=str(log))
            else:
                rec = {
                    "schema_version": 1,
                    **{k: v for k, v in spec.to_dict().items() if k not in ("timeout_s", "skip")},
                    "status": "failed",
                    "reason": reason,
                    "detail": detail,
                    "returncode": None,
                    "log_tail": tail,
                    "raw": "raw.json",
                    "engine_log": "engine.log",
                    "started_at": None,
                    "finished_at": provenance.now(),
                    "wall_s": None,
                    "provenance": {"slurm": {"SLURM_JOB_ID": job, "state": state, "log": str(log)}},
                }
            rec["typed_by"] = "reconcile"
            if not dry:
                io.write_json(cell_dir / "cell.json", rec)
            written.append(rec)
    return written


def describe(rec: dict) -> str:
    """One line for a record reconcile wrote: the cell, and whether it was restored as the job kept it
    (measured before Slurm ended the job) or typed from Slurm's state."""
    cell = "/".join(str(rec.get(k)) for k in ("week", "experiment", "engine", "gpu", "configuration", "cell"))
    if rec.get("restored"):
        return f"{cell} restored as {rec.get('status')} ({rec['restored']}); run again to tabulate it"
    return f"{cell} typed {rec.get('reason')} from Slurm; run again to tabulate it"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m inferlab.cells", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("failed", help="list cells without numbers and how to rerun each")
    f.add_argument("--results", default="results", type=Path)
    f.add_argument("--profile", default="profiles/slurm")
    f.add_argument("--week")
    r = sub.add_parser("reconcile", help="type cells whose Slurm job died without a record")
    r.add_argument("--results", default="results", type=Path)
    r.add_argument("--slurm-logs", default="logs/slurm", type=Path)
    r.add_argument("--config", default="config/config.yaml", help="the run's preset (cluster: config/cluster.yaml)")
    r.add_argument("--dry-run", action="store_true")
    a = ap.parse_args(argv)
    if a.cmd == "failed":
        df = failed_cells(a.results, a.week)
        if df.empty:
            print("no failed or skipped cells")
            return 0
        for _, row in df.iterrows():
            job = f", Slurm job {row.slurm_job}" if row.slurm_job else ""
            print(f"{row.path}: {row.status} ({row.reason}){job}: {row.detail}")
            if row.status == "failed":
                print(f"  rerun: {rerun_command(row.path, a.profile)}")
        return 0
    from . import config, matrix

    recs = reconcile(a.results, a.slurm_logs, matrix.expand(config.load(a.config)), a.dry_run)
    for rec in recs:
        what = f"{rec['reason']} ({rec['detail']})" if "restored" not in rec else f"{rec['status']} ({rec['restored']})"
        print(
            f"{rec['week']}/{rec['experiment']}/{rec['engine']}/{rec['gpu']}/{rec.get('configuration')}/{rec['cell']}: {what}"
        )
    print(f"{len(recs)} cell(s) typed from Slurm")
    return 0


if __name__ == "__main__":
    sys.exit(main())

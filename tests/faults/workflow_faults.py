"""Workflow-level fault kinds of issue 18 (they do not fit the toy-session table of scenarios.py:
the fault is delivered to Snakemake or to Slurm, around a real ``vllm serve`` session of the
workflow). One tiny serving week (Week 1's serving experiment reduced to vLLM, two cells: ``rrinf``
short, then ``rr1`` long enough to be interrupted), the cached tiny model and dataset
(``INFERLAB_TEST_CACHE``, as tests/shared_run.py). Every process of a run carries
``INFERLAB_FAULT_RUN=<tag>`` in its environment (Snakemake passes it on to its jobs, sbatch exports
it into the Slurm job, vLLM inherits it); what is left is found by that tag in /proc, never by name.

Snakemake interrupted (embedded default, profiles/local), three runs on one work dir:
  1. Ctrl-C: SIGINT to Snakemake's process group, as a terminal delivers it, while ``rr1`` runs.
  (2. ``--sigint-pid``: SIGINT to the snakemake process alone, while ``rr1`` runs again; the
  benchmark's extra run.)
  3. SIGTERM to the snakemake process alone (``kill``, a supervisor), while ``rr1`` runs again.
  then the documented command completes the week.
Slurm kills of the serving session (profiles/slurm on the test Slurm), one Snakemake run, three
session jobs (one per GPU partition), each meeting its fault while it runs:
  h100: ``scancel`` during the server's start-up; a100: ``scancel`` mid-cell (``rr1``);
  l40s: NODE_FAIL (``scontrol update nodename=<node> state=down``; the profile's ``--requeue``
  makes Slurm requeue it) or, with ``requeue=True`` / other users' jobs on the node, ``scontrol
  requeue``; the requeued session archives its first attempt under attempts/ and measures again.
  then the documented command tabulates every cell, re-measuring nothing.
Processes left are what the test Slurm's process tracking leaves (each Slurm row says which:
``proctrack``): proctrack/cgroup, as a real cluster, sends SIGTERM to a step's task only (the rule's
Snakemake, not the session) and SIGKILLs every process of the job's cgroup when the step ends.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import yaml

HERE = Path(__file__).parent
ROOT = HERE.parent.parent
sys.path[:0] = [str(ROOT / "src"), str(HERE)]

import scenarios  # noqa: E402

from inferlab import cells as il_cells  # noqa: E402
from inferlab.runner import REASONS, STATUSES  # noqa: E402

SNAKEMAKE = Path(sys.executable).parent / "snakemake"
ENGINE_ENV = Path(os.environ.get("INFERLAB_VLLM_ENV", ROOT / ".venv-vllm"))
CACHE = Path(os.environ.get("INFERLAB_TEST_CACHE", ROOT / ".cache" / "inferlab-test"))
CI_RESOURCES = ["--slurm-no-account", "--slurm-init-seconds-before-status-checks", "3"]
CELLS = ("rrinf", "rr1")  # sweep order: the short cell first, then the one interrupted
LOCAL_CMD = ".venv/bin/snakemake --profile profiles/local week01_all"
SLURM_CMD = ".venv/bin/snakemake --profile profiles/slurm week01_all"
SLURM_GPUS = {"h100": "scancel during start-up", "a100": "scancel mid-cell", "l40s": "NODE_FAIL / requeue mid-cell"}


def engine_ready() -> bool:
    return (ENGINE_ENV / "bin" / "vllm").exists()


def slurm_ready() -> bool:
    return (
        shutil.which("sinfo") is not None
        and os.geteuid() == 0
        and subprocess.run(["sinfo", "-h"], capture_output=True).returncode == 0
    )


def write_preset(work: Path, slurm: bool) -> Path:
    base = "slurm-ci.yaml" if slurm else "config.yaml"
    p = yaml.safe_load((ROOT / "config" / base).read_text())
    p["catalog"] = str(ROOT / "config")
    p["weeks"] = ["week01"]
    p["engines"]["vllm"]["env"] = str(ENGINE_ENV)
    p["cache"] = str(CACHE)
    p["cell_timeout_s"] = 600
    serving = {
        "engines": ["vllm"],
        "sweep": {"request_rate": ["inf", 1]},
        "fixed": {"dataset": "sharegpt-synthetic", "num_prompts": 4},
    }
    if slurm:
        serving["gpus"] = list(SLURM_GPUS)
        p["serving_job"] = {"cpus": 4, "mem_mb": 3000}  # the whole test node: one session at a time
    p["overrides"] = {"week01": {"serving": serving}}
    f = work / "preset.yaml"
    f.write_text(yaml.safe_dump(p))
    return f


def snakemake_cmd(work: Path, slurm: bool) -> list[str]:
    """The documented command (README: ``--profile profiles/<local|slurm> week01_all``) on a test
    work dir and preset."""
    cmd = [
        str(SNAKEMAKE),
        "week01_all",
        "--profile",
        str(ROOT / "profiles" / ("slurm" if slurm else "local")),
        "-s",
        str(ROOT / "Snakefile"),
        "-d",
        str(work),
        "--configfile",
        str(work / "preset.yaml"),
    ]
    return cmd + (CI_RESOURCES if slurm else ["--replace-workflow-config", "--cores", "2"])


def processes_of(tag: str, job: str | None = None, attempt: int | None = None, step: bool = False) -> list[int]:
    """Live processes carrying the run's tag (and, with ``job``, that Slurm job's id; with
    ``attempt``, that attempt of a requeued job: SLURM_RESTART_COUNT, absent on the first; with
    ``step``, only those of the job's step, where the plugin runs the rule: SLURM_STEP_ID set)."""
    pids = scenarios.processes_of(tag)
    if job is None:
        return pids
    out = []
    for pid in pids:
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"SLURM_JOB_ID={job}".encode() not in env:
            continue
        if step and not any(e.startswith(b"SLURM_STEP_ID=") for e in env):
            continue
        if attempt is not None:
            n = next((int(e.split(b"=", 1)[1]) for e in env if e.startswith(b"SLURM_RESTART_COUNT=")), 0)
            if n != attempt:
                continue
        out.append(pid)
    return out


def _describe(pid: int) -> str:
    """pid, parent, process group and command line of a process left behind (for the report)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return f"{pid} (gone)"
    return f"{pid} ppid={stat[1]} pgid={stat[2]}: {cmd[:160]}"


def _kill_left(tag: str) -> list[str]:
    """What the run left (command lines), killed so that nothing outlives the test either."""
    left = []
    for pid in processes_of(tag):
        try:
            left.append(_describe(pid))
            os.kill(pid, signal.SIGKILL)
        except (OSError, ProcessLookupError):
            pass
    return left


def _start(work: Path, slurm: bool, tag: str, log: str) -> subprocess.Popen:
    env = {**os.environ, scenarios.TAG_ENV: tag}
    return subprocess.Popen(
        snakemake_cmd(work, slurm),
        cwd=ROOT,
        env=env,
        stdout=open(work / log, "w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: what a terminal's Ctrl-C reaches
    )


def _wait(p: subprocess.Popen, timeout: float) -> int | None:
    try:
        return p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
        return None


def cell_dir(work: Path, gpu: str, cell: str) -> Path:
    return work / "results" / "week01" / "serving" / "vllm" / gpu / "default" / cell


def _rec(work: Path, gpu: str, cell: str) -> dict:
    f = cell_dir(work, gpu, cell) / "cell.json"
    return json.loads(f.read_text()) if f.exists() else {}


def _interrupted(work: Path, gpu: str, cell: str) -> dict:
    """The copy of a cell's record the session wrote when a signal ended it (interrupted.json)."""
    f = cell_dir(work, gpu, cell) / "interrupted.json"
    return json.loads(f.read_text()) if f.exists() else {}


def _finished_kept(work: Path, gpu: str, cell: str) -> bool:
    """A cell the session had measured before the signal is still there: its raw output, and its
    record as cell.json or, where Snakemake went through its failed-job path first and deleted the
    job's outputs (a race with its own SIGINT handling, seen under load), as the copy the session
    wrote (interrupted.json, ``finished_before_signal``), which the next run archives under attempts/."""
    d = cell_dir(work, gpu, cell)
    if not (d / "raw.json").exists():
        return False
    if _rec(work, gpu, cell).get("status") == "ok":
        return True
    kept = _interrupted(work, gpu, cell)
    return kept.get("status") == "ok" and kept.get("finished_before_signal") is True


def _attempts(work: Path, gpu: str, cell: str) -> list[dict]:
    """The archived attempts' records: cell.json, or the copy the job kept when it was interrupted
    (Snakemake deletes an interrupted job's outputs before it reruns it; interrupted.json stays)."""
    out = []
    for d in sorted(cell_dir(work, gpu, cell).glob("attempts/*")):
        f = next((d / n for n in ("cell.json", "interrupted.json") if (d / n).exists()), None)
        if f is not None:
            out.append({**json.loads(f.read_text()), "_raw_kept": (d / "raw.json").exists()})
    return out


def _attempt_kept(work: Path, gpu: str, cell: str) -> bool:
    """The latest archived attempt has its record, and its raw output when it was measured."""
    att = _attempts(work, gpu, cell)
    return bool(att) and (att[-1].get("status") != "ok" or att[-1]["_raw_kept"])


def _typed(rec: dict) -> bool:
    return rec.get("status") in STATUSES and (rec["status"] == "ok" or rec.get("reason") in REASONS)


def _table(work: Path) -> dict:
    """Week 1's vLLM table: (gpu, rate) -> the TTFT column as printed (a number or the status)."""
    import pandas as pd

    f = work / "results" / "week01" / "tables" / "rate_sweep_vllm.csv"
    if not f.exists():
        return {}
    df = pd.read_csv(f, dtype=str)
    col = next(c for c in df.columns if c.startswith("TTFT p50"))
    return {(r["GPU"], r["Request rate"]): r[col] for _, r in df.iterrows()}


# -- Snakemake interrupted, embedded default -------------------------------------------------------
def run_snakemake_interrupted(work: Path, sigint_pid: bool = False) -> list[dict]:
    """Ctrl-C then SIGTERM (then, with ``sigint_pid``, SIGINT to the pid alone) mid-cell, each on
    the rerun of the previous; then the documented command. One row per signal."""
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    write_preset(work, slurm=False)
    # each run re-measures the configuration the previous one left incomplete (SIGTERM's run ends it
    # complete, so it comes last)
    deliveries = [("SIGINT", "group"), *([("SIGINT", "pid")] if sigint_pid else []), ("SIGTERM", "pid")]
    rows = []
    for i, (sig, to) in enumerate(deliveries):
        tag = uuid.uuid4().hex
        client_log = cell_dir(work, "cpu", "rr1") / "client.log"
        before = client_log.stat().st_mtime if client_log.exists() else None
        t0 = time.monotonic()
        p = _start(work, False, tag, f"snakemake-{i}.log")
        started = scenarios._wait_for(
            lambda f=client_log, b=before, p=p: f.exists() and f.stat().st_mtime != b and p.poll() is None, 300
        )
        time.sleep(2.0)  # the rr1 client is loading the server
        signum = getattr(signal, sig)
        if to == "group":
            os.killpg(p.pid, signum)
        else:
            p.send_signal(signum)
        t_sig = time.monotonic()
        rc = _wait(p, 300)
        exit_s = round(time.monotonic() - t_sig, 1)
        time.sleep(0.5)
        left = _kill_left(tag)
        # the cells' records: cell.json, or the session's copy where Snakemake deleted the job's outputs
        recs = {c: _rec(work, "cpu", c) or _interrupted(work, "cpu", c) for c in CELLS}
        rr1 = recs["rr1"]
        lost = int(not _finished_kept(work, "cpu", "rrinf"))
        if i > 0:  # the previous run's records of the cells re-measured now: archived, not lost
            lost += sum(not _attempt_kept(work, "cpu", c) for c in CELLS)
        rows.append(
            {
                "kind": f"Snakemake {sig} ({'Ctrl-C: its process group' if to == 'group' else 'its pid only'}) mid-cell",
                "signal": sig,
                "to": to,
                "client_started": started,
                "snakemake_rc": rc,
                "exit_after_signal_s": exit_s,
                "status": rr1.get("status"),
                "reason": rr1.get("reason"),
                "detail": (rr1.get("detail") or "")[:90],
                "typed": all(_typed(r) for r in recs.values()),
                "interrupted_json": (cell_dir(work, "cpu", "rr1") / "interrupted.json").exists(),
                "first_cell": recs["rrinf"].get("status"),
                "processes_left": len(left),
                "left": left,
                "results_lost": lost,
                "recovery": LOCAL_CMD + "  (rerun-incomplete in the profile)",
                "wall_s": round(time.monotonic() - t0, 1),
            }
        )
    # the documented command, as a user runs it next
    tag = uuid.uuid4().hex
    t0 = time.monotonic()
    p = _start(work, False, tag, "snakemake-recover.log")
    rc = _wait(p, 600)
    log = (work / "snakemake-recover.log").read_text()
    left = _kill_left(tag)
    recs = {c: _rec(work, "cpu", c) for c in CELLS}
    table = _table(work)
    recovered = rc == 0 and all(r.get("status") == "ok" for r in recs.values())
    recovered = recovered and all(_is_number(table.get(("cpu", rate))) for rate in ("inf", "1"))
    for r in rows:
        r["recovered"] = recovered
        r["processes_left"] += len(left)
        r["recover_rc"] = rc
        r["recover_remeasured"] = "rule measure_" in log or "localrule measure_" in log
        r["recover_s"] = round(time.monotonic() - t0, 1)
    return rows


def _is_number(v) -> bool:
    try:
        float(v)
        return True
    except (TypeError, ValueError):
        return False


# -- Slurm kills of the workflow's serving sessions --------------------------------------------------
def _squeue(fmt: str, *args) -> list[list[str]]:
    out = subprocess.run(["squeue", "-h", "-t", "all", "-o", fmt, *args], capture_output=True, text=True).stdout
    return [line.split("|") for line in out.splitlines() if line.strip()]


def _node() -> str:
    return subprocess.run(["sinfo", "-h", "-o", "%n"], capture_output=True, text=True).stdout.split()[0]


def proctrack() -> str | None:
    """How the test Slurm tracks a job's processes (scripts/slurm-up.sh): proctrack/cgroup kills every
    process of a step when it ends; proctrack/linuxproc misses one whose parent exited first."""
    out = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True).stdout
    return next((line.split("=", 1)[1].strip() for line in out.splitlines() if line.startswith("ProctrackType")), None)


def _foreign_running(mine: set[str]) -> list[str]:
    return [j for j, st in _squeue("%i|%T") if st in ("RUNNING", "COMPLETING", "CONFIGURING") and j not in mine]


def _resume_if_ours() -> str:
    """The node back in service if this scenario left it down or drained (never another reason)."""
    state, reason = (
        subprocess.run(["sinfo", "-h", "-N", "-o", "%T|%E"], capture_output=True, text=True)
        .stdout.split("\n")[0]
        .split("|")
    )
    if state.rstrip("*~#") in ("down", "drained", "draining", "drain") and reason in (
        "inferlab fault test",
        "Duplicate jobid",
    ):
        subprocess.run(["scontrol", "update", f"nodename={_node()}", "state=resume"], capture_output=True)
        return f"{state} ({reason}): resumed"
    return state


def run_slurm_session_faults(work: Path, requeue: bool = False) -> list[dict]:
    """One Snakemake run through profiles/slurm whose three session jobs meet their faults (see the
    module doc), then the documented command. One row per fault kind."""
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    write_preset(work, slurm=True)
    tag = uuid.uuid4().hex
    t0 = time.monotonic()
    p = _start(work, True, tag, "snakemake-slurm.log")
    done: dict[str, dict] = {}  # gpu -> what was done and seen (a state machine each, polled)
    deadline = time.monotonic() + 900
    while p.poll() is None and time.monotonic() < deadline:
        if len(done) == len(SLURM_GPUS) and all(i["phase"] == "done" for i in done.values()):
            break
        running = {}
        for job, state, comment in _squeue("%i|%T|%k"):
            gpu = next((g for g in SLURM_GPUS if f"measure_week01_serving_vllm_{g}_default" in comment), None)
            if gpu is not None and state == "RUNNING" and processes_of(tag, job):  # this run's job
                running[gpu] = job
        for gpu, job in running.items():
            if gpu not in done:
                done[gpu] = {"job": job, "phase": "wait", "t": time.monotonic()}
        now = time.monotonic()
        for gpu, info in done.items():
            job = info["job"]
            eng = cell_dir(work, gpu, "rrinf").parent / "_engine"
            if info["phase"] == "wait":
                # h100: during the server's start-up (its process exists, /health not yet answered);
                # a100, l40s: mid-cell, while rr1's client loads the server
                point = eng / "server.log" if gpu == "h100" else cell_dir(work, gpu, "rr1") / "client.log"
                if point.exists():
                    info.update(phase="armed", t=now + (1.5 if gpu == "h100" else 2.0), reached=True)
                elif now - info["t"] > 240:
                    info.update(phase="done", reached=False)
            elif info["phase"] == "armed" and now >= info["t"]:
                info["server_was_ready"] = "startup complete" in (eng / "server.log").read_text(errors="replace")
                if gpu != "l40s":
                    subprocess.run(["scancel", job], check=True)
                else:
                    info["foreign_jobs"] = _foreign_running({job})
                    info["how"] = "requeue" if (requeue or info["foreign_jobs"]) else "node_down"
                    if info["how"] == "node_down":
                        subprocess.run(
                            ["scontrol", "update", f"nodename={_node()}", "state=down", "reason=inferlab fault test"],
                            check=True,
                        )
                    else:
                        subprocess.run(["scontrol", "requeue", job], check=True)
                info.update(phase="killed", t=now)
            elif info["phase"] == "killed":
                # the processes of the job's attempt (tag + job id + restart count) end with it; the
                # step's (SLURM_STEP_ID set: the session, vllm serve, its client) within seconds
                left = processes_of(tag, job, attempt=0)
                step_left = processes_of(tag, job, attempt=0, step=True)
                if "step_gone_s" not in info and not step_left:
                    info["step_gone_s"] = round(now - info["t"], 1)
                if gpu == "l40s" and not info.get("requeued"):
                    if any(st == "PENDING" for _, st in _squeue("%i|%T", "-j", job)):
                        info["requeued"] = True
                        st = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True).stdout
                        info["restarts"] = next(
                            (t.split("=")[1] for t in st.split() if t.startswith("Restarts=")), None
                        )
                ready = "step_gone_s" in info and now - info["t"] - info["step_gone_s"] > 3.0
                if gpu == "l40s" and info.get("requeued") and ready:
                    # started again only once the first attempt's step is over (slurmd drains a node
                    # that is asked to launch a job id it still runs: "Duplicate jobid")
                    if info["how"] == "node_down":  # ReturnToService=2 brings it back; resume if not
                        subprocess.run(
                            ["scontrol", "update", f"nodename={_node()}", "state=resume"], capture_output=True
                        )
                    # Slurm holds a requeued job ~2 min (BeginTime): start it now
                    subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], check=True)
                    info.update(phase="done", gone=True, left_at_restart=[_describe(q) for q in left])
                elif gpu != "l40s" and not left:
                    info.update(phase="done", gone=True, gone_s=round(now - info["t"], 1))
                elif now - info["t"] > 60:
                    info.update(phase="done", gone=not step_left, left_cmd=[_describe(q) for q in left])
        time.sleep(0.2)
    jobs = {g: i["job"] for g, i in done.items()}
    rc = _wait(p, max(60.0, deadline - time.monotonic()))
    node_state = _resume_if_ours()
    tracking = proctrack()
    log1 = (work / "snakemake-slurm.log").read_text()
    states = {g: il_cells.slurm_state(j) for g, j in jobs.items()}
    first = {g: {c: _rec(work, g, c) for c in CELLS} for g in SLURM_GPUS}
    time.sleep(1.0)
    # what each faulted attempt left, still alive when the whole run is over
    end_left = {g: [_describe(q) for q in processes_of(tag, j, attempt=0)] for g, j in jobs.items()}
    end_step_left = {g: len(processes_of(tag, j, attempt=0, step=True)) for g, j in jobs.items()}
    left_run = _kill_left(tag)
    # the documented command: tabulates every typed cell, re-measures nothing
    tag2 = uuid.uuid4().hex
    t1 = time.monotonic()
    p2 = _start(work, True, tag2, "snakemake-slurm-next.log")
    rc2 = _wait(p2, 600)
    log2 = (work / "snakemake-slurm-next.log").read_text()
    left_run += _kill_left(tag2)
    table = _table(work)
    rows = []
    for gpu, kind in SLURM_GPUS.items():
        info = done.get(gpu, {})
        recs = {c: _rec(work, gpu, c) for c in CELLS}
        if gpu == "l40s":
            kind = (
                "Slurm NODE_FAIL of a serving session (requeued)"
                if info.get("how") == "node_down"
                else "Slurm requeue of a serving session"
            )
            # the first attempt's cells archived, the requeued session's measured
            att = {c: _attempts(work, gpu, c) for c in CELLS}
            lost = sum(not _attempt_kept(work, gpu, c) for c in CELLS)
            shown = recs["rr1"]
            status, reason = shown.get("status"), shown.get("reason")
            detail = f"first attempt archived: rr1 {[(a.get('status'), a.get('reason')) for a in att['rr1']]}"
        else:
            kind = f"Slurm {kind} of a serving session"
            lost = 0
            if gpu == "a100":  # rrinf was measured before the cancel: its record and raw output stay
                lost = int(
                    recs["rrinf"].get("status") != "ok" or not (cell_dir(work, gpu, "rrinf") / "raw.json").exists()
                )
            status, reason = recs["rr1"].get("status"), recs["rr1"].get("reason")
            detail = (recs["rr1"].get("detail") or "")[:120]
            att = {}
        shown_in_table = {rate: table.get((gpu, rate)) for rate in ("inf", "1")}
        rows.append(
            {
                "kind": kind,
                "gpu": gpu,
                "job": info.get("job"),
                "slurm_state": states.get(gpu),
                "reached": info.get("reached"),
                "server_was_ready": info.get("server_was_ready"),
                "status": status,
                "reason": reason,
                "detail": detail,
                "typed_by": recs["rr1"].get("typed_by"),
                "records": {c: (r.get("status"), r.get("reason")) for c, r in recs.items()},
                "first_run_records": {c: (r.get("status"), r.get("reason")) for c, r in first[gpu].items()},
                "typed": all(_typed(r) for r in recs.values()),
                "table": shown_in_table,
                # the faulted attempt's processes alive at the end of the run (any other process of
                # the run counted on the first row)
                "processes_left": len(end_left.get(gpu, []))
                + (len(left_run) - sum(map(len, end_left.values())) if gpu == "h100" else 0),
                "left_cmd": end_left.get(gpu, []),
                "step_left": end_step_left.get(gpu, 0),
                "gone_s": info.get("gone_s"),
                "step_gone_s": info.get("step_gone_s"),
                "results_lost": lost,
                "info": info,
                "snakemake_rc": rc,
                "node_after_run": node_state,
                "proctrack": tracking,
                "next_rc": rc2,
                "next_remeasured": "rule measure_" in log2,
                "reconcile_said": [
                    line for line in log1.splitlines() if f"/{gpu}/default/" in line and "typed" in line
                ],
                "recovery": SLURM_CMD
                + (
                    "  (Slurm requeues; nothing to do)"
                    if gpu == "l40s"
                    else "  (tabulates; rerun: inferlab.cells failed)"
                ),
                "recovered": rc2 == 0 and all(v is not None for v in shown_in_table.values()),
                "wall_s": round(t1 - t0, 1),
                "next_s": round(time.monotonic() - t1, 1),
            }
        )
    return rows


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("which", choices=["local", "slurm"])
    ap.add_argument("work", type=Path)
    ap.add_argument("--requeue", action="store_true")
    ap.add_argument("--sigint-pid", action="store_true")
    a = ap.parse_args()
    if a.which == "local":
        out = run_snakemake_interrupted(a.work, sigint_pid=a.sigint_pid)
    else:
        out = run_slurm_session_faults(a.work, requeue=a.requeue)
    print(json.dumps(out, indent=1, default=str))

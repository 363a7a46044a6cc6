"""Run one benchmark cell and always leave a typed record behind.

"Failure is data": whatever happens (engine missing, crash, OOM, hang past the deadline, a
scheduler's SIGTERM, unreadable output), ``cell.json`` says so with a status, a reason class and
the tail of the engine's log. Raw outputs and logs are kept; a previous attempt's files are moved
to ``attempts/<timestamp>/`` rather than overwritten.

The engine runs in its own process group (``start_new_session``) so teardown can signal the whole
group — the engine's worker processes included — and wait for it to be gone, without touching any
other process on a shared node.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from . import io, provenance, telemetry
from .engines.base import Engine, last_exception_line

RECORD = "cell.json"
# Written beside the record when the runner is signalled (scancel, Slurm's time limit): Snakemake
# deletes the outputs of a job that fails, so this copy is what `inferlab.cells reconcile` types from.
INTERRUPTED = "interrupted.json"
RAW = "raw.json"
ENGINE_LOG = "engine.log"
STATUSES = ("ok", "failed", "skipped")
REASONS = (
    "oom",
    "timeout",
    "engine_error",
    "client_error",
    "parse_error",
    "cancelled",
    "engine_unavailable",
    "injected",
    "server_died",
    "resources",
    "unsupported",
)
TAIL_LINES = 40


def log_tail(path: Path, lines: int = TAIL_LINES) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            text = f.read().decode(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


DETAIL_MAX = 2000


def exit_detail(rc: int, log_text: str) -> str:
    """A failed tool's detail: ``engine exited with 1: ValueError: Unknown dataset name: custom``
    (the log's last exception line, when it has one), at most ``DETAIL_MAX`` characters."""
    exc = last_exception_line(log_text)
    return (f"engine exited with {rc}" + (f": {exc}" if exc else ""))[:DETAIL_MAX]


def _archive_previous(outdir: Path) -> None:
    old = [outdir / n for n in (RAW, ENGINE_LOG, RECORD, INTERRUPTED) if (outdir / n).exists()]
    if not old:
        return
    dest = outdir / "attempts" / time.strftime("%Y%m%dT%H%M%S")
    dest.mkdir(parents=True, exist_ok=True)
    for p in old:
        shutil.move(str(p), dest / p.name)


def lengths_from_raw(raw: Path) -> dict | None:
    """What a driver's raw output says was asked and what ran (``requested`` / ``achieved``: requests,
    prompt and output tokens; the offline vLLM driver and the HF baseline write them), as the cell
    record's ``lengths``; None when the output has no such counts."""
    try:
        data = json.loads(Path(raw).read_text())
    except (OSError, ValueError):
        return None
    if isinstance(data, dict) and isinstance(data.get("requested"), dict) and isinstance(data.get("achieved"), dict):
        return {
            "requested": data["requested"],
            "achieved": data["achieved"],
            "source": "the driver's count of prompt and generated tokens of every timed iteration",
        }
    return None


def spawn(cmd: list[str], log: Path, env: dict, cwd, mode: str = "wb") -> subprocess.Popen:
    """Start ``cmd`` as the leader of its own process group (so teardown can reach every process it
    forks and nothing else), its output appended to ``log`` after a ``$ command`` line."""
    with open(log, mode) as lf:
        lf.write(("$ " + " ".join(cmd) + "\n").encode())
        lf.flush()
        return subprocess.Popen(
            cmd, stdout=lf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=cwd, start_new_session=True
        )


def new_record(cell: dict, **extra) -> dict:
    """A cell record before the run: what the cell is; status/reason/detail filled in by the run."""
    return {
        "schema_version": 1,
        **{k: cell[k] for k in ("week", "experiment", "engine", "gpu", "cell", "tool", "model")},
        "configuration": cell.get("configuration", "default"),
        "params": cell["params"],
        "swept": cell.get("swept", []),
        "engine_args": cell.get("engine_args", {}),
        "server_axes": cell.get("server_axes", {}),
        "repeat": cell.get("repeat", 0),
        "status": None,
        "reason": None,
        "detail": None,
        "returncode": None,
        "log_tail": "",
        "raw": RAW,
        "started_at": None,
        "finished_at": None,
        "wall_s": None,
        "injected_fault": None,
        **extra,
    }


def kill_group(proc: subprocess.Popen, grace_s: float = 15.0) -> None:
    """TERM the process group, wait up to ``grace_s``, then KILL; return when the group is gone."""
    try:
        pgid = os.getpgid(proc.pid)
    except ProcessLookupError:
        pgid = proc.pid
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            proc.poll()
            if not _group_alive(pgid):
                return
            time.sleep(0.2)
    proc.poll()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # zombies of our own children count as gone once reaped; check /proc for live members
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


class _Terminated(Exception):
    def __init__(self, signum):
        self.signum = signum


def _slurm_state() -> str | None:
    """The job's state as Slurm sees it (TIMEOUT, CANCELLED...), when inside a Slurm job."""
    job = os.environ.get("SLURM_JOB_ID")
    if not job or not shutil.which("scontrol"):
        return None
    try:
        r = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    fields = dict(tok.split("=", 1) for tok in r.stdout.split() if "=" in tok)
    state = fields.get("JobState")
    if state in ("COMPLETING", "RUNNING"):
        # while Slurm signals the job its final state is masked as COMPLETING: a run time at or past
        # the time limit is the time limit (TIMEOUT); otherwise it stays as seen (a cancel)
        run, limit = _slurm_seconds(fields.get("RunTime")), _slurm_seconds(fields.get("TimeLimit"))
        if run is not None and limit is not None and run >= limit:
            return "TIMEOUT"
    return state


def _slurm_seconds(v: str | None) -> int | None:
    """Slurm's [days-]hh:mm:ss / mm:ss -> seconds; None for UNLIMITED or anything else."""
    if not v:
        return None
    days, _, hms = v.rpartition("-")
    try:
        parts = [int(x) for x in hms.split(":")]
        d = int(days) if days else 0
    except ValueError:
        return None
    while len(parts) < 3:
        parts.insert(0, 0)
    return ((d * 24 + parts[0]) * 60 + parts[1]) * 60 + parts[2]


def fault_command(kind: str, cmd: list[str]) -> list[str]:
    """A real failure of the named kind, for testing the failure path end to end."""
    if kind == "crash":
        # the real engine, told to fit a context it cannot: it refuses and exits non-zero
        return cmd + ["--max-model-len", "8"]
    if kind == "hang":
        return ["sleep", "100000"]
    if kind == "oom":
        # the real engine under an address-space limit: allocation fails at import/load
        return ["prlimit", "--as=600000000", "--"] + cmd
    raise ValueError(f"unknown fault kind {kind!r}")


def run_cell(
    cell: dict,
    engine: Engine,
    model_path: str,
    outdir: Path | str,
    workflow_dir: Path | str = ".",
    timeout_s: float | None = None,
    fault: str | None = None,
    dataset_path: str | None = None,
) -> dict:
    """Run ``cell`` (a :meth:`inferlab.matrix.Cell.to_dict`) and write ``outdir/cell.json``."""
    outdir = Path(outdir).absolute()
    outdir.mkdir(parents=True, exist_ok=True)
    _archive_previous(outdir)
    raw = outdir / RAW
    elog = outdir / ENGINE_LOG
    record = new_record(
        cell, engine_log=ENGINE_LOG, started_at=provenance.now(), injected_fault=fault, measured_by="cli"
    )
    t0 = time.monotonic()

    def finish(status, reason=None, detail=None, returncode=None):
        record.update(
            status=status,
            reason=reason,
            detail=detail,
            returncode=returncode,
            log_tail=log_tail(elog),
            finished_at=provenance.now(),
            wall_s=round(time.monotonic() - t0, 3),
        )
        io.write_json(outdir / RECORD, record)
        return record

    ok, why = engine.availability()
    cmd = None
    if ok:
        kw = {"dataset_path": dataset_path} if dataset_path else {}
        cmd = engine.command(cell["tool"], model_path, cell["params"], cell.get("engine_args", {}), raw, **kw)
        if fault:
            cmd = fault_command(fault, cmd)
    prefix = cell.get("engine_args", {}).get("enable_prefix_caching")
    record["provenance"] = provenance.collect(
        workflow_dir,
        engine.versions() if ok else {},
        cmd,
        {"prefix_caching": {True: "enabled", False: "disabled"}.get(prefix, "engine default")},
    )
    if not ok:
        return finish("skipped", "engine_unavailable", why)

    prev = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}

    def on_signal(signum, frame):
        raise _Terminated(signum)

    for s in prev:
        signal.signal(s, on_signal)
    proc = None
    sampler = telemetry.Sampler(outdir / "telemetry.csv", telemetry.visible_gpu_indices() or None).start()
    t_wall0 = time.time()
    try:
        proc = spawn(cmd, elog, engine.environ(outdir), outdir)
        try:
            rc = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            kill_group(proc)
            return finish(
                "failed", "timeout", f"no result within {timeout_s:g} s; process group killed", proc.returncode
            )
        if rc != 0:
            tail = log_tail(elog, 400)
            reason = engine.classify_failure(rc, tail)
            return finish("failed", reason, exit_detail(rc, tail), rc)
        if not raw.exists():
            return finish("failed", "client_error", "exit 0 but no output file", rc)
        try:
            rows = engine.parse(cell["tool"], raw, cell["params"])
        except Exception as e:  # unreadable output is a typed failure, not a crash
            return finish("failed", "parse_error", f"{e.__class__.__name__}: {e}", rc)
        sampler.stop()
        tokens = next((r["value"] for r in rows if r["metric"] == "offline_total_tokens"), None)
        record["telemetry"] = telemetry.summarize(sampler.window(t_wall0, time.time()), sampler.status, tokens)
        lengths = lengths_from_raw(raw)
        if lengths is not None:
            record["lengths"] = lengths
        return finish("ok", None, None, rc)
    except _Terminated as t:
        if proc is not None:
            kill_group(proc, grace_s=5.0)
        state = _slurm_state()
        reason = {"TIMEOUT": "timeout", "OUT_OF_MEMORY": "oom"}.get(state or "", "cancelled")
        rec = finish(
            "failed",
            reason,
            f"runner got signal {t.signum}; Slurm state {state or 'n/a'}",
            proc.returncode if proc else None,
        )
        io.write_json(outdir / INTERRUPTED, rec)
        raise SystemExit(128 + t.signum) from None
    finally:
        sampler.stop()
        for s, h in prev.items():
            signal.signal(s, h)
        if proc is not None and proc.poll() is None:
            kill_group(proc, grace_s=5.0)
        elif proc is not None:
            # the leader exited; workers it forked may linger in the group (vLLM's EngineCore)
            kill_group(proc, grace_s=5.0)

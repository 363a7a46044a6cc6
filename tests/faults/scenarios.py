"""The fault kinds of issue 18, each a real injected fault with its observation: the typed record,
the processes of the run still alive, the finished results lost, and whether the documented
recovery (rerun the failed cells: ``python -m inferlab.cells failed`` prints the command) restores
them. Used by tests/faults/test_faults.py (asserts) and benchmarks/bench_faults.py (the table).

A session fault runs ``inferlab.session.run_session`` in its own process (so a signal is delivered
as scancel or Ctrl-C would), over the toy engine: two cells, the first measured normally, the
second meeting the fault (or the server does, for start-up faults). Every process of the run
carries ``INFERLAB_FAULT_RUN=<tag>`` in its environment; what is left is found by that tag in
/proc, never by a process name.

    python tests/faults/scenarios.py session <spec.json>   # the session process (internal)
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

HERE = Path(__file__).parent
ROOT = HERE.parent.parent
sys.path[:0] = [str(ROOT / "src"), str(HERE)]

from inferlab import io  # noqa: E402
from inferlab.runner import REASONS, STATUSES  # noqa: E402

TAG_ENV = "INFERLAB_FAULT_RUN"
RECOVERY = ".venv/bin/python -m inferlab.cells failed  # prints the snakemake command rerunning exactly those cells"

# kind -> (spec, expected (status, reason) of the faulted cell, recovery)
SESSION_FAULTS: dict[str, dict] = {
    "engine exits at start": {"server": ["--ready-after", "60", "--exit-after", "1"], "expect": "engine_error"},
    "engine never ready": {"server": ["--ready-after", "600"], "ready_timeout_s": 3, "expect": "timeout"},
    "port taken": {"port_taken": True, "expect": "ok", "recovery": "none needed: restarted on a fresh port"},
    "OOM at load": {"wrap": ["prlimit", "--as=20000000", "--"], "expect": "oom"},
    "server SIGTERM mid-cell": {"client": "term_server", "expect": "server_died"},
    "server SIGKILL mid-cell": {"client": "kill_server", "expect": "server_died"},
    "client hangs": {"client": "hang", "cell_timeout_s": 3, "expect": "timeout"},
    "client killed": {"client": "killed", "expect": "client_error"},
    "all requests fail": {"client": "all_fail", "expect": "parse_error"},
    "raw output corrupt": {"client": "corrupt", "expect": "parse_error"},
    "raw output truncated": {"client": "truncated", "expect": "parse_error"},
    "raw output wrong type": {"client": "wrong_type", "expect": "parse_error"},
    "SIGTERM (scancel) during start-up": {"server": ["--ready-after", "600"], "signal": ("TERM", "startup")},
    "SIGINT (Ctrl-C) during start-up": {"server": ["--ready-after", "600"], "signal": ("INT", "startup")},
    "SIGTERM (scancel) mid-cell": {"client": "ok", "seconds": 60, "signal": ("TERM", "cell")},
    "SIGINT (Ctrl-C) mid-cell": {"client": "ok", "seconds": 60, "signal": ("INT", "cell")},
}
OTHER_FAULTS = ("disk full while writing a result",)
KINDS = [*SESSION_FAULTS, *OTHER_FAULTS]


def _cell(name: str, mode: str, seconds: float) -> dict:
    return {
        "week": "week00",
        "experiment": "faults",
        "engine": "toy",
        "gpu": "cpu",
        "cell": name,
        "tool": "bench_serving",
        "model": "toy",
        "params": {"mode": mode, "seconds": seconds},
    }


# -- the session process --------------------------------------------------------------------------
def _session_main(spec_path: str) -> None:
    from toy_engine import ToyEngine

    from inferlab.session import run_session

    spec = json.loads(Path(spec_path).read_text())
    work = Path(spec["work"])
    holder = None
    port = None
    if spec.get("port_taken"):
        holder = socket.socket()
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
    eng = ToyEngine(work, server=spec.get("server", []), wrap=spec.get("wrap", []), port=port)
    cells = [_cell(c, m, s) for c, m, s in spec["cells"]]
    run_session(
        cells,
        [work / "results" / c["cell"] for c in cells],
        eng,
        "toy",
        "",
        work / "results" / "_engine",
        {},
        workflow_dir=ROOT,
        ready_timeout_s=spec.get("ready_timeout_s", 60),
        cell_timeout_s=spec.get("cell_timeout_s", 60),
        reset_cache=False,
    )


# -- observation ---------------------------------------------------------------------------------
def processes_of(tag: str) -> list[int]:
    """Live processes whose environment carries the run's tag (zombies excluded)."""
    needle = f"{TAG_ENV}={tag}".encode()
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            if needle not in (d / "environ").read_bytes().split(b"\0"):
                continue
            if (d / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue
        except OSError:
            continue
        out.append(int(d.name))
    return out


def _wait_for(pred, timeout: float) -> bool:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if pred():
            return True
        time.sleep(0.1)
    return False


def _records(work: Path) -> dict:
    out = {}
    for f in sorted((work / "results").glob("*/cell.json")):
        out[f.parent.name] = json.loads(f.read_text())
    return out


def run_session_fault(kind: str, work: Path, recover: bool = True) -> dict:
    """Inject ``kind`` into a two-cell session; observe; rerun without the fault (recovery)."""
    spec = dict(SESSION_FAULTS[kind])
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    seconds = spec.get("seconds", 1.0)
    # the faulted session: cell "a" is measured normally, cell "b" meets the fault
    spec.update(work=str(work), cells=[("a", "ok", 1.0), ("b", spec.get("client", "ok"), seconds)])
    t0 = time.monotonic()
    rc, tag = _session(work, spec)
    wall = round(time.monotonic() - t0, 1)
    recs = _records(work)
    time.sleep(0.3)
    left = processes_of(tag)
    for pid in left:  # never leave them behind the test either
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    b = recs.get("b", {})
    a = recs.get("a", {})
    # a finished cell's record and raw output must still be there
    lost = 0
    if a.get("status") == "ok":
        lost += not (work / "results" / "a" / "raw.json").exists()
    typed = all(
        r.get("status") in STATUSES and (r["status"] == "ok" or r.get("reason") in REASONS) for r in recs.values()
    )
    typed = typed and len(recs) == 2
    row = {
        "kind": kind,
        "status": b.get("status"),
        "reason": b.get("reason"),
        "detail": (b.get("detail") or "")[:90],
        "typed": typed,
        "session_rc": rc,
        "interrupted_json": (work / "results" / "b" / "interrupted.json").exists(),
        "processes_left": len(left),
        "results_lost": lost,
        "first_cell": a.get("status"),
        "recovery": spec.get("recovery", RECOVERY),
        "wall_s": wall,
    }
    if recover:
        # the cause gone, the rerun measures every cell; the failed attempt is archived, not lost
        clean = {"work": str(work), "cells": [("a", "ok", 0.5), ("b", "ok", 0.5)]}
        _, tag2 = _session(work, clean)
        after = _records(work)
        row["recovered"] = all(r.get("status") == "ok" for r in after.values()) and len(after) == 2
        row["processes_left"] += len(processes_of(tag2))
        if row["status"] != "ok":
            row["results_lost"] += not any((work / "results" / "b" / "attempts").glob("*/cell.json"))
    return row


def _session(work: Path, spec: dict) -> tuple[int, str]:
    tag = uuid.uuid4().hex
    spec_file = work / f"spec-{tag[:8]}.json"
    spec_file.write_text(json.dumps(spec))
    env = {**os.environ, TAG_ENV: tag, "PYTHONPATH": f"{ROOT / 'src'}:{HERE}"}
    p = subprocess.Popen(
        [sys.executable, __file__, "session", str(spec_file)],
        env=env,
        cwd=work,
        stdout=open(work / f"session-{tag[:8]}.log", "wb"),
        stderr=subprocess.STDOUT,
    )
    sig = spec.get("signal")
    if sig:
        signum = {"TERM": signal.SIGTERM, "INT": signal.SIGINT}[sig[0]]
        if sig[1] == "startup":  # the server exists and is loading
            _wait_for(lambda: (work / "results" / "_engine" / "server.log").exists(), 60)
            time.sleep(1.5)
        else:  # the second cell's client is running
            _wait_for(lambda: (work / "results" / "b" / "client.log").exists(), 120)
            time.sleep(1.0)
        p.send_signal(signum)
    try:
        rc = p.wait(timeout=180)
    except subprocess.TimeoutExpired:
        p.kill()
        rc = p.wait()
    return rc, tag


# -- disk full while writing a result --------------------------------------------------------------
_WRITER = """
import resource, signal, sys
sys.path.insert(0, sys.argv[2])
from inferlab import io
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG, as on a full disk (ENOSPC)
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
try:
    io.write_json(sys.argv[1], {"status": "ok", "pad": "x" * 100000})
except OSError as e:
    print(f"write failed: {e.__class__.__name__}: {e}")
    sys.exit(3)
"""


def run_disk_full(work: Path) -> dict:
    """A record rewritten while the disk fills: the write fails, the previous complete record
    stays under its name, and no temporary file is left that could pass for a result."""
    work = Path(work)
    rec = work / "cell" / "cell.json"
    io.write_json(rec, {"status": "failed", "reason": "cancelled"})
    before = rec.read_text()
    r = subprocess.run([sys.executable, "-c", _WRITER, str(rec), str(ROOT / "src")], capture_output=True, text=True)
    intact = rec.read_text() == before and json.loads(rec.read_text())["status"] == "failed"
    leftovers = [p.name for p in rec.parent.iterdir() if p.name != "cell.json"]
    # recovery: with space again, the write goes through
    io.write_json(rec, {"status": "ok", "pad": "x" * 100000})
    return {
        "kind": "disk full while writing a result",
        "status": "failed" if r.returncode == 3 else "?",
        "reason": "write error (EFBIG/ENOSPC), previous record intact",
        "detail": r.stdout.strip()[:90],
        "typed": r.returncode == 3 and intact and not leftovers,
        "processes_left": 0,
        "results_lost": 0 if intact else 1,
        "leftovers": leftovers,
        "recovery": "rerun the job once space is freed (atomic writes: nothing half-written under a final name)",
        "recovered": json.loads(rec.read_text())["status"] == "ok",
    }


def run(kind: str, work: Path, recover: bool = True) -> dict:
    if kind in SESSION_FAULTS:
        return run_session_fault(kind, work, recover)
    if kind == "disk full while writing a result":
        return run_disk_full(work)
    raise KeyError(kind)


def expected(kind: str) -> tuple[str, str | None]:
    """(status, reason) the faulted cell must carry."""
    spec = SESSION_FAULTS[kind]
    if "signal" in spec:
        return "failed", "cancelled"
    return ("ok", None) if spec["expect"] == "ok" else ("failed", spec["expect"])


if __name__ == "__main__":
    if sys.argv[1:2] == ["session"]:
        _session_main(sys.argv[2])
    else:
        sys.exit(__doc__)

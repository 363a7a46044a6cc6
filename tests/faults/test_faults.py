"""Issue 18's fault kinds, each injected for real (see scenarios.py): every faulted cell carries
the typed status/reason its kind must produce, no process of the run is left (found by the run's
environment tag, not by name), the finished cell's record and raw output are still there, and a
rerun without the fault measures every cell (the failed attempt archived under attempts/)."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest
import scenarios
from toy_engine import TOY_SERVER

from inferlab import server


@pytest.mark.parametrize("kind", list(scenarios.SESSION_FAULTS))
def test_session_fault_is_typed_leaves_nothing_and_recovers(kind, tmp_path):
    row = scenarios.run(kind, tmp_path)
    assert (row["status"], row["reason"]) == scenarios.expected(kind), row
    assert row["typed"], row
    assert row["processes_left"] == 0, row
    assert row["results_lost"] == 0, row
    assert row["recovered"], row
    assert row["first_cell"] in ("ok", "failed")
    if "signal" in scenarios.SESSION_FAULTS[kind]:
        signum = {"TERM": signal.SIGTERM, "INT": signal.SIGINT}[scenarios.SESSION_FAULTS[kind]["signal"][0]]
        assert row["session_rc"] == 128 + signum  # the job still ends as signalled (Snakemake/Slurm see it)
        assert row["interrupted_json"]  # what `inferlab.cells reconcile` types from after Snakemake deletes outputs
        if scenarios.SESSION_FAULTS[kind]["signal"][1] == "cell":
            assert row["first_cell"] == "ok"  # measured before the signal: kept


def test_disk_full_while_writing_keeps_the_previous_record(tmp_path):
    row = scenarios.run("disk full while writing a result", tmp_path)
    assert row["typed"] and "EFBIG" in row["detail"] or "File too large" in row["detail"], row
    assert row["results_lost"] == 0 and row["leftovers"] == [] and row["recovered"], row


def test_fault_table_has_at_least_15_kinds():
    assert len(scenarios.KINDS) >= 15


# -- a signal at each point of a server's start ------------------------------------------------------
def _toy(pidfile):
    return lambda port: [
        sys.executable,
        str(TOY_SERVER),
        "--port",
        str(port),
        "--ready-after",
        "600",
        "--pidfile",
        str(pidfile),
    ]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    st = Path(f"/proc/{pid}/stat")
    return st.exists() and st.read_text().rsplit(")", 1)[1].split()[0] != "Z"


class Stop(Exception):
    pass


def _raise(signum, frame):
    raise Stop(signum)


@pytest.mark.parametrize("where", ["spawned, not yet owned", "owned, waiting for ready"])
def test_sigterm_at_each_point_of_start_leaves_no_server(where, tmp_path):
    """SIGTERM delivered (a real signal to this process) right after the process exists but before
    anyone holds it, and while it loads: the caller's ``owned`` list holds it in both cases and
    Server.start tears the group down before the interruption goes on."""
    pidfile = tmp_path / "w.pid"
    owned: list = []

    class Probe(server.Server):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            if where == "spawned, not yet owned":
                os.kill(os.getpid(), signal.SIGTERM)  # inside the held-back section

    prev = signal.signal(signal.SIGTERM, _raise)
    if where == "owned, waiting for ready":
        signal.setitimer(signal.ITIMER_REAL, 1.5)
        prev_alarm = signal.signal(signal.SIGALRM, lambda s, f: os.kill(os.getpid(), signal.SIGTERM))
    try:
        with pytest.raises(Stop):
            Probe.start(_toy(pidfile), tmp_path / "s.log", dict(os.environ), "/health", 600, owned=owned)
    finally:
        signal.signal(signal.SIGTERM, prev)
        if where == "owned, waiting for ready":
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, prev_alarm)
    assert len(owned) == 1  # the server was owned from its first moment
    srv = owned[0]
    assert srv.stopped_s is not None and srv.drain["group_gone"] is True
    assert not _alive(srv.proc.pid)
    if pidfile.exists():  # the forked worker, if it got that far, went with the group
        assert not _alive(int(pidfile.read_text()))


def test_deferred_signal_is_delivered_once_after_the_section():
    got = []
    prev = signal.signal(signal.SIGTERM, lambda s, f: got.append(s))
    try:
        with server.deferred_signals():
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
            assert got == []  # held back
        assert got == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, prev)


def test_slurm_time_formats_and_the_time_limit_seen_while_completing():
    from inferlab.runner import _slurm_seconds

    assert _slurm_seconds("00:01:05") == 65 and _slurm_seconds("1-02:00:00") == 93600
    assert _slurm_seconds("UNLIMITED") is None and _slurm_seconds(None) is None

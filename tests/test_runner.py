"""The cell runner on real processes: a small adapter whose "engine" is a Python child process
(with a grandchild, as vLLM's EngineCore is), so exit codes, signals, timeouts and process-group
teardown are exercised for real, quickly. The real vLLM path is covered by test_workflow.py."""

import json
import os
import signal
import sys
import textwrap
import time

import pytest

from inferlab import runner
from inferlab.engines.base import Engine

CHILD = textwrap.dedent(
    """
    import json, os, subprocess, sys, time
    mode, out = sys.argv[1], sys.argv[2]
    # a grandchild in the same process group, like an engine's worker
    gc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    open(out + ".gcpid", "w").write(str(gc.pid))
    print("engine starting", flush=True)
    if mode == "ok":
        json.dump({"avg_latency": 0.5, "latencies": [0.5], "percentiles": {"50": 0.5, "99": 0.6}}, open(out, "w"))
        gc.kill()
    elif mode == "garbage":
        open(out, "w").write("{not json")
        gc.kill()
    elif mode == "crash":
        print("Traceback (most recent call last):\\nValueError: max_model_len too small", flush=True)
        gc.kill(); sys.exit(1)
    elif mode == "oomlog":
        print("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB", flush=True)
        gc.kill(); sys.exit(1)
    elif mode == "sigkill":
        os.kill(os.getpid(), 9)
    elif mode == "nooutput":
        gc.kill()
    elif mode == "hang":
        time.sleep(600)
    """
)


class FakeEngine(Engine):
    name = "vllm"  # parsed like vLLM's latency output

    def __init__(self, mode, tmp_path, available=True):
        super().__init__(None, {})
        self.mode, self.available = mode, available
        self.script = tmp_path / "engine.py"
        self.script.write_text(CHILD)

    def availability(self):
        return (True, "") if self.available else (False, "`import sgl_kernel` failed: no GPU")

    def versions(self):
        return {"vllm": "test"}

    def command(self, tool, model_path, params, engine_args, out_json):
        return [sys.executable, str(self.script), self.mode, str(out_json)]

    def parse(self, tool, raw_path, params):
        from inferlab.engines.vllm import VLLM

        return VLLM.parse(self, tool, raw_path, params)


CELL = {
    "week": "week03",
    "experiment": "decode",
    "engine": "vllm",
    "gpu": "cpu",
    "cell": "bs1",
    "tool": "vllm_bench_latency",
    "model": "tiny",
    "engine_args": {"enable_prefix_caching": False},
    "params": {"batch_size": 1, "input_len": 8, "output_len": 4},
}


def run(mode, tmp_path, **kw):
    out = tmp_path / "cell"
    rec = runner.run_cell(CELL, FakeEngine(mode, tmp_path, kw.pop("available", True)), "/m", out, **kw)
    assert json.loads((out / "cell.json").read_text()) == json.loads(json.dumps(rec, default=str))
    return rec, out


def gone(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    with open(f"/proc/{pid}/stat") as f:  # a zombie awaiting its parent counts as gone
        return f.read().rsplit(")", 1)[1].split()[0] == "Z"


def test_ok_record_has_provenance(tmp_path):
    rec, out = run("ok", tmp_path)
    assert rec["status"] == "ok" and rec["reason"] is None
    assert (out / "raw.json").exists() and "engine starting" in (out / "engine.log").read_text()
    prov = rec["provenance"]
    assert prov["command"][-2:] == ["ok", str(out / "raw.json")]
    assert prov["prefix_caching"] == "disabled"
    assert prov["host"] and "nvml" in prov["gpu"]
    assert prov["engine_versions"] == {"vllm": "test"}


@pytest.mark.parametrize(
    "mode,reason",
    [
        ("crash", "engine_error"),
        ("oomlog", "oom"),
        ("sigkill", "oom"),
        ("nooutput", "client_error"),
        ("garbage", "parse_error"),
    ],
)
def test_failures_are_typed_with_log_tail(tmp_path, mode, reason):
    rec, out = run(mode, tmp_path)
    assert rec["status"] == "failed"
    assert rec["reason"] == reason
    assert "engine starting" in rec["log_tail"]


def test_timeout_kills_the_whole_group(tmp_path):
    t0 = time.monotonic()
    rec, out = run("hang", tmp_path, timeout_s=3)
    assert rec["status"] == "failed" and rec["reason"] == "timeout"
    assert time.monotonic() - t0 < 30
    gc = int((out / "raw.json.gcpid").read_text())
    assert gone(gc), "the engine's grandchild outlived teardown"


def test_unavailable_engine_is_skipped(tmp_path):
    rec, out = run("ok", tmp_path, available=False)
    assert rec["status"] == "skipped" and rec["reason"] == "engine_unavailable"
    assert "sgl_kernel" in rec["detail"]
    assert not (out / "engine.log").exists()


def test_previous_attempt_is_kept(tmp_path):
    run("crash", tmp_path)
    rec, out = run("ok", tmp_path)
    attempts = list((out / "attempts").iterdir())
    assert len(attempts) == 1
    old = json.loads((attempts[0] / "cell.json").read_text())
    assert old["status"] == "failed" and (attempts[0] / "engine.log").exists()


def test_sigterm_writes_cancelled_record_and_cleans_up(tmp_path):
    """A scheduler's SIGTERM (scancel) reaches the runner: the group is killed, the record typed."""
    import subprocess

    script = tmp_path / "drive.py"
    script.write_text(
        textwrap.dedent(f"""
        import sys; sys.path.insert(0, {str(tmp_path)!r}); sys.path.insert(0, {os.path.dirname(__file__)!r})
        from pathlib import Path
        from test_runner import CELL, FakeEngine
        from inferlab import runner
        runner.run_cell(CELL, FakeEngine("hang", Path({str(tmp_path)!r})), "/m", Path({str(tmp_path / "cell")!r}))
    """)
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    p = subprocess.Popen([sys.executable, str(script)], env=env)
    gcfile = tmp_path / "cell" / "raw.json.gcpid"
    for _ in range(100):
        if gcfile.exists() and gcfile.read_text():
            break
        time.sleep(0.1)
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=60) == 128 + signal.SIGTERM
    rec = json.loads((tmp_path / "cell" / "cell.json").read_text())
    assert rec["status"] == "failed" and rec["reason"] == "cancelled"
    assert gone(int(gcfile.read_text()))

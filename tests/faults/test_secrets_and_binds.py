"""Secrets stay out of every output; servers stay private (issue 18, 4 and 5)."""

from __future__ import annotations

import gzip

import pandas as pd
import pytest
import shared_run as shared_run_module
from canary import CANARY, scan_for_secret

from inferlab import io, server
from inferlab.engines.sglang import SGLang
from inferlab.engines.vllm import VLLM


def test_scan_finds_the_canary_wherever_it_hides(tmp_path):
    """The scan itself can fail: a canary planted in a log, a record, a compressed Parquet column
    and a gzip trace is found in each; a clean run's files are not flagged."""
    (tmp_path / "logs" / "slurm").mkdir(parents=True)
    (tmp_path / "logs" / "slurm" / "1.log").write_text(f"export HF_TOKEN={CANARY}\n")
    io.write_json(tmp_path / "results" / "cell.json", {"provenance": {"env": {"HF_TOKEN": CANARY}}})
    io.write_parquet(tmp_path / "tables" / "t.parquet", pd.DataFrame({"x": ["a" * 100 + CANARY] * 50}))
    (tmp_path / "trace.json.gz").write_bytes(gzip.compress(f'{{"t": "{CANARY}"}}'.encode()))
    clean = tmp_path / "clean"
    clean.mkdir()
    io.write_parquet(clean / "t.parquet", pd.DataFrame({"x": ["hf_other"] * 5}))
    (clean / "server.log").write_text("HF_TOKEN is set (not shown)\n")
    hits = scan_for_secret(tmp_path)
    assert sorted(hits) == ["logs/slurm/1.log", "results/cell.json", "tables/t.parquet", "trace.json.gz"]
    assert scan_for_secret(clean) == []


@pytest.mark.engine
def test_shared_run_leaves_no_hf_token(shared_run):
    """The shared embedded-default run of weeks 4-16 ran with HF_TOKEN set to the canary: no log,
    record, raw output, Parquet, report, export or Slurm log of the run holds it."""
    if getattr(shared_run_module, "HF_TOKEN_CANARY", None) != CANARY:
        pytest.skip("tests/shared_run.py does not yet run with HF_TOKEN=canary.CANARY (HF_TOKEN_CANARY)")
    assert scan_for_secret(shared_run) == []


def test_servers_bind_loopback_only():
    """Every layout here is one node: the server, the layouts' members and the P/D proxy are all
    started on inferlab.server.HOST, which is loopback; nothing listens on all interfaces unless a
    preset's ``server_bind`` says so, and then the session generates a per-job API key
    (tests/faults/test_api_key.py); the adapters' default bind is loopback."""
    assert server.HOST == "127.0.0.1"
    for eng in (VLLM(None, {"python": "python"}), SGLang(None, {"python": "python"})):
        assert eng.server_bind == server.HOST and not server.needs_api_key(eng.server_bind)
        cmd = eng.serve_command("/m", eng.server_bind, 8123, {})
        assert cmd[cmd.index("--host") + 1] == "127.0.0.1"
    src = server.__file__.rsplit("/", 1)[0]
    for f in ("server.py", "layouts.py", "pd_proxy.py", "session.py", "scrape.py"):
        text = open(f"{src}/{f}").read()
        assert "0.0.0.0" not in text and "'::'" not in text, f

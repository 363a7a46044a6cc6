"""Integration, Week 1 on the embedded default: the real vLLM CPU server loaded by the real
`vllm bench serve`, SGLang typed as skipped, one server start per configuration; a server killed
mid-cell types that cell and the later ones; rerunning the failed cell's path measures it alone;
two sessions on one machine at once take different ports and both succeed."""

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import ROOT
from test_workflow import ENGINE_ENV, job_counts, smk

from inferlab import engines, session

pytestmark = pytest.mark.engine
VLLM = "week01/serving/vllm/cpu/default"
SGL = "week01/serving/sglang/cpu/default"


def preset(work: Path, fault=None) -> None:
    p = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    p["catalog"] = str(ROOT / "config")
    p["weeks"] = ["week01"]
    p["engines"]["vllm"]["env"] = str(ENGINE_ENV)
    p["overrides"] = {
        "week01": {
            "serving": {
                "sweep": {"request_rate": [4, "inf"]},
                "fixed": {"dataset": "sharegpt-synthetic", "num_prompts": 20},
            }
        }
    }
    p["inject_fault"] = fault or {}
    (work / "test-preset.yaml").write_text(yaml.safe_dump(p))


def processes_with(text: str) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if text in (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    out.append(int(d.name))
            except OSError:
                pass
    return out


@pytest.fixture(scope="module")
def killed(tmp_path_factory):
    """week01_all with the server's process group killed 3 s into rr4."""
    if not (ENGINE_ENV / "bin" / "vllm").exists():
        pytest.fail(f"the vLLM CPU engine is not installed at {ENGINE_ENV} (run scripts/setup.sh)")
    w = tmp_path_factory.mktemp("w1")
    preset(w, fault={f"{VLLM}/rr4": "kill_server"})
    out, _ = smk(w, "week01_all")
    return w, out


def rec(w, cell):
    return json.loads((w / "results" / cell / "cell.json").read_text())


def test_killed_server_types_that_cell_and_the_later_ones(killed):
    w, out = killed
    assert job_counts(out)["measure_week01_serving_vllm_cpu_default"] == 1  # one server job for both rates
    r4, rinf = rec(w, f"{VLLM}/rr4"), rec(w, f"{VLLM}/rrinf")
    assert (r4["status"], r4["reason"]) == ("failed", "server_died")
    assert "during this cell" in r4["detail"] and r4["injected_fault"] == "kill_server"
    assert (rinf["status"], rinf["reason"]) == ("failed", "server_died")
    assert "not measured" in rinf["detail"] and "rr4" in rinf["detail"]
    sess = json.loads((w / "results" / VLLM / "_engine" / "session.json").read_text())
    assert sess["teardown"]["group_gone"] is True
    assert processes_with(f"--port {sess['port']}") == []  # nothing left behind
    for c in ("rr4", "rrinf"):
        s = rec(w, f"{SGL}/{c}")
        assert (s["status"], s["reason"]) == ("skipped", "engine_unavailable") and s["detail"]
    t = pd.read_csv(w / "results" / "week01" / "tables" / "rate_sweep_vllm.csv", dtype=str)
    assert t["TTFT p50 (ms)"].tolist() == ["FAILED (server_died)"] * 2
    h = pd.read_csv(w / "results" / "week01" / "tables" / "head_to_head.csv", dtype=str)
    assert (h["sglang tok/s"] == "SKIPPED (engine_unavailable)").all()


def test_rerunning_the_failed_cell_measures_it_alone(killed):
    w, _ = killed
    before = (w / "results" / VLLM / "rrinf" / "cell.json").read_bytes()
    listing = subprocess.run(
        [sys.executable, "-m", "inferlab.cells", "failed", "--results", str(w / "results"), "--profile", "P"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    ).stdout
    assert f"--config cells={VLLM}/rr4" in listing, listing
    preset(w)  # the fault is gone; the cell is asked for by its path
    out, _ = smk(w, "week01_all", "--config", f"cells={VLLM}/rr4", "--forcerun", f"results/{VLLM}/rr4/cell.json")
    counts = job_counts(out)
    assert counts["measure_week01_serving_vllm_cpu_default"] == 1 and counts["extract_week"] == 1, out
    r4 = rec(w, f"{VLLM}/rr4")
    assert r4["status"] == "ok", r4["log_tail"]
    assert (w / "results" / VLLM / "rrinf" / "cell.json").read_bytes() == before  # sibling untouched
    assert list((w / "results" / VLLM / "rr4" / "attempts").iterdir())  # the failed attempt is kept
    sess = json.loads((w / "results" / VLLM / "_engine" / "session.json").read_text())
    assert sess["cells"] == ["rr4"] and list((w / "results" / VLLM / "_engine" / "attempts").iterdir())
    t = pd.read_csv(w / "results" / "week01" / "tables" / "rate_sweep_vllm.csv", dtype=str)
    assert float(t.loc[0, "TTFT p50 (ms)"]) > 0 and t.loc[1, "TTFT p50 (ms)"] == "FAILED (server_died)"
    df = pd.read_parquet(w / "results" / "week01" / "week01.parquet")
    got = df[(df.engine == "vllm") & (df.cell == "rr4") & (df.metric == "output_throughput")]
    raw = json.loads((w / "results" / VLLM / "rr4" / "raw.json").read_text())
    assert got["value"].iloc[0] == pytest.approx(raw["output_throughput"])


def test_two_sessions_at_once_take_different_ports(tmp_path, tiny):
    model, data = tiny
    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())["engines"]["vllm"]
    cfg["env"] = str(ENGINE_ENV)
    eng = engines.from_setup("vllm", cfg, {"bin": "vllm", "python": "python", "probe": "vllm"}, str(tmp_path / "cc"))
    results = {}

    def run(i):
        cell = {
            "week": "week01",
            "experiment": f"s{i}",
            "engine": "vllm",
            "gpu": "cpu",
            "cell": "rrinf",
            "tool": "bench_serving",
            "model": "tiny",
            "params": {"request_rate": "inf", "num_prompts": 10},
        }
        results[i] = session.run_session(
            [cell],
            [tmp_path / f"s{i}" / "rrinf"],
            eng,
            str(model),
            str(data),
            tmp_path / f"s{i}" / "_engine",
            {"max_model_len": 2048},
            ROOT,
            ready_timeout_s=600,
            cell_timeout_s=600,
        )

    ts = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert results[0]["port"] != results[1]["port"]
    for i in range(2):
        r = json.loads((tmp_path / f"s{i}" / "rrinf" / "cell.json").read_text())
        assert r["status"] == "ok", r["log_tail"]
        assert r["provenance"]["server_port"] == results[i]["port"]


SGL_CLIENT = Path(os.environ.get("INFERLAB_SGLANG_CLIENT_ENV", ROOT / ".venv-sglang-client"))


def test_sglang_client_for_real_against_the_cpu_vllm_server(tmp_path, tiny):
    """SGLang's own load client (python -m sglang.benchmark.serving, pure Python) against the real
    vLLM CPU server: its appended-JSONL output parsed into the same schema as vLLM's client."""
    from inferlab.server import HOST, Server

    if not (SGL_CLIENT / "bin" / "python").exists():
        pytest.fail(f"SGLang's client environment is not installed at {SGL_CLIENT} (run scripts/setup.sh)")
    model, data = tiny
    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())["engines"]
    vllm = engines.from_setup("vllm", {**cfg["vllm"], "env": str(ENGINE_ENV)}, {"bin": "vllm", "python": "python"})
    sgl = engines.from_setup(
        "sglang", {"env": str(tmp_path / "no-server"), "client_env": str(SGL_CLIENT)}, {"python": "python"}
    )
    out = tmp_path / "serving.jsonl"
    params = {"num_prompts": 10, "request_rate": "inf", "client_backend": "vllm"}
    with Server.start(
        lambda p: vllm.serve_command(str(model), HOST, p, {"max_model_len": 2048}),
        tmp_path / "server.log",
        vllm.environ(tmp_path),
        "/health",
        600,
    ) as srv:
        for _ in range(2):  # the client appends one line per run to the same file
            cmd = sgl.client_command(srv.base_url, str(model), params, str(data), out)
            r = subprocess.run(cmd, capture_output=True, text=True, env=sgl.client_environ(), timeout=600)
            assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    lines = out.read_text().splitlines()
    assert len(lines) == 2 and "Infinity" in lines[-1]  # request_rate inf is written as a bare Infinity
    rows = {x["metric"]: x for x in sgl.parse("bench_serving", out, params)}
    last = json.loads(lines[-1])
    assert rows["completed"]["value"] == last["completed"] == 10 and rows["failed"]["value"] == 0
    assert rows["ttft_p50"]["value"] == pytest.approx(last["median_ttft_ms"]) and rows["ttft_p50"]["value"] > 0
    assert "sglang.benchmark.serving" in rows["itl_p50"]["definition"]

"""Integration, Week 2 (+ the Week 1 rate=inf cell it joins) on the embedded default: offline
throughput and batch latency through the real CPU engine, the online-vs-offline table computed
from both weeks' Parquet, and a real profiler trace of the server with its kernel-time breakdown."""

import json

import pandas as pd
import pytest
import yaml
from conftest import ROOT
from test_workflow import ENGINE_ENV, smk

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    if not (ENGINE_ENV / "bin" / "vllm").exists():
        pytest.fail(f"the vLLM CPU engine is not installed at {ENGINE_ENV} (run scripts/setup.sh)")
    w = tmp_path_factory.mktemp("w2")
    p = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    p["catalog"] = str(ROOT / "config")
    p["weeks"] = ["week01", "week02"]
    p["engines"]["vllm"]["env"] = str(ENGINE_ENV)
    p["overrides"] = {
        "week01": {
            "serving": {
                "sweep": {"request_rate": ["inf"]},
                "fixed": {"dataset": "sharegpt-synthetic", "num_prompts": 20},
                "engines": ["vllm"],
            }
        },
        "week02": {
            "offline": {"sweep": {"num_prompts": [30]}, "fixed": {"dataset": "sharegpt-synthetic"}},
            "batch_latency": {"sweep": {"batch_size": [1, 4]}, "fixed": {"num_iters": 1, "num_iters_warmup": 1}},
            "profile": {"fixed": {"dataset": "sharegpt-synthetic", "num_prompts": 3}},
        },
    }
    (w / "test-preset.yaml").write_text(yaml.safe_dump(p))
    smk(w, "all")
    return w


def test_offline_and_batch_tables(work):
    res = work / "results" / "week02"
    raw = json.loads((res / "offline/vllm/cpu/default/np30/raw.json").read_text())
    t = pd.read_csv(res / "tables" / "offline_throughput.csv", dtype=str)
    assert float(t.loc[0, "Throughput (tok/s, prompt + generated)"].replace(",", "")) == pytest.approx(
        raw["tokens_per_second"], abs=1
    )
    rec = json.loads((res / "offline/vllm/cpu/default/np30/cell.json").read_text())
    assert rec["measured_by"] == "driver" and rec["telemetry"]["telemetry"].startswith("unavailable")
    spec = json.loads((res / "offline/vllm/cpu/default/_engine/driver-spec.json").read_text())
    assert spec["cells"][0]["dataset_path"].endswith(".json") and spec["cells"][0]["params"]["num_prompts"] == 30
    b = pd.read_csv(res / "tables" / "batch_latency.csv", dtype=str)
    assert b.columns.tolist() == ["GPU / batch", "bs=1", "bs=4"] and float(b.loc[0, "bs=4"]) > 0


def test_online_vs_offline_joins_both_weeks(work):
    w1 = pd.read_parquet(work / "results" / "week01" / "week01.parquet")
    w2 = pd.read_parquet(work / "results" / "week02" / "week02.parquet")
    on = w1[(w1.metric == "total_token_throughput")]["value"].iloc[0]
    off = w2[(w2.metric == "offline_total_token_throughput")]["value"].iloc[0]
    t = pd.read_csv(work / "results" / "week02" / "tables" / "online_vs_offline.csv", dtype=str)
    assert t.loc[0, "Offline / online"] == f"{off / on:.2f}x"


def test_profile_trace_kept_and_broken_down(work):
    cell = work / "results" / "week02" / "profile" / "vllm" / "cpu" / "default" / "rrinf"
    rec = json.loads((cell / "cell.json").read_text())
    assert rec["status"] == "ok", rec["log_tail"]
    assert "--profile" in rec["provenance"]["command"]
    assert any("profiler-config" in a for a in rec["provenance"]["server_command"])
    traces = [cell / t for t in rec["profile"]["traces"]]
    assert traces and all(t.exists() and t.stat().st_size > 0 for t in traces)
    shares = rec["profile"]["share_pct"]
    assert sum(shares.values()) == pytest.approx(100) and shares["gemm"] > 0 and shares["attention"] > 0
    t = pd.read_csv(work / "results" / "week02" / "tables" / "kernel_breakdown.csv", dtype=str)
    assert float(t.loc[0, "gemm (%)"]) == pytest.approx(shares["gemm"], abs=0.06)
    assert (work / "results" / "week02" / "figures" / "kernel_breakdown.png").read_bytes()[:4] == b"\x89PNG"


def test_html_report_has_every_figure_captioned_by_week(work):
    from test_workflow import smk as run

    run(work, "--report", str(work / "report.html"))
    html = (work / "report.html").read_text(errors="replace")
    from inferlab import report

    for week in ("week01", "week02"):
        assert week in html
        doc = yaml.safe_load((ROOT / "config" / "weeks" / f"{week}.yaml").read_text())
        for name, caption in report.captions(doc).items():  # written once, in the week file
            assert name in html and caption[:40] in html, (week, name)

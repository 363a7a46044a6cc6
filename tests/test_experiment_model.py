"""Integration, the experiment model on the embedded default: one engine start per configuration,
not one per cell (here: repeats and a warm-up against one APC-on server; across configurations:
the shared run's Week 5, APC on and off, one job each); the prefix cache is reset between cells;
server-side rows (/metrics deltas, gauges, the start-up log) reach the Parquet; repeats are separate
records; a declared restart between cells; a configuration whose layout needs more devices than the
preset gives is typed skipped without starting anything. The P/D layout through the workflow is
asserted on the shared run (tests/test_week16.py): this module's own run holds only what no week
file exercises, to keep CI short (3 engine starts)."""

import json

import pandas as pd
import pytest
import yaml
from conftest import ROOT
from test_workflow import ENGINE_ENV, job_counts, smk

pytestmark = pytest.mark.engine

WEEK = """
week: week05
title: experiment-model plumbing (test)
experiments:
  apc:
    tool: bench_serving
    engines: [vllm]
    server_sweep: {enable_prefix_caching: [true]}
    sweep: {request_rate: [inf]}
    fixed: {dataset: sharegpt-synthetic, num_prompts: 6, seed: 0, ignore_eos: true}
    engine_args: {max_model_len: 2048}
    warmup_requests: 1
    repeats: 2
  restart:
    tool: bench_serving
    engines: [vllm]
    sweep: {request_rate: [inf]}
    fixed: {dataset: sharegpt-synthetic, num_prompts: 3, seed: 0, ignore_eos: true}
    engine_args: {max_model_len: 2048}
    repeats: 2
    restart_between_cells: true
  tp:
    tool: vllm_bench_latency
    engines: [vllm]
    server_sweep: {tensor_parallel_size: [4]}
    sweep: {batch_size: [1]}
    fixed: {input_len: 16, output_len: 4, num_iters: 1, num_iters_warmup: 0}
"""


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    if not (ENGINE_ENV / "bin" / "vllm").exists():
        pytest.fail(f"the vLLM CPU engine is not installed at {ENGINE_ENV} (run scripts/setup.sh)")
    w = tmp_path_factory.mktemp("model")
    import shutil

    shutil.copytree(ROOT / "config", w / "config")
    (w / "config" / "weeks" / "week05.yaml").write_text(WEEK)
    p = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    p["catalog"] = str(w / "config")
    p["weeks"] = ["week05"]
    p["engines"]["vllm"]["env"] = str(ENGINE_ENV)
    p["overrides"] = {}
    (w / "test-preset.yaml").write_text(yaml.safe_dump(p))
    targets = [f"results/week05/apc/vllm/cpu/apc/rrinf-r{r}/cell.json" for r in (1, 2)] + [
        "results/week05/tp/vllm/cpu/tp4/bs1/cell.json",
        "results/week05/restart/vllm/cpu/default/rrinf-r1/cell.json",
        "results/week05/restart/vllm/cpu/default/rrinf-r2/cell.json",
    ]
    out, _ = smk(w, *targets)
    return w, out


def rec(w, path):
    return json.loads((w / "results" / "week05" / path / "cell.json").read_text())


@pytest.mark.engine
def test_one_engine_start_per_server_configuration_across_configurations(shared_run):
    """The shared run's Week 5: APC on and APC off are one job (one engine start) each, every cell of a
    configuration measured against its one server, and the server reports the setting it was given."""
    counts = job_counts((shared_run / "shared-run.log").read_text())
    assert counts["measure_week05_apc_vllm_cpu_apc"] == 1 and counts["measure_week05_apc_vllm_cpu_noapc"] == 1
    for conf, apc in (("apc", True), ("noapc", False)):
        sess = json.loads((shared_run / "results/week05/apc/vllm/cpu" / conf / "_engine/session.json").read_text())
        cells = sorted(p.parent.name for p in (shared_run / "results/week05/apc/vllm/cpu" / conf).glob("*/cell.json"))
        assert sorted(sess["cells"]) == cells and len(cells) >= 2 and sess["status"] == "done"
        assert sess["cache_config"]["enable_prefix_caching"] is apc
        assert ("--enable-prefix-caching" if apc else "--no-enable-prefix-caching") in sess["server_command"]


def test_one_engine_start_per_server_configuration(work):
    w, out = work
    counts = job_counts(out)
    assert counts["measure_week05_apc_vllm_cpu_apc"] == 1
    for conf, apc in (("apc", True),):
        sess = json.loads((w / "results/week05/apc/vllm/cpu" / conf / "_engine/session.json").read_text())
        assert sess["cells"] == ["rrinf-r1", "rrinf-r2"] and sess["status"] == "done"
        assert sess["cache_config"]["enable_prefix_caching"] is apc  # what the server itself reports
        assert ("--enable-prefix-caching" if apc else "--no-enable-prefix-caching") in sess["server_command"]
        assert sess["startup"]["kv_cache_capacity"] > 0 and sess["gauges"]["scrapes"] > 0
        for r in (1, 2):
            c = rec(w, f"apc/vllm/cpu/{conf}/rrinf-r{r}")
            assert c["status"] == "ok", c["log_tail"]
            assert c["repeat"] == r and c["server_axes"] == {"enable_prefix_caching": apc}
            assert c["cache_reset"]["ok"] is True and c["cache_reset"]["http_status"] == 200
            assert "--num-warmups" in c["provenance"]["command"]
            m = {x["metric"]: x["value"] for x in c["server_metrics"]}
            assert m["server_requests"] == 6 + 1  # the measured prompts and the warm-up request
            assert (m["prefix_cache_queries"] > 0) is apc
            # what was asked and what ran, by the server's own count (max_tokens vs generated)
            ln = c["lengths"]
            assert ln["requested"]["requests"] == ln["achieved"]["requests"] == 7
            assert ln["achieved"]["output_tokens"] == ln["requested"]["output_tokens"] > 0  # EOS ignored


def test_reset_makes_repeats_see_the_same_cache(work):
    """With the cache emptied before each cell, a repeat does not measure its predecessor's hits."""
    w, _ = work
    rates = [
        {x["metric"]: x["value"] for x in rec(w, f"apc/vllm/cpu/apc/rrinf-r{r}")["server_metrics"]}[
            "prefix_cache_hit_rate"
        ]
        for r in (1, 2)
    ]
    assert rates[0] == pytest.approx(rates[1])


def test_layout_needing_two_devices_is_typed_skipped(work):
    w, out = work
    c = rec(w, "tp/vllm/cpu/tp4/bs1")
    assert (c["status"], c["reason"]) == ("skipped", "resources")
    assert c["detail"].startswith("needs 4 devices")
    conf = json.loads((w / "results/week05/tp/vllm/cpu/tp4/_engine/configuration.json").read_text())
    assert conf["measured_by"] == "none"
    assert not (w / "results/week05/tp/vllm/cpu/tp4/_engine/engine.log").exists()  # nothing started


def test_extracted_rows_carry_axes_and_server_metrics(work):
    from inferlab import extract

    w, _ = work
    recs = sorted((w / "results" / "week05").glob("*/vllm/cpu/*/*/cell.json"))
    cfg = yaml.safe_load((ROOT / "config" / "models.yaml").read_text())["models"]
    gpus = yaml.safe_load((ROOT / "config" / "gpus.yaml").read_text())["gpus"]
    extract.extract_week(recs, cfg, gpus, w / "rows.parquet")
    df = pd.read_parquet(w / "rows.parquet")
    assert set(df["configuration"]) == {"apc", "tp4", "default"}
    hit = df[(df.metric == "prefix_cache_hit_rate") & (df.configuration == "apc")]
    assert set(hit["param_enable_prefix_caching"]) == {True} and len(hit) == 2  # one per repeat
    assert set(df[df.configuration == "tp4"]["status"]) == {"skipped"}
    assert {"kv_cache_capacity", "running_requests_max"} <= set(df["metric"])
    assert sorted(df[df.configuration == "apc"]["repeat"].unique().tolist()) == [1, 2]
    assert set(df[df.configuration == "apc"]["lengths"]) == {"ok"}


def test_declared_restart_between_cells(work):
    w, _ = work
    sess = json.loads((w / "results/week05/restart/vllm/cpu/default/_engine/session.json").read_text())
    assert len(sess["restarts"]) == 1 and sess["restarts"][0]["before"] == "rrinf-r2"
    assert sess["restarts"][0]["teardown"]["group_gone"] is True
    r1, r2 = rec(w, "restart/vllm/cpu/default/rrinf-r1"), rec(w, "restart/vllm/cpu/default/rrinf-r2")
    assert r1["status"] == r2["status"] == "ok", r2["log_tail"]
    assert "restart" not in r1 and r2["restart"]["ready_s"] > 0
    assert r2["provenance"]["server_port"] == r2["restart"]["port"]  # measured against the new server
    log = (w / "results/week05/restart/vllm/cpu/default/_engine/server.log").read_text()
    assert log.count("$ ") == 2  # two starts, one log

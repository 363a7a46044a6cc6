"""Week 7 (continuous vs static batching): on the one shared embedded-default run, HF static batches
of 16 and vLLM (max_num_seqs 16) on the same variable (ShareGPT) and uniform (random 256/32) requests,
the static padding waste and occupancy, and vLLM's running requests sampled from /metrics."""

import csv
import json

import pandas as pd
import pytest

from inferlab import theory

W = "week07"


def _raw(run, path):
    return json.loads((run / "results" / W / path / "raw.json").read_text())


@pytest.mark.engine
def test_static_and_continuous_same_requests(shared_run):
    for ds in ("sharegpt", "random"):
        hf = _raw(shared_run, f"static/hf/cpu/default/dataset_name{ds}")
        v = _raw(shared_run, f"continuous/vllm/cpu/default/dataset_name{ds}")
        assert v["lengths"] == hf["lengths"], ds
        assert hf["padding_waste"] == pytest.approx(theory.batches_padding_waste(hf["lengths"]["output"], 16))
    uni = _raw(shared_run, "static/hf/cpu/default/dataset_namerandom")
    assert set(uni["lengths"]["output"]) == {32} and uni["padding_waste"] == pytest.approx(0.0)
    var = _raw(shared_run, "static/hf/cpu/default/dataset_namesharegpt")
    assert var["padding_waste"] > 0.1
    # static occupancy: rows still producing requested tokens at each step of the first batch
    first = [o["running"] for o in var["occupancy"] if o["batch"] == 0]
    assert first == theory.static_occupancy(var["lengths"]["output"][:16])


@pytest.mark.engine
def test_vllm_occupancy_sampled_from_metrics(shared_run):
    g = shared_run / "results" / W / "occupancy/vllm/cpu/default/_engine/gauges.csv"
    rows = [r for r in csv.DictReader(g.open()) if r["name"] == "vllm:num_requests_running"]
    vals = [float(r["value"]) for r in rows]
    assert len(vals) >= 3 and max(vals) <= 16 and max(vals) > 1


@pytest.mark.engine
def test_week07_tables(shared_run):
    t = shared_run / "results" / W / "tables"
    tp = pd.read_csv(t / "throughput_uniform_vs_variable.csv", dtype=str)
    assert len(tp) == 2 and all(float(x.replace(",", "")) > 0 for x in tp.iloc[:, 2])
    pw = pd.read_csv(t / "padding_waste.csv", dtype=str)
    assert (pw["Status"] == "ok").all()


def test_gauge_series_starts_at_the_load(tmp_path):
    from inferlab.report.custom_figures import gauge_series

    f = tmp_path / "gauges.csv"
    f.write_text(
        "t,name,value\n10.0,vllm:num_requests_running,0.0\n10.5,vllm:num_requests_waiting,3.0\n"
        "10.5,vllm:num_requests_running,16.0\n11.0,vllm:num_requests_running,9.0\n"
    )
    assert gauge_series(f) == [(0.0, 16.0), (0.5, 9.0)]
    f.write_text("t,name,value\n1.0,vllm:num_requests_running,0.0\n")
    assert gauge_series(f) == []


def test_week07_plan_on_cpu(catalog):
    from conftest import load_preset

    from inferlab import matrix

    cfg = load_preset(catalog, weeks=["week07"])
    confs = {(c.experiment, c.engine, c.configuration) for c in matrix.expand_week(cfg, "week07")}
    assert confs == {
        ("static", "hf", "default"),
        ("continuous", "vllm", "default"),
        ("occupancy", "vllm", "default"),
    }

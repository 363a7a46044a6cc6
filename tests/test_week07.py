"""Week 7 (continuous vs static batching): on the one shared embedded-default run, HF static batches
of 16 and vLLM (max_num_seqs 16) on the same variable (ShareGPT; the course's output-length list,
vLLM's custom dataset) and uniform (random 256/32) requests, the static padding waste and occupancy,
and vLLM's running requests sampled from /metrics."""

import csv
import json
import random
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import ROOT

from inferlab import theory

W = "week07"


def _raw(run, path):
    return json.loads((run / "results" / W / path / "raw.json").read_text())


@pytest.mark.engine
def test_static_and_continuous_same_requests(shared_run):
    for ds in ("sharegpt", "random"):
        hf = _raw(shared_run, f"static/hf/cpu/default/ds{ds}")
        v = _raw(shared_run, f"continuous/vllm/cpu/default/ds{ds}")
        assert v["lengths"] == hf["lengths"], ds
        assert hf["padding_waste"] == pytest.approx(theory.batches_padding_waste(hf["lengths"]["output"], 16))
    uni = _raw(shared_run, "static/hf/cpu/default/dsrandom")
    assert set(uni["lengths"]["output"]) == {32} and uni["padding_waste"] == pytest.approx(0.0)
    var = _raw(shared_run, "static/hf/cpu/default/dssharegpt")
    assert var["padding_waste"] > 0.1
    # static occupancy: rows still producing requested tokens at each step of the first batch
    first = [o["running"] for o in var["occupancy"] if o["batch"] == 0]
    assert first == theory.static_occupancy(var["lengths"]["output"][:16])


def _rec(run, path):
    return json.loads((run / "results" / W / path / "cell.json").read_text())


@pytest.mark.engine
def test_output_length_list_ran_exactly_as_declared(shared_run):
    """HF and vLLM sampled the same prompts and output lengths from the catalog's list, and each ran
    what it requested (the lengths check); the static padding waste is the theory's for that list."""
    from inferlab import download
    from inferlab.records import check_lengths

    hf_path = "static_lengths/hf/cpu/default/dscustom"
    v_path = "continuous_lengths/vllm/cpu/default/dscustom"
    hf, v = _raw(shared_run, hf_path), _raw(shared_run, v_path)
    hf_rec, v_rec = _rec(shared_run, hf_path), _rec(shared_run, v_path)
    assert hf_rec["status"] == "ok" and v_rec["status"] == "ok", (hf_rec.get("detail"), v_rec.get("detail"))
    ds = hf_rec["params"]["dataset"]
    assert v_rec["params"]["dataset"] == ds and hf_rec["params"]["num_prompts"] == v_rec["params"]["num_prompts"]
    spec = yaml.safe_load((ROOT / "config" / "datasets.yaml").read_text())["datasets"][ds]
    assert spec["format"] == "custom" and not download.lengths_spec_errors(spec)
    n = hf_rec["params"]["num_prompts"]
    assert v["lengths"] == hf["lengths"] and len(hf["lengths"]["output"]) == n  # the same requests
    assert set(hf["lengths"]["output"]) <= set(spec["output_lens"]) and len(set(hf["lengths"]["output"])) > 1
    # the sample is the built file's lines, as vLLM's CustomDataset draws them (random.seed(seed), a
    # shuffle, the first num_prompts): their declared output_tokens, in order
    cache = Path(yaml.safe_load((shared_run / "test-preset.yaml").read_text())["cache"])
    lines = (cache / "datasets" / "built" / ds / spec["filename"]).read_text().splitlines()
    declared = [json.loads(x)["output_tokens"] for x in lines]
    assert declared == [spec["output_lens"][i % len(spec["output_lens"])] for i in range(spec["prompts"])]
    random.seed(hf_rec["params"]["seed"])
    random.shuffle(declared)
    assert hf["lengths"]["output"] == declared[:n]
    assert set(hf["lengths"]["prompt"]) == {spec["input_len"]}
    # requested = achieved, on both sides: the raw counts (the HF parser fails a cell where they
    # differ) and the vLLM record's lengths check (the Parquet's `lengths` column)
    for raw in (hf, v):
        assert raw["achieved"]["output_tokens"] == raw["requested"]["output_tokens"] == sum(hf["lengths"]["output"])
        assert raw["achieved"]["prompt_tokens"] == raw["requested"]["prompt_tokens"]
        assert raw["achieved"]["requests"] == raw["requested"]["requests"] == n
    assert check_lengths(v_rec["lengths"]) == "ok" and check_lengths(hf_rec["lengths"]) == "ok"
    assert hf_rec["lengths"]["achieved"] == v_rec["lengths"]["achieved"]  # recorded achieved lengths equal
    assert hf["padding_waste"] == pytest.approx(theory.batches_padding_waste(hf["lengths"]["output"], 16))
    assert hf["padding_waste"] > 0.1


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
    assert len(tp) == 3 and all(float(x.replace(",", "")) > 0 for x in tp.iloc[:, 2])
    assert set(tp["Workload"]) == {"sharegpt", "random", "custom"}
    pw = pd.read_csv(t / "padding_waste.csv", dtype=str)
    assert (pw["Status"] == "ok").all() and set(pw["Workload"]) == {"sharegpt", "random", "custom"}


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
        ("static_lengths", "hf", "default"),
        ("continuous_lengths", "vllm", "default"),
        ("occupancy", "vllm", "default"),
    }
    # the output-length list: the same requests on both sides, from the catalog's custom dataset
    cells = {c.experiment: c for c in matrix.expand_week(cfg, "week07")}
    hf, v = cells["static_lengths"], cells["continuous_lengths"]
    keys = ("dataset_name", "dataset", "num_prompts", "seed", "skip_chat_template")
    assert {k: hf.params[k] for k in keys} == {k: v.params[k] for k in keys}
    assert hf.params["dataset_name"] == "custom" and cfg.datasets[hf.params["dataset"]]["format"] == "custom"

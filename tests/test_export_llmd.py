"""Export to the llm-d Benchmark Report format v0.2 (inferlab.export.llmd), on the real H100 data kept
in docs/validation: Week 1 serving (vllm bench serve) and Week 3 decode (vllm bench latency)."""

import json
import math

import jsonschema
import pandas as pd
import pytest
import yaml
from conftest import ROOT

from inferlab.export import llmd

W1 = ROOT / "docs" / "validation" / "h100-week01"
W3 = ROOT / "docs" / "validation" / "h100-week03"

# ---------------------------------------------------------------------------------------------------
# JSON Schema of the part of BenchmarkReportV02 an export uses, written from llm-d-benchmark's
# pydantic model (llmdbenchmark/analysis/benchmark_report/schema_v0_2.py, schema_v0_2_components.py,
# base.py at 8bc9f1ddd873a24f1657d6cca2e0d0fb6947dd36): required fields, extra="forbid" (closed
# objects) except the generic component and observability, the Units allowed per field, enums and
# bounds. llm-d's package is not on PyPI; test_validates_against_llmd_model uses it where installed.
# ---------------------------------------------------------------------------------------------------
TIME, GEN_LATENCY, GEN_TPUT, REQ_TPUT = ["ms", "s"], ["ms/token", "s/token"], ["tokens/s"], ["queries/s"]
PORTION, QUANTITY, POWER = ["percent", "fraction"], ["count", "pixels"], ["Watts"]
NUM = {"type": "number"}
STAT_FIELDS = ("mean", "mode", "stddev", "min", "p0p1", "p1", "p5", "p10", "p25", "p50", "p75", "p90", "p95")
STAT_FIELDS += ("p99", "p99p9", "max")


def closed(required=(), **props):
    return {"type": "object", "required": list(required), "properties": props, "additionalProperties": False}


def stats(units):
    s = closed(["units", "mean"], **{f: NUM for f in STAT_FIELDS})
    s["properties"]["units"] = {"enum": units}
    s["properties"]["stddev"] = {"type": "number", "minimum": 0}
    return s


def opt_str():
    return {"type": ["string", "null"]}


SEQ_LEN = closed(
    ["distribution", "value"],
    distribution={"enum": ["fixed", "gaussian", "uniform", "other"]},
    value={"type": "number", "minimum": 0},
    std_dev={"type": "number", "minimum": 0},
    min={"type": "integer", "minimum": 0},
    max={"type": "integer", "minimum": 1},
)
META = closed(
    ["label", "cfg_id"], schema_version={"type": "string"}, label={"type": "string"}, cfg_id={"type": "string"}
)
META["properties"]["description"] = opt_str()
NATIVE = closed(args={"type": ["object", "null"]}, envars={"type": ["object", "null"]}, config={})
INFERENCE_ENGINE = closed(
    ["kind", "tool", "tool_version", "role", "replicas", "model", "accelerator"],
    kind={"const": "inference_engine"},
    tool={"type": "string"},
    tool_version={"type": "string"},
    role={"enum": ["replica", "prefill", "decode"]},
    replicas={"type": "integer", "minimum": 1},
    model=closed(["name"], name={"type": "string"}),
    accelerator=closed(
        ["model", "count", "parallelism"],
        model={"type": "string"},
        count={"type": "integer", "minimum": 0},
        parallelism=closed(
            **{k: {"type": "integer", "minimum": 0} for k in ("tp", "dp", "dp_local", "workers")},
            **{k: {"type": "integer", "minimum": 1} for k in ("ep", "pp")},
        ),
    ),
)
GENERIC = {
    "type": "object",
    "required": ["kind", "tool", "tool_version"],
    "properties": {"kind": {"const": "generic"}, "tool": {"type": "string"}, "tool_version": {"type": "string"}},
}
COMPONENT = closed(["metadata", "standardized", "native"], metadata=META, native=NATIVE)
COMPONENT["properties"]["standardized"] = {"oneOf": [INFERENCE_ENGINE, GENERIC]}
LOAD = closed(
    ["metadata", "standardized", "native"],
    metadata=closed(schema_version={"type": "string"}, cfg_id=opt_str(), description=opt_str()),
    standardized=closed(
        ["tool", "tool_version", "source", "input_seq_len"],
        tool={"type": "string"},
        tool_version={"type": "string"},
        parallelism={"type": "integer", "minimum": 1},
        source={"enum": ["random", "sampled", "unknown"]},
        stage={"type": "integer", "minimum": 0},
        input_seq_len=SEQ_LEN,
        output_seq_len=SEQ_LEN,
        rate_qps={"type": "number", "exclusiveMinimum": 0},
        concurrency={"type": "integer", "minimum": 1},
    ),
    native=NATIVE,
)
AGGREGATE = closed(
    requests=closed(
        ["total"],
        total={"type": "integer", "minimum": 0},
        failures={"type": "integer", "minimum": 0},
        incomplete={"type": "integer", "minimum": 0},
        input_length=stats(QUANTITY),
        output_length=stats(QUANTITY),
    ),
    latency=closed(
        time_to_first_token=stats(TIME),
        normalized_time_per_output_token=stats(GEN_LATENCY),
        time_per_output_token=stats(GEN_LATENCY),
        inter_token_latency=stats(GEN_LATENCY),
        request_latency=stats(TIME),
    ),
    throughput=closed(
        input_token_rate=stats(GEN_TPUT),
        output_token_rate=stats(GEN_TPUT),
        total_token_rate=stats(GEN_TPUT),
        request_rate=stats(REQ_TPUT),
    ),
)
OBSERVABILITY = {
    "type": "object",
    "properties": {
        "components": {
            "type": "array",
            "items": closed(
                ["component_label"],
                component_label={"type": "string"},
                replica_id=opt_str(),
                aggregate=closed(
                    gpu_utilization=stats(PORTION),
                    gpu_memory_usage=stats(["MiB", "GiB"]),
                    power_consumption=stats(POWER),
                ),
            ),
        }
    },
}
COMPONENT_HEALTH = closed(
    ["component_label"],
    component_label={"type": "string"},
    total_restarts={"type": "integer", "minimum": 0},
    failed_replicas={"type": "integer", "minimum": 0},
    replica_health={
        "type": "array",
        "items": closed(
            ["replica_id"],
            replica_id={"type": "string"},
            restarts={"type": "integer", "minimum": 0},
            healthy={"type": "boolean"},
            logs=opt_str(),
        ),
    },
)
REPORT_SCHEMA = closed(
    ["version", "run", "results"],
    version={"const": "0.2"},
    run=closed(
        ["uid"],
        uid={"type": "string"},
        eid=opt_str(),
        cid=opt_str(),
        pid=opt_str(),
        time=closed(start={"type": "string", "format": "date-time"}, end={"type": "string"}, duration=opt_str()),
        user=opt_str(),
        description=opt_str(),
        keywords={"type": "array", "items": {"type": "string"}},
    ),
    scenario=closed(stack={"type": "array", "items": COMPONENT}, load=LOAD),
    results=closed(
        request_performance=closed(aggregate=AGGREGATE),
        observability=OBSERVABILITY,
        profiling={},
        component_health={"type": "array", "items": COMPONENT_HEALTH},
    ),
)


jsonschema.Draft202012Validator.check_schema(REPORT_SCHEMA)
VALIDATOR = jsonschema.Draft202012Validator(REPORT_SCHEMA)


def check(report: dict) -> None:
    VALIDATOR.validate(report)
    assert report["run"]["time"].get("duration", "PT").startswith("PT")


def cell_rows(parquet, **where):
    df = pd.read_parquet(parquet)
    for k, v in where.items():
        df = df[df[k] == v]
    assert not df.empty
    return df


def by_metric(rows):
    return rows.set_index("metric")["value"]


@pytest.fixture(scope="module")
def rr4():
    rows = cell_rows(W1 / "week01.parquet", engine="vllm", cell="rr4")
    record = json.loads((W1 / "cells" / "vllm_rr4.cell.json").read_text())
    return rows, record


def test_serving_cell_week01_vllm_rr4(rr4):
    rows, record = rr4
    rep = llmd.cell_report(rows, record)
    check(rep)
    v = by_metric(rows)
    raw = json.loads((W1 / "cells" / "vllm_rr4.raw.json").read_text())  # vllm bench serve's own JSON
    lat = rep["results"]["request_performance"]["aggregate"]["latency"]
    ttft = lat["time_to_first_token"]
    # TTFT stays in ms (v0.2 accepts ms; llm-d's own vllm importer keeps ms): the Parquet's number
    assert ttft["units"] == "ms"
    assert ttft["p50"] == pytest.approx(v["ttft_p50"]) == pytest.approx(raw["median_ttft_ms"])
    assert ttft["p50"] == pytest.approx(26.2154, abs=1e-4)
    assert ttft["mean"] == v["ttft_mean"] and ttft["p90"] == v["ttft_p90"] and ttft["p99"] == v["ttft_p99"]
    assert set(ttft) == {"units", "mean", "p50", "p90", "p99"}
    # TPOT and ITL: the same numbers, labelled per output token
    assert lat["time_per_output_token"]["units"] == lat["inter_token_latency"]["units"] == "ms/token"
    assert lat["time_per_output_token"]["p99"] == pytest.approx(raw["p99_tpot_ms"])
    assert lat["inter_token_latency"]["mean"] == pytest.approx(raw["mean_itl_ms"])
    assert lat["request_latency"] == {
        "units": "ms",
        **{s: pytest.approx(v[f"e2el_{s}"]) for s in ("mean", "p50", "p90", "p99")},
    }
    tput = rep["results"]["request_performance"]["aggregate"]["throughput"]
    assert tput["output_token_rate"] == {"units": "tokens/s", "mean": pytest.approx(raw["output_throughput"])}
    assert tput["total_token_rate"]["mean"] == pytest.approx(v["total_token_throughput"])
    assert tput["request_rate"] == {"units": "queries/s", "mean": pytest.approx(raw["request_throughput"])}
    req = rep["results"]["request_performance"]["aggregate"]["requests"]
    assert req["total"] == 150 == raw["num_prompts"] and req["failures"] == 0
    assert req["input_length"] == {"units": "count", "mean": pytest.approx(34887 / 150)}
    assert req["output_length"]["mean"] == pytest.approx(raw["total_output_tokens"] / raw["completed"])
    # NVML telemetry under observability, on the engine component
    obs = rep["results"]["observability"]["components"][0]
    assert obs["component_label"] == rep["scenario"]["stack"][0]["metadata"]["label"]
    assert obs["aggregate"]["gpu_utilization"] == {
        "units": "percent",
        "mean": pytest.approx(v["gpu_util_mean"]),
        "max": 100.0,
    }
    assert obs["aggregate"]["power_consumption"] == {"units": "Watts", "mean": pytest.approx(v["power_mean_w"])}
    # scenario: engine from the record's provenance, load from the client's command line
    eng = rep["scenario"]["stack"][0]["standardized"]
    assert eng["kind"] == "inference_engine" and eng["tool"] == "vllm" and eng["tool_version"] == "0.26.0"
    assert eng["accelerator"]["model"] == "NVIDIA H100 80GB HBM3" and eng["accelerator"]["count"] == 1
    assert eng["model"]["name"] == "llama-3.1-8b-arch"
    assert rep["scenario"]["stack"][0]["native"]["args"]["load-format"] == "dummy"
    load = rep["scenario"]["load"]["standardized"]
    assert load["tool"] == "vllm-benchmark" and load["tool_version"] == "0.26.0" and load["source"] == "sampled"
    assert load["rate_qps"] == 4.0 and "concurrency" not in load
    assert load["input_seq_len"] == {"distribution": "other", "value": pytest.approx(34887 / 150)}
    assert rep["scenario"]["load"]["native"]["args"]["request-rate"] == "4"
    wf = rep["scenario"]["stack"][1]["standardized"]
    assert wf["kind"] == "generic" and wf["tool"] == "inferlab" and wf["status"] == "ok"
    assert wf["tool_version"] == record["provenance"]["workflow_git"]["commit"]
    assert rep["run"]["time"] == {
        "start": "2026-11-23T11:28:35+00:00",
        "end": "2026-11-23T11:29:37+00:00",
        "duration": "PT62.045S",
    }
    assert "status:ok" in rep["run"]["keywords"]
    # not expressible in v0.2, so not exported (never a made-up field)
    assert "duration" not in json.dumps(rep["results"]) and "energy" not in json.dumps(rep)


def test_serving_cell_without_record_uses_rows_only(rr4):
    rows, _ = rr4
    rep = llmd.cell_report(rows)
    check(rep)
    assert rep["scenario"]["stack"][0]["standardized"]["accelerator"]["model"] == "h100"
    assert rep["scenario"]["stack"][0]["native"] == {}
    assert (
        rep["results"]
        == llmd.cell_report(rows, json.loads((W1 / "cells" / "vllm_rr4.cell.json").read_text()))["results"]
    )


def test_rate_inf_has_no_rate_qps():
    rows = cell_rows(W1 / "week01.parquet", engine="vllm", cell="rrinf")
    rep = llmd.cell_report(rows)
    check(rep)
    assert "rate_qps" not in rep["scenario"]["load"]["standardized"]
    assert rep["scenario"]["load"]["native"]["config"]["params"]["request_rate"] == "inf"


def test_offline_latency_cell_week03_decode_bs1():
    rows = cell_rows(W3 / "week03.parquet", experiment="decode", cell="bs1")
    record = json.loads((W3 / "cells" / "decode_bs1.cell.json").read_text())
    rep = llmd.cell_report(rows, record)
    check(rep)
    v = by_metric(rows)
    raw = json.loads((W3 / "cells" / "decode_bs1.raw.json").read_text())  # vllm bench latency: seconds
    lat = rep["results"]["request_performance"]["aggregate"]["latency"]
    assert set(lat) == {"request_latency", "normalized_time_per_output_token"}
    rl = lat["request_latency"]
    assert rl["units"] == "ms"
    assert rl["mean"] == pytest.approx(v["latency_avg"]) == pytest.approx(raw["avg_latency"] * 1e3)
    assert rl["mean"] == pytest.approx(426.5228, abs=1e-3)
    for q in (10, 25, 50, 75, 90, 99):
        assert rl[f"p{q}"] == pytest.approx(v[f"latency_p{q}"]) == pytest.approx(raw["percentiles"][str(q)] * 1e3)
    ntpot = lat["normalized_time_per_output_token"]
    assert ntpot == {"units": "ms/token", "mean": pytest.approx(v["latency_per_output_token"])}
    assert ntpot["mean"] == pytest.approx(rl["mean"] / 64)
    # no TTFT/TPOT/throughput/requests from an offline latency run
    assert set(rep["results"]["request_performance"]["aggregate"]) == {"latency"}
    load = rep["scenario"]["load"]["standardized"]
    assert load["tool"] == "vllm-bench-latency" and load["source"] == "random"
    assert load["input_seq_len"] == {"distribution": "fixed", "value": 128}
    assert load["output_seq_len"] == {"distribution": "fixed", "value": 64}
    assert load["concurrency"] == 1 and "rate_qps" not in load
    assert rep["scenario"]["stack"][0]["native"]["args"] == record["engine_args"]


def assert_no_numbers(results: dict):
    text = json.dumps(results)
    assert "mean" not in text and "request_performance" not in text


def test_failed_cell_exported_with_status_and_no_numbers(rr4):
    rows, record = rr4
    failed = rows.copy()
    failed["status"] = "failed"
    failed["reason"] = "oom"
    failed["detail"] = "CUDA out of memory"
    failed["value"] = math.nan  # as records.record_to_frame writes a failed cell
    rep = llmd.cell_report(failed, record)
    check(rep)
    assert_no_numbers(rep["results"])
    assert rep["results"]["component_health"] == [
        {
            "component_label": "vllm-default",
            "failed_replicas": 1,
            "replica_health": [{"replica_id": "vllm-default-0", "healthy": False}],
        }
    ]
    assert "failed (oom): CUDA out of memory" in rep["run"]["description"]
    assert {"status:failed", "reason:oom"} <= set(rep["run"]["keywords"])
    wf = rep["scenario"]["stack"][1]["standardized"]
    assert (wf["status"], wf["reason"], wf["detail"]) == ("failed", "oom", "CUDA out of memory")
    # the input length was only known from the measurement: no load rather than a made-up one
    assert "load" not in rep["scenario"]
    # a failed cell never exports a number, even a leftover one
    failed["value"] = rows["value"].to_numpy()
    assert_no_numbers(llmd.cell_report(failed, record)["results"])


def test_real_skipped_cell_week01_sglang():
    rows = cell_rows(W1 / "week01.parquet", engine="sglang", cell="rr4")
    record = json.loads((W1 / "cells" / "sglang_rr4.cell.json").read_text())
    rep = llmd.cell_report(rows, record)
    check(rep)
    assert rep["results"] == {}
    assert rep["scenario"]["stack"][0]["standardized"]["tool_version"] == "unknown"
    assert "skipped (engine_unavailable)" in rep["run"]["description"]


def test_guard_rejected_value_is_not_exported(rr4):
    rows, _ = rr4
    rows = rows.copy()
    rows["valid"] = rows["valid"].astype(object)
    for m in ("ttft_p99", "tpot_mean"):
        rows.loc[rows.metric == m, "valid"] = False
        rows.loc[rows.metric == m, "value"] = math.nan
    rep = llmd.cell_report(rows)
    check(rep)
    lat = rep["results"]["request_performance"]["aggregate"]["latency"]
    assert "p99" not in lat["time_to_first_token"] and "p50" in lat["time_to_first_token"]
    assert "time_per_output_token" not in lat  # a Statistics needs a mean
    assert "not exported: tpot_mean, ttft_p99" in rep["run"]["description"]


def test_schema_check_is_not_vacuous(rr4):
    rows, record = rr4
    good = llmd.cell_report(rows, record)
    lat = ("results", "request_performance", "aggregate", "latency")
    for path, change in (
        ((), {"metrics": {}}),  # v0.1's top level: not a v0.2 field
        (lat + ("time_per_output_token",), {"units": "ms"}),  # TPOT needs a per-token unit
        (lat + ("time_to_first_token",), {"units": "ms/token"}),
        (lat + ("time_to_first_token",), {"P25": 1.0}),
        (("scenario", "load", "standardized"), {"rate_qps": 0}),
        (("run",), {"uid": None}),
    ):
        bad = json.loads(json.dumps(good))
        node = bad
        for k in path:
            node = node[k]
        node.update(change)
        with pytest.raises(jsonschema.ValidationError):
            check(bad)
    bad = json.loads(json.dumps(good))
    del bad[lat[0]][lat[1]][lat[2]][lat[3]]["request_latency"]["mean"]
    with pytest.raises(jsonschema.ValidationError):
        check(bad)


def test_units_converted_or_refused():
    assert llmd.convert(0.5, "s", "ms") == 500.0
    assert llmd.convert(7.0, "ms", "ms/token") == 7.0
    assert llmd.convert(3.0, "req/s", "queries/s") == 3.0
    with pytest.raises(ValueError):
        llmd.convert(3.0, "tok/s", "queries/s")
    with pytest.raises(ValueError):
        llmd.convert(3.0, "%", "ms")


def test_rows_of_two_cells_refused():
    rows = cell_rows(W1 / "week01.parquet", engine="vllm")
    with pytest.raises(ValueError, match="more than one cell"):
        llmd.cell_report(rows)


def test_cli_round_trip(tmp_path, rr4, capsys):
    out = tmp_path / "llmd"
    assert llmd.main([str(W1 / "week01.parquet"), "--out", str(out), "--records", str(W1 / "cells")]) == 0
    cap = capsys.readouterr()
    assert "8 llm-d v0.2 benchmark reports" in cap.out
    assert cap.err.count("exported without results: skipped (engine_unavailable)") == 4
    files = sorted(out.rglob("benchmark_report_v0.2,_*.yaml"))  # llm-d's own glob
    assert len(files) == 8
    f = out / "week01" / "serving" / "vllm" / "h100" / "default" / "rr4" / "benchmark_report_v0.2,_rr4.yaml"
    text = f.read_text()
    assert "&id" not in text  # plain YAML, no anchors
    loaded = yaml.safe_load(text)  # how llm-d's import_yaml reads it
    check(loaded)
    rows, record = rr4
    assert loaded == llmd.cell_report(rows, record)
    assert loaded["results"]["request_performance"]["aggregate"]["latency"]["time_to_first_token"]["p50"] == (
        pytest.approx(by_metric(rows)["ttft_p50"])
    )
    assert not list(out.rglob("*.tmp"))  # atomic writes leave nothing behind
    for p in files:
        check(yaml.safe_load(p.read_text()))

    # --skip-failed leaves the skipped SGLang cells out and says why
    out2 = tmp_path / "ok-only"
    assert llmd.main([str(W1 / "week01.parquet"), "--out", str(out2), "--skip-failed"]) == 0
    cap = capsys.readouterr()
    assert len(list(out2.rglob("*.yaml"))) == 4
    assert cap.err.count("not exported: skipped (engine_unavailable)") == 4


def test_week03_all_cells(tmp_path):
    files = llmd.week_reports(W3 / "week03.parquet", tmp_path, W3 / "cells")
    assert len(files) == 14
    for p in files:
        rep = yaml.safe_load(p.read_text())
        check(rep)
        assert rep["scenario"]["stack"][0]["standardized"]["accelerator"]["model"] == "NVIDIA H100 80GB HBM3"


def test_validates_against_llmd_model(tmp_path, rr4):
    """llm-d's own pydantic model, where its ``benchmark-report`` package is installed."""
    br = pytest.importorskip("benchmark_report")
    rows, record = rr4
    f = tmp_path / "benchmark_report_v0.2,_rr4.yaml"
    f.write_text(llmd.dump(llmd.cell_report(rows, record)))
    assert type(br.import_benchmark_report(str(f))).__name__ == "BenchmarkReportV02"

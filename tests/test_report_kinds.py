"""Table kinds on a synthetic week: every kind, failed/skipped/invalid cells shown in place, axis
values printed as written, repeats as mean ± CI, the declarations checked (file and key named)."""

import copy

import pandas as pd
import pytest
import yaml
from conftest import ROOT

from inferlab import config, report
from inferlab.errors import ConfigError
from inferlab.report import kinds, reference, stats
from inferlab.report.values import Frame, text

CFG = config.load("config/cluster.yaml", base_dir=ROOT)


def rows(specs: list[dict]) -> pd.DataFrame:
    """A week Parquet from short specs: {experiment, gpu, cell, params, metrics: {m: v}, status, reason,
    repeat, engine, invalid: {m: raw}}."""
    out = []
    for s in specs:
        st = s.get("status", "ok")
        for m, v in s["metrics"].items():
            bad = m in s.get("invalid", {})
            out.append(
                {
                    "week": "week09",
                    "experiment": s["experiment"],
                    "engine": s.get("engine", "vllm"),
                    "gpu": s["gpu"],
                    "model": "llama-3.1-8b-instruct",
                    "configuration": s.get("configuration", "default"),
                    "cell": s["cell"],
                    "repeat": s.get("repeat", 0),
                    "tool": s.get("tool", "vllm_bench_latency"),
                    "metric": m,
                    "value": None if st != "ok" or bad else v,
                    "raw_value": s.get("invalid", {}).get(m, v),
                    "status": st,
                    "reason": s.get("reason"),
                    "valid": not bad,
                    "invalid_reason": "too fast" if bad else None,
                    "telemetry": s.get("telemetry", "ok"),
                    "definition": s.get("definition"),
                    **{f"param_{k}": v for k, v in s["params"].items()},
                }
            )
    df = pd.DataFrame(out)
    df["valid"] = df["valid"].astype("boolean")
    return df


LAT = {"input_len": 128, "output_len": 64}


@pytest.fixture
def week():
    specs = [
        {
            "experiment": "lat",
            "gpu": "h100",
            "cell": "bs1",
            "params": {"batch_size": 1, **LAT},
            "metrics": {"lpt": 7.0, "tput": 100.0},
        },
        {
            "experiment": "lat",
            "gpu": "l40s",
            "cell": "bs1",
            "params": {"batch_size": 1, **LAT},
            "metrics": {"lpt": 22.0, "tput": 40.0},
        },
        {
            "experiment": "lat",
            "gpu": "l40s",
            "cell": "bs8",
            "params": {"batch_size": 8, **LAT},
            "metrics": {"lpt": None, "tput": None},
            "status": "failed",
            "reason": "oom",
        },
        {
            "experiment": "lat",
            "gpu": "a100",
            "cell": "bs1",
            "params": {"batch_size": 1, **LAT},
            "metrics": {"lpt": 1.0, "tput": 300.0},
            "invalid": {"lpt": 1.0},
        },
        {
            "experiment": "lat",
            "gpu": "a100",
            "cell": "bs8",
            "params": {"batch_size": 8, **LAT},
            "metrics": {"lpt": None, "tput": None},
            "status": "skipped",
            "reason": "needs 2 GPUs",
        },
    ]
    # h100 bs8 measured three times
    for r, v in enumerate((8.0, 8.2, 8.1)):
        specs.append(
            {
                "experiment": "lat",
                "gpu": "h100",
                "cell": f"bs8-r{r + 1}",
                "repeat": r + 1,
                "params": {"batch_size": 8, **LAT},
                "metrics": {"lpt": v, "tput": 700.0 + r},
            }
        )
    # a server-side axis: prefix caching on/off, request rates 1 and inf
    for apc in (True, False):
        for rate in ("1", "inf"):
            specs.append(
                {
                    "experiment": "srv",
                    "tool": "bench_serving",
                    "gpu": "h100",
                    "configuration": "apc" if apc else "noapc",
                    "cell": f"rr{rate}",
                    "params": {"enable_prefix_caching": apc, "request_rate": rate},
                    "metrics": {
                        "output_throughput": (200.0 if apc else 100.0) * (1 if rate == "1" else 10),
                        "tpot_p50": 20.0 if rate == "1" else 40.0,
                    },
                }
            )
    return rows(specs)


def ctx_of(df, doc=None, reference_df=None):
    doc = doc or {"week": "week09", "experiments": {"lat": {}, "srv": {}}}
    return kinds.Context(
        CFG, doc, "week09", {"week09": Frame(df)}, Frame(reference_df) if reference_df is not None else None
    )


def table(ctx, spec, key="t"):
    report.check({"week": "week09", "tables": {key: spec}})
    (t,) = kinds.build(ctx, key, spec)
    return t.df


def test_text_prints_values_as_written():
    assert [text(v) for v in (1, 1.0, 4.0, float("inf"), "inf", True, False, "True", 0.9, None)] == [
        "1",
        "1",
        "4",
        "inf",
        "inf",
        "true",
        "false",
        "true",
        "0.9",
        "",
    ]


def test_pivot_shows_status_repeats_and_order(week):
    t = table(
        ctx_of(week),
        {
            "kind": "pivot",
            "where": {"experiment": "lat"},
            "metric": "lpt",
            "rows": "gpu",
            "columns": "batch_size",
            "column_label": "bs={batch_size}",
        },
    )
    assert t.columns.tolist() == ["GPU", "bs=1", "bs=8"]
    assert t["GPU"].tolist() == ["h100", "a100", "l40s"]  # the preset's order (cluster.yaml)
    t = t.set_index("GPU")
    assert t.loc["h100", "bs=1"] == "7.00"
    assert t.loc["h100", "bs=8"] == f"8.10 ± {stats.ci95([8.0, 8.2, 8.1])[1]:.2f}"  # 3 repeats
    assert t.loc["l40s", "bs=8"] == "OOM"
    assert t.loc["a100", "bs=1"] == "INVALID (1.00 < roofline)"
    assert t.loc["a100", "bs=8"] == "SKIPPED (needs 2 GPUs)"


def test_pivot_ratio_rows_and_added_columns(week):
    t = table(
        ctx_of(week),
        {
            "kind": "pivot",
            "where": {"experiment": "lat"},
            "metric": "tput",
            "rows": "gpu",
            "columns": "batch_size",
            "format": "{:.0f}",
            "ratio_rows": {"baseline": "min", "label": "{gpu}/{baseline}"},
            "add": [{"theory": "ridge_ai", "label": "AI*", "format": "{:.0f}"}],
        },
    )
    assert t.iloc[-2:, 0].tolist() == ["h100/l40s", "a100/l40s"]
    assert t.iloc[-2, 1] == "2.50x" and t.iloc[-2, 2] == "OOM"  # l40s has no bs=8: its status
    assert t.iloc[0]["AI*"] == "295"


def test_metrics_columns_expr_compare_field_status_text(week):
    t = table(
        ctx_of(week),
        {
            "kind": "metrics",
            "where": {"experiment": "lat"},
            "rows": ["gpu"],
            "columns": [
                {"id": "one", "metric": "lpt", "at": {"batch_size": "first"}, "label": "bs={batch_size}"},
                {
                    "compare": "lpt",
                    "axis": "batch_size",
                    "level": "last",
                    "baseline": "first",
                    "as": "pct",
                    "label": "growth {baseline}->{level}",
                    "format": "{:+.0f}%",
                },
                {
                    "compare": "tput",
                    "axis": "gpu",
                    "baseline": "min",
                    "label": "vs {baseline}",
                    "at": {"batch_size": 1},
                },
                {"expr": "1000 / one", "label": "tok/s per seq", "format": "{:.0f}"},
                {"theory": "weights_floor_ms", "at": {"batch_size": 1}, "label": "floor"},
                {"field": "telemetry", "label": "Telemetry", "at": {"batch_size": "last"}},
                {"status": True, "label": "Status", "at": {"batch_size": "last"}},
                {"text": "{gpu}: {one}", "label": "note"},
            ],
        },
    )
    assert t.columns.tolist() == [
        "GPU",
        "bs=1",
        "growth 1->8",
        "vs l40s",
        "tok/s per seq",
        "floor",
        "Telemetry",
        "Status",
        "note",
    ]
    t = t.set_index("GPU")
    assert t.loc["h100", "growth 1->8"] == "+16%"
    assert t.loc["l40s", "growth 1->8"] == "OOM"
    assert t.loc["a100", "growth 1->8"] == "SKIPPED (needs 2 GPUs)"  # the first input without a number
    assert t.loc["h100", "vs l40s"] == "2.50x" and t.loc["l40s", "vs l40s"] == "1.00x"
    assert t.loc["h100", "tok/s per seq"] == "143" and t.loc["a100", "tok/s per seq"].startswith("INVALID")
    assert float(t.loc["h100", "floor"]) == pytest.approx(4.79, abs=0.01)
    assert t.loc["a100", "Telemetry"] == "SKIPPED (needs 2 GPUs)" and t.loc["h100", "Telemetry"] == "ok"
    assert t.loc["l40s", "Status"] == "OOM" and t.loc["h100", "Status"] == "ok"
    assert t.loc["h100", "note"] == "h100: 7.00"


def test_metrics_across_levels_and_boolean_axis(week):
    t = table(
        ctx_of(week),
        {
            "kind": "metrics",
            "where": {"experiment": "srv"},
            "rows": ["request_rate"],
            "across": {"enable_prefix_caching": [True, False]},
            "columns": [{"metric": "output_throughput", "label": "apc={enable_prefix_caching}", "format": "{:.0f}"}],
        },
    )
    assert t.columns.tolist() == ["request_rate", "apc=true", "apc=false"]
    assert t["request_rate"].tolist() == ["1", "inf"]
    assert t.iloc[1].tolist() == ["inf", "2000", "1000"]


def test_compare_kind(week):
    t = table(
        ctx_of(week),
        {
            "kind": "compare",
            "where": {"experiment": "srv"},
            "rows": ["gpu", "request_rate"],
            "metric": "output_throughput",
            "axis": "enable_prefix_caching",
            "baseline": False,
            "format": "{:.0f}",
        },
    )
    assert t.columns.tolist() == [
        "GPU",
        "request_rate",
        "enable_prefix_caching=false",
        "enable_prefix_caching=true",
        "true vs false",
    ]
    assert t.iloc[0].tolist() == ["h100", "1", "100", "200", "2.00x"]


def test_vs_theory_kind(week):
    t = table(
        ctx_of(week),
        {
            "kind": "vs_theory",
            "where": {"experiment": "lat"},
            "rows": ["gpu"],
            "metric": "lpt",
            "at": {"batch_size": 1},
            "theory": "weights_floor_ms",
            "measured_label": "measured bs={batch_size}",
            "utilization_label": "HBM",
        },
    ).set_index("GPU")
    assert t.loc["h100", "HBM"] == f"{100 * 4.79 / 7.0:.0f}%"
    assert t.loc["a100", "HBM"] == "INVALID (1.00 < roofline)"
    assert t.columns.tolist() == ["weights_floor_ms", "measured bs=1", "HBM"]


def test_vs_reference_kind_under_the_guard(week):
    ref_rows = [
        {
            "week": "week09",
            "experiment": "lat",
            "gpu": "h100",
            "engine": "vllm",
            "model": "llama-3.1-8b-instruct",
            "axes": {"batch_size": b, **LAT},
            "metric": "lpt",
            "value": v,
            "unit": "ms/token",
            "source": "x",
        }
        for b, v in ((1, 7.7), (8, 8.0), (64, 1.0))
    ]
    # "lpt" is not a guarded metric: as latency_per_output_token the 1.0 ms would be below the floor
    for r in ref_rows:
        r["metric"] = "latency_per_output_token"
    w = week.copy()
    w.loc[w.metric == "lpt", "metric"] = "latency_per_output_token"
    ref = reference.frame(ref_rows, CFG.gpus, CFG.models)
    assert ref["valid"].tolist() == [True, True, False]
    t = table(
        ctx_of(w, reference_df=ref),
        {
            "kind": "vs_reference",
            "for_each": "gpu",
            "name": "cmp_{gpu}",
            "parts": [
                {
                    "experiment": "lat",
                    "metric": "latency_per_output_token",
                    "axis": "batch_size",
                    "point": "bs={batch_size}",
                    "unit": "ms/token",
                }
            ],
            "columns": [{"expr": "latency_floor_ms / output_len", "label": "Floor", "format": "{:.3g}"}],
        },
    )
    assert t["Point"].tolist() == ["bs=1", "bs=8", "bs=64"]
    t = t.set_index("Point")
    assert t.loc["bs=1", "Difference"] == f"{100 * (7.0 - 7.7) / 7.7:+.1f}%"
    assert t.loc["bs=8", "This pipeline"].startswith("8.10 ± ") and t.loc["bs=8", "Difference"] == "+1.2%"
    assert t.loc["bs=64", "This pipeline"] == "n/a" and t.loc["bs=64", "Course"] == "INVALID (1.00 < roofline)"
    assert float(t.loc["bs=64", "Floor"]) > 1.0  # from the published row's parameters


def test_pareto_kind(week):
    t = table(
        ctx_of(week),
        {
            "kind": "pareto",
            "where": {"experiment": "srv"},
            "points": ["enable_prefix_caching", "request_rate"],
            "x": "output_throughput",
            "y": "1000 / tpot_p50",
            "y_label": "tok/s per user",
            "x_format": "{:.0f}",
            "y_format": "{:.0f}",
        },
    )
    front = t[t["Pareto-optimal"] == "yes"]
    # apc=true dominates apc=false at the same rate
    assert sorted(front["enable_prefix_caching"]) == ["true", "true"]
    assert t.columns.tolist() == [
        "enable_prefix_caching",
        "request_rate",
        "output_throughput",
        "tok/s per user",
        "Pareto-optimal",
    ]


def test_custom_saturation_point(week):
    w = week[week.experiment == "srv"].copy()
    t = table(
        ctx_of(w),
        {
            "kind": "custom",
            "function": "saturation_point",
            "where": {"enable_prefix_caching": True},
            "options": {"metric": "output_throughput", "point": "rr={request_rate}"},
        },
    )
    assert t.iloc[0]["Saturation rate"] == "not saturated up to rr=inf"


def test_declarations_are_checked_with_file_and_key():
    good = {"week": "week09", "tables": {"t": {"kind": "pivot", "metric": "m", "rows": "gpu", "columns": "batch_size"}}}
    report.check(copy.deepcopy(good), "w.yaml")
    for bad, key in (
        ({"t": {"kind": "pivotal", "metric": "m", "rows": "gpu", "columns": "x"}}, "tables.t.kind"),
        ({"t": {"kind": "pivot", "rows": "gpu", "columns": "x"}}, "tables.t"),
        ({"t": {"kind": "custom", "function": "no_such"}}, "tables.t.function"),
        ({"t": {"kind": "metrics", "rows": ["gpu"], "columns": [{"expr": "import os"}]}}, "tables.t.columns[0].expr"),
        (
            {"t": {"kind": "metrics", "rows": ["gpu"], "columns": [{"metric": "m", "week": "week01"}]}},
            "tables.t.columns[0].week",
        ),
    ):
        with pytest.raises(ConfigError) as e:
            report.check({"week": "week09", "tables": bad}, "w.yaml")
        assert "w.yaml" in str(e.value) and key in str(e.value), (key, str(e.value))
    with pytest.raises(ConfigError, match="figures.f"):
        report.check({"week": "week09", "figures": {"f": {"kind": "line", "x": "a", "y": "b"}}}, "w.yaml")


def test_every_week_file_declares_valid_tables_and_figures():
    for f in sorted((ROOT / "config" / "weeks").glob("week*.yaml")):
        doc = yaml.safe_load(f.read_text())
        report.check(doc, f)
        assert doc.get("tables") and doc.get("figures"), f
        assert all(c for c in report.captions(doc).values())


def test_reference_files_are_flat_rows_under_the_guard():
    rows = reference.load_rows(ROOT / "config" / "reference")
    assert {r["week"] for r in rows} == {"week01", "week02", "week03"}
    assert all(
        set(r) >= {"week", "experiment", "gpu", "engine", "axes", "metric", "value", "unit", "source"} for r in rows
    )
    df = reference.frame(rows, CFG.gpus, CFG.models)
    bad = df[df["valid"] == False]  # noqa: E712
    assert set(bad["week"]) == {"week03"}  # weeks 1-2 are physical; Week 3's cache hits are not
    assert len(bad) == 16


def test_readme_declarations_are_valid():
    import re

    text_ = (ROOT / "README.md").read_text()
    section = text_[text_.index("## How to add a week") :]
    doc = yaml.safe_load(re.search(r"```yaml\n(.*?)```", section, re.S).group(1))
    report.check({"week": "week09", **doc}, "README.md")
    assert {t["kind"] for t in doc["tables"].values()} == set(kinds.KINDS)


def test_week12_vs_bf16_is_against_the_presets_own_bf16_model(tmp_path):
    """Week 12's "vs BF16" column named the embedded default's tiny model as its baseline, so on the
    cluster preset (llama-3.1-8b-instruct and its FP8/AWQ/GPTQ checkpoints) every ratio was blank. It
    is the sweep's first model now: each preset's unquantized one."""
    models = {
        "llama-3.1-8b-instruct": 4000.0,
        "llama-3.1-8b-instruct-fp8": 6000.0,
        "llama-3.1-8b-instruct-awq-int4": 5000.0,
    }
    specs = [
        {
            "experiment": "quant_throughput",
            "gpu": "h100",
            "cell": "np200",
            "configuration": f"m{m}",
            "tool": "vllm_bench_throughput",
            "params": {"model": m, "num_prompts": 200},
            "metrics": {"offline_total_token_throughput": v},
        }
        for m, v in models.items()
    ]
    df = rows(specs)
    df["week"] = "week12"
    df["model"] = df["param_model"]  # a model axis sets the record's model (records carry both)
    cfg = config.load("config/cluster.yaml", base_dir=ROOT)
    report.build(df, cfg, "week12", tmp_path)
    tab = pd.read_csv(tmp_path / "tables" / "quantization.csv")
    got = dict(zip(tab["model"], tab["vs BF16"], strict=True))
    assert got == {
        "llama-3.1-8b-instruct": "1.00x",
        "llama-3.1-8b-instruct-fp8": "1.50x",
        "llama-3.1-8b-instruct-awq-int4": "1.25x",
    }


def test_a_bad_key_in_a_column_list_is_named_at_that_column():
    """`columns` takes an axis, a list of axes or a list of column objects: an unquoted comma in a
    flow mapping's label (YAML makes the rest a key) is reported at the column that has it, not as
    the first column "not of type 'string'" from the branch that takes axis names."""
    from inferlab.report import spec

    doc = yaml.safe_load((ROOT / "config" / "weeks" / "week16.yaml").read_text())
    doc["tables"]["gpu_per_pool"]["columns"][3] = yaml.safe_load("{metric: gpu_util_mean, label: All GPUs, mean (%)}")
    with pytest.raises(ConfigError) as e:
        spec.check(doc, "week16.yaml")
    assert str(e.value).startswith("week16.yaml: tables.gpu_per_pool.columns[3]: unknown key")
    assert "'mean (%)' was unexpected" in str(e.value)
    doc["tables"]["gpu_per_pool"]["columns"] = 5  # no branch fits: still a clear message at the key
    with pytest.raises(ConfigError) as e:
        spec.check(doc, "week16.yaml")
    assert str(e.value).startswith("week16.yaml: tables.gpu_per_pool.columns: ")

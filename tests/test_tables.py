"""Week 3's declared tables (config/weeks/week03.yaml, inferlab.report) from synthetic cell records:
layout, failures shown as their status, the guard on measurements and on the course's numbers."""

import pandas as pd
import pytest
from conftest import ROOT

from inferlab import config, guard, records, report, tables
from inferlab.report import kinds

CFG = config.load("config/cluster.yaml", base_dir=ROOT)
MODEL = CFG.models["llama-3.1-8b-instruct"]


def week03_table(df, key):
    """One of Week 3's declared tables (a for_each table: {name: DataFrame})."""
    ctx = report.context(df, CFG, "week03")
    out = {t.name: t for t in kinds.build(ctx, key, ctx.doc["tables"][key])}
    return out if len(out) > 1 or key == "comparison" else next(iter(out.values())).df


def cell_frame(tmp_path, exp, gpu, params, status="ok", reason=None, avg_s=None):
    cid = f"bs{params['batch_size']}" if exp == "decode" else f"in{params['input_len']}"
    raw = tmp_path / f"{exp}-{gpu}-{cid}.json"
    if avg_s is not None:
        raw.write_text(f'{{"avg_latency": {avg_s}, "latencies": [{avg_s}], "percentiles": {{"50": {avg_s}}}}}')
    rec = {
        "week": "week03",
        "experiment": exp,
        "engine": "vllm",
        "gpu": gpu,
        "model": "llama-3.1-8b-instruct",
        "cell": cid,
        "tool": "vllm_bench_latency",
        "status": status,
        "reason": reason,
        "detail": "d",
        "log_tail": "tail",
        "raw": raw.name,
        "params": params,
        "provenance": {},
    }
    df = records.record_to_frame(rec, raw)
    return guard.apply(df, MODEL["architecture"], MODEL["dtype"], CFG.gpu(gpu))


@pytest.fixture
def week(tmp_path):
    frames = []
    for g in ("h100", "l40s"):
        for bs, per_tok in ((1, 7.06), (64, 9.81)):
            status, reason = ("failed", "oom") if (g == "l40s" and bs == 64) else ("ok", None)
            frames.append(
                cell_frame(
                    tmp_path,
                    "decode",
                    g,
                    {"batch_size": bs, "input_len": 128, "output_len": 64},
                    status,
                    reason,
                    per_tok * 64 / 1e3 if status == "ok" else None,
                )
            )
        for L, ms in ((64, 30.0), (2048, 90.0), (4096, 130.0)):
            frames.append(
                cell_frame(tmp_path, "prefill", g, {"batch_size": 1, "input_len": L, "output_len": 1}, avg_s=ms / 1e3)
            )
    # a cache-hit measurement: faster than the compute roof allows
    frames[-1] = cell_frame(
        tmp_path, "prefill", "l40s", {"batch_size": 1, "input_len": 4096, "output_len": 1}, avg_s=0.0303
    )
    return records.normalize(pd.concat(frames, ignore_index=True))


def test_decode_table_layout_and_failure_shown(week):
    t = week03_table(week, "decode_per_token")
    assert list(t.columns) == ["GPU", "bs=1", "bs=64", "Theoretical AI*"]
    assert t["GPU"].tolist() == ["h100", "l40s"]  # preset order
    h100 = t.set_index("GPU").loc["h100"]
    assert h100["bs=1"] == "7.06" and h100["bs=64"] == "9.81" and h100["Theoretical AI*"] == "295"
    assert t.set_index("GPU").loc["l40s", "bs=64"] == "OOM"


def test_prefill_table_steady_state_and_invalid(week):
    t = week03_table(week, "prefill_latency").set_index("GPU")
    assert t.loc["h100", "L=4096"] == "130.00"
    assert t.loc["h100", "Steady-state us/tok"] == f"{(130.0 - 90.0) * 1e3 / 2048:.2f}"
    assert t.loc["l40s", "L=4096"].startswith("INVALID (30.30")
    # the slope's input at L=4096 has no number: its status in the slope's place
    assert t.loc["l40s", "Steady-state us/tok"] == t.loc["l40s", "L=4096"]


def test_floor_table_hbm_utilization(week):
    t = week03_table(week, "decode_floor").set_index("GPU")
    assert t.loc["h100", "Theoretical floor (ms)"] == "4.79"
    assert t.loc["h100", "HBM utilization"] == "68%"
    # the fixture gives l40s the H100's 7.06 ms/token: below its 18.6 ms floor, so never a utilization
    assert t.loc["l40s", "Measured bs=1 (ms/tok)"].startswith("INVALID (7.06")
    assert t.loc["l40s", "HBM utilization"] == t.loc["l40s", "Measured bs=1 (ms/tok)"]


def test_guard_flags_course_prefill_not_decode_bs1(week):
    pre = week03_table(week, "course_reference_prefill").set_index("GPU")
    dec = week03_table(week, "course_reference_decode").set_index("GPU")
    assert pre.index.tolist() == ["h200", "h100", "a100", "l40s"]
    # every GPU's long-prompt prefill beats the compute roof (prefix-cache hits)
    for g in ("h200", "h100", "a100", "l40s"):
        assert pre.loc[g, "L=4096"].startswith("INVALID"), g
        assert pre.loc[g, "L=2048"].startswith("INVALID"), g
        assert not pre.loc[g, "L=64"].startswith("INVALID"), g
        assert not dec.loc[g, "bs=1"].startswith("INVALID"), g
    # A100 bs>=256 needs more than 312 TFLOP/s for its 2 P x bs x 191 FLOPs: cache hits again
    assert dec.loc["a100", "bs=512"].startswith("INVALID") and dec.loc["a100", "bs=256"].startswith("INVALID")
    assert dec.loc["l40s", "bs=512"] == "81.53" and dec.loc["h100", "bs=512"] == "30.81"
    assert pre.loc["h100", "L=512"] == "9.77"  # 8.3 ms compute floor: plausible
    assert pre.loc["h100", "L=1024"].startswith("INVALID")  # 16.6 ms floor > 10.40
    ctx = report.context(week, CFG, "week03")
    (t,) = kinds.build(ctx, "course_reference_prefill", ctx.doc["tables"]["course_reference_prefill"])
    assert any("prefill h100 L=4096" in n and "roofline bound" in n for n in t.notes)  # why, in the notes


def test_guard_bound_values():
    h100 = CFG.gpu("h100")
    b = guard.latency_bound_ms(
        MODEL["architecture"], MODEL["dtype"], h100, {"batch_size": 1, "input_len": 4096, "output_len": 1}
    )
    assert b == pytest.approx(66.5, rel=0.01)
    ok, _ = guard.check_value(
        "latency_avg",
        108.8,
        "ms",
        MODEL["architecture"],
        MODEL["dtype"],
        h100,
        {"batch_size": 1, "input_len": 4096, "output_len": 1},
    )
    assert ok  # the device note's caching-off measurement is physical
    ok, why = guard.check_value(
        "latency_avg",
        15.9,
        "ms",
        MODEL["architecture"],
        MODEL["dtype"],
        h100,
        {"batch_size": 1, "input_len": 4096, "output_len": 1},
    )
    assert not ok and "below the roofline bound" in why


def test_comparison_table_against_the_course_and_the_floor(week):
    from inferlab import theory

    tabs = week03_table(week, "comparison")
    assert sorted(tabs) == ["comparison_h100", "comparison_l40s"]  # GPUs measured here with published numbers
    t = tabs["comparison_h100"].df.set_index(["Experiment", "Point"])
    bs1 = t.loc[("decode", "bs=1")]
    assert bs1["This pipeline"] == "7.06" and bs1["Course"] == "7.06" and bs1["Difference"] == "+0.0%"
    arch, dtype, gpu = MODEL["architecture"], MODEL["dtype"], CFG.gpu("h100")
    floor = theory.latency_floor_s(arch, dtype, gpu, 1, 128, 64) * 1e3 / 64
    assert float(bs1["Floor"]) == pytest.approx(floor, rel=1e-2)
    assert 0 < int(bs1["HBM utilization"].rstrip("%")) < 100
    # points the course published but this run did not measure are listed, not dropped
    assert t.loc[("decode", "bs=512")]["This pipeline"] == "n/a"
    # prefill: achieved TFLOP/s from the measured time; the course's long-L values are flagged
    L4k = t.loc[("prefill", "L=4096")]
    assert float(L4k["Achieved TFLOP/s"]) == pytest.approx(theory.forward_flops(arch, 4096) / 0.130 / 1e12, rel=1e-2)
    assert L4k["Course"].startswith("INVALID") and L4k["Difference"] == L4k["Course"]
    assert not t.loc[("prefill", "L=64")]["Course"].startswith("INVALID")


def test_show_says_what_happened_instead_of_a_number():
    base = {"status": "ok", "reason": None, "valid": True, "value": 7.0625, "raw_value": 7.0625}
    assert tables.show(pd.Series(base)) == "7.06"
    assert tables.show(pd.Series({**base, "status": "failed", "reason": "oom"})) == "OOM"
    assert tables.show(pd.Series({**base, "status": "failed", "reason": "engine_error"})) == "FAILED (engine_error)"
    # a resources skip as measure.skip_all writes it (reason resources, the need in the detail), as
    # the H200's TP=2 cells of Week 14 were: the table says what the cell needs, not "resources"
    skip = {
        **base,
        "status": "skipped",
        "reason": "resources",
        "detail": "needs 2 GPUs (h200 has 1 per job in this preset)",
    }
    assert tables.show(pd.Series(skip)) == "SKIPPED (needs 2 GPUs)"
    fit = {**skip, "detail": "does not fit: 93.4 GB of BF16 weights per rank, the l40s has 48 GB"}
    assert tables.show(pd.Series(fit)) == "SKIPPED (does not fit)"
    assert (
        tables.show(pd.Series({**skip, "reason": "unsupported", "detail": "no CUDA graphs"})) == "SKIPPED (unsupported)"
    )
    assert tables.show(pd.Series({**base, "valid": False, "value": None})) == "INVALID (7.06 < roofline)"
    assert tables.show(None) == "n/a"


def test_report_counts_cells_per_configuration_and_reports_only_engines_that_ran(tmp_path):
    """The H200's Week 14 record: cell ids (rr4, rrinf) repeat across the six configurations (model x
    parallel layout); four configurations were skipped before any engine started (needs 2 GPUs). The
    report counted 3 cells (ids deduplicated across configurations), listed no skipped cell and
    printed a provenance line of <NA> versions; each is now per configuration."""
    from inferlab import aggregate

    kept = ROOT / "docs/validation/h200-week14"
    cfg = config.load("config/h200-validation.yaml", base_dir=ROOT)
    df = records.normalize(pd.read_parquet(kept / "week14.parquet"))
    summ = aggregate.status_summary(df)
    assert summ.status.value_counts().to_dict() == {"skipped": 8, "ok": 5}
    res = report.build(df, cfg, "week14", tmp_path)
    aggregate.write_report("week14", cfg, df, res, tmp_path / "report.md")
    md = (tmp_path / "report.md").read_text()
    assert "Cells: 5 ok, 8 skipped" in md
    assert "`week14/serving/vllm/h200/mmixtral-8x7b-arch-tp2ep/rrinf`: skipped (resources): needs 2 GPUs" in md
    prov = md[md.index("## Provenance") :]
    assert "<NA>" not in prov and "engine vllm 0.26.0, torch 2.11.0" in prov
    # the tables say what a skipped cell needs, never a blank
    moe = (tmp_path / "tables" / "moe_vs_dense.md").read_text()
    assert "| h200 | mixtral-8x7b-arch | tp2 | SKIPPED (needs 2 GPUs) |" in moe
    assert "| |" not in moe


def test_a_table_whose_selection_is_empty_says_so(tmp_path):
    """The H200's Week 11 record swept rates 2 and inf; the week's high-QPS table selects rate 10 and
    printed an empty table ("|  |"). A table with nothing selected now says what it looked for."""
    kept = ROOT / "docs/validation/h200-week11"
    cfg = config.load("config/h200-validation.yaml", base_dir=ROOT)
    df = records.normalize(pd.read_parquet(kept / "week11.parquet"))
    res = report.build(df, cfg, "week11", tmp_path)
    md = {t["name"]: t["markdown"] for t in res["tables"]}
    assert "n/a: no cell of this run matches tool=bench_serving, request_rate=10" in md["throughput_high_qps"]
    # the tables that do select cells are unchanged by it: four (method, rate) rows of numbers
    assert md["acceptance"].count("| h200 |") == 4 and "n/a" not in md["acceptance"]

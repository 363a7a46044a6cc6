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
    assert tables.show(pd.Series({**base, "status": "skipped", "reason": "needs 2 GPUs"})) == "SKIPPED (needs 2 GPUs)"
    assert tables.show(pd.Series({**base, "valid": False, "value": None})) == "INVALID (7.06 < roofline)"
    assert tables.show(None) == "n/a"

"""The course's claims as checks (inferlab.report.claims): a week file's ``claims:`` judged on the data
per GPU as agrees / disagrees / cannot tell, within the 95% intervals of repeated cells; on synthetic
frames (single runs, repeats, overlapping intervals, a failed cell) and on the kept H100 Week 3 Parquet."""

import importlib
from types import SimpleNamespace

import pandas as pd
import pytest
import yaml
from conftest import ROOT

from inferlab import aggregate, config, records, report
from inferlab.errors import ConfigError
from inferlab.report import claims
from inferlab.report.claims import AGREES, CANNOT_TELL, DISAGREES, Point
from inferlab.report.kinds import Context
from inferlab.report.values import Frame

build_mod = importlib.import_module("inferlab.report.build")
CFG = config.load("config/cluster.yaml", base_dir=ROOT)
KEPT = ROOT / "docs/validation/h100-week03/week03.parquet"


# -- verdicts on points --------------------------------------------------------------------------------
def pts(*vals, over="bs"):
    """Points from single values or lists of repeats."""
    return [Point(f"{over}={i}", values=list(v) if isinstance(v, (list, tuple)) else [v]) for i, v in enumerate(vals)]


def test_increasing_trend_single_runs_judges_point_estimates():
    v, why = claims.trend_verdict(pts(1.0, 1.2, 1.5, 3.0), "increases")
    assert v == AGREES and "every step rises" in why and "single run, no CI" in why and "tau +1.00" in why
    # one step falls: the point estimates disagree
    v, why = claims.trend_verdict(pts(1.0, 1.2, 1.1, 3.0), "increases")
    assert v == DISAGREES and "bs=1 -> bs=2 falls" in why
    v, _ = claims.trend_verdict(pts(3.0, 2.0, 1.0), "decreases")
    assert v == AGREES
    v, _ = claims.trend_verdict(pts(1.0, 2.0, 3.0), "decreases")
    assert v == DISAGREES
    # a tie is no rise
    v, _ = claims.trend_verdict(pts(2.0, 2.0), "increases")
    assert v == CANNOT_TELL


def test_increasing_trend_with_repeats_uses_the_intervals():
    # first and last intervals apart; the middle dips within the noise: agrees
    v, why = claims.trend_verdict(pts([1.0, 1.1, 0.9], [0.95, 1.05, 1.0], [2.0, 2.1, 1.9]), "increases")
    assert v == AGREES and "within the noise" in why and "95% CIs of the mean" in why and "± " in why
    # the same means with wide repeats: first and last intervals overlap -> cannot tell
    v, why = claims.trend_verdict(pts([0.5, 1.5, 1.0], [1.5, 2.5, 2.0]), "increases")
    assert v == CANNOT_TELL and "overlap" in why
    # a fall beyond the noise: disagrees
    v, _ = claims.trend_verdict(pts([1.0, 1.01, 0.99], [0.5, 0.51, 0.49], [2.0, 2.01, 1.99]), "increases")
    assert v == DISAGREES


def test_flat_trend_within_a_tolerance():
    v, why = claims.trend_verdict(pts(10.0, 10.5, 10.9), "flat", 0.10)
    assert v == AGREES and "+9.0% at bs=2" in why
    v, why = claims.trend_verdict(pts(10.0, 10.5, 12.0), "flat", 0.10)
    assert v == DISAGREES and "+20.0%" in why
    # repeats: an interval straddling the band cannot tell
    v, _ = claims.trend_verdict(pts([10.0, 10.1, 9.9], [10.0, 11.6, 10.4]), "flat", 0.10)
    assert v == CANNOT_TELL
    v, _ = claims.trend_verdict(pts(10.0, 11.0), "flat")  # default tolerance 10%
    assert v == AGREES


def test_missing_points_cannot_tell():
    p = pts(1.0, 2.0) + [Point("bs=2", missing="OOM")]
    v, why = claims.trend_verdict(p, "increases")
    assert v == CANNOT_TELL and why == "missing: bs=2 OOM"
    v, why = claims.trend_verdict(pts(1.0), "increases")
    assert v == CANNOT_TELL and "fewer than two levels" in why


def test_compare_with_factor_and_tolerance():
    a, b = Point("a", values=[10.0]), Point("b", values=[4.0])
    assert claims.compare_verdict(a, b, "a > b")[0] == AGREES
    assert claims.compare_verdict(a, b, "a > 3 * b")[0] == DISAGREES
    assert claims.compare_verdict(a, b, "a < b")[0] == DISAGREES
    v, why = claims.compare_verdict(a, b, "a ~ 2.5 * b")
    assert v == AGREES and "a / (2.5 * b) = 1.000" in why
    assert claims.compare_verdict(a, b, "a ~ 2 * b", tolerance=0.2)[0] == DISAGREES
    # repeats: overlapping intervals cannot tell; apart they decide
    ra, rb = Point("a", values=[10.0, 12.0, 8.0]), Point("b", values=[9.0, 11.0, 7.0])
    v, why = claims.compare_verdict(ra, rb, "a > b")
    assert v == CANNOT_TELL and "overlap" in why and "95% CIs" in why
    rb2 = Point("b", values=[1.0, 1.1, 0.9])
    assert claims.compare_verdict(ra, rb2, "a > b")[0] == AGREES
    v, why = claims.compare_verdict(ra, Point("b", missing="SKIPPED (needs 2 GPUs)"), "a > b")
    assert v == CANNOT_TELL and why == "missing: b SKIPPED (needs 2 GPUs)"
    with pytest.raises(ValueError):
        claims.parse_expect("a >= b")


def test_kendall_tau():
    assert claims.kendall_tau([1, 2, 3]) == 1.0
    assert claims.kendall_tau([3, 2, 1]) == -1.0
    assert claims.kendall_tau([1, 3, 2]) == pytest.approx(1 / 3)


# -- claims on synthetic week frames -------------------------------------------------------------------
def week(values: dict, repeats: int = 1, failed=()) -> pd.DataFrame:
    """(gpu, mode, batch_size) -> value or a list of per-repeat values; ``failed``: keys that OOMed
    (every repeat), or (gpu, mode, batch_size, repeat) for one repeat."""
    rows = []
    for (gpu, mode, bs), v in values.items():
        vals = v if isinstance(v, list) else [v] * repeats
        for r, x in enumerate(vals, start=1 if len(vals) > 1 else 0):
            bad = (gpu, mode, bs) in failed or (gpu, mode, bs, r) in failed
            rows.append(
                {
                    "week": "week10",
                    "experiment": "graphs",
                    "engine": "vllm",
                    "gpu": gpu,
                    "configuration": mode,
                    "cell": f"bs{bs}" + (f"-r{r}" if r else ""),
                    "repeat": r,
                    "metric": "latency",
                    "value": None if bad else float(x),
                    "status": "failed" if bad else "ok",
                    "reason": "oom" if bad else "",
                    "valid": pd.NA,
                    "param_mode": mode,
                    "param_batch_size": bs,
                }
            )
    return pd.DataFrame(rows)


GRAPHS = {
    "name": "graphs_help_small_batches",
    "text": "the speed-up is larger at small batch sizes",
    "source": "week10, CUDA graphs",
    "where": {"experiment": "graphs"},
    "trend": {
        "metric": "latency",
        "over": "batch_size",
        "direction": "decreases",
        "of": "ratio",
        "numerator": {"mode": "eager"},
        "denominator": {"mode": "graphs"},
    },
}


def ctx_of(df: pd.DataFrame, doc_claims: dict) -> Context:
    cfg = SimpleNamespace(preset={"gpus": ["h100", "a100"]}, gpus={})
    doc = {"week": "week10", "claims": doc_claims}
    report.check(doc, "week10.yaml")
    return Context(cfg, doc, "week10", {"week10": Frame(df, "week10")})


def verdicts(df, claim):
    c = {k: v for k, v in claim.items() if k != "name"}
    return {v.per["gpu"]: v for v in claims.evaluate_all(ctx_of(df, {claim["name"]: c}))}


def graphs_data(speedups: dict, repeats=1, noise=0.0, failed=()):
    """speedups: gpu -> [eager/graphs ratio per batch size 1, 8, 64]."""
    vals = {}
    for gpu, ratios in speedups.items():
        for bs, r in zip((1, 8, 64), ratios, strict=True):
            base = 10.0 + bs / 10
            if repeats == 1:
                vals[(gpu, "graphs", bs)] = base
                vals[(gpu, "eager", bs)] = base * r
            else:
                vals[(gpu, "graphs", bs)] = [base * (1 + noise * k) for k in (-1, 0, 1)]
                vals[(gpu, "eager", bs)] = [base * r * (1 + noise * k) for k in (-1, 0, 1)]
    return week(vals, failed=failed)


def test_ratio_trend_per_gpu_single_run():
    df = graphs_data({"h100": [2.0, 1.5, 1.1], "a100": [1.2, 1.3, 1.4]})
    v = verdicts(df, GRAPHS)
    assert list(v) == ["h100", "a100"]  # the preset's GPU order
    assert v["h100"].verdict == AGREES and "single run, no CI" in v["h100"].why
    assert "batch_size=1 2 -> batch_size=8 1.5 -> batch_size=64 1.1" in v["h100"].why
    assert v["a100"].verdict == DISAGREES
    assert v["h100"].statement == "ratio(latency, mode=eager / mode=graphs) decreases with batch_size"


def test_ratio_trend_with_repeats_separated_and_overlapping():
    tight = graphs_data({"h100": [2.0, 1.5, 1.1]}, repeats=3, noise=0.01)
    v = verdicts(tight, GRAPHS)["h100"]
    assert v.verdict == AGREES and "95% CIs of the mean" in v.why and "[" in v.why
    # the same means, 20% noise per repeat: the ratio's intervals overlap -> cannot tell
    loose = graphs_data({"h100": [2.0, 1.5, 1.1]}, repeats=3, noise=0.2)
    v = verdicts(loose, GRAPHS)["h100"]
    assert v.verdict == CANNOT_TELL and "overlap" in v.why


def test_a_failed_cell_cannot_tell():
    df = graphs_data({"h100": [2.0, 1.5, 1.1], "a100": [2.0, 1.5, 1.1]}, failed={("a100", "graphs", 64)})
    v = verdicts(df, GRAPHS)
    assert v["h100"].verdict == AGREES
    assert v["a100"].verdict == CANNOT_TELL
    assert v["a100"].why == "missing: batch_size=64 mode=graphs OOM"


def test_a_cell_that_is_not_in_the_run_cannot_tell():
    df = graphs_data({"h100": [2.0, 1.5, 1.1], "a100": [2.0, 1.5, 1.1]})
    df = df[~((df.gpu == "a100") & (df.param_batch_size == 8))]
    v = verdicts(df, GRAPHS)["a100"]
    assert v.verdict == CANNOT_TELL and "no such cell in this run" in v.why


def test_compare_claim_and_a_partly_failed_cell():
    claim = {
        "name": "graphs_faster",
        "text": "graphs are faster",
        "source": "week10",
        "where": {"experiment": "graphs", "batch_size": 1},
        "compare": {
            "metric": "latency",
            "a": {"where": {"mode": "graphs"}},
            "b": {"where": {"mode": "eager"}},
            "expect": "a < b",
        },
    }
    df = week({("h100", "graphs", 1): [10.0, 10.2, 9.8], ("h100", "eager", 1): [20.0, 20.4, 19.6, 20.0]})
    v = verdicts(df, claim)["h100"]
    assert v.verdict == AGREES and "a: mode=graphs 10 ± " in v.why and "(n=3)" in v.why
    assert v.statement == "latency [mode=graphs] < latency [mode=eager]"
    # one repeat of three OOMed: judged on the other two, and said
    df = week(
        {("h100", "graphs", 1): [10.0, 10.2, 9.8], ("h100", "eager", 1): [20.0, 20.4, 19.6]},
        failed={("h100", "eager", 1, 2)},
    )
    v = verdicts(df, claim)["h100"]
    assert v.verdict == AGREES and "(n=2) (1 of 3 repeats: OOM)" in v.why
    # every repeat failed: cannot tell
    df = week({("h100", "graphs", 1): 10.0, ("h100", "eager", 1): 20.0}, failed={("h100", "eager", 1)})
    v = verdicts(df, claim)["h100"]
    assert v.verdict == CANNOT_TELL and v.why == "missing: mode=eager OOM"


def test_claims_are_checked_by_the_schema():
    good = {k: v for k, v in GRAPHS.items() if k != "name"}
    report.check({"week": "week10", "claims": {"c": good}}, "w.yaml")
    bad_cases = [
        ({"c": {**good, "text": ""}}, "claims.c.text"),
        ({"c": {k: v for k, v in good.items() if k != "source"}}, "claims.c"),
        ({"c": {**good, "trend": {**good["trend"], "direction": "grows"}}}, "claims.c"),
        ({"c": {**good, "trend": {k: v for k, v in good["trend"].items() if k != "denominator"}}}, "claims.c"),
        ({"c": {**good, "colour": "red"}}, "claims.c"),
        (
            {"c": {"text": "t", "source": "s", "compare": {"a": {}, "b": {}, "expect": "a >= b", "metric": "m"}}},
            "claims.c",
        ),
        (
            {"c": {"text": "t", "source": "s", "compare": {"a": {"metric": "m"}, "b": {}, "expect": "a > b"}}},
            "claims.c.compare.b",
        ),
        (
            {
                "c": {
                    "text": "t",
                    "source": "s",
                    "compare": {"metric": "m", "a": {}, "b": {"week": "week01"}, "expect": "a > b"},
                }
            },
            "claims.c.compare.b.week",
        ),
        ({"Bad-Name": good}, "claims"),
    ]
    for bad, key in bad_cases:
        with pytest.raises(ConfigError) as e:
            report.check({"week": "week10", "claims": bad}, "w.yaml")
        assert "w.yaml" in str(e.value) and key in str(e.value), (key, str(e.value))


def test_weeks_1_to_3_declare_two_to_four_claims_from_the_course():
    for w in ("week01", "week02", "week03"):
        f = ROOT / "config" / "weeks" / f"{w}.yaml"
        doc = yaml.safe_load(f.read_text())
        report.check(doc, f)
        assert 2 <= len(doc["claims"]) <= 4, w
        for c in doc["claims"].values():
            assert c["source"].startswith(w), c["source"]  # quoted from that week's course text


# -- the kept H100 Week 3 records --------------------------------------------------------------------
def test_week03_claims_on_the_kept_h100_parquet():
    df = records.normalize(pd.read_parquet(KEPT))
    ctx = build_mod.context(df, CFG, "week03")
    got = {(v.claim, v.per["gpu"]): v for v in claims.evaluate_all(ctx)}
    expected = {
        # bs=1 6.66 -> bs=16 7.63: +14.4%, within the 15% the course's own "~10%" (H100 +12.3%) allows
        "decode_flat_below_ridge": AGREES,
        # 10.63 -> 14.72 -> 23.93 -> 42.83 ms/token from bs=64 on
        "decode_grows_past_ridge": AGREES,
        # L=4096 107.3 ms vs 2 x L=2048 54.54 ms: ratio 0.984
        "prefill_linear_at_long_inputs": AGREES,
        # L=64 9.78 -> L=256 12.72 ms: +30%, not the course's "essentially free" (its H100: +6.9%)
        "prefill_floor_short_inputs": DISAGREES,
    }
    assert {k: v.verdict for k, v in got.items()} == {(c, "h100"): e for c, e in expected.items()}
    assert all("single run, no CI" in v.why for v in got.values())
    assert "+30.1%" in got[("prefill_floor_short_inputs", "h100")].why
    assert "a / (2 * b) = 0.984" in got[("prefill_linear_at_long_inputs", "h100")].why
    assert "batch_size=512 42.83" in got[("decode_grows_past_ridge", "h100")].why


def test_stage_4_writes_claims_csv_html_and_the_report_section(tmp_path):
    df = records.normalize(pd.read_parquet(KEPT))
    res = report.build(df, CFG, "week03", tmp_path)
    table = pd.read_csv(tmp_path / "claims.csv")
    assert table.columns.tolist() == ["Claim", "Course text", "GPU", "Verdict", "Why"]
    assert table["Verdict"].tolist() == [AGREES, AGREES, AGREES, DISAGREES]
    assert (
        table["Course text"][0].startswith("\u201cFrom bs=1 to bs=16")
        and "week03-roofline.md" in table["Course text"][0]
    )
    assert '<td class="disagrees">disagrees</td>' in (tmp_path / "claims.html").read_text()
    # the tables' HTML pages beside their CSV and Markdown
    page = (tmp_path / "tables" / "decode_per_token.html").read_text()
    assert '<td class="num">42.83</td>' in page
    aggregate.write_report("week03", CFG, df, res, tmp_path / "report.md")
    md = (tmp_path / "report.md").read_text()
    section = md[md.index("## Claims") :]
    assert "3 agree, 1 disagree, 0 cannot tell (4 verdicts)." in section
    assert (
        "| prefill_floor_short_inputs: latency_avg is flat (within ±10%) over input_len up to input_len=256 |"
        in section
    )
    assert md.index("## Claims") < md.index("![")  # after the tables, before the figures


def test_a_week_without_claims_writes_an_empty_claims_table(tmp_path):
    df = records.normalize(pd.read_parquet(KEPT))
    doc, f = build_mod.week_doc(CFG, "week03")
    doc = {k: v for k, v in doc.items() if k != "claims"}
    res = report.build(df, CFG, "week03", tmp_path, doc=doc)
    assert res["claims"] == [] and all(t["name"] != "claims" for t in res["tables"])
    assert pd.read_csv(tmp_path / "claims.csv").empty
    assert "declares no claims" in (tmp_path / "claims.html").read_text()


# -- a claim's preconditions (`requires`) ------------------------------------------------------------
def test_a_policy_claim_where_no_request_queued_cannot_tell():
    """The H100 Week 6 record: SGLang lpm vs fcfs at 8 req/s, where the engine's queue stayed empty
    (waiting_requests_max 0 in every cell), so "LPM cuts TTFT" cannot be judged there, whatever the
    two TTFTs say; with requests queued the same data is judged, and without the gauge it says so."""
    kept = records.normalize(pd.read_parquet(ROOT / "docs/validation/h100-week06/week06.parquet"))

    def judged(df):
        got = {v.claim: v for v in claims.evaluate_all(build_mod.context(df, CFG, "week06"))}
        return got["lpm_cuts_ttft"], got["radix_cuts_ttft"]

    lpm, radix = judged(kept)
    assert lpm.verdict == CANNOT_TELL and lpm.per == {"gpu": "h100"}
    assert "requirement not met: waiting_requests_max at most 0 (needs > 0)" in lpm.why
    assert "requirement" not in radix.why and radix.verdict == AGREES  # a claim without `requires`: judged as before
    queued = kept.copy()
    queued.loc[queued.metric == "waiting_requests_max", "value"] = 3.0
    lpm, _ = judged(queued)
    ttft = kept[(kept.experiment == "schedule") & (kept.metric == "ttft_p50")].set_index("param_schedule_policy")
    expect = AGREES if ttft.value["lpm"] < ttft.value["fcfs"] else DISAGREES
    assert lpm.verdict == expect and "requirement" not in lpm.why
    lpm, _ = judged(kept[kept.metric != "waiting_requests_max"])
    assert lpm.verdict == CANNOT_TELL and lpm.why.startswith("requirement not measured: no waiting_requests_max")


def test_requires_is_checked_by_the_schema():
    good = {k: v for k, v in GRAPHS.items() if k != "name"}
    req = {"metric": "waiting_requests_max", "above": 0, "because": "nothing to order"}
    report.check({"week": "week10", "claims": {"c": {**good, "requires": [req]}}}, "w.yaml")
    for bad in ([], [{**req, "because": ""}], [{k: v for k, v in req.items() if k != "above"}], [{**req, "below": 1}]):
        with pytest.raises(ConfigError) as e:
            report.check({"week": "week10", "claims": {"c": {**good, "requires": bad}}}, "w.yaml")
        assert "w.yaml" in str(e.value) and "claims.c" in str(e.value)

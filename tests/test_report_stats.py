"""Repeated trials: the Student-t interval, the coefficient of variation, how a cell with repeats prints."""

import math
import statistics

import pandas as pd
import pytest

from inferlab.report import stats
from inferlab.report.values import Cell, Frame


def test_t_quantiles_table_and_interpolation():
    # textbook two-sided 95% values
    for df, q in ((1, 12.706), (2, 4.303), (4, 2.776), (9, 2.262), (29, 2.045), (30, 2.042)):
        assert stats.t_quantile(df, use_scipy=False) == pytest.approx(q, abs=1e-3)
    # between tabulated degrees of freedom (exact: t(0.975, 35) = 2.0301, 50 -> 2.0086, 90 -> 1.9867,
    # 200 -> 1.9719, 1000 -> 1.9623): within 0.001
    for df, exact in ((35, 2.0301), (50, 2.0086), (90, 1.9867), (200, 1.9719), (1000, 1.9623)):
        assert stats.t_quantile(df, use_scipy=False) == pytest.approx(exact, abs=1e-3)
    assert stats.t_quantile(10**9, use_scipy=False) == pytest.approx(1.96, abs=1e-3)
    with pytest.raises(ValueError):
        stats.t_quantile(0)


def test_t_quantiles_agree_with_scipy_where_installed():
    sp = pytest.importorskip("scipy.stats")
    for df in (1, 2, 3, 7, 30, 45, 100, 500):
        assert stats.t_quantile(df, use_scipy=False) == pytest.approx(sp.t.ppf(0.975, df), abs=1e-3)


def test_ci_of_the_mean():
    m, h = stats.ci95([1.0, 2.0, 3.0])
    # mean 2, sample sd 1, n 3: h = t(0.975, 2) * 1 / sqrt(3)
    assert m == 2.0 and h == pytest.approx(4.3027 / math.sqrt(3), rel=1e-4)
    vals = [10.2, 9.8, 10.1, 10.4, 9.9]
    m, h = stats.ci95(vals)
    assert m == pytest.approx(statistics.mean(vals))
    assert h == pytest.approx(2.7764 * statistics.stdev(vals) / math.sqrt(5), rel=1e-4)
    assert stats.ci95([5.0]) == (5.0, None)


def test_coefficient_of_variation():
    assert stats.coefficient_of_variation([10.0, 12.0, 14.0]) == pytest.approx(2.0 / 12.0)
    assert stats.coefficient_of_variation([3.0]) is None
    assert stats.coefficient_of_variation([0.0, 0.0]) is None


def test_format_repeats():
    assert stats.format_repeats([7.0625]) == "7.06"
    assert stats.format_repeats([7.0, 7.2]) == "7.10 (n=2: 7.00, 7.20)"
    assert stats.format_repeats([1.0, 2.0, 3.0]) == "2.00 ± 2.48"
    assert stats.format_repeats([1.0, 2.0, 3.0], "{:.1f}") == "2.0 ± 2.5"


def test_base_cell():
    assert stats.base_cell("bs16-r2", 2) == "bs16"
    assert stats.base_cell("bs16", 0) == "bs16"
    assert stats.base_cell("bs16", None) == "bs16"


def _rows(values, statuses=None, metric="latency_avg"):
    n = len(values)
    statuses = statuses or ["ok"] * n
    return pd.DataFrame(
        {
            "week": ["week03"] * n,
            "experiment": ["decode"] * n,
            "engine": ["vllm"] * n,
            "gpu": ["h100"] * n,
            "configuration": ["default"] * n,
            "cell": [f"bs1-r{i + 1}" for i in range(n)],
            "repeat": list(range(1, n + 1)),
            "metric": [metric] * n,
            "value": [v if s == "ok" else None for v, s in zip(values, statuses, strict=True)],
            "raw_value": values,
            "status": statuses,
            "reason": [None if s == "ok" else "oom" for s in statuses],
            "valid": pd.array([True] * n, dtype="boolean"),
            "param_batch_size": [1] * n,
        }
    )


def test_a_cell_with_repeats_prints_mean_and_interval():
    c = Frame(_rows([7.0, 7.2, 7.1])).cell({"gpu": "h100", "batch_size": 1}, "latency_avg")
    assert c.n == 3 and c.mean == pytest.approx(7.1)
    assert c.show() == f"7.10 ± {stats.ci95([7.0, 7.2, 7.1])[1]:.2f}"
    two = Frame(_rows([7.0, 7.2])).cell({"batch_size": 1}, "latency_avg")
    assert two.show() == "7.10 (n=2: 7.00, 7.20)"
    # a repeat that failed is said, the others still give the number
    part = Frame(_rows([7.0, 7.2, 9.9], ["ok", "ok", "failed"])).cell({"batch_size": 1}, "latency_avg")
    assert part.show() == "7.10 (n=2: 7.00, 7.20) (1 of 3 repeats: OOM)"
    none = Cell(_rows([1.0, 2.0], ["failed", "failed"]).to_dict("records"))
    assert none.show() == "OOM" and not none.ok


def test_repeat_stats_for_the_parquet():
    df = pd.concat([_rows([10.0, 12.0, 14.0]), _rows([5.0], metric="latency_p50")], ignore_index=True)
    s = stats.repeat_stats(df).set_index("metric")
    assert s.loc["latency_avg", "n"] == 3 and s.loc["latency_avg", "cell"] == "bs1"
    assert s.loc["latency_avg", "cv"] == pytest.approx(2.0 / 12.0)
    assert s.loc["latency_avg", "ci95_half_width"] == pytest.approx(4.3027 * 2.0 / math.sqrt(3), rel=1e-4)
    assert s.loc["latency_p50", "n"] == 1 and pd.isna(s.loc["latency_p50", "cv"])
    # a Parquet without a repeat column: one repeat per cell
    s1 = stats.repeat_stats(_rows([3.0]).drop(columns=["repeat"]))
    assert s1["n"].tolist() == [1]

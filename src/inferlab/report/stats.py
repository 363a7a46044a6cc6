"""Repeated trials: mean, 95% Student-t confidence interval, coefficient of variation.

A cell measured N times (``repeats: N`` on an experiment) has N rows per metric in the week's
Parquet, told apart by the ``repeat`` column (1..N; 0 or absent = a single trial) and by the cell id's
``-r<k>`` suffix. Tables show (see :func:`format_repeats`):

- N >= 3: ``mean ± h``, h = half-width of the 95% confidence interval of the mean,
  t(0.975, N-1) * s / sqrt(N), s the sample standard deviation (ddof = 1);
- N = 2: ``mean (n=2: a, b)``: the mean, then both values (two points give no useful interval);
- N = 1: the value.

The Student-t quantile comes from scipy when it is installed, else from the table below (exact to
4 decimals for df <= 30; between the tabulated df above 30 it is interpolated linearly in 1/df,
which is within 0.001 of the exact quantile).
"""

from __future__ import annotations

import math
import re

import pandas as pd

# two-sided 95% (upper 0.975) quantiles of Student's t by degrees of freedom
T975 = {
    1: 12.7062,
    2: 4.3027,
    3: 3.1824,
    4: 2.7764,
    5: 2.5706,
    6: 2.4469,
    7: 2.3646,
    8: 2.3060,
    9: 2.2622,
    10: 2.2281,
    11: 2.2010,
    12: 2.1788,
    13: 2.1604,
    14: 2.1448,
    15: 2.1314,
    16: 2.1199,
    17: 2.1098,
    18: 2.1009,
    19: 2.0930,
    20: 2.0860,
    21: 2.0796,
    22: 2.0739,
    23: 2.0687,
    24: 2.0639,
    25: 2.0595,
    26: 2.0555,
    27: 2.0518,
    28: 2.0484,
    29: 2.0452,
    30: 2.0423,
    40: 2.0211,
    60: 2.0003,
    120: 1.9799,
}
Z975 = 1.9600


def t_quantile(df: int, use_scipy: bool = True) -> float:
    """Upper 0.975 quantile of Student's t with ``df`` degrees of freedom (95% two-sided)."""
    if df < 1:
        raise ValueError("a confidence interval needs at least two values (df >= 1)")
    if use_scipy:
        try:
            from scipy import stats as _st

            return float(_st.t.ppf(0.975, df))
        except ImportError:
            pass
    if df in T975:
        return T975[df]
    known = sorted(T975) + [math.inf]
    hi = next(k for k in known if k > df)
    lo = max(k for k in known if k < df)
    q_lo, q_hi = T975[lo], (Z975 if hi == math.inf else T975[hi])
    # linear in 1/df (the quantile is nearly linear in 1/df for large df)
    x, x_lo, x_hi = 1 / df, 1 / lo, (0.0 if hi == math.inf else 1 / hi)
    return q_hi + (q_lo - q_hi) * (x - x_hi) / (x_lo - x_hi)


def mean_sd(values) -> tuple[float, float | None]:
    v = [float(x) for x in values]
    m = sum(v) / len(v)
    if len(v) < 2:
        return m, None
    return m, math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1))


def ci95(values) -> tuple[float, float | None]:
    """(mean, half-width of the 95% Student-t confidence interval of the mean); half-width None
    for fewer than two values."""
    m, s = mean_sd(values)
    if s is None:
        return m, None
    n = len(values)
    return m, t_quantile(n - 1) * s / math.sqrt(n)


def coefficient_of_variation(values) -> float | None:
    """Sample standard deviation / mean (None for fewer than two values or a zero mean)."""
    m, s = mean_sd(values)
    if s is None or m == 0:
        return None
    return s / abs(m)


def format_repeats(values, fmt: str = "{:.2f}") -> str:
    """One table cell for the valid values of a cell's repeats (see the module docstring)."""
    if len(values) == 1:
        return fmt.format(values[0])
    m, h = ci95(values)
    if len(values) == 2:
        return f"{fmt.format(m)} (n=2: {fmt.format(values[0])}, {fmt.format(values[1])})"
    return f"{fmt.format(m)} ± {fmt.format(h)}"


_REPEAT_SUFFIX = re.compile(r"-r[0-9]+$")


def base_cell(cell: str, repeat) -> str:
    """The cell id shared by a cell's repeats (``bs16-r2`` -> ``bs16``)."""
    if repeat is None or pd.isna(repeat) or int(repeat) == 0:
        return cell
    return _REPEAT_SUFFIX.sub("", cell)


IDENTITY = ["week", "experiment", "engine", "gpu", "configuration"]


def repeat_stats(df: pd.DataFrame) -> pd.DataFrame:
    """Per (cell, metric) of a week's Parquet: n (valid repeats), mean, sd, 95% CI half-width and
    coefficient of variation (sd / mean). A frame without a ``repeat`` column has one repeat per cell."""
    d = df[(df["status"] == "ok") & df["value"].notna()].copy()
    rep = d["repeat"] if "repeat" in d else pd.Series(0, index=d.index)
    d["base_cell"] = [base_cell(c, r) for c, r in zip(d["cell"], rep, strict=True)]
    keys = [k for k in IDENTITY if k in d] + ["base_cell", "metric"]
    rows = []
    for key, g in d.groupby(keys, sort=False, dropna=False):
        vals = g["value"].astype(float).tolist()
        m, s = mean_sd(vals)
        _, h = ci95(vals)
        rows.append(
            {
                **dict(zip(keys, key, strict=True)),
                "n": len(vals),
                "mean": m,
                "sd": s,
                "ci95_half_width": h,
                "cv": coefficient_of_variation(vals),
            }
        )
    cols = keys + ["n", "mean", "sd", "ci95_half_width", "cv"]
    return pd.DataFrame(rows, columns=cols).rename(columns={"base_cell": "cell"})

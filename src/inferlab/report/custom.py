"""Named custom tables: what no table kind can say, one small function each.

A week file names one with ``kind: custom, function: <name>``; the function gets the week's
:class:`~inferlab.report.kinds.Context`, the table's declaration, its rows (``where`` applied) and
the ``for_each`` level, and returns a DataFrame of text. Settings come from the declaration.
"""

from __future__ import annotations

import math

import pandas as pd

from ..tables import NOT_IN_MATRIX
from . import columns as C


def saturation_point(ctx, spec: dict, frame, fixed: dict) -> pd.DataFrame:
    """Week 1: per engine and GPU, the first level of ``axis`` (request_rate) after which ``metric``
    (output_throughput) stops growing: the next level gains less than ``min_gain`` (fraction);
    the evidence is the two numbers. Options: metric, axis, min_gain, point (template of a level),
    what (the metric's name in the evidence)."""
    o = spec.get("options") or {}
    metric, axis = o.get("metric", "output_throughput"), o.get("axis", "request_rate")
    min_gain, what = float(o.get("min_gain", 0.10)), o.get("what", metric)
    pt = o.get("point", axis + "={" + axis + "}")

    def at(level):
        return C.fill(pt, {axis: level})

    rows = []
    levels = frame.levels(axis, ctx.order, metric)
    for e in frame.levels("engine", ctx.order):
        for g in frame.select({"engine": e}).levels("gpu", ctx.order):
            cells = [(lv, frame.cell({**fixed, "engine": e, "gpu": g, axis: lv}, metric)) for lv in levels]
            have = [(lv, c.mean) for lv, c in cells if c is not None and c.ok]
            row = {"Engine": e, "GPU": g}
            if len(have) < 2:
                shown = ", ".join(f"{at(lv)} {c.show() if c is not None else NOT_IN_MATRIX}" for lv, c in cells)
                row.update({"Saturation rate": f"n/a (fewer than two measured rates: {shown})", "Evidence": ""})
                rows.append(row)
                continue
            sat = None
            for (r0, t0), (r1, t1) in zip(have, have[1:], strict=False):
                gain = (t1 - t0) / t0 if t0 else math.inf
                if gain < min_gain:
                    sat = (r0, t0, r1, t1, gain)
                    break
            if sat:
                r0, t0, r1, t1, gain = sat
                row["Saturation rate"] = at(r0)
                row["Evidence"] = f"{what} {t0:.1f} at {at(r0)} -> {t1:.1f} at {at(r1)} ({100 * gain:+.1f}%)"
            else:
                (r0, t0), (r1, t1) = have[-2], have[-1]
                row["Saturation rate"] = f"not saturated up to {at(have[-1][0])}"
                row["Evidence"] = f"{what} still grows {100 * (t1 - t0) / t0:+.1f}% from {at(r0)} to {at(r1)}"
            rows.append(row)
    return pd.DataFrame(rows, columns=["Engine", "GPU", "Saturation rate", "Evidence"])


FUNCTIONS = {"saturation_point": saturation_point}


def get(name: str):
    return FUNCTIONS[name]

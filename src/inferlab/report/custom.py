"""Named custom tables: what no table kind can say, one small function each.

A week file names one with ``kind: custom, function: <name>``; the function gets the week's
:class:`~inferlab.report.kinds.Context`, the table's declaration, its rows (``where`` applied) and
the ``for_each`` level, and returns a DataFrame of text. Settings come from the declaration.
"""

from __future__ import annotations

import itertools
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


def versus_baseline(ctx, spec: dict, frame, fixed: dict) -> pd.DataFrame:
    """Week 11: each treated cell's metrics beside the baseline experiment's at the same ``match``
    levels (speculative decoding vs none at the same request rate), and their ratio. The baseline is
    another experiment (its cells lack the treated axes), which no table kind can join. Options:
    treated (where), baseline (where), match (axes), metrics [{metric, label, format}]."""
    o = spec.get("options") or {}
    treated, base = frame.select(o.get("treated")), frame.select(o["baseline"])
    match = list(o.get("match") or ["request_rate"])
    axes = [spec["rows"]] if isinstance(spec["rows"], str) else list(spec["rows"])
    labels = spec.get("labels") or {}
    metrics = o["metrics"]
    rows = []
    first = metrics[0]["metric"]
    for combo in itertools.product(*[treated.levels(a, ctx.order, first) for a in axes]):
        sel = {**fixed, **dict(zip(axes, combo, strict=True))}
        if treated.cell(sel) is None:
            continue
        row = {labels.get(a, a): v for a, v in zip(axes, combo, strict=True)}
        for m in metrics:
            fmt = m.get("format", "{:.2f}")
            v = treated.cell(sel, m["metric"])
            b = base.cell({a: sel[a] for a in match if a in sel}, m["metric"])
            lab = m.get("label", m["metric"])
            row[lab] = v.show(fmt) if v is not None else NOT_IN_MATRIX
            row[f"{lab} (none)"] = b.show(fmt) if b is not None else NOT_IN_MATRIX
            if v is not None and b is not None and v.ok and b.ok and b.mean:
                row[f"{lab} vs none"] = f"{v.mean / b.mean:.2f}x"
            else:
                bad = v if v is None or not v.ok else b
                row[f"{lab} vs none"] = bad.status() if bad is not None else NOT_IN_MATRIX
        rows.append(row)
    return pd.DataFrame(rows)


def disaggregation_verdict(ctx, spec: dict, frame, fixed: dict) -> pd.DataFrame:
    """Week 16, "when does disaggregation help?": per GPU and input length, each P/D experiment's TTFT
    and TPOT against the colocated baseline's at the same level, and the answer the two ratios give:
    P/D helps where it cuts TPOT (decode no longer waits behind prefills) by more than ``tolerance``
    without raising TTFT by more (the KV hand-off). Options: treated (experiments), baseline
    (experiment), axis (input_len), tolerance (fraction, default 0.05)."""
    o = spec.get("options") or {}
    axis, tol = o.get("axis", "input_len"), float(o.get("tolerance", 0.05))
    base = frame.select({"experiment": o.get("baseline", "colocated")})
    rows = []
    for exp in o["treated"]:
        tr = frame.select({"experiment": exp})
        for g in tr.levels("gpu", ctx.order):
            for lv in tr.levels(axis, ctx.order, "ttft_p50"):
                sel = {**fixed, "gpu": g, axis: lv}
                row = {"GPU": g, "P/D": exp, axis: lv}
                ratios, why = {}, None
                for m, lab in (("ttft_p50", "TTFT"), ("tpot_p50", "TPOT")):
                    v, b = tr.cell(sel, m), base.cell(sel, m)
                    if v is None or b is None or not (v.ok and b.ok) or not b.mean:
                        bad = v if v is None or not v.ok else b
                        row[f"{lab} P/D / colocated"] = bad.status() if bad is not None else NOT_IN_MATRIX
                        why = why or row[f"{lab} P/D / colocated"]
                        continue
                    ratios[lab] = v.mean / b.mean
                    row[f"{lab} P/D / colocated"] = f"{ratios[lab]:.2f}x ({v.mean:.1f} vs {b.mean:.1f} ms)"
                if why:
                    row["Answer"] = f"cannot tell ({why})"
                elif ratios["TPOT"] < 1 - tol and ratios["TTFT"] <= 1 + tol:
                    row["Answer"] = "helps: faster decode, no TTFT cost"
                elif ratios["TPOT"] < 1 - tol:
                    row["Answer"] = "trade-off: faster decode, slower first token (KV hand-off)"
                else:
                    row["Answer"] = "does not help here: decode is not faster"
                rows.append(row)
    return pd.DataFrame(rows)


from .knobs import accuracy_gate, stacked_path  # noqa: E402  (knob studies, report/knobs.py)

FUNCTIONS = {"saturation_point": saturation_point, "accuracy_gate": accuracy_gate, "stacked_path": stacked_path}
FUNCTIONS["versus_baseline"] = versus_baseline  # Week 11
FUNCTIONS["disaggregation_verdict"] = disaggregation_verdict  # Week 16


def get(name: str):
    return FUNCTIONS[name]

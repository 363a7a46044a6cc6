"""Knob studies (the tuning harness's isolation and stacked runs) and their accuracy gate.

A knob study's configurations carry their knob label (Parquet ``param_knob``: ``baseline``,
``max_num_seqs=16``, ``+quantization=int8+max_num_seqs=16``; inferlab.matrix.knob_points). Two
experiments share the study's server axes and design: one measures speed, one accuracy (lm_eval);
these tables join them on the knob label.

The gate, per knob: its accuracy a_k (stderr s_k) against the baseline's a_b (s_b). With the
stated ``tolerance`` (absolute, e.g. 0.02 = 2 points) and ``z``:

- **YES** (safe to ship): the drop a_b - a_k is at most tolerance + z * sqrt(s_b^2 + s_k^2), i.e.
  the accuracy is within tolerance of the baseline's once the sampling error is allowed for;
- **NO**: the drop exceeds it;
- **PENDING**: the accuracy of the knob or of the baseline was not measured (failed, skipped, absent),
  as the harness writes "PENDING (accuracy run failed)".
"""

from __future__ import annotations

import math

import pandas as pd

from ..tables import NOT_IN_MATRIX


def verdict(acc_b, se_b, acc_k, se_k, tolerance: float, z: float = 2.0) -> tuple[str, str]:
    """(YES | NO | PENDING, evidence)."""
    if acc_b is None or acc_k is None:
        return "PENDING", "accuracy not measured"
    se = math.sqrt((se_b or 0.0) ** 2 + (se_k or 0.0) ** 2)
    allowed = tolerance + z * se
    drop = acc_b - acc_k
    word = "YES" if drop <= allowed else "NO"
    return word, f"drop {drop:+.3f} {'<=' if word == 'YES' else '>'} {tolerance:g} + {z:g} x {se:.3f} = {allowed:.3f}"


def _get(frame, sel, metric):
    c = frame.cell(sel, metric)
    return c, (c.mean if c is not None and c.ok else None)


def _opts(spec):
    o = spec.get("options") or {}
    perf = o.get("perf") or {}
    acc = o.get("accuracy") or {}
    return (
        o,
        perf.get("experiment"),
        perf.get("metric"),
        acc.get("experiment"),
        acc.get("metric", "accuracy_strict_match"),
        float(o.get("tolerance", 0.02)),
        float(o.get("z", 2.0)),
        o.get("baseline", "baseline"),
    )


def accuracy_gate(ctx, spec: dict, frame, fixed: dict) -> pd.DataFrame:
    """One row per GPU and knob: speed (and its change vs the baseline), accuracy ± stderr, and the
    verdict. Options: perf {experiment, metric}, accuracy {experiment, metric}, tolerance, z,
    perf_label, perf_format."""
    o, pexp, pmetric, aexp, ametric, tol, z, base = _opts(spec)
    pfmt = o.get("perf_format", "{:.1f}")
    plabel = o.get("perf_label", pmetric or "speed")
    cols = ["GPU", "Knob", plabel, "vs baseline", "Accuracy", "Δ accuracy", "Safe to ship?", "Evidence"]
    rows = []
    acc_f = frame.select({"experiment": aexp}) if aexp else frame
    perf_f = frame.select({"experiment": pexp}) if pexp else None
    knobs = acc_f.levels("knob", ctx.order)
    if perf_f is not None:
        knobs += [k for k in perf_f.levels("knob", ctx.order) if k not in knobs]
    for g in frame.levels("gpu", ctx.order):
        sel_b = {**fixed, "gpu": g, "knob": base}
        _, ab = _get(acc_f, sel_b, ametric)
        _, sb = _get(acc_f, sel_b, ametric + "_stderr")
        pb = _get(perf_f, sel_b, pmetric)[1] if perf_f is not None else None
        for k in knobs:
            sel = {**fixed, "gpu": g, "knob": k}
            ac, ak = _get(acc_f, sel, ametric)
            _, sk = _get(acc_f, sel, ametric + "_stderr")
            row = {"GPU": g, "Knob": k}
            if perf_f is not None:
                pc, pk = _get(perf_f, sel, pmetric)
                row[plabel] = pc.show(pfmt) if pc is not None else NOT_IN_MATRIX
                row["vs baseline"] = f"{100 * (pk - pb) / pb:+.1f}%" if pk is not None and pb else "-"
            else:
                row[plabel], row["vs baseline"] = "-", "-"
            if ak is not None:
                row["Accuracy"] = f"{ak:.3f} ± {sk:.3f}" if sk is not None else f"{ak:.3f}"
            else:
                row["Accuracy"] = ac.status() if ac is not None else NOT_IN_MATRIX
            row["Δ accuracy"] = f"{ak - ab:+.3f}" if ak is not None and ab is not None else "-"
            if k == base:
                row["Safe to ship?"] = "baseline" if ak is not None else "PENDING"
                row["Evidence"] = "the reference" if ak is not None else "baseline accuracy not measured"
            else:
                row["Safe to ship?"], row["Evidence"] = verdict(ab, sb, ak, sk, tol, z)
            rows.append(row)
    return pd.DataFrame(rows, columns=cols)


def stacked_path(ctx, spec: dict, frame, fixed: dict) -> pd.DataFrame:
    """A stacked study's path: from the baseline, each knob in order is added to the kept set; it is
    kept when ``perf.metric`` improves (``higher_is_better``, default true) and, when an accuracy
    experiment is given, its accuracy passes the gate against the baseline. Every subset was
    measured (inferlab.matrix), so each step reads the configuration kept-set + knob."""
    o, pexp, pmetric, aexp, ametric, tol, z, base = _opts(spec)
    hib = bool(o.get("higher_is_better", True))
    pfmt = o.get("perf_format", "{:.1f}")
    perf_f = frame.select({"experiment": pexp}) if pexp else frame
    acc_f = frame.select({"experiment": aexp}) if aexp else None
    cols = ["GPU", "Step", "Configuration", pmetric, "vs kept", "Accuracy gate", "Kept?"]
    rows = []
    labels = [k for k in perf_f.levels("knob", ctx.order) if k != base]
    by_set = {frozenset(k[1:].split("+")): k for k in labels if k.startswith("+")}
    singles = [k[1:] for k in labels if k.startswith("+") and "+" not in k[1:]]
    for g in frame.levels("gpu", ctx.order):

        def label(kept):
            return base if not kept else by_set.get(frozenset(kept), "+" + "+".join(kept))

        def val(f, lab, m, g=g):
            return _get(f, {**fixed, "gpu": g, "knob": lab}, m)

        kept: list[str] = []
        pc, best = val(perf_f, base, pmetric)
        rows.append(
            {"GPU": g, "Step": 0, "Configuration": base, pmetric: pc.show(pfmt) if pc else NOT_IN_MATRIX}
            | {"vs kept": "-", "Accuracy gate": "-", "Kept?": "start"}
        )
        ab = val(acc_f, base, ametric)[1] if acc_f is not None else None
        sb = val(acc_f, base, ametric + "_stderr")[1] if acc_f is not None else None
        for i, knob in enumerate(singles, 1):
            trial = [k for k in singles if k in kept or k == knob]
            lab = label(trial)
            pc, pv = val(perf_f, lab, pmetric)
            helps = pv is not None and best is not None and ((pv > best) if hib else (pv < best))
            gate = "-"
            if acc_f is not None:
                ak = val(acc_f, lab, ametric)[1]
                sk = val(acc_f, lab, ametric + "_stderr")[1]
                gate = verdict(ab, sb, ak, sk, tol, z)[0]
            keep = helps and gate in ("-", "YES")
            rows.append(
                {
                    "GPU": g,
                    "Step": i,
                    "Configuration": lab,
                    pmetric: pc.show(pfmt) if pc is not None else NOT_IN_MATRIX,
                    "vs kept": f"{100 * (pv - best) / best:+.1f}%" if pv is not None and best else "-",
                    "Accuracy gate": gate,
                    "Kept?": "kept" if keep else ("dropped (not measured)" if pv is None else "dropped"),
                }
            )
            if keep:
                kept.append(knob)
                best = pv
    return pd.DataFrame(rows, columns=cols)

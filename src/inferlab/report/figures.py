"""Figure kinds: a week file's ``figures:`` entries -> PNG files, legible as published.

Every figure takes ``where``, ``title``, ``xlabel``, ``ylabel``, ``caption`` (written once: the report
and ``snakemake --report`` both use it), ``size: [width, height]`` (inches, per facet) and:

- ``line``: ``x`` an axis, ``y`` a metric (or a list of metrics), ``hue`` / ``style`` axes (colour /
  line style), ``facet`` (one panel per level), ``log: {x: 2, y: 10}`` (or ``[x]``), ``xticks`` (a
  template of the x level, e.g. ``rr={request_rate}``), ``vlines: {theory: Q, label: ...}`` (one
  dashed line per hue level at a theory quantity, e.g. the ridge point), ``reference: {experiment: E,
  metric: M, label: ..., where: {...}}`` (one dotted horizontal line per hue level, in its colour, at
  the value of M in the one cell of experiment E / ``where`` at that level, e.g. Week 4's HF baseline;
  the label is a template of the hue axis, with a legend entry; a reference cell without a number is
  named under the plot like any other);
- ``bar``: the same, bars grouped by hue (``stacked: true`` stacks them; a list of metrics as ``y``
  stacks the metrics, e.g. a kernel-time breakdown);
- ``scatter``: ``x`` and ``y`` metrics (or expressions) of every cell, coloured by ``hue``;
- ``pareto``: a scatter with the Pareto front drawn through its points (``maximize`` / ``minimize``);
- ``custom``: ``function: <name>`` of :mod:`inferlab.report.custom_figures` (``options`` its settings),
  for what no kind can say (e.g. Week 8's ITL over time, from each cell's per-request detail).

Repeats (N >= 3) draw the mean with its 95% confidence interval as an error bar. Cells without a
number are named under the plot (wrapped to the figure's width), legends sit outside the axes, log
axes are ticked at the swept values printed as written (1, 2, 4: not 1.0, 2.0, 4.0).
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

from .. import io
from . import columns as C
from . import kinds, stats
from .values import Frame, text

DPI = 120
NOTE_FONT = 7
NOTE_LINES = 6


def _list(x):
    return [] if x is None else list(x) if isinstance(x, (list, tuple)) else [x]


def _log(spec) -> dict:
    lg = spec.get("log") or {}
    if isinstance(lg, str):
        lg = [lg]
    if isinstance(lg, list):
        lg = {k: 10 for k in lg}
    return {k: float(v) for k, v in lg.items()}


def _short(metrics: list[str]) -> dict:
    """Legend names of several metrics: their common prefix removed (kernel_time_share_gemm -> gemm)."""
    if len(metrics) < 2:
        return {m: m for m in metrics}
    pre = metrics[0]
    for m in metrics[1:]:
        while not m.startswith(pre):
            pre = pre[:-1]
    pre = pre[: pre.rfind("_") + 1] if "_" in pre else ""
    return {m: m[len(pre) :] or m for m in metrics}


def wrap_note(items: list[str], width_in: float, fontsize: float = NOTE_FONT) -> str:
    """'not plotted: a; b; ...' wrapped to the figure's width, at most NOTE_LINES lines."""
    if not items:
        return ""
    chars = max(20, int(width_in * 72 / (fontsize * 0.66)))
    lines = textwrap.wrap("not plotted: " + "; ".join(items), chars, break_long_words=True)
    if len(lines) > NOTE_LINES:
        shown = "\n".join(lines[: NOTE_LINES - 1])
        return shown + f"\n... ({len(items)} cells in all; report.md lists every one)"
    return "\n".join(lines)


def _series(ctx: kinds.Context, spec: dict, frame: Frame):
    """Points of a line / bar figure: {(facet, hue, style, metric): [(x_level, mean, half_width)]}
    and the cells without a number."""
    ys = _list(spec["y"])
    x = spec["x"]
    lv = {}
    for role in ("facet", "hue", "style"):
        a = spec.get(role)
        lv[role] = frame.levels(a, ctx.order) if a else [None]
    xs = frame.levels(x, ctx.order)
    series, missing = {}, []
    for f in lv["facet"]:
        for h in lv["hue"]:
            for s in lv["style"]:
                for m in ys:
                    pts = []
                    for xl in xs:
                        sel = {spec[r]: v for r, v in (("facet", f), ("hue", h), ("style", s)) if v is not None}
                        sel[x] = xl
                        c = frame.cell(sel, m)
                        what = f" {m}" if len(ys) > 1 else ""
                        if c is None:
                            c = frame.cell(sel)  # a failed cell may have no row for this metric
                            what = ""
                            if c is None or c.first["status"] == "ok":
                                continue
                        if not c.ok:
                            who = "/".join(v for v in (f, s, h) if v is not None)
                            missing.append(f"{who} {_xtick(spec, xl)}{what}: {c.status()}".strip())
                            continue
                        vals = c.values
                        hw = stats.ci95(vals)[1] if len(vals) >= 3 else None
                        pts.append((xl, c.mean, hw))
                    if pts:
                        series[(f, h, s, m)] = pts
    return lv, xs, series, list(dict.fromkeys(missing))


def _xtick(spec, level) -> str:
    return C.fill(spec.get("xticks", spec["x"] + "={" + spec["x"] + "}"), {spec["x"]: level})


def _numeric(levels) -> bool:
    try:
        return all(math.isfinite(float(v)) for v in levels) and bool(levels)
    except ValueError:
        return False


def render(ctx: kinds.Context, key: str, spec: dict):
    """Draw one figure: (matplotlib Figure, the cells it could not plot)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid")
    frame = ctx.frame.select(spec.get("where"))
    kind = spec["kind"]
    if kind == "custom":  # what no figure kind can say: a named function (inferlab.report.custom_figures)
        from . import custom_figures

        return custom_figures.get(spec["function"])(ctx, spec, frame, plt, sns)
    if kind in ("scatter", "pareto"):
        return _render_points(ctx, spec, frame, plt, sns)
    lv, xs, series, missing = _series(ctx, spec, frame)
    refs = reference_values(ctx, spec, lv["hue"]) if kind == "line" else []
    missing += [f"{label}: {why}" for _, label, v, why in refs if v is None]
    log = _log(spec)
    w, h = spec.get("size", [7, 4.5])
    nf = len(lv["facet"])
    note = wrap_note(missing, w * nf)
    fig, top, bottom = _figure(plt, w * nf, h, note)
    axes = top.subplots(1, nf, squeeze=False)[0]
    hues = list(lv["hue"])
    ys = _list(spec["y"])
    names = _short(ys)
    multi_metric = len(ys) > 1
    colour_keys = ys if multi_metric and not spec.get("hue") else hues
    palette = dict(zip(colour_keys, sns.color_palette("tab10", max(1, len(colour_keys))), strict=False))
    dashes = ["-", "--", ":", "-."]
    markers = ["o", "s", "^", "D", "v"]
    styles = {s: i for i, s in enumerate(lv["style"])}
    categorical = spec.get("x_categorical", not _numeric(xs))
    pos = {xl: (i if categorical else float(xl)) for i, xl in enumerate(xs)}
    handles = {}
    for ax, f in zip(axes, lv["facet"], strict=True):
        mine = {k: v for k, v in series.items() if k[0] == f}
        if kind == "bar":
            _bars(ax, spec, mine, xs, hues, ys, palette, names, handles)
        else:
            for (_, hlv, slv, m), pts in mine.items():
                ck = m if multi_metric and not spec.get("hue") else hlv
                label = ", ".join(str(v) for v in (hlv, slv, names[m] if multi_metric else None) if v is not None)
                px = [pos[p[0]] for p in pts]
                py = [p[1] for p in pts]
                i = styles[slv]
                (ln,) = ax.plot(
                    px, py, marker=markers[i % len(markers)], ls=dashes[i % len(dashes)], color=palette[ck], label=label
                )
                errs = [p[2] for p in pts]
                if any(e is not None for e in errs):
                    ax.errorbar(px, py, yerr=[e or 0 for e in errs], fmt="none", ecolor=palette[ck], capsize=3)
                handles.setdefault(label or m, ln)
            _vlines(ctx, spec, ax, hues, palette, handles)
            for h, label, v, _ in refs:
                if v is not None:
                    ln = ax.axhline(v, color=palette.get(h), ls=":", lw=1.5, label=label)
                    handles.setdefault(label, ln)
        if kind == "bar" or categorical:
            ax.set_xticks(range(len(xs)), [_xtick(spec, x) for x in xs])
        _axes_scales(ax, spec, log, xs, categorical)
        ax.set_xlabel(spec.get("xlabel", spec["x"]))
        ax.set_ylabel(spec.get("ylabel", ", ".join(ys)))
        if nf > 1:
            ax.set_title(f"{spec['facet']}={f}", fontsize=10)
    _titles(top, axes, spec, nf)
    if len(handles) > 1 or spec.get("legend") is True:
        top.legend(list(handles.values()), list(handles.keys()), loc="outside right upper", fontsize=8)
    if note:
        bottom.text(0.01, 0.98, note, ha="left", va="top", fontsize=NOTE_FONT, color="firebrick")
    return fig, missing


def _figure(plt, w, h, note):
    n_lines = note.count("\n") + 1 if note else 0
    note_h = 0.16 + n_lines * NOTE_FONT * 1.35 / 72 if note else 0
    fig = plt.figure(figsize=(w, h + note_h), dpi=DPI, layout="constrained")
    if not note:
        return fig, fig, None
    top, bottom = fig.subfigures(2, 1, height_ratios=[h, note_h])
    return fig, top, bottom


def _titles(top, axes, spec, nf):
    if spec.get("title"):
        if nf > 1:
            top.suptitle(spec["title"])
        else:
            axes[0].set_title(spec["title"])


def _bars(ax, spec, series, xs, hues, ys, palette, names, handles):
    stacked = spec.get("stacked", False) or len(ys) > 1
    n = 1 if stacked else max(1, len(series))
    width = 0.8 / n
    bottom = [0.0] * len(xs)
    for i, ((_, h, s, m), pts) in enumerate(series.items()):
        got = {p[0]: (p[1], p[2]) for p in pts}
        vals = [got.get(x, (0.0, None))[0] for x in xs]
        errs = [got.get(x, (0.0, None))[1] or 0 for x in xs]
        off = 0 if stacked else (i - (n - 1) / 2) * width
        ck = m if len(ys) > 1 and not spec.get("hue") else h
        label = ", ".join(str(v) for v in (h, s, names[m] if len(ys) > 1 else None) if v is not None) or m
        b = ax.bar(
            [k + off for k in range(len(xs))],
            vals,
            width=width,
            bottom=bottom if stacked else None,
            color=palette.get(ck),
            label=label,
            yerr=None if stacked or not any(errs) else errs,
            capsize=3,
        )
        if stacked:
            bottom = [a + v for a, v in zip(bottom, vals, strict=True)]
        handles.setdefault(label, b)


def _vlines(ctx, spec, ax, hues, palette, handles):
    vl = spec.get("vlines")
    if not vl:
        return
    frame = ctx.frame.select(spec.get("where"))
    for h in hues:
        row = C.Row(ctx, frame, {spec["hue"]: h} if spec.get("hue") else {}, {spec.get("hue") or "": h})
        s, v = C.render(row, {"theory": vl["theory"]} if "theory" in vl else {"expr": vl["expr"]})
        if isinstance(v, C.Blank):
            continue
        label = C.fill(vl.get("label", vl.get("theory", "")), row.labels)
        ln = ax.axvline(v, color=palette.get(h), ls="--", lw=1, label=label)
        handles.setdefault(label, ln)


def reference_where(ref: dict) -> dict:
    """The cells a figure's ``reference`` reads: its ``where`` and its ``experiment``."""
    return {**(ref.get("where") or {}), **({"experiment": ref["experiment"]} if "experiment" in ref else {})}


def reference_values(ctx, spec, hues) -> list[tuple]:
    """``[(hue level, legend label, value or None, why not)]`` of a line figure's ``reference``: per
    hue level, the mean of ``metric`` in the one cell of the reference selection at that level (the
    figure's own ``where`` is not applied: the reference is another experiment's cell). Several cells
    there, none, or one without a number: no line, and why (shown under the plot)."""
    ref = spec.get("reference")
    if not ref:
        return []
    hue = spec.get("hue")
    frame = ctx.frame.select(reference_where(ref))
    template = ref.get("label", ref["metric"])
    out = []
    for h in hues:
        sel = {hue: h} if hue else {}
        label = C.fill(template, sel)
        if len(hues) > 1 and label == template:
            label = f"{template} ({h})"  # one legend entry per colour
        sub = frame.select(sel)
        cells = set(
            zip(*(sub.texts(a) for a in ("week", "experiment", "engine", "configuration", "cell")), strict=True)
        )
        if len(cells) > 1:
            names = ", ".join(sorted("/".join(c[1:]) for c in cells))
            out.append(
                (h, label, None, f"{len(cells)} cells match the reference ({names}): name one in reference.where")
            )
            continue
        c = sub.cell(sel, ref["metric"])
        if c is None:
            c = sub.cell(sel)  # a failed cell may have no row for the metric
            out.append((h, label, None, c.status() if c is not None and not c.ok else "not in this run"))
            continue
        out.append((h, label, c.mean, None) if c.ok else (h, label, None, c.status()))
    return out


def _axes_scales(ax, spec, log, xs, categorical):
    import matplotlib.ticker as mt

    for a, base in log.items():
        is_x = a in ("x", spec["x"])
        if is_x and categorical:
            continue
        (ax.set_xscale if is_x else ax.set_yscale)("log", base=base)
        axis = ax.xaxis if is_x else ax.yaxis
        axis.set_major_formatter(mt.FuncFormatter(lambda v, _: text(v)))
        axis.set_minor_formatter(mt.NullFormatter())
        if is_x:
            ax.set_xticks([float(x) for x in xs], [text(float(x)) for x in xs])
            ax.xaxis.set_minor_locator(mt.NullLocator())


def _render_points(ctx, spec, frame, plt, sns):
    axes_names, pts = kinds.pareto_points(ctx, {**spec, "points": _point_axes(spec)}, frame, {})
    missing = []
    for p in pts:
        for k in ("x", "y"):
            if isinstance(p[k], C.Blank):
                missing.append(f"{'/'.join(p['sel'].values())}: {p[k]}")
                break
    w, h = spec.get("size", [7, 4.5])
    note = wrap_note(missing, w)
    fig, top, bottom = _figure(plt, w, h, note)
    ax = top.subplots()
    hue = spec.get("hue")
    hues = list(dict.fromkeys(p["sel"].get(hue) for p in pts)) if hue else [None]
    palette = dict(zip(hues, sns.color_palette("tab10", max(1, len(hues))), strict=False))
    handles = {}
    good = [p for p in pts if not isinstance(p["x"], C.Blank) and not isinstance(p["y"], C.Blank)]
    for hl in hues:
        mine = [p for p in good if hue is None or p["sel"].get(hue) == hl]
        if mine:
            sc = ax.scatter([p["x"] for p in mine], [p["y"] for p in mine], color=palette[hl], label=hl or "cells")
            handles.setdefault(str(hl or "cells"), sc)
    if spec["kind"] == "pareto":
        front = sorted((p for p in good if p["front"]), key=lambda p: p["x"])
        if front:
            (ln,) = ax.plot([p["x"] for p in front], [p["y"] for p in front], "k--", lw=1, label="Pareto front")
            handles["Pareto front"] = ln
    log = _log(spec)
    for a, base in log.items():
        (ax.set_xscale if a == "x" else ax.set_yscale)("log", base=base)
    ax.set_xlabel(spec.get("xlabel", spec["x"]))
    ax.set_ylabel(spec.get("ylabel", spec["y"]))
    if spec.get("title"):
        ax.set_title(spec["title"])
    if len(handles) > 1:
        top.legend(list(handles.values()), list(handles.keys()), loc="outside right upper", fontsize=8)
    if note:
        bottom.text(0.01, 0.98, note, ha="left", va="top", fontsize=NOTE_FONT, color="firebrick")
    return fig, missing


def _point_axes(spec) -> list[str]:
    """The axes that tell one point from another: declared ``points``, else every cell."""
    return list(spec.get("points") or ["gpu", "engine", "experiment", "configuration", "cell"])


def build(ctx: kinds.Context, key: str, spec: dict, outdir: Path) -> dict:
    """Render and write ``outdir/<key>.png``; the report entry {name, path, caption, missing}."""
    import matplotlib.pyplot as plt

    fig, missing = render(ctx, key, spec)
    path = Path(outdir) / f"{key}.png"
    with io.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=DPI, format="png")
    plt.close(fig)
    caption = spec.get("caption", spec.get("title", key))
    full = caption + (f" Not plotted: {'; '.join(missing)}." if missing else "")
    return {"name": key, "path": path, "caption": full, "missing": missing}

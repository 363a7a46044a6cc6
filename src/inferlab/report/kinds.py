"""Table kinds: a week file's ``tables:`` entries -> DataFrames of text (what the Markdown and CSV show).

Every kind takes ``where`` (axis -> level or list of levels), ``title``, ``notes``, ``name`` (the file
name; default the table's key) and ``for_each: <axis>`` (one table per level; ``{<axis>}`` in name
and title). Rows are the product of each row axis's levels found in the rows the table reads
(``grid: false``: only the combinations present, in the Parquet's order). Row headers come from
``labels: {axis: header}`` (default: GPU, Engine, Experiment, Configuration, Cell, else the axis).

- ``pivot``: one ``metric``, ``rows`` x ``columns`` (an axis or a list of axes each); ``column_label``
  and ``row_label`` are templates; ``add`` appends columns (:mod:`.columns`); ``ratio_rows`` adds one
  row per other row level: the ratio to the ``baseline`` row (a level, or min / max by the value in
  the first column).
- ``metrics``: several columns per row (:mod:`.columns`); ``across: {axis: [levels]}`` repeats each
  column once per level (``{axis}`` in its label). A row axis may be *virtual*:
  ``{name: Cells, levels: [{label, week, where}]}``, each level a selection of its own (a joined week).
- ``compare``: ``metric`` at each level of ``axis`` beside its ``as`` (ratio, pct, delta) against the
  ``baseline`` level, e.g. prefix caching on vs off, eager vs graphs.
- ``vs_theory``: ``metric`` (``at`` a level) beside a theory quantity (``theory``) and the
  utilisation theory/measured (``bound: floor``, default) or measured/theory (``bound: ceiling``).
- ``vs_reference``: per ``parts`` entry (experiment, metric, axis), every point measured here or
  published by the course (config/reference/, under the roofline guard), the difference, and
  ``columns`` computed from either (``value`` and ``reference`` name the two in expressions).
- ``pareto``: the points (``points``: axes) of two metrics ``x`` and ``y`` and which are on the
  Pareto front (``maximize`` / ``minimize`` each).
- ``custom``: ``function`` from :mod:`.custom`, for what no kind can say.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import pandas as pd

from . import columns as C
from .values import NOT_IN_MATRIX, Frame, Order, text

HEADERS = {
    "gpu": "GPU",
    "engine": "Engine",
    "experiment": "Experiment",
    "configuration": "Configuration",
    "cell": "Cell",
}


@dataclass
class Context:
    """Everything a table or figure of one week reads."""

    cfg: object
    doc: dict
    week: str
    frames: dict  # week id -> Frame (this week's and the joined weeks' Parquet)
    reference: Frame | None = None  # the course's published numbers for this week (guarded)
    order: Order = field(default=None)

    def __post_init__(self):
        if self.order is None:
            self.order = Order(self.cfg, self.doc)

    @property
    def frame(self) -> Frame:
        return self.frames[self.week]

    def base(self, spec: dict) -> Frame:
        src = self.reference if spec.get("source") == "reference" else self.frame
        if src is None:
            src = Frame(pd.DataFrame(columns=self.frame.df.columns))
        return src.select(spec.get("where"))


@dataclass
class Table:
    name: str
    title: str
    df: pd.DataFrame
    notes: list = field(default_factory=list)


def header_of(spec: dict, axis: str) -> str:
    return (spec.get("labels") or {}).get(axis, HEADERS.get(axis, axis))


def _as_list(x) -> list:
    return [] if x is None else list(x) if isinstance(x, (list, tuple)) else [x]


def build(ctx: Context, key: str, spec: dict) -> list[Table]:
    """One declared table -> one Table, or one per level of ``for_each``."""
    kind = spec["kind"]
    base = ctx.base(spec)
    each = spec.get("for_each")
    if not each:
        return [_one(ctx, key, spec, base, {})]
    levels = base.levels(each, ctx.order, spec.get("metric") if kind == "pivot" else None)
    if kind == "vs_reference":
        ref = ctx.reference
        have = set(ref.texts(each)) if ref is not None else set()
        levels = [lv for lv in levels if lv in have]
    return [_one(ctx, key, spec, base.select({each: lv}), {each: lv}) for lv in levels]


def _one(ctx, key, spec, frame, fixed) -> Table:
    fn = KINDS[spec["kind"]]
    df = fn(ctx, spec, frame, fixed)
    if df.empty:
        # nothing of this run is in the table's selection (e.g. a preset's sweep lacks the point its
        # ``where`` names): say so in the table, never print an empty one
        where = {**(spec.get("where") or {}), **fixed}
        sel = ", ".join(f"{k}={v}" for k, v in where.items()) or "all"
        df = pd.DataFrame({"Status": [f"n/a: no cell of this run matches {sel}"]})
    name = C.fill(spec.get("name", key), fixed)
    title = C.fill(spec.get("title", name), fixed)
    notes = list(spec.get("notes", []))
    if spec.get("list_invalid"):
        notes += invalid_lines(spec, frame)
    return Table(name, title, df, notes)


def invalid_lines(spec: dict, frame: Frame) -> list[str]:
    d = frame.df
    if "valid" not in d:
        return []
    bad = d[d["valid"] == False]  # noqa: E712 (nullable boolean)
    if spec.get("metric"):
        bad = bad[bad["metric"] == spec["metric"]]
    cols = _as_list(spec.get("columns"))
    tmpl = spec.get("column_label")
    out = []
    for _, r in bad.iterrows():
        point = C.fill(tmpl, {a: text(r.get(f"param_{a}", r.get(a))) for a in cols}) if tmpl else r.get("cell", "")
        out.append(f"- {r['experiment']} {r['gpu']} {point}: {r['invalid_reason']}")
    return out


# -- rows -----------------------------------------------------------------------------------------
def _row_axes(spec) -> list:
    return [a if isinstance(a, dict) else {"axis": a} for a in _as_list(spec.get("rows"))]


def _combos(ctx: Context, spec: dict, frame: Frame, axes: list, metric=None) -> list[tuple]:
    """Each row: a tuple of per-axis levels (text for a real axis, the level dict for a virtual one)."""
    real = [a["axis"] for a in axes if "axis" in a]
    if spec.get("grid", True) is False:
        f = frame.select({"metric": metric}) if metric else frame
        present = list(dict.fromkeys(zip(*[f.texts(a) for a in real], strict=True))) if real else [()]
        virtual = [a["levels"] for a in axes if "levels" in a]
        out = []
        for p in present:
            for vs in itertools.product(*virtual):
                it_r, it_v = iter(p), iter(vs)
                out.append(tuple(next(it_r) if "axis" in a else next(it_v) for a in axes))
        return out
    per = [frame.levels(a["axis"], ctx.order, metric) if "axis" in a else a["levels"] for a in axes]
    return list(itertools.product(*per))


def _row(ctx: Context, frame: Frame, axes: list, combo: tuple, fixed: dict) -> C.Row | None:
    sel = dict(fixed)
    labels = dict(fixed)
    f = frame
    for a, lv in zip(axes, combo, strict=True):
        if "axis" in a:
            sel[a["axis"]] = lv
            labels[a["axis"]] = lv
        else:
            labels[a["name"]] = lv["label"]
            if lv.get("week") and lv["week"] != ctx.week:
                f = ctx.frames.get(lv["week"])
                if f is None:
                    return None  # that week is not in this run: no such row
            f = f.select(lv.get("where"))
    return C.Row(ctx, f, sel, labels)


def _axis_cells(axes, combo) -> list[str]:
    return [lv if "axis" in a else lv["label"] for a, lv in zip(axes, combo, strict=True)]


def _axis_headers(spec, axes) -> list[str]:
    return [header_of(spec, a["axis"]) if "axis" in a else a["name"] for a in axes]


def _expand_across(spec: dict) -> list[dict]:
    cols = list(spec.get("columns") or [])
    across = spec.get("across") or {}
    for axis, levels in across.items():
        cols = [
            {**c, "where": {**(c.get("where") or {}), axis: lv}, "label": C.fill(c.get("label", ""), {axis: text(lv)})}
            for c in cols
            for lv in levels
        ]
    return cols


def _render_rows(rows: list[C.Row], cols: list[dict]) -> tuple[list[list[str]], list[str]]:
    """Texts of every row's columns, and the column headers (templates filled from the first row
    that resolves them)."""
    out, heads = [], [None] * len(cols)
    for row in rows:
        texts = []
        for i, spec in enumerate(cols):
            s, v = C.render(row, spec)
            if "id" in spec:
                row.ids[spec["id"]] = v
                row.shown[spec["id"]] = s
            texts.append(s)
            h = C.header(spec, row.labels)
            if heads[i] is None or ("{" in heads[i] and "{" not in h):
                heads[i] = h
        out.append(texts)
    if not rows:
        heads = [C.header(spec, {}) for spec in cols]
    return out, heads


# -- kinds ------------------------------------------------------------------------------------------
def metrics(ctx: Context, spec: dict, frame: Frame, fixed: dict) -> pd.DataFrame:
    axes = _row_axes(spec)
    cols = _expand_across(spec)
    combos = _combos(ctx, spec, frame, axes)
    rows, keep = [], []
    for combo in combos:
        r = _row(ctx, frame, axes, combo, fixed)
        if r is not None:
            rows.append(r)
            keep.append(combo)
    texts, heads = _render_rows(rows, cols)
    data = [_axis_cells(axes, c) + t for c, t in zip(keep, texts, strict=True)]
    return pd.DataFrame(data, columns=_axis_headers(spec, axes) + heads)


def pivot(ctx: Context, spec: dict, frame: Frame, fixed: dict) -> pd.DataFrame:
    metric, fmt = spec["metric"], spec.get("format", "{:.2f}")
    axes = _row_axes(spec)
    col_axes = _as_list(spec["columns"])
    combos = _combos(ctx, spec, frame, axes, metric)
    col_levels = list(itertools.product(*[frame.levels(a, ctx.order, metric) for a in col_axes]))
    tmpl = spec.get("column_label") or " ".join("{" + a + "}" for a in col_axes)
    col_heads = [C.fill(tmpl, dict(zip(col_axes, lv, strict=True))) for lv in col_levels]
    rows = [r for r in (_row(ctx, frame, axes, c, fixed) for c in combos) if r is not None]
    values: list[list] = []
    body = []
    for r in rows:
        cells = [frame.cell({**r.sel, **dict(zip(col_axes, lv, strict=True))}, metric) for lv in col_levels]
        values.append(cells)
        body.append([NOT_IN_MATRIX if c is None else c.show(fmt) for c in cells])
    extra, extra_heads = _render_rows(rows, list(spec.get("add") or []))
    if spec.get("row_label"):
        firsts = [[C.fill(spec["row_label"], r.labels)] for r in rows]
        heads = [spec.get("row_header", header_of(spec, axes[0].get("axis", "")))]
    else:
        firsts = [_axis_cells(axes, c) for c in combos]
        heads = _axis_headers(spec, axes)
        if spec.get("row_header") and len(heads) == 1:
            heads = [spec["row_header"]]
    data = [f + b + e for f, b, e in zip(firsts, body, extra or [[]] * len(rows), strict=True)]
    rr = spec.get("ratio_rows")
    if rr and len(rows) > 1:
        data += _ratio_rows(rr, rows, values, len(heads), fmt, len(extra_heads))
    return pd.DataFrame(data, columns=heads + col_heads + extra_heads)


def _ratio_rows(rr: dict, rows, values, n_heads: int, fmt: str, n_extra: int) -> list[list[str]]:
    firsts = {i: (v[0].mean if v and v[0] is not None and v[0].ok else None) for i, v in enumerate(values)}
    have = {i: x for i, x in firsts.items() if x is not None}
    want = text(rr.get("baseline", "max"))
    if want in ("max", "min"):
        if not have:
            return []
        base = (max if want == "max" else min)(have, key=have.get)
    else:
        base = next((i for i, r in enumerate(rows) if want in r.sel.values()), None)
        if base is None:
            return []
    out = []
    for i, r in enumerate(rows):
        if i == base:
            continue
        label = C.fill(rr.get("label", "{row}/{baseline} ratio"), {**r.labels, "baseline": _row_name(rows[base])})
        label = C.fill(label, {"row": _row_name(r)})
        cells = []
        for a, b in zip(values[i], values[base], strict=True):
            try:
                v = C._number(a, NOT_IN_MATRIX) / C._number(b, NOT_IN_MATRIX)
                cells.append(rr.get("format", "{:.2f}x").format(v))
            except C._Missing as m:
                cells.append(str(m.blank))
        out.append([label] + [""] * (n_heads - 1) + cells + [""] * n_extra)
    return out


def _row_name(r: C.Row) -> str:
    return "/".join(str(v) for v in r.sel.values())


def compare(ctx: Context, spec: dict, frame: Frame, fixed: dict) -> pd.DataFrame:
    axis, metric = spec["axis"], spec["metric"]
    levels = [text(x) for x in spec.get("levels") or frame.levels(axis, ctx.order, metric)]
    base = text(spec.get("baseline", levels[0] if levels else "first"))
    fmt = spec.get("format", "{:.2f}")
    how = spec.get("as", "ratio")
    tmpl = spec.get("column_label", axis + "={" + axis + "}")
    cols = [{"metric": metric, "at": {axis: lv}, "label": C.fill(tmpl, {axis: lv}), "format": fmt} for lv in levels]
    for lv in levels:
        if lv != base:
            cols.append(
                {
                    "compare": metric,
                    "axis": axis,
                    "level": lv,
                    "baseline": base,
                    "as": how,
                    "label": C.fill(
                        spec.get("compare_label", "{level} vs {baseline}"), {"level": lv, "baseline": base}
                    ),
                    **({"format": spec["compare_format"]} if "compare_format" in spec else {}),
                }
            )
    rows = [a for a in _as_list(spec.get("rows")) if a != axis]
    return metrics(ctx, {**spec, "rows": rows, "columns": cols}, frame, fixed)


def vs_theory(ctx: Context, spec: dict, frame: Frame, fixed: dict) -> pd.DataFrame:
    at = spec.get("at") or {}
    lab = {**{a: text(v) for a, v in at.items()}}
    theory_col = {
        "id": "_theory",
        "theory": spec["theory"],
        "at": at,
        "label": spec.get("theory_label", spec["theory"]),
        "format": spec.get("theory_format", "{:.3g}"),
    }
    measured = {
        "id": "_measured",
        "metric": spec["metric"],
        "at": at,
        "label": C.fill(spec.get("measured_label", spec["metric"]), lab),
        "format": spec.get("format", "{:.2f}"),
    }
    ratio = "_theory / _measured" if spec.get("bound", "floor") == "floor" else "_measured / _theory"
    util = {"expr": f"100 * {ratio}", "label": spec.get("utilization_label", "Utilization"), "format": "{:.0f}%"}
    cols = list(spec.get("before") or []) + [theory_col, measured, util] + list(spec.get("after") or [])
    return metrics(ctx, {**spec, "columns": cols}, frame, fixed)


def vs_reference(ctx: Context, spec: dict, frame: Frame, fixed: dict) -> pd.DataFrame:
    ref = ctx.reference.select(spec.get("where")) if ctx.reference is not None else None
    lab = {"measured": "This pipeline", "reference": "Course", "difference": "Difference", **(spec.get("labels") or {})}
    extra = list(spec.get("columns") or [])
    data, heads = [], None
    for part in spec["parts"]:
        axis, metric, exp = part["axis"], part["metric"], part["experiment"]
        fmt = part.get("format", "{:.2f}")
        mine = frame.select({"experiment": exp})
        theirs = ref.select({"experiment": exp, **fixed}) if ref is not None else None
        levels = set(mine.levels(axis, ctx.order, metric))
        if theirs is not None:
            levels |= set(theirs.levels(axis, ctx.order, metric))
        for lv in ctx.order.sort(axis, levels):
            sel = {**fixed, axis: lv}
            m = mine.cell(sel, metric)
            r = theirs.cell(sel, metric) if theirs is not None else None
            if r is None:
                course, diff = "n/a (not published)", "n/a"
            else:
                course = r.show(fmt)
                if m is None:
                    diff = NOT_IN_MATRIX
                elif not m.ok:
                    diff = m.status()
                elif not r.ok:
                    diff = r.status()
                else:
                    diff = f"{100 * (m.mean - r.mean) / r.mean:+.1f}%"
            row = C.Row(ctx, mine, sel, {**sel, "experiment": exp})
            row.cells = {"value": m, "reference": r}
            row.fallback = m.first if m is not None else (r.first if r is not None else None)
            texts, hs = _render_rows([row], extra)
            heads = hs
            data.append(
                [exp, C.fill(part.get("point", axis + "={" + axis + "}"), {axis: lv}), part.get("unit", "")]
                + [m.show(fmt) if m is not None else NOT_IN_MATRIX, course, diff]
                + texts[0]
            )
    cols = ["Experiment", "Point", "Unit", lab["measured"], lab["reference"], lab["difference"]]
    return pd.DataFrame(data, columns=cols + (heads or [C.header(c, {}) for c in extra]))


def pareto_points(ctx: Context, spec: dict, frame: Frame, fixed: dict) -> tuple[list, list[dict]]:
    """(point axes, points): each point {sel, x, y, x_text, y_text, front}."""
    axes = _as_list(spec.get("points") or spec.get("rows"))
    pts = []
    for combo in _combos(ctx, {**spec, "grid": False}, frame, [{"axis": a} for a in axes]):
        sel = {**fixed, **dict(zip(axes, combo, strict=True))}
        row = C.Row(ctx, frame, sel, dict(sel))
        xs, xv = C.render(row, _xy(spec["x"], spec.get("x_format")))
        ys, yv = C.render(row, _xy(spec["y"], spec.get("y_format")))
        pts.append({"sel": sel, "x": xv, "y": yv, "x_text": xs, "y_text": ys, "front": False})
    maxi = set(_as_list(spec.get("maximize", ["x", "y"])))
    good = [p for p in pts if not isinstance(p["x"], C.Blank) and not isinstance(p["y"], C.Blank)]

    def better(a, b):  # a dominates b
        s = [1 if k in maxi else -1 for k in ("x", "y")]
        ge = all(s[i] * a[k] >= s[i] * b[k] for i, k in enumerate(("x", "y")))
        gt = any(s[i] * a[k] > s[i] * b[k] for i, k in enumerate(("x", "y")))
        return ge and gt

    for p in good:
        p["front"] = not any(better(q, p) for q in good if q is not p)
    return axes, pts


def _xy(v, fmt) -> dict:
    """A pareto axis: a metric name or an expression over the cell's metrics."""
    spec = {"expr": v} if any(ch in v for ch in "+-*/() ") else {"metric": v}
    if fmt:
        spec["format"] = fmt
    return spec


def pareto(ctx: Context, spec: dict, frame: Frame, fixed: dict) -> pd.DataFrame:
    axes, pts = pareto_points(ctx, spec, frame, fixed)
    heads = [header_of(spec, a) for a in axes] + [
        spec.get("x_label", spec["x"]),
        spec.get("y_label", spec["y"]),
        spec.get("front_label", "Pareto-optimal"),
    ]
    data = [[p["sel"][a] for a in axes] + [p["x_text"], p["y_text"], "yes" if p["front"] else ""] for p in pts]
    return pd.DataFrame(data, columns=heads)


def custom(ctx: Context, spec: dict, frame: Frame, fixed: dict) -> pd.DataFrame:
    from . import custom as custom_mod

    return custom_mod.get(spec["function"])(ctx, spec, frame, fixed)


KINDS = {
    "pivot": pivot,
    "metrics": metrics,
    "compare": compare,
    "vs_theory": vs_theory,
    "vs_reference": vs_reference,
    "pareto": pareto,
    "custom": custom,
}

"""The columns a table row can show, shared by every table kind.

A column is one mapping in a table's ``columns:`` (or ``add:``) list, with exactly one of:

- ``metric: M``: the measured value (``format``, default ``{:.2f}``); ``at: {axis: level}`` pins an
  axis the rows do not (a level, or ``first`` / ``last`` / ``last-1`` of the axis's levels);
  ``week: week01`` reads a joined week's Parquet; ``where`` narrows the rows it reads;
- ``field: F``: a text column of the cell's record (``telemetry``, ``definition``...);
  ``metric`` picks which metric's row, ``match: {substring: text}`` maps it (first hit wins);
- ``status: true``: ``ok`` or what happened instead;
- ``text: "..."``: a template of the row's axes and of earlier columns (by ``id``);
- ``theory: Q``: a quantity of the roofline theory for the row's GPU, model and parameters
  (:data:`THEORY`);
- ``expr: "a / b"``: arithmetic over earlier columns' ids, the row cell's metrics, its parameters
  and theory quantities (``+ - * / **``, ``min``, ``max``, ``abs``);
- ``compare: M``: M at the row's level (or ``level``) of ``axis`` against M at ``baseline``
  (a level, ``first``, ``last``, ``last-1``, ``min`` or ``max`` by value), ``as`` ratio (default),
  pct (percent change), delta or slope (change per unit of the axis, times ``scale``).

Every column prints the status of a cell that gave no number (``OOM``, ``FAILED (...)``,
``SKIPPED (...)``, ``INVALID (...)``) in its place; a derived column (expr, compare, theory that
needs a cell) prints the status of the first input that has none; a cell that is not in the run
prints ``absent`` (default ``n/a``). ``when: {axis: level}`` leaves a column empty on other rows.
"""

from __future__ import annotations

import ast
import math
import operator
from dataclasses import dataclass, field

import pandas as pd

from .. import theory
from .values import NOT_IN_MATRIX, Cell, Frame, text


class Blank(str):
    """The text shown where a number could not be computed (the reason)."""


class _Missing(Exception):
    def __init__(self, blank: Blank):
        self.blank = blank


class _Vars(dict):
    def __missing__(self, key):
        return "{" + key + "}"


def fill(template: str, values: dict) -> str:
    """``template`` with ``{name}`` replaced where ``values`` has it (other braces kept)."""
    return template.format_map(_Vars({k: v for k, v in values.items() if v is not None}))


# -- roofline theory quantities (inferlab.theory) of a row: (gpu spec, model, parameters) -> number --
def _p(params, k):
    if k not in params or params[k] is None or (isinstance(params[k], float) and math.isnan(params[k])):
        raise KeyError(k)
    return int(float(params[k]))


def _arch(model):
    return model["architecture"], model["dtype"]


def _latency_floor(gpu, model, params):
    return 1e3 * theory.latency_floor_s(
        *_arch(model), gpu, _p(params, "batch_size"), _p(params, "input_len"), _p(params, "output_len")
    )


def _memory_floor(gpu, model, params):
    arch, dtype = _arch(model)
    bs, L, out = _p(params, "batch_size"), _p(params, "input_len"), _p(params, "output_len")
    kv_tokens = bs * ((out - 1) * L + (out - 1) * out // 2)
    return (
        1e3
        * (out * theory.weights_bytes(arch, dtype) + kv_tokens * theory.kv_bytes_per_token(arch, dtype))
        / (gpu["hbm_gbps"] * 1e9)
    )


def _forward_flops(gpu, model, params):
    bs, L, out = _p(params, "batch_size"), _p(params, "input_len"), _p(params, "output_len")
    return theory.forward_flops(model["architecture"], bs * (L + out - 1))


THEORY = {
    # GPU specs (config/gpus.yaml)
    "hbm_gbps": (False, lambda gpu, model, params: float(gpu["hbm_gbps"])),
    "peak_bf16_tflops": (False, lambda gpu, model, params: float(gpu["peak_bf16_tflops"])),
    "ridge_ai": (False, lambda gpu, model, params: theory.ridge_ai(gpu)),
    # the model on the GPU (needs a cell of the row for its model)
    "weights_gb": (True, lambda gpu, model, params: theory.weights_bytes(*_arch(model)) / 1e9),
    # total vs active (per token) parameters, billions (MoE: top-k experts; Week 14)
    "params_total_b": (True, lambda gpu, model, params: theory.param_counts(model["architecture"]).total / 1e9),
    "params_active_b": (True, lambda gpu, model, params: theory.param_counts(model["architecture"]).active / 1e9),
    "active_fraction": (True, lambda gpu, model, params: theory.active_fraction(model["architecture"])),
    "weights_floor_ms": (True, lambda gpu, model, params: 1e3 * theory.weights_floor_s(*_arch(model), gpu)),
    # one `vllm bench latency` iteration of the row's batch_size x input_len, output_len (whole iteration)
    "latency_floor_ms": (True, _latency_floor),
    "memory_floor_ms": (True, _memory_floor),
    "forward_flops": (True, _forward_flops),
}


# -- expressions ---------------------------------------------------------------------------------
_BIN = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}
_BIN[ast.Pow] = operator.pow
_UN = {ast.USub: operator.neg, ast.UAdd: operator.pos}
_FUN = {"min": min, "max": max, "abs": abs}


def parse_expr(expr: str) -> ast.Expression:
    """Parse and check an expression (numbers, names, + - * / **, min/max/abs); ValueError if not."""
    tree = ast.parse(expr, mode="eval")
    for node in ast.walk(tree):
        ok = isinstance(
            node,
            (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Constant, ast.Name, ast.Load, ast.Call)
            + tuple(_BIN)
            + tuple(_UN),
        )
        if isinstance(node, ast.Constant) and not isinstance(node.value, (int, float)):
            ok = False
        if isinstance(node, ast.Call) and not (isinstance(node.func, ast.Name) and node.func.id in _FUN):
            ok = False
        if not ok:
            raise ValueError(f"{expr!r}: only numbers, names, + - * / ** and min/max/abs are allowed")
    return tree


def evaluate(expr: str, resolve) -> float:
    """``resolve(name) -> float`` (raising _Missing for a value that is not there)."""

    def ev(n):
        if isinstance(n, ast.Expression):
            return ev(n.body)
        if isinstance(n, ast.Constant):
            return float(n.value)
        if isinstance(n, ast.Name):
            return resolve(n.id)
        if isinstance(n, ast.UnaryOp):
            return _UN[type(n.op)](ev(n.operand))
        if isinstance(n, ast.BinOp):
            return _BIN[type(n.op)](ev(n.left), ev(n.right))
        if isinstance(n, ast.Call):
            return _FUN[n.func.id](*[ev(a) for a in n.args])
        raise ValueError(ast.dump(n))

    try:
        return ev(parse_expr(expr))
    except ZeroDivisionError:
        raise _Missing(Blank("n/a (division by zero)")) from None


# -- one row of a table ----------------------------------------------------------------------------
@dataclass
class Row:
    """What a column needs to compute its text for one row."""

    ctx: object  # build.Context
    frame: Frame | None  # the table's rows (its `where` applied); None: a joined week not in this run
    sel: dict  # axis -> level text (the row's axes; for_each and across levels)
    labels: dict = field(default_factory=dict)  # template variables (axis levels, baseline...)
    ids: dict = field(default_factory=dict)  # column id -> float or Blank
    shown: dict = field(default_factory=dict)  # column id -> text
    cells: dict = field(default_factory=dict)  # extra names for expressions (value, reference)
    fallback: dict | None = None  # a row (record) giving model/params when the table's frame has none
    absent: str = NOT_IN_MATRIX


def source(row: Row, spec: dict) -> tuple[Frame | None, str | None]:
    """The frame a column reads, or (None, why) when its week is not in this run."""
    if "week" in spec and spec["week"] != row.ctx.week:
        f = row.ctx.frames.get(spec["week"])
        if f is None:
            return None, f"n/a ({spec['week']} not in this run)"
        return f.select(spec.get("where")), None
    if row.frame is None:
        return None, row.absent
    return row.frame.select(spec.get("where")), None


def resolve_level(frame: Frame, ctx, axis: str, want, metric=None, sel=None, by_value=False):
    """A level of ``axis``: a literal, or first / last / last-1 / first+1 of its levels (min / max by
    the metric's value at ``sel`` when ``by_value``). None if there is no such level."""
    w = text(want)
    keywords = ("first", "last", "min", "max")
    if not (w in keywords or w.startswith(("first+", "last-"))):
        return w
    levels = frame.levels(axis, ctx.order, metric)
    if not levels:
        return None
    if w in ("min", "max") and by_value:
        vals = {}
        for lv in levels:
            c = frame.cell({**(sel or {}), axis: lv}, metric)
            if c is not None and c.ok:
                vals[lv] = c.mean
        if not vals:
            return None
        pick = min if w == "min" else max
        return pick(vals, key=vals.get)
    if w in ("first", "min"):
        return levels[0]
    if w in ("last", "max"):
        return levels[-1]
    k = int(w.split("+")[1]) if "+" in w else -1 - int(w.split("-")[1])
    return levels[k] if -len(levels) <= k < len(levels) else None


def _at(row: Row, frame: Frame, spec: dict, metric) -> dict | None:
    sel = dict(row.sel)
    for axis, want in (spec.get("at") or {}).items():
        lv = resolve_level(frame, row.ctx, axis, want, metric)
        if lv is None:
            return None
        sel[axis] = lv
        row.labels[axis] = lv
    return sel


def cell_of(row: Row, spec: dict, metric: str | None) -> tuple[Cell | None, str]:
    frame, why = source(row, spec)
    if frame is None:
        return None, why
    sel = _at(row, frame, spec, metric)
    if sel is None:
        return None, row.absent
    c = frame.cell(sel, metric)
    return c, (spec.get("absent") or row.absent)


def _number(c: Cell | None, absent: str) -> float:
    if c is None:
        raise _Missing(Blank(absent))
    if not c.ok:
        raise _Missing(Blank(c.status()))
    return c.mean


def context_row(row: Row, spec: dict) -> dict | None:
    """A data row of this table row (model, parameters, GPU) for theory quantities."""
    c, _ = cell_of(row, spec, None)
    if c is not None:
        return c.first
    return row.fallback


def theory_value(row: Row, spec: dict, name: str) -> float:
    needs_cell, fn = THEORY[name]
    ctx = row.ctx
    r = context_row(row, spec)
    gpu_id = row.sel.get("gpu") or (r["gpu"] if r is not None else None)
    if gpu_id is None or gpu_id not in ctx.cfg.gpus:
        raise _Missing(Blank(NOT_IN_MATRIX))
    model = None
    params = {}
    if r is not None:
        model = ctx.cfg.models.get(r["model"]) if "model" in r and not pd.isna(r["model"]) else None
        params = {k[len("param_") :]: v for k, v in r.items() if str(k).startswith("param_") and not _na(v)}
    if needs_cell and model is None:
        raise _Missing(Blank(NOT_IN_MATRIX))
    try:
        return float(fn(ctx.cfg.gpu(gpu_id), model, params))
    except KeyError as e:
        raise _Missing(Blank(f"n/a (no {e.args[0]})")) from None


def _na(v) -> bool:
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def resolver(row: Row, spec: dict):
    def resolve(name: str) -> float:
        if name in row.ids:
            v = row.ids[name]
            if isinstance(v, Blank):
                raise _Missing(v)
            return v
        if name in row.cells:
            return _number(row.cells[name], row.absent)
        if name in THEORY:
            return theory_value(row, spec, name)
        r = context_row(row, spec)
        if r is not None and f"param_{name}" in r and not _na(r[f"param_{name}"]):
            return float(r[f"param_{name}"])
        c, absent = cell_of(row, spec, name)
        return _number(c, absent)

    return resolve


def _fmt(spec: dict, default: str = "{:.2f}") -> str:
    return spec.get("format", default)


def kind_of(spec: dict) -> str:
    """What a column shows (``metric`` last: field and status columns may name one)."""
    for k in ("field", "status", "text", "theory", "expr", "compare", "metric"):
        if k in spec:
            return k
    raise ValueError(f"a column needs one of metric, field, status, text, theory, expr, compare: {spec}")


def header(spec: dict, row_labels: dict) -> str:
    k = kind_of(spec)
    return fill(spec.get("label") or (spec[k] if isinstance(spec[k], str) else k), row_labels)


def render(row: Row, spec: dict) -> tuple[str, float | Blank]:
    """(text, value) of one column for one row."""
    when = spec.get("when")
    if when and any(text(row.sel.get(k, row.labels.get(k))) != text(v) for k, v in when.items()):
        return "", Blank("")
    k = kind_of(spec)
    try:
        if k == "metric":
            c, absent = cell_of(row, spec, spec["metric"])
            if c is None:
                return absent, Blank(absent)
            return c.show(_fmt(spec)), (c.mean if c.ok else Blank(c.status()))
        if k == "field":
            c, absent = cell_of(row, spec, spec.get("metric"))
            if c is None:
                return absent, Blank(absent)
            r = c.first
            if r["status"] != "ok":
                return c.status(), Blank(c.status())
            v = r.get(spec["field"])
            s = "" if v is None or _na(v) else str(v)
            for sub, out in (spec.get("match") or {}).items():
                if sub in s:
                    s = out
                    break
            s = s or "n/a"
            return s, Blank(s)
        if k == "status":
            c, absent = cell_of(row, spec, spec.get("metric"))
            if c is None:
                return absent, Blank(absent)
            s = "ok" if c.first["status"] == "ok" else c.status()
            return s, Blank(s)
        if k == "text":
            vals = {**row.labels, **row.sel, **row.shown}
            r = context_row(row, spec)
            if r is not None:
                for a in ("week", "experiment", "engine", "gpu", "configuration", "cell", "model"):
                    if a in r and not _na(r[a]):
                        vals.setdefault(a, str(r[a]))
            s = fill(spec["text"], vals)
            return s, Blank(s)
        if k == "theory":
            v = theory_value(row, spec, spec["theory"])
            return _fmt(spec, "{:.3g}").format(v), v
        if k == "expr":
            v = evaluate(spec["expr"], resolver(row, spec))
            return _fmt(spec).format(v), v
        if k == "compare":
            return _compare(row, spec)
    except _Missing as m:
        return str(m.blank), m.blank
    raise AssertionError(k)


def _compare(row: Row, spec: dict) -> tuple[str, float | Blank]:
    metric, axis = spec["compare"], spec["axis"]
    frame, why = source(row, spec)
    if frame is None:
        return why, Blank(why)
    sel = _at(row, frame, {k: v for k, v in spec.items() if k == "at"}, metric)
    if sel is None:
        return row.absent, Blank(row.absent)
    level = resolve_level(frame, row.ctx, axis, spec["level"], metric) if "level" in spec else sel.get(axis)
    others = {k: v for k, v in sel.items() if k != axis}
    base = resolve_level(frame, row.ctx, axis, spec.get("baseline", "first"), metric, others, by_value=True)
    row.labels.update(baseline=base, level=level)
    if level is None or base is None:
        return row.absent, Blank(row.absent)
    how = spec.get("as", "ratio")
    if level == base and how == "slope":
        s = f"n/a (needs two {axis} levels)"
        return s, Blank(s)
    a, b = frame.cell({**others, axis: level}, metric), frame.cell({**others, axis: base}, metric)
    absent = spec.get("absent") or row.absent
    try:
        va, vb = _number(a, absent), _number(b, absent)
        if how == "ratio":
            v = va / vb
        elif how == "pct":
            v = 100 * (va / vb - 1)
        elif how == "delta":
            v = va - vb
        elif how == "slope":
            v = (va - vb) * float(spec.get("scale", 1)) / (float(level) - float(base))
        else:
            raise ValueError(f"compare: as must be ratio, pct, delta or slope, not {how!r}")
    except _Missing as m:
        return str(m.blank), m.blank
    except ZeroDivisionError:
        return "n/a (division by zero)", Blank("n/a (division by zero)")
    return _fmt(spec, "{:.2f}x" if how == "ratio" else "{:+.1f}%" if how == "pct" else "{:.2f}").format(v), v

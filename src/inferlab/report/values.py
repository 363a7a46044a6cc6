"""Reading the week's Parquet by axes: levels in the course's order, one cell's rows, how a value prints.

An *axis* is what a declaration names: a parameter as the user writes it (``batch_size``,
``request_rate``, ``enable_prefix_caching``: Parquet column ``param_<name>``), or one of the record's
own columns (``gpu``, ``engine``, ``experiment``, ``configuration``, ``cell``, ``model``, ``tool``,
``week``). Levels compare and print as the user wrote them (:func:`text`: ``1`` not ``1.0``, ``inf``,
``true``), so a request-rate column holding 1, 4, 10 and "inf" matches ``request_rate: 1`` and
``request_rate: inf`` alike.

A *cell* (:class:`Cell`) is the rows of one measurement for one metric: one row, or N rows when the
experiment has ``repeats: N`` (see :mod:`inferlab.report.stats`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .. import tables
from . import stats

RECORD_AXES = ("week", "experiment", "engine", "gpu", "configuration", "cell", "model", "tool", "metric", "repeat")
NOT_IN_MATRIX = tables.NOT_IN_MATRIX


def column_of(axis: str) -> str:
    return axis if axis in RECORD_AXES else f"param_{axis}"


def text(v) -> str:
    """A level as the user wrote it: 1 (not 1.0), inf, true, 0.9; '' for a missing value."""
    if v is None or v is pd.NA:
        return ""
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        v = float(v)
        if math.isnan(v):
            return ""
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return str(int(v)) if v.is_integer() else repr(v)
    s = str(v)
    return {"True": "true", "False": "false"}.get(s, s)


def _number(t: str) -> float | None:
    try:
        return float(t)
    except ValueError:
        return {"true": 1.0, "false": 0.0}.get(t)


class Order:
    """The order levels are shown in: GPUs as the preset lists them (then the catalog's order),
    experiments as the week file declares them, numbers by value (inf last, false before true),
    anything else alphabetically."""

    def __init__(self, cfg=None, doc: dict | None = None):
        self.gpus = list(cfg.preset.get("gpus", [])) + list(cfg.gpus) if cfg is not None else []
        self.experiments = list((doc or {}).get("experiments", {}))
        # axes given as a mapping label -> value (bundle server axes: eager/compiled/graphs): the
        # labels in the order the week file declares them
        self.declared: dict[str, list[str]] = {}
        for exp in ((doc or {}).get("experiments") or {}).values():
            for key in ("server_sweep", "sweep"):
                for a, vals in ((exp or {}).get(key) or {}).items():
                    if isinstance(vals, dict):
                        self.declared.setdefault(a, [])
                        self.declared[a] += [str(k) for k in vals if str(k) not in self.declared[a]]
            if (exp or {}).get("design") in ("isolation", "stacked"):
                # a knob study's knobs in plan order: the baseline, then each knob as declared
                from ..matrix import knob_points

                try:
                    labels = [lab for lab, _ in knob_points(exp, exp.get("server_sweep") or {})]
                except Exception:  # an invalid study is the config check's to report, not the order's
                    labels = []
                self.declared.setdefault("knob", [])
                self.declared["knob"] += [x for x in labels if x not in self.declared["knob"]]

    def sort(self, axis: str, levels) -> list[str]:
        levels = [x for x in dict.fromkeys(levels) if x != ""]
        if axis in self.declared and all(x in self.declared[axis] for x in levels):
            return sorted(levels, key=self.declared[axis].index)
        if axis == "gpu":
            rank = {g: i for i, g in reversed(list(enumerate(self.gpus)))}
            return sorted(levels, key=lambda g: (rank.get(g, len(rank)), g))
        if axis == "experiment":
            rank = {e: i for i, e in enumerate(self.experiments)}
            return sorted(levels, key=lambda e: (rank.get(e, len(rank)), e))
        nums = [_number(x) for x in levels]
        if levels and all(n is not None for n in nums):
            return [x for _, x in sorted(zip(nums, levels, strict=True), key=lambda p: p[0])]
        return sorted(levels)


def _false(v) -> bool:
    """A ``valid`` flag that says no (NA: not checked, counts as valid)."""
    if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
        return False
    return not bool(v)


def _good(r: dict) -> bool:
    v = r.get("value")
    return r.get("status") == "ok" and not _false(r.get("valid")) and v is not None and not pd.isna(v)


@dataclass
class Cell:
    """The rows (records: column -> value) of one cell for one metric: one per repeat."""

    rows: list

    @property
    def first(self) -> dict:
        return self.rows[0]

    @property
    def n(self) -> int:
        return len(self.rows)

    @property
    def values(self) -> list[float]:
        return [float(r["value"]) for r in self.rows if _good(r)]

    @property
    def ok(self) -> bool:
        return any(_good(r) for r in self.rows)

    @property
    def mean(self) -> float | None:
        v = self.values
        return sum(v) / len(v) if v else None

    def bad_row(self) -> dict | None:
        return next((r for r in self.rows if not _good(r)), None)

    def status(self) -> str:
        """What happened instead of a number (the first repeat that gave none)."""
        b = self.bad_row()
        return tables.show(b if b is not None else self.first)

    def show(self, fmt: str = "{:.2f}") -> str:
        """The table text: the number (mean ± CI over repeats), or the status. Never blank."""
        if self.n == 1:
            return tables.show(self.first, fmt)
        vals = self.values
        if not vals:
            return tables.show(self.bad_row(), fmt)
        out = stats.format_repeats(vals, fmt)
        if len(vals) < self.n:
            out += f" ({self.n - len(vals)} of {self.n} repeats: {tables.show(self.bad_row(), fmt)})"
        return out


class _Row(Mapping):
    """One row of a Frame, read column by column on demand (no per-row copies of the Parquet)."""

    __slots__ = ("_f", "_i")

    def __init__(self, frame, i: int):
        self._f, self._i = frame, i

    def __getitem__(self, col):
        return self._f._column(col)[self._i]

    def __iter__(self):
        return iter(self._f.columns)

    def __len__(self) -> int:
        return len(self._f.columns)


class Frame:
    """One source of rows (a week's Parquet, a joined week's, the course's reference numbers),
    indexed by axis text for O(1) lookups of a cell. A selection shares its parent's rows."""

    def __init__(self, df: pd.DataFrame, name: str = "", _parent: Frame | None = None, _pos: list | None = None):
        self._df = df.reset_index(drop=True) if df is not None else None
        self.name = name
        self._parent, self._pos = _parent, _pos
        self._text: dict[str, list[str]] = {}
        self._index: dict[tuple, dict] = {}
        self._sub: dict = {}
        self._identity = None
        self._records = None
        self._cols: dict[str, list] = {}

    @property
    def df(self) -> pd.DataFrame:
        if self._df is None:
            self._df = self._parent.df.iloc[self._pos].reset_index(drop=True)
        return self._df

    @property
    def columns(self):
        return self._parent.columns if self._parent is not None else self._df.columns

    def __len__(self) -> int:
        return len(self._pos) if self._parent is not None else len(self._df)

    def records(self) -> list[dict]:
        if self._records is None:
            if self._parent is not None:
                recs = self._parent.records()
                self._records = [recs[i] for i in self._pos]
            else:
                self._records = [_Row(self, i) for i in range(len(self._df))]
        return self._records

    def _column(self, col: str) -> list:
        if col not in self._cols:
            self._cols[col] = self._df[col].tolist()  # KeyError: no such column
        return self._cols[col]

    def texts(self, axis: str) -> list[str]:
        if axis not in self._text:
            if self._parent is not None:
                t = self._parent.texts(axis)
                self._text[axis] = [t[i] for i in self._pos]
            elif column_of(axis) not in self._df:
                self._text[axis] = [""] * len(self._df)
            else:
                self._text[axis] = [text(v) for v in self._df[column_of(axis)].tolist()]
        return self._text[axis]

    def has(self, axis: str) -> bool:
        return column_of(axis) in self.columns

    def select(self, where: dict | None) -> Frame:
        """Rows whose axes match ``where`` (a value or a list of values per axis)."""
        if not where:
            return self
        key = tuple(sorted((k, tuple(map(text, v)) if isinstance(v, list) else text(v)) for k, v in where.items()))
        if key not in self._sub:
            keep = range(len(self))
            for axis, want in key:
                allowed = set(want) if isinstance(want, tuple) else {want}
                t = self.texts(axis)
                keep = [i for i in keep if t[i] in allowed]
            root, pos = (self._parent, [self._pos[i] for i in keep]) if self._parent is not None else (self, list(keep))
            self._sub[key] = Frame(None, self.name, root, pos)
        return self._sub[key]

    def levels(self, axis: str, order: Order, metric: str | list | None = None) -> list[str]:
        f = self.select({"metric": metric}) if metric else self
        return order.sort(axis, f.texts(axis))

    def _identities(self) -> list[tuple]:
        """The cell a row belongs to, its repeats taken together."""
        if self._identity is None:
            if self._parent is not None:
                ids = self._parent._identities()
                self._identity = [ids[i] for i in self._pos]
            else:
                rep = self._df["repeat"].tolist() if "repeat" in self._df else [0] * len(self._df)
                parts = [self.texts(a) for a in ("experiment", "engine", "gpu", "configuration")]
                cells = [stats.base_cell(c, r) for c, r in zip(self.texts("cell"), rep, strict=True)]
                self._identity = list(zip(*parts, cells, strict=True))
        return self._identity

    def cell(self, sel: dict, metric: str | None = None) -> Cell | None:
        """The cell matching every ``axis: level`` of ``sel`` (and ``metric``, or any metric: its
        first row). Several cells may match when ``sel`` does not name every axis: the first, in the
        Parquet's order, as tables.lookup did."""
        axes = tuple(sorted(sel)) + (("metric",) if metric else ())
        if axes not in self._index:
            idx: dict[tuple, list[int]] = {}
            cols = [self.texts(a) for a in axes]
            for i, key in enumerate(zip(*cols, strict=True)):
                idx.setdefault(key, []).append(i)
            self._index[axes] = idx
        key = tuple(text(sel[a]) for a in sorted(sel)) + ((metric,) if metric else ())
        hits = self._index[axes].get(key)
        if not hits:
            return None
        ident = self._identities()
        first = ident[hits[0]]
        same = [i for i in hits if ident[i] == first] if metric else hits[:1]
        recs = self.records()
        return Cell([recs[i] for i in same])

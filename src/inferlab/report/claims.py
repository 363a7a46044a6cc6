"""The course's claims as checks: a week file's ``claims:`` judged on this run's data.

A claim is the course's words (``text``, ``source``) stated as a comparison over axes, judged once per
level of ``per`` (default ``gpu``; e.g. ``[gpu, engine]``) among the rows the claim's ``where``
selects. Exactly one of:

``trend``: ``metric`` over the levels of ``over`` (in the course's order, optionally ``from`` /
``to`` a level, inclusive) ``increases``, ``decreases`` or stays ``flat``; ``of: ratio`` or
``of: delta`` judges ``metric`` at ``numerator`` / (or -) ``metric`` at ``denominator`` (two
selections, e.g. ``{mode: eager}`` and ``{mode: graphs}``) at each level instead of the value::

    trend: {metric: latency, over: batch_size, direction: decreases,
            of: ratio, numerator: {mode: eager}, denominator: {mode: graphs}}

``compare``: side ``a`` against side ``b`` (each ``{metric, week, where}``; ``metric`` defaults to the
compare's, ``week`` reads a joined week's Parquet); ``expect`` is ``a > b``, ``a < b`` or ``a ~ b``,
``b`` optionally times a factor (``a > 2 * b``, ``a ~ 2 * b``; ``~`` within ``tolerance``)::

    compare: {metric: latency_avg, a: {where: {input_len: 4096}}, b: {where: {input_len: 2048}},
              expect: "a ~ 2 * b", tolerance: 0.15}

**Each point** (a level of a trend, a side of a comparison) is one cell's number: the mean of its
valid repeats, with the 95% Student-t interval of the mean (:func:`inferlab.report.stats.ci95`) when
it has two or more; a single run is the interval [v, v], so its point estimate is judged and the
reason says "single run, no CI". A ratio or delta of two points takes the interval arithmetic of
their intervals ([lo_n / hi_d, hi_n / lo_d], [lo_n - hi_d, hi_n - lo_d]): conservative. Two points
are *separated* when their intervals do not overlap (a tie overlaps); overlapping intervals cannot
tell the two apart.

**Rules** (``agrees`` / ``disagrees`` / ``cannot tell``):

- a claim's ``requires`` conditions are checked first, per group: where one does not hold (its
  metric's largest valid value over the group's cells not above ``above``, or no such value), the
  claim ``cannot tell (requirement not met: ...; <because>)`` whatever its points say (a policy that
  had no queue to order "gains nothing" on any workload);
- any point that has no number (failed, skipped, over the roofline guard, not in this run, or a
  selection that matches several cells) makes the claim ``cannot tell (missing: <point> <status>)``;
  fewer than two levels of a trend cannot tell either;
- ``increases`` (``decreases`` mirrored): ``disagrees`` when a consecutive step, or the first level
  against the last, is separated the other way (a resolved fall); else ``agrees`` when the first
  and the last level are separated the claimed way (steps that dip within the noise are allowed);
  else ``cannot tell`` (the first and last intervals overlap). The reason lists every point and
  Kendall's tau of the point estimates (+1: every pair in order);
- ``flat`` (``tolerance`` t, default 0.10): each level's change from the first level, relative to the
  first level's mean, has the interval [(lo_i - hi_1) / |m_1|, (hi_i - lo_1) / |m_1|];
  ``agrees`` when every such interval lies within [-t, t], ``disagrees`` when one lies wholly
  outside it, else ``cannot tell``;
- ``a > f * b`` (``<`` mirrored): ``agrees`` when a's interval lies above f times b's,
  ``disagrees`` when below, ``cannot tell`` when they overlap;
- ``a ~ f * b`` (``tolerance`` t, default 0.10; positive values): the interval of a / (f * b) is
  [lo_a / (f hi_b), hi_a / (f lo_b)]; ``agrees`` within [1 - t, 1 + t], ``disagrees`` wholly outside,
  else ``cannot tell``.

:func:`build` gives one row per claim and ``per`` level (Claim, Course text, the ``per`` axes, Verdict,
Why); stage 4 writes it to ``claims.csv`` / ``claims.html`` beside the week's report.md and a "Claims"
section into report.md.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass, field

import pandas as pd

from . import stats
from .values import NOT_IN_MATRIX, Cell, Frame, _good, _number, text

AGREES, DISAGREES, CANNOT_TELL = "agrees", "disagrees", "cannot tell"
VERDICTS = (AGREES, DISAGREES, CANNOT_TELL)
DEFAULT_TOLERANCE = 0.10
HEADERS = {"gpu": "GPU", "engine": "Engine", "experiment": "Experiment", "configuration": "Configuration"}
# a side reading another week's Parquet keeps only these of the verdict's `per` levels
_WEEK_SPECIFIC = {"experiment", "configuration", "cell", "tool", "week"}
_EXPECT = re.compile(r"^\s*a\s*(<|>|~)\s*(?:([0-9]+(?:\.[0-9]+)?)\s*\*\s*)?b\s*$")


# -- points -------------------------------------------------------------------------------------------
@dataclass
class Point:
    """One number a claim compares: a cell's mean and its 95% interval, or why there is none."""

    label: str
    values: list = field(default_factory=list)  # valid repeats
    missing: str | None = None  # the status shown instead of a number
    note: str = ""  # e.g. "1 of 3 repeats: OOM"
    derived: tuple | None = None  # (mean, lo, hi, n) of a ratio / delta

    @property
    def ok(self) -> bool:
        return self.missing is None

    @property
    def n(self) -> int:
        return self.derived[3] if self.derived else len(self.values)

    @property
    def mean(self) -> float:
        return self.derived[0] if self.derived else sum(self.values) / len(self.values)

    @property
    def half_width(self) -> float | None:
        if self.derived or len(self.values) < 2:
            return None
        return stats.ci95(self.values)[1]

    @property
    def lo(self) -> float:
        if self.derived:
            return self.derived[1]
        h = self.half_width
        return self.mean - (h or 0.0)

    @property
    def hi(self) -> float:
        if self.derived:
            return self.derived[2]
        h = self.half_width
        return self.mean + (h or 0.0)

    @property
    def has_ci(self) -> bool:
        """Repeated (n >= 2); a ratio or delta when either of its points was."""
        return self.derived[1] != self.derived[2] if self.derived else self.n >= 2

    def show(self, fmt: str | None = None) -> str:
        if not self.ok:
            return f"{self.label} {self.missing}"
        if self.derived:
            s = number(self.mean, fmt)
            if self.has_ci:
                s += f" [{number(self.lo, fmt)}, {number(self.hi, fmt)}]"
        elif self.has_ci:
            s = f"{number(self.mean, fmt)} ± {number(self.half_width, fmt)} (n={self.n})"
        else:
            s = number(self.mean, fmt)
        return f"{self.label} {s}" + (f" ({self.note})" if self.note else "")


def number(v: float, fmt: str | None = None) -> str:
    """A value in a reason: the claim's ``format``, else 4 significant digits (thousands whole)."""
    if fmt:
        return fmt.format(v)
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.4g}"


ABSENT = f"{NOT_IN_MATRIX} (no such cell in this run)"


def lookup(frame: Frame | None, sel: dict, metric: str, label: str, absent: str = ABSENT) -> Point:
    """The point of the one cell of ``frame`` matching ``sel`` for ``metric`` (its repeats together)."""
    if frame is None:
        return Point(label, missing=absent)
    sub = frame.select({**sel, "metric": metric})
    if len(sub) == 0:
        cell = frame.select(sel)
        if len(cell) == 0 or len(set(cell._identities())) > 1:
            return Point(label, missing=absent)
        c = Cell(cell.records())
        # a failed cell has no row of the metric: its status; a measured one lacks the metric
        return Point(label, missing=c.status() if not c.ok else f"{NOT_IN_MATRIX} (no {metric})")
    ids = sub._identities()
    distinct = list(dict.fromkeys(ids))
    if len(distinct) > 1:
        cells = ", ".join("/".join(i) for i in distinct[:3])
        return Point(label, missing=f"ambiguous ({len(distinct)} cells match: {cells}; name the axis in where or per)")
    cell = Cell(sub.records())
    if not cell.ok:
        return Point(label, missing=cell.status())
    vals = cell.values
    note = f"{cell.n - len(vals)} of {cell.n} repeats: {cell.status()}" if len(vals) < cell.n else ""
    return Point(label, values=vals, note=note)


def combine(how: str, num: Point, den: Point, label: str) -> Point:
    """``num / den`` (ratio) or ``num - den`` (delta), interval arithmetic on their intervals."""
    if not num.ok:
        return Point(num.label, missing=num.missing)
    if not den.ok:
        return Point(den.label, missing=den.missing)
    n = min(num.n, den.n)
    if how == "delta":
        return Point(label, derived=(num.mean - den.mean, num.lo - den.hi, num.hi - den.lo, n))
    if den.lo <= 0 or num.lo < 0:
        if den.mean == 0:
            return Point(label, missing="n/a (division by zero)")
        return Point(label, derived=(num.mean / den.mean, -math.inf, math.inf, n))
    return Point(label, derived=(num.mean / den.mean, num.lo / den.hi, num.hi / den.lo, n))


def _separation(a: Point, b: Point) -> int:
    """+1 when b's interval lies above a's, -1 below, 0 when they overlap (a tie overlaps)."""
    if b.lo > a.hi:
        return 1
    if b.hi < a.lo:
        return -1
    return 0


def kendall_tau(ys: list[float]) -> float:
    """Kendall's tau-a of the values against their order: (concordant - discordant) / pairs."""
    pairs = list(itertools.combinations(range(len(ys)), 2))
    if not pairs:
        return 0.0
    s = sum((ys[j] > ys[i]) - (ys[j] < ys[i]) for i, j in pairs)
    return s / len(pairs)


def _noise(points: list[Point]) -> str:
    if all(p.has_ci for p in points):
        return "95% CIs of the mean"
    if not any(p.has_ci for p in points):
        return "single run, no CI"
    return "95% CIs where repeated, single runs' point estimates otherwise"


# -- verdicts on points ---------------------------------------------------------------------------------
def missing_verdict(points: list[Point]) -> tuple[str, str] | None:
    bad = [p for p in points if not p.ok]
    if not bad:
        return None
    return CANNOT_TELL, "missing: " + "; ".join(f"{p.label} {p.missing}" for p in bad)


def trend_verdict(points: list[Point], direction: str, tolerance: float | None = None, fmt: str | None = None):
    """(verdict, why) of a trend over ``points`` in the axis's order (module docstring: the rules)."""
    miss = missing_verdict(points)
    if miss:
        return miss
    if len(points) < 2:
        return CANNOT_TELL, f"fewer than two levels ({', '.join(p.label for p in points) or 'none'})"
    shown = " -> ".join(p.show(fmt) for p in points)
    noise = _noise(points)
    first, last = points[0], points[-1]
    if direction == "flat":
        t = DEFAULT_TOLERANCE if tolerance is None else float(tolerance)
        m1 = abs(first.mean)
        if m1 == 0:
            return CANNOT_TELL, f"{shown}: the first level is 0, no relative change ({noise})"
        changes = [((p.lo - first.hi) / m1, (p.hi - first.lo) / m1, (p.mean - first.mean) / m1, p) for p in points[1:]]
        worst = max(changes, key=lambda c: abs(c[2]))
        most = f"largest change {100 * worst[2]:+.1f}% at {worst[3].label}"
        if all(-t <= lo and hi <= t for lo, hi, _, _ in changes):
            return AGREES, f"{shown}: every level within ±{100 * t:g}% of {first.label} ({most}; {noise})"
        out = [c for c in changes if c[0] > t or c[1] < -t]
        if out:
            c = max(out, key=lambda c: abs(c[2]))
            return DISAGREES, (
                f"{shown}: {c[3].label} is {100 * c[2]:+.1f}% from {first.label}, outside ±{100 * t:g}% ({noise})"
            )
        return CANNOT_TELL, f"{shown}: {most}; its interval straddles ±{100 * t:g}% ({noise})"
    want = 1 if direction == "increases" else -1
    word = "rises" if want == 1 else "falls"
    tau = kendall_tau([p.mean for p in points])
    tail = f"Kendall tau {tau:+.2f}; {noise}"
    against = [(a, b) for a, b in itertools.pairwise(points) if _separation(a, b) == -want]
    overall = _separation(first, last)
    if against or overall == -want:
        a, b = against[0] if against else (first, last)
        return DISAGREES, f"{shown}: {a.label} -> {b.label} {'falls' if want == 1 else 'rises'} ({tail})"
    if overall == want:
        dips = sum(_separation(a, b) != want for a, b in itertools.pairwise(points))
        how = "every step" if dips == 0 else f"{first.label} -> {last.label} ({dips} step(s) within the noise)"
        return AGREES, f"{shown}: {how} {word} ({tail})"
    return CANNOT_TELL, f"{shown}: the intervals of {first.label} and {last.label} overlap ({tail})"


def parse_expect(expect: str) -> tuple[str, float]:
    m = _EXPECT.match(expect)
    if not m:
        raise ValueError(f"expect {expect!r}: write a > b, a < b or a ~ b, b optionally times a factor (a > 2 * b)")
    return m.group(1), float(m.group(2) or 1.0)


def compare_verdict(a: Point, b: Point, expect: str, tolerance: float | None = None, fmt: str | None = None):
    """(verdict, why) of ``a <op> factor * b`` (module docstring: the rules)."""
    op, f = parse_expect(expect)
    miss = missing_verdict([a, b])
    if miss:
        return miss
    noise = _noise([a, b])
    fb = "b" if f == 1 else f"{f:g} * b"
    shown = f"a: {a.show(fmt)}; b: {b.show(fmt)}"
    if op == "~":
        t = DEFAULT_TOLERANCE if tolerance is None else float(tolerance)
        if b.lo <= 0 or a.lo < 0:
            return CANNOT_TELL, f"{shown}: a ~ {fb} needs positive values ({noise})"
        r, lo, hi = a.mean / (f * b.mean), a.lo / (f * b.hi), a.hi / (f * b.lo)
        ratio = f"a / {fb if f == 1 else f'({fb})'} = {r:.3f}" + (f" [{lo:.3f}, {hi:.3f}]" if lo != hi else "")
        if 1 - t <= lo and hi <= 1 + t:
            return AGREES, f"{shown}: {ratio}, within ±{100 * t:g}% ({noise})"
        if lo > 1 + t or hi < 1 - t:
            return DISAGREES, f"{shown}: {ratio}, outside ±{100 * t:g}% ({noise})"
        return CANNOT_TELL, f"{shown}: {ratio} straddles ±{100 * t:g}% ({noise})"
    fbp = Point(fb, derived=(f * b.mean, f * b.lo, f * b.hi, b.n))
    sep = _separation(fbp, a)  # +1: a above f*b
    want = 1 if op == ">" else -1
    rel = f"a / {fb if f == 1 else f'({fb})'} = {a.mean / fbp.mean:.3f}" if fbp.mean else f"{fb} = 0"
    if sep == want:
        return AGREES, f"{shown}: a {op} {fb} ({rel}; {noise})"
    if sep == -want:
        return DISAGREES, f"{shown}: a {'<' if want == 1 else '>'} {fb} ({rel}; {noise})"
    return CANNOT_TELL, f"{shown}: a and {fb} overlap ({rel}; {noise})"


# -- claims on a week's frames -----------------------------------------------------------------------
def _per(claim: dict) -> list[str]:
    p = claim.get("per", "gpu")
    return [p] if isinstance(p, str) else list(p)


def _where_text(where: dict | None) -> str:
    return ", ".join(
        f"{k}={text(v) if not isinstance(v, list) else '|'.join(map(text, v))}" for k, v in (where or {}).items()
    )


def statement(claim: dict) -> str:
    """The claim in one line, e.g. ``ratio(latency, mode=eager / mode=graphs) decreases with batch_size``."""
    if "trend" in claim:
        t = claim["trend"]
        of = t.get("of", "value")
        m = t["metric"]
        if of != "value":
            op = "/" if of == "ratio" else "-"
            m = f"{of}({m}, {_where_text(t['numerator'])} {op} {_where_text(t['denominator'])})"
        rng = ""
        if "from" in t and "to" in t:
            rng = f" from {t['over']}={text(t['from'])} to {t['over']}={text(t['to'])}"
        elif "from" in t:
            rng = f" from {t['over']}={text(t['from'])} on"
        elif "to" in t:
            rng = f" up to {t['over']}={text(t['to'])}"
        if t["direction"] == "flat":
            tol = t.get("tolerance", DEFAULT_TOLERANCE)
            return f"{m} is flat (within ±{100 * tol:g}%) over {t['over']}{rng}"
        return f"{m} {t['direction']} with {t['over']}{rng}"
    c = claim["compare"]

    def side(s):
        m = s.get("metric", c.get("metric", "?"))
        w = _where_text(s.get("where"))
        return f"{s['week'] + ' ' if s.get('week') else ''}{m}" + (f" [{w}]" if w else "")

    op, f = parse_expect(c["expect"])
    tol = f" (±{100 * c.get('tolerance', DEFAULT_TOLERANCE):g}%)" if op == "~" else ""
    return f"{side(c['a'])} {op} {'' if f == 1 else f'{f:g} * '}{side(c['b'])}{tol}"


def _levels_between(levels: list[str], t: dict) -> list[str]:
    lo, hi = t.get("from"), t.get("to")
    if lo is None and hi is None:
        return levels
    nums = [_number(x) for x in levels]
    if all(n is not None for n in nums) and all(_number(text(v)) is not None for v in (lo, hi) if v is not None):
        a = -math.inf if lo is None else _number(text(lo))
        b = math.inf if hi is None else _number(text(hi))
        return [x for x, n in zip(levels, nums, strict=True) if a <= n <= b]
    i = 0 if lo is None else (levels.index(text(lo)) if text(lo) in levels else len(levels))
    j = len(levels) - 1 if hi is None else (levels.index(text(hi)) if text(hi) in levels else -1)
    return levels[i : j + 1]


def _trend(ctx, claim: dict, base: Frame, group: Frame, fixed: dict, fmt: str):
    t = claim["trend"]
    over, metric, of = t["over"], t["metric"], t.get("of", "value")
    levels = _levels_between(base.levels(over, ctx.order, metric), t)
    points = []
    for lv in levels:
        label = f"{over}={lv}"
        sel = {**fixed, over: lv}
        if of == "value":
            points.append(lookup(group, sel, metric, label))
        else:
            num = lookup(group, {**sel, **t["numerator"]}, metric, f"{label} {_where_text(t['numerator'])}")
            den = lookup(group, {**sel, **t["denominator"]}, metric, f"{label} {_where_text(t['denominator'])}")
            points.append(combine(of, num, den, label))
    return trend_verdict(points, t["direction"], t.get("tolerance"), fmt)


def side_label(compare: dict, side: dict) -> str:
    """What a side is, in a reason: its selection, and its metric and week where the sides differ."""
    other = compare["b" if side is compare["a"] else "a"]
    metric = side.get("metric", compare.get("metric"))
    parts = []
    if side.get("week"):
        parts.append(side["week"])
    if metric != other.get("metric", compare.get("metric")) or side.get("week"):
        parts.append(metric)
    w = _where_text(side.get("where"))
    if w:
        parts.append(f"[{w}]" if parts else w)
    return " ".join(parts) or metric


def _side(ctx, claim: dict, side: dict, group: Frame, fixed: dict, label: str) -> Point:
    metric = side.get("metric", claim["compare"].get("metric"))
    week = side.get("week")
    if week and week != ctx.week:
        f = ctx.frames.get(week)
        if f is None:
            return Point(label, missing=f"n/a ({week} not in this run)")
        sel = {k: v for k, v in fixed.items() if k not in _WEEK_SPECIFIC}
        return lookup(f.select(side.get("where")), sel, metric, label)
    return lookup(group.select(side.get("where")), fixed, metric, label)


def _compare(ctx, claim: dict, base: Frame, group: Frame, fixed: dict, fmt: str):
    c = claim["compare"]
    a = _side(ctx, claim, c["a"], group, fixed, side_label(c, c["a"]))
    b = _side(ctx, claim, c["b"], group, fixed, side_label(c, c["b"]))
    return compare_verdict(a, b, c["expect"], c.get("tolerance"), fmt)


@dataclass
class Verdict:
    claim: str
    statement: str
    text: str
    source: str
    per: dict
    verdict: str
    why: str


def evaluate(ctx, key: str, claim: dict) -> list[Verdict]:
    """One verdict per level (combination) of the claim's ``per`` axes found in its rows."""
    base = ctx.frame.select(claim.get("where"))
    per = _per(claim)
    fmt = claim.get("format")
    stmt = statement(claim)
    lacking = [a for a in per if not base.has(a)]
    if lacking:
        why = f"the data has no axis {', '.join(lacking)} (per)"
        return [Verdict(key, stmt, claim["text"], claim["source"], {a: "" for a in per}, CANNOT_TELL, why)]
    combos = [c for c in dict.fromkeys(zip(*[base.texts(a) for a in per], strict=True)) if all(c)] if len(base) else []
    for i, a in reversed(list(enumerate(per))):
        rank = {lv: k for k, lv in enumerate(ctx.order.sort(a, [c[i] for c in combos]))}
        combos.sort(key=lambda c, i=i, rank=rank: rank[c[i]])
    if not combos:
        why = f"no rows match the claim's selection ({_where_text(claim.get('where')) or 'all rows'})"
        return [Verdict(key, stmt, claim["text"], claim["source"], {a: "" for a in per}, CANNOT_TELL, why)]
    out = []
    for combo in combos:
        fixed = dict(zip(per, combo, strict=True))
        group = base.select(fixed)
        unmet = unmet_requirement(claim, group)
        if unmet:
            out.append(Verdict(key, stmt, claim["text"], claim["source"], fixed, CANNOT_TELL, unmet))
            continue
        fn = _trend if "trend" in claim else _compare
        v, why = fn(ctx, claim, base, group, fixed, fmt)
        out.append(Verdict(key, stmt, claim["text"], claim["source"], fixed, v, why))
    return out


def unmet_requirement(claim: dict, group: Frame) -> str | None:
    """The first of the claim's ``requires`` conditions that ``group``'s cells do not meet, as the
    reason it cannot be judged (None: all hold). A condition holds when its metric's largest valid
    value over the selected cells is above ``above``: e.g. a scheduling-policy claim on a run where
    no request ever waited (max ``waiting_requests_max`` 0) compares policies that had nothing to
    order, and its "agrees" would say nothing."""
    for r in claim.get("requires") or []:
        sub = group.select({**(r.get("where") or {}), "metric": r["metric"]})
        vals = [float(x["value"]) for x in sub.records() if _good(x)]
        sel = _where_text(r.get("where"))
        at = f" ({sel})" if sel else ""
        if not vals:
            return f"requirement not measured: no {r['metric']}{at} in these cells; {r['because']}"
        top = max(vals)
        if not top > r["above"]:
            return (
                f"requirement not met: {r['metric']}{at} at most {number(top)} (needs > {r['above']:g}); {r['because']}"
            )
    return None


def evaluate_all(ctx) -> list[Verdict]:
    """Every claim of the week; a claim whose evaluation breaks says so as ``cannot tell`` (the
    week's tables are still written)."""
    out = []
    for key, c in (ctx.doc.get("claims") or {}).items():
        try:
            out += evaluate(ctx, key, c)
        except (KeyError, ValueError, TypeError, ZeroDivisionError) as e:
            why = f"could not evaluate: {type(e).__name__}: {e}"
            out.append(Verdict(key, statement(c), c["text"], c["source"], {}, CANNOT_TELL, why))
    return out


def _one_line(s: str) -> str:
    return " ".join(str(s).split())


def frame(verdicts: list[Verdict]) -> pd.DataFrame:
    """The claims table: Claim, Course text, one column per ``per`` axis (GPU, ...), Verdict, Why."""
    axes = list(dict.fromkeys(a for v in verdicts for a in v.per)) or ["gpu"]
    heads = ["Claim", "Course text"] + [HEADERS.get(a, a) for a in axes] + ["Verdict", "Why"]
    rows = [
        [f"{v.claim}: {v.statement}", f"\u201c{_one_line(v.text)}\u201d ({_one_line(v.source)})"]
        + [v.per.get(a, "") for a in axes]
        + [v.verdict, v.why]
        for v in verdicts
    ]
    return pd.DataFrame(rows, columns=heads)


TITLE = "Claims"
NOTES = [
    "Each of the course's claims (the week file's `claims:`) judged on this run's data, per GPU: agrees, "
    "disagrees or cannot tell. A point is a cell's mean with its 95% Student-t interval when repeated "
    "(a single run: its value, judged as is); overlapping intervals cannot tell; a failed, skipped or "
    "guard-rejected cell makes the claim cannot tell. Rules: inferlab.report.claims.",
]


def summary(verdicts: list[Verdict]) -> str:
    n = {k: sum(v.verdict == k for v in verdicts) for k in VERDICTS}
    return f"{n[AGREES]} agree, {n[DISAGREES]} disagree, {n[CANNOT_TELL]} cannot tell ({len(verdicts)} verdicts)."


def markdown(df: pd.DataFrame, verdicts: list[Verdict]) -> str:
    """The report.md section."""
    from ..tables import to_markdown

    esc = df.map(lambda s: str(s).replace("|", "\\|"))
    lines = [f"## {TITLE}", "", summary(verdicts), "", to_markdown(esc)]
    return "\n".join(lines) + "".join(f"\n{n}\n" for n in NOTES)

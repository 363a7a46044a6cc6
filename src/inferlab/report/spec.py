"""Checking a week's declarations (``tables:``, ``figures:``, ``claims:``, ``joins:``) and the
course's reference rows against src/inferlab/schemas/report.schema.yaml, plus what a schema cannot
say (a custom function that exists, an expression that parses, a joined week that is declared).
Every error is a ConfigError naming the file and the key."""

from __future__ import annotations

from .. import config
from ..errors import ConfigError
from . import columns

_SCHEMA = None


def _schema() -> dict:
    global _SCHEMA
    if _SCHEMA is None:
        _SCHEMA = config._schema("report")
    return _SCHEMA


def _validate(data, ref: str | None, file) -> None:
    schema = _schema() if ref is None else {"$ref": f"#/$defs/{ref}", "$defs": _schema()["$defs"]}
    errors = sorted(config._Validator(schema).iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        best = config.best_error(errors)
        msg = best.message
        if best.validator == "additionalProperties":
            msg = f"unknown key: {msg}"
        raise ConfigError(file, config._key_path(best.absolute_path), msg)


def validate_reference(rows, file) -> None:
    _validate(rows, "reference", file)


def check(doc: dict, file="config/weeks") -> dict:
    """Validate a week document's report declarations (defaults filled in); returns ``doc``."""
    part = {k: doc[k] for k in ("tables", "figures", "claims") if k in doc}
    _validate(part, None, file)
    from . import custom

    joins = set(doc.get("joins") or [])
    for key, t in (doc.get("tables") or {}).items():
        where = f"tables.{key}"
        if t["kind"] == "custom" and t["function"] not in custom.FUNCTIONS:
            raise ConfigError(
                file,
                f"{where}.function",
                f"unknown custom function {t['function']!r} (known: {', '.join(custom.FUNCTIONS)})",
            )
        cols = (
            t.get("columns")
            if isinstance(t.get("columns"), list) and t["columns"] and isinstance(t["columns"][0], dict)
            else []
        )
        for name in ("add", "before", "after"):
            cols = cols + list(t.get(name) or [])
        for i, c in enumerate(cols):
            if "expr" in c:
                try:
                    columns.parse_expr(c["expr"])
                except (SyntaxError, ValueError) as e:
                    raise ConfigError(file, f"{where}.columns[{i}].expr", str(e)) from None
            if c.get("week") and c["week"] != doc.get("week") and c["week"] not in joins:
                raise ConfigError(
                    file, f"{where}.columns[{i}].week", f"{c['week']} is not in this week's joins: {sorted(joins)}"
                )
        for ax in t.get("rows") or []:
            if isinstance(ax, dict):
                for lv in ax["levels"]:
                    if lv.get("week") and lv["week"] != doc.get("week") and lv["week"] not in joins:
                        raise ConfigError(
                            file, f"{where}.rows", f"{lv['week']} is not in this week's joins: {sorted(joins)}"
                        )
        if t["kind"] == "vs_theory" and t["theory"] not in columns.THEORY:
            raise ConfigError(file, f"{where}.theory", f"unknown theory quantity (known: {', '.join(columns.THEORY)})")
    for key, f in (doc.get("figures") or {}).items():
        ref = f.get("reference")
        if ref is not None and f["kind"] != "line":
            raise ConfigError(
                file, f"figures.{key}.reference", f"only a line figure draws a reference, not {f['kind']}"
            )
        exps = doc.get("experiments")
        if ref is not None and exps and ref.get("experiment") is not None and ref["experiment"] not in exps:
            raise ConfigError(
                file,
                f"figures.{key}.reference.experiment",
                f"unknown experiment {ref['experiment']!r} (this week's: {', '.join(exps)})",
            )
        vl = f.get("vlines") or {}
        if "theory" in vl and vl["theory"] not in columns.THEORY:
            raise ConfigError(
                file, f"figures.{key}.vlines.theory", f"unknown theory quantity (known: {', '.join(columns.THEORY)})"
            )
    for key, c in (doc.get("claims") or {}).items():
        cmp = c.get("compare")
        if not cmp:
            continue
        for s in ("a", "b"):
            side = cmp[s]
            if "metric" not in side and "metric" not in cmp:
                raise ConfigError(file, f"claims.{key}.compare.{s}", "no metric (name one here or in compare.metric)")
            if side.get("week") and side["week"] != doc.get("week") and side["week"] not in joins:
                raise ConfigError(
                    file,
                    f"claims.{key}.compare.{s}.week",
                    f"{side['week']} is not in this week's joins: {sorted(joins)}",
                )
    return doc


def captions(doc: dict) -> dict:
    """Figure name -> caption (written once, in the week file)."""
    return {k: f["caption"] for k, f in (doc.get("figures") or {}).items()}


def table_captions(doc: dict, levels: dict | None = None) -> dict:
    """Table file name -> caption (its title, then its notes), for ``snakemake --report``. A
    ``for_each`` table has one name per level of its axis: ``levels`` gives them (axis -> levels, e.g.
    the run's matrix); a level the data lacks only leaves an unused entry."""
    from .values import text

    out = {}
    for key, t in (doc.get("tables") or {}).items():
        each = t.get("for_each")
        fills = [{each: text(lv)} for lv in (levels or {}).get(each, [])] if each else [{}]
        for fixed in fills:
            name = columns.fill(t.get("name", key), fixed)
            title = columns.fill(t.get("title", name), fixed)
            out[name] = "\n\n".join([title, *(str(n) for n in t.get("notes") or [])])
    return out


_RST_SPECIAL = str.maketrans({c: "\\" + c for c in "\\*`|_[]<>"})


def rst_text(s: str) -> str:
    """``s`` as literal reStructuredText (a caption's ``AI*`` or ``latency_floor_s`` kept as written)."""
    return "\n\n".join(" ".join(p.split()).translate(_RST_SPECIAL) for p in str(s).split("\n\n"))

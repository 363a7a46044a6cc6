"""Table helpers: how a cell is shown (its number, or what happened instead), Markdown/CSV output.
The tables themselves are declared in the week files and built by inferlab.report."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from . import io

NOT_IN_MATRIX = "n/a"
# how a skip for want of resources begins its detail (measure.skip_all types those `resources`, and a
# table shows that phrase: SKIPPED (needs 2 GPUs), SKIPPED (does not fit))
RESOURCE_NEEDS = ("needs ", "does not fit")


def show(row: pd.Series | None, fmt: str = "{:.2f}") -> str:
    """The text of one table cell: the number, or what happened instead. Never blank."""
    if row is None:
        return NOT_IN_MATRIX
    if row["status"] == "skipped":
        return f"SKIPPED ({skip_label(row)})"
    if row["status"] != "ok":
        reason = row["reason"] or "failed"
        return reason.upper() if reason in ("oom", "timeout", "cancelled") else f"FAILED ({reason})"
    if row["valid"] is False or (not pd.isna(row["valid"]) and not bool(row["valid"])):
        return f"INVALID ({fmt.format(row['raw_value'])} < roofline)"
    v = row["value"]
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "FAILED (no value)"
    lengths = row.get("lengths") if hasattr(row, "get") else None
    if isinstance(lengths, str) and lengths.startswith("mismatch"):
        # measured, but not what was asked (e.g. EOS ended generations early): shown, flagged
        return f"{fmt.format(v)} (LENGTHS: {lengths[len('mismatch: ') :]})"
    return fmt.format(v)


def skip_label(row) -> str:
    """Why a cell was skipped, short enough for a table cell: a resources skip shows what it needs
    (``needs 2 GPUs``, ``does not fit ...``: the record's detail up to its parenthesis), any other its
    reason (``unsupported``, ``engine_unavailable``)."""
    reason = row["reason"]
    detail = row.get("detail") if hasattr(row, "get") else None
    if reason == "resources" and isinstance(detail, str) and detail.startswith(RESOURCE_NEEDS):
        return detail.split(" (")[0].split(":")[0].strip()
    return str(reason)


def to_markdown(df: pd.DataFrame) -> str:
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for _, r in df.iterrows():
        lines.append("| " + " | ".join(str(v) for v in r.tolist()) + " |")
    return "\n".join(lines) + "\n"


def write_table(df: pd.DataFrame, outdir: Path, name: str, title: str, notes: list[str] = ()) -> dict:
    outdir = Path(outdir)
    md = f"### {title}\n\n" + to_markdown(df) + "".join(f"\n{n}\n" for n in notes)
    io.write_text(outdir / f"{name}.md", md)
    with io.atomic_path(outdir / f"{name}.csv") as tmp:
        df.to_csv(tmp, index=False)
    return {"name": name, "title": title, "markdown": md}

"""Table helpers shared by the weeks: how a cell is shown, Markdown/CSV output."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from . import io
from .io import atomic_path

NOT_IN_MATRIX = "n/a"


def show(row: pd.Series | None, fmt: str = "{:.2f}") -> str:
    """The text of one table cell: the number, or what happened instead. Never blank."""
    if row is None:
        return NOT_IN_MATRIX
    if row["status"] == "skipped":
        return f"SKIPPED ({row['reason']})"
    if row["status"] != "ok":
        reason = row["reason"] or "failed"
        return reason.upper() if reason in ("oom", "timeout", "cancelled") else f"FAILED ({reason})"
    if row["valid"] is False or (not pd.isna(row["valid"]) and not bool(row["valid"])):
        return f"INVALID ({fmt.format(row['raw_value'])} < roofline)"
    v = row["value"]
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "FAILED (no value)"
    return fmt.format(v)


def lookup(df: pd.DataFrame, **eq) -> pd.Series | None:
    """The first row matching every ``column=value``: numbers compare as numbers, anything else as
    text (a request rate column holds 1, 4, 10 and "inf")."""
    m = pd.Series(True, index=df.index)
    for k, v in eq.items():
        col = df[k]
        if pd.api.types.is_numeric_dtype(col) and not isinstance(v, str):
            m &= col == v
        else:
            m &= col.astype(str) == str(v)
    sub = df[m]
    if sub.empty:
        return None
    return sub.iloc[0]


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


def save_figure(fig, path: Path, note: str = "") -> None:
    """Write a figure atomically; ``note`` names what could not be plotted, under the plot."""
    if note:
        fig.text(0.01, 0.01, f"not plotted: {note}"[:160], fontsize=7, color="firebrick")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    import matplotlib.pyplot as plt

    plt.close(fig)

"""A table as a small self-contained HTML page (``tables/<name>.html``, ``claims.html``): what
``snakemake --report`` shows inline (it shows HTML, images and PDF in place; a CSV only as a
download), with the table's title, its notes and its CSV embedded as a download link."""

from __future__ import annotations

import base64
import html
from pathlib import Path

import pandas as pd

from .. import io

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; background: #fff; color: #111;
       margin: 1rem; font-size: 14px; }
h3 { font-size: 1.1rem; margin: 0 0 .6rem 0; }
table { border-collapse: collapse; margin-bottom: .6rem; }
th, td { border: 1px solid #ccc; padding: .25rem .5rem; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.agrees { background: #e3f5e1; } td.disagrees { background: #fbe3e1; } td.cannot-tell { background: #f5f0dc; }
p.note { color: #333; max-width: 60rem; }
a.csv { font-size: .85rem; }
"""


def _is_number(s: str) -> bool:
    t = s.replace(",", "").rstrip("%x").lstrip("+-")
    try:
        float(t.split(" ")[0])
    except ValueError:
        return False
    return True


def _cell_class(s: str) -> str:
    if s in ("agrees", "disagrees", "cannot tell"):
        return s.replace(" ", "-")
    return "num" if _is_number(s) else ""


def page(title: str, df: pd.DataFrame, notes=(), csv_name: str | None = None, lead: str = "") -> str:
    """The HTML of one table (every cell escaped)."""
    e = html.escape
    head = "".join(f"<th>{e(str(c))}</th>" for c in df.columns)
    body = []
    for row in df.astype(str).itertuples(index=False):
        cells = []
        for v in row:
            cls = _cell_class(v)
            cells.append(f'<td class="{cls}">{e(v)}</td>' if cls else f"<td>{e(v)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(title)}</title><style>{STYLE}</style></head><body>",
        f"<h3>{e(title)}</h3>",
    ]
    if lead:
        parts.append(f'<p class="note">{e(lead)}</p>')
    parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>")
    parts += [f'<p class="note">{e(str(n))}</p>' for n in notes]
    if csv_name:
        data = base64.b64encode(df.to_csv(index=False).encode()).decode()
        parts.append(
            f'<p><a class="csv" download="{e(csv_name)}" href="data:text/csv;base64,{data}">{e(csv_name)}</a></p>'
        )
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write(path: Path, title: str, df: pd.DataFrame, notes=(), lead: str = "") -> Path:
    path = Path(path)
    io.write_text(path, page(title, df, notes, csv_name=path.with_suffix(".csv").name, lead=lead))
    return path

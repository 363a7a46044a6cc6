"""Stage 4's tables and figures for one week, from its Parquet and its week file's declarations."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .. import config as config_mod
from ..tables import write_table
from . import figures as figures_mod
from . import kinds, reference, spec
from .values import Frame


def week_doc(cfg, week: str) -> tuple[dict, str]:
    """The week's document (from the run's config, else read from the catalog) and its file."""
    catalog = Path(cfg.files.get("catalog_dir", "config"))
    f = cfg.files.get(week, str(catalog / "weeks" / f"{week}.yaml"))
    doc = cfg.weeks.get(week)
    if doc is None:
        doc = config_mod.validate(config_mod.load_yaml(f), "week", f)
    return doc, f


def context(df: pd.DataFrame, cfg, week: str, others: dict | None = None, doc: dict | None = None) -> kinds.Context:
    if doc is None:
        doc, f = week_doc(cfg, week)
        spec.check(doc, f)
    frames = {week: Frame(df, week)}
    for w, d in (others or {}).items():
        frames[w] = Frame(d, w)
    ref_dir = Path(cfg.files.get("catalog_dir", "config")) / "reference"
    ref = Frame(reference.load(ref_dir, cfg.gpus, cfg.models, week), "reference") if ref_dir.exists() else None
    return kinds.Context(cfg, doc, week, frames, ref)


def build(df: pd.DataFrame, cfg, week: str, outdir, others: dict | None = None, doc: dict | None = None) -> dict:
    """Write ``outdir/tables/<name>.md|csv`` and ``outdir/figures/<name>.png``; returns
    {"tables": [{name, title, markdown}], "figures": [{name, path, caption, missing}]}."""
    outdir = Path(outdir)
    tdir, fdir = outdir / "tables", outdir / "figures"
    tdir.mkdir(parents=True, exist_ok=True)
    fdir.mkdir(parents=True, exist_ok=True)
    ctx = context(df, cfg, week, others, doc)
    tables = []
    for key, t in (ctx.doc.get("tables") or {}).items():
        for tab in kinds.build(ctx, key, t):
            tables.append(write_table(tab.df, tdir, tab.name, tab.title, tab.notes))
    figs = [figures_mod.build(ctx, key, f, fdir) for key, f in (ctx.doc.get("figures") or {}).items()]
    return {"tables": tables, "figures": figs}

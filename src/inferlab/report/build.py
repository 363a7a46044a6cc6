"""Stage 4's tables and figures for one week, from its Parquet and its week file's declarations."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .. import config as config_mod
from .. import io
from ..tables import write_table
from . import claims as claims_mod
from . import figures as figures_mod
from . import html, kinds, reference, spec
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
    """Write ``outdir/tables/<name>.md|csv|html``, ``outdir/figures/<name>.png`` and the claims'
    verdicts ``outdir/claims.csv|html``; returns {"tables": [{name, title, markdown}], "figures":
    [{name, path, caption, missing}], "claims": [Verdict]}. A week that declares claims gets their
    "Claims" section as the last entry of "tables" (report.md shows it after the tables)."""
    outdir = Path(outdir)
    tdir, fdir = outdir / "tables", outdir / "figures"
    tdir.mkdir(parents=True, exist_ok=True)
    fdir.mkdir(parents=True, exist_ok=True)
    ctx = context(df, cfg, week, others, doc)
    tables = []
    for key, t in (ctx.doc.get("tables") or {}).items():
        for tab in kinds.build(ctx, key, t):
            tables.append(write_table(tab.df, tdir, tab.name, tab.title, tab.notes))
            html.write(tdir / f"{tab.name}.html", tab.title, tab.df, tab.notes)
    figs = [figures_mod.build(ctx, key, f, fdir) for key, f in (ctx.doc.get("figures") or {}).items()]
    verdicts = claims_mod.evaluate_all(ctx)
    cdf = claims_mod.frame(verdicts)
    with io.atomic_path(outdir / "claims.csv") as tmp:
        cdf.to_csv(tmp, index=False)
    lead = claims_mod.summary(verdicts) if verdicts else f"{week} declares no claims."
    html.write(outdir / "claims.html", f"{week}: {claims_mod.TITLE}", cdf, claims_mod.NOTES, lead=lead)
    if verdicts:
        tables.append({"name": "claims", "title": claims_mod.TITLE, "markdown": claims_mod.markdown(cdf, verdicts)})
    return {"tables": tables, "figures": figs, "claims": verdicts}

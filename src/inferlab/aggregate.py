"""Stage 4: one week's cell Parquet files -> the week's tables, figures and report.

The tables and figures are declared in the week file (``tables:``, ``figures:``; inferlab.report
builds them), so a week with no Python module of its own aggregates like any other."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import io, records, report


def load(paths) -> pd.DataFrame:
    frames = [pd.read_parquet(p) for p in paths]
    if not frames:
        return records.normalize(pd.DataFrame())
    return records.normalize(pd.concat(frames, ignore_index=True))


def status_summary(df: pd.DataFrame) -> pd.DataFrame:
    # one row per cell: a cell id (rr4) repeats across an experiment's configurations
    keys = ["experiment", "engine", "gpu", "configuration", "cell"]
    cells = df.drop_duplicates(keys)
    return cells[[*keys, "status", "reason", "detail"]].reset_index(drop=True)


def run(week: str, paths, cfg, outdir, others: dict | None = None) -> dict:
    """``others``: {week: Parquet path} of the weeks this week's tables join (the week file's
    ``joins:``, where those weeks are in the run)."""
    outdir = Path(outdir)
    df = load(paths)
    io.write_parquet(outdir / f"{week}.parquet", df)
    other = {w: records.normalize(pd.read_parquet(p)) for w, p in (others or {}).items()}
    result = report.build(df, cfg, week, outdir, others=other)
    write_report(week, cfg, df, result, outdir / "report.md")
    return result


def write_report(week, cfg, df, result, path: Path) -> None:
    doc, _ = report.week_doc(cfg, week)
    summ = status_summary(df)
    counts = summ["status"].value_counts().to_dict()
    lines = [
        f"# {week}: {doc.get('title', '')}",
        "",
        f"Preset `{cfg.preset.get('preset', '?')}`; GPUs: {', '.join(cfg.preset['gpus'])}; model `{cfg.model_id}`.",
        "",
        "Cells: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())),
        "",
    ]
    invalid = df[df["valid"] == False]  # noqa: E712 (pandas boolean column)
    if not invalid.empty:
        lines += ["## Values rejected by the roofline guard", ""]
        for _, r in invalid.drop_duplicates(["gpu", "cell"]).iterrows():
            lines.append(f"- {r.experiment}/{r.gpu}/{r.cell}: {r.invalid_reason}")
        lines.append("")
    for t in result["tables"]:
        lines += [t["markdown"], ""]
    for f in result["figures"]:
        lines += [f"![{f['caption']}](figures/{Path(f['path']).name})", "", f"*{f['caption']}*", ""]
    bad = summ[summ.status != "ok"]
    if not bad.empty:
        lines += ["## Cells that did not produce numbers", ""]
        for _, r in bad.iterrows():
            lines.append(
                f"- `{week}/{r.experiment}/{r.engine}/{r.gpu}/{r.configuration}/{r.cell}`: "
                f"{r.status} ({r.reason}): {r.detail}"
            )
        lines.append("")
    # the engines that ran: a cell skipped before any engine started has no versions to report
    ran = df[df["engine_version"].notna()]
    versions = ran.drop_duplicates(["engine", "engine_version", "torch_version", "git_commit", "host"])
    lines += ["## Provenance", ""]
    if versions.empty:
        lines.append("- no cell started an engine")
    for _, r in versions.iterrows():
        lines.append(
            f"- engine {r.engine} {r.engine_version}, torch {r.torch_version}, host {r.host}, "
            f"workflow commit {r.git_commit}, prefix caching {r.prefix_caching}"
        )
    io.write_text(path, "\n".join(lines) + "\n")


def main(argv=None) -> int:
    """Re-tabulate a kept week Parquet with the current table code (e.g. a validation record):
    ``python -m inferlab.aggregate week03 --parquet P --preset config/X.yaml --out DIR
    [--join week01=P1]``."""
    import argparse

    from . import config

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("week")
    ap.add_argument("--parquet", required=True, type=Path)
    ap.add_argument("--preset", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--join", action="append", default=[], help="WEEK=PARQUET of a week this one joins")
    a = ap.parse_args(argv)
    cfg = config.load(a.preset, base_dir=Path.cwd())
    df = records.normalize(pd.read_parquet(a.parquet))
    others = {w: records.normalize(pd.read_parquet(p)) for w, p in (j.split("=", 1) for j in a.join)}
    result = report.build(df, cfg, a.week, a.out, others=others)
    write_report(a.week, cfg, df, result, a.out / "report.md")
    for t in result["tables"]:
        print(t["markdown"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

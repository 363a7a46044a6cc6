"""The nightly regeneration: run every week, keep the night's numbers, say what changed.

``python -m inferlab.nightly run [--profile P] [--configfile F] [--night ID]`` runs the workflow's
``all`` target with ``--keep-going`` (a failed cell is a typed record and the night goes on), then:

- keeps the night: every week's Parquet is copied to ``nights/<night>/`` (a night that already
  exists is never overwritten: a second run the same day gets ``<date>T<HHMMSS>``);
- writes ``nights/<night>/report.md``: which cells ran tonight, which failed (typed, with reason),
  which were skipped as unchanged (their record predates tonight's run); for every metric its change
  against the previous night's Parquet and against the course's published numbers
  (config/reference/), flagging changes beyond the per-metric tolerance of config/nightly.yaml,
  which the report quotes.

scripts/nightly.sh is the entry point for cron/scrontab (README, "Nightly").
"""

from __future__ import annotations

import argparse
import datetime as dt
import fnmatch
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

from . import io, records

KEY = ["week", "experiment", "engine", "gpu", "cell", "metric"]


# -- reference data (the course's published numbers): config/reference/*.yaml, one flat shape -------
def published(ref_dir: Path, catalog_dir: Path | None = None) -> pd.DataFrame:
    """Every published number (inferlab.report.reference), checked by the roofline guard against
    the catalogs of ``catalog_dir`` (default: the reference folder's parent): one row per number,
    its point's axes as ``param_<axis>`` columns, ``published`` the value, ``valid`` the guard's verdict."""
    from .report import reference

    ref_dir = Path(ref_dir)
    gpus, models = reference.load_catalog(catalog_dir or ref_dir.parent)
    df = reference.frame(reference.load_rows(ref_dir), gpus, models)
    return df.rename(columns={"cell": "point"}).assign(published=df["raw_value"])


def tolerance(rules: list[dict], metric: str) -> float:
    for r in rules:
        if fnmatch.fnmatch(metric, r["metric"]):
            return float(r["pct"])
    return 10.0


# -- a night -----------------------------------------------------------------------------------------
def night_id(nights: Path, today: str | None = None) -> str:
    base = today or dt.date.today().isoformat()
    if not (Path(nights) / base).exists():
        return base
    return f"{base}T{dt.datetime.now().strftime('%H%M%S')}"


def snapshot(results: Path, weeks: list[str], dest: Path) -> dict[str, Path]:
    dest.mkdir(parents=True, exist_ok=False)  # never overwrite an earlier night
    kept = {}
    for w in weeks:
        src = Path(results) / w / f"{w}.parquet"
        if src.exists():
            shutil.copy2(src, dest / src.name)
            (dest / src.name).chmod(0o444)
            kept[w] = dest / src.name
    return kept


def previous_night(nights: Path, current: str) -> Path | None:
    earlier = sorted(
        p for p in Path(nights).iterdir() if p.is_dir() and p.name < current and (p / "report.md").exists()
    )
    return earlier[-1] if earlier else None


def cells_tonight(results: Path, weeks: list[str], started: dt.datetime) -> pd.DataFrame:
    rows = []
    for w in weeks:
        for rec_path in sorted((Path(results) / w).glob("*/*/*/*/cell.json")):
            rec = json.loads(rec_path.read_text())
            fin = rec.get("finished_at")
            ran = fin is not None and dt.datetime.fromisoformat(fin) >= started
            rows.append(
                {
                    "cell": f"{rec['week']}/{rec['experiment']}/{rec['engine']}/{rec['gpu']}/{rec['cell']}",
                    "tonight": "ran" if ran else "skipped (unchanged)",
                    "status": rec["status"],
                    "reason": rec.get("reason") or "",
                    "detail": (rec.get("detail") or "")[:160],
                }
            )
    return pd.DataFrame(rows, columns=["cell", "tonight", "status", "reason", "detail"])


def _values(df: pd.DataFrame) -> pd.DataFrame:
    ok = df[(df["status"] == "ok") & df["value"].notna()]
    return ok[KEY + ["value", "unit"]].drop_duplicates(KEY)


def _g(v):
    return None if v is None or pd.isna(v) else float(f"{v:.4g}")


def compare_nights(now: pd.DataFrame, prev: pd.DataFrame, rules) -> pd.DataFrame:
    m = _values(now).merge(_values(prev)[KEY + ["value"]], on=KEY, how="outer", suffixes=("", "_prev"), indicator=True)
    out = []
    for _, r in m.iterrows():
        tol = tolerance(rules, r["metric"])
        if r["_merge"] == "left_only":
            change, flag = "new tonight", ""
        elif r["_merge"] == "right_only":
            change, flag = "no value tonight", "FLAG"
        else:
            pct = 100 * (r["value"] - r["value_prev"]) / r["value_prev"] if r["value_prev"] else float("inf")
            change, flag = f"{pct:+.1f}%", "FLAG" if abs(pct) > tol else ""
        out.append(
            {
                **{k: r[k] for k in KEY},
                "tonight": _g(r["value"]),
                "previous": _g(r["value_prev"]),
                "change": change,
                "tolerance": f"±{tol:g}%",
                "flag": flag,
            }
        )
    return pd.DataFrame(out, columns=[*KEY, "tonight", "previous", "change", "tolerance", "flag"])


def compare_published(now: pd.DataFrame, pub: pd.DataFrame, rules) -> pd.DataFrame:
    """Each published number beside tonight's value of the same point: same week, experiment,
    engine, GPU and metric, and every axis the published row names (repeats: their mean). A
    published value the roofline guard rejects is flagged as such, never as a change."""
    from .report.values import Frame

    f = Frame(now)
    params = [c for c in pub.columns if c.startswith("param_")]
    out = []
    for _, r in pub.iterrows():
        sel = {k: r[k] for k in ("week", "experiment", "engine", "gpu")}
        sel.update({c[len("param_") :]: r[c] for c in params if not pd.isna(r[c])})
        c = f.cell(sel, r["metric"]) if all(f.has(k) for k in sel) else None
        tol = tolerance(rules, r["metric"])
        tonight, cell, flag = None, "", ""
        if c is None:
            change = "not measured in this run"
        elif not c.ok:
            cell, change = c.first["cell"], f"no value tonight: {c.status()}"
        else:
            tonight, cell = c.mean, c.first["cell"]
            pct = 100 * (tonight - r["published"]) / r["published"]
            change, flag = f"{pct:+.1f}%", "FLAG" if abs(pct) > tol else ""
        if not pd.isna(r["valid"]) and not bool(r["valid"]):
            flag = "published INVALID (roofline guard)"
        out.append(
            {
                **{k: r[k] for k in ("week", "experiment", "engine", "gpu")},
                "cell": cell,
                "point": r["point"],
                "metric": r["metric"],
                "tonight": _g(tonight),
                "published": r["published"],
                "change": change,
                "tolerance": f"±{tol:g}%",
                "flag": flag,
            }
        )
    cols = ["week", "experiment", "engine", "gpu", "cell", "point", "metric"]
    return pd.DataFrame(out, columns=[*cols, "tonight", "published", "change", "tolerance", "flag"])


def _md(df: pd.DataFrame) -> str:
    from .tables import to_markdown

    return to_markdown(df.fillna("")) if not df.empty else "(none)\n"


def write_report(night: str, dest: Path, results: Path, weeks, started, nights: Path, catalog: Path, rc: int) -> Path:
    tol = yaml.safe_load((Path(catalog) / "nightly.yaml").read_text())
    now = (
        pd.concat(
            [records.normalize(pd.read_parquet(p)) for p in sorted(dest.glob("week*.parquet"))], ignore_index=True
        )
        if list(dest.glob("week*.parquet"))
        else records.normalize(pd.DataFrame())
    )
    cells = cells_tonight(results, weeks, started)
    prev_dir = previous_night(nights, night)
    lines = [
        f"# Nightly report {night}",
        "",
        f"Workflow exit code {rc} (`--keep-going`: failed cells are typed records).",
        "",
    ]
    counts = cells.groupby(["tonight", "status"]).size().to_dict() if not cells.empty else {}
    lines += ["Cells: " + ", ".join(f"{n} {a}/{s}" for (a, s), n in sorted(counts.items())), ""]
    lines += ["## Cells that ran tonight", "", _md(cells[cells.tonight == "ran"]), ""]
    lines += ["## Cells that failed or were skipped (typed)", "", _md(cells[cells.status != "ok"]), ""]
    lines += [
        "## Cells skipped as unchanged (nothing they depend on changed)",
        "",
        _md(cells[cells.tonight != "ran"][["cell", "status"]]),
        "",
    ]
    if prev_dir is None:
        lines += ["## Changes against the previous night", "", "No earlier night in " + str(nights) + ".", ""]
    else:
        prev = pd.concat(
            [records.normalize(pd.read_parquet(p)) for p in sorted(prev_dir.glob("week*.parquet"))], ignore_index=True
        )
        ch = compare_nights(now, prev, tol["night_over_night"])
        changed = ch[ch.change != "+0.0%"]
        lines += [
            f"## Changes against the previous night ({prev_dir.name})",
            "",
            f"{len(ch)} metrics compared; {int((ch.flag == 'FLAG').sum())} beyond tolerance (FLAG); unchanged values omitted.",
            "Tolerances (config/nightly.yaml night_over_night): "
            + ", ".join(f"{r['metric']} ±{r['pct']}%" for r in tol["night_over_night"]),
            "",
            _md(changed),
            "",
        ]
    pub = compare_published(now, published(Path(catalog) / "reference"), tol["vs_published"])
    measured = pub[pub.change != "not measured in this run"]
    lines += [
        "## Against the course's published numbers (config/reference/)",
        "",
        "Tolerances (config/nightly.yaml vs_published): "
        + ", ".join(f"{r['metric']} ±{r['pct']}%" for r in tol["vs_published"]),
        f"{len(pub)} published values; {len(measured)} measured in this run (same week, experiment, engine, GPU, "
        f"metric and every axis of the published point); {int((pub.flag == 'FLAG').sum())} beyond tolerance; "
        f"{int(pub.flag.str.startswith('published INVALID').sum())} published values rejected by the roofline guard "
        "(faster than physics allows on that GPU: not compared).",
        "",
        _md(measured)
        if not measured.empty
        else "None of this run's cells has a published counterpart (GPUs of this run: "
        + ", ".join(sorted(set(now["gpu"].dropna())))
        + ").\n",
        "",
    ]
    path = dest / "report.md"
    io.write_text(path, "\n".join(lines) + "\n")
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run `all` with --keep-going, keep the night, write its report")
    r.add_argument("--snakemake", default=str(Path(sys.executable).parent / "snakemake"))
    r.add_argument("--profile", default="profiles/slurm")
    r.add_argument("--configfile", help="preset replacing the profile's (e.g. config/config.yaml)")
    r.add_argument("--directory", "-d", default=".", type=Path, help="the workflow's working directory")
    r.add_argument("--nights", type=Path, help="where nights are kept (default <directory>/nights)")
    r.add_argument("--night", help="this night's id (default: today's date)")
    r.add_argument("--catalog", type=Path, default=Path(__file__).resolve().parents[2] / "config")
    r.add_argument("extra", nargs=argparse.REMAINDER, help="-- further snakemake arguments")
    a = ap.parse_args(argv)
    root = Path(__file__).resolve().parents[2]
    work = a.directory.resolve()
    nights = (a.nights or work / "nights").resolve()
    nights.mkdir(parents=True, exist_ok=True)
    night = a.night or night_id(nights)
    if (nights / night).exists():
        raise SystemExit(f"night {night} exists in {nights}: earlier nights are never overwritten")
    cmd = [a.snakemake, "all", "-s", str(root / "Snakefile"), "-d", str(work), "--profile", a.profile, "--keep-going"]
    if a.configfile:
        cmd += ["--configfile", a.configfile, "--replace-workflow-config"]
    cmd += [x for x in a.extra if x != "--"]
    started = dt.datetime.now(dt.UTC).replace(microsecond=0)
    print("nightly:", " ".join(cmd), flush=True)
    rc = subprocess.run(cmd, cwd=root).returncode
    # the run's own config says where its results are and which weeks it covers
    from . import config as il_config

    preset = (
        yaml.safe_load(Path(a.configfile).read_text())
        if a.configfile
        else yaml.safe_load((root / "config/cluster.yaml").read_text())
    )
    cfg = il_config.load({**preset, "catalog": str(a.catalog)}, base_dir=root)
    results = (work / cfg.preset["results"]).resolve()
    dest = nights / night
    snapshot(results, list(cfg.weeks), dest)
    rep = write_report(night, dest, results, list(cfg.weeks), started, nights, a.catalog, rc)
    print(f"nightly: night {night} kept in {dest}; report {rep}")
    return rc


if __name__ == "__main__":
    raise SystemExit(main())

"""The nightly regeneration: measure, keep the night's numbers and records, say what changed.

``python -m inferlab.nightly run [--profile P] [--configfile F] [--night ID] [--settings S]`` runs
the workflow's ``all`` target with ``--keep-going`` (a failed cell is a typed record and the night
goes on), then:

- **measures**: the re-measure policy of config/nightly.yaml (``remeasure``) picks the engine
  configurations (one engine start each: the unit) to measure again tonight although nothing they
  depend on changed, passed to Snakemake as ``--forcerun <measure rule names>``:
  ``all`` (default) every configuration; ``older_than`` (``days: N``) those whose oldest cell record
  finished more than N days before tonight's start; ``rotate`` (``groups: K``) configuration c on
  night d when sha256(job name of c) % K == d.toordinal() % K, so each one every K nights.
  Configurations whose inputs changed, or without a record, run anyway (Snakemake's own rule);
  configurations typed skipped at plan time (more GPUs than the preset's) are never forced;
- keeps the night: every week's Parquet is copied to ``nights/<night>/`` (a night that already
  exists is never overwritten: a second run the same day gets ``<date>T<HHMMSS>``), and beside it
  ``records/``: every cell's ``cell.json`` and ``raw.json`` and its configuration's
  ``_engine/configuration.json``, under the same relative paths as in ``results/``, read-only;
- writes ``nights/<night>/report.md``: the policy and which configurations (cells) were measured
  tonight and why, which were carried over and the age of their measurement, which cells failed
  (typed, with reason); every metric's change against the previous night with the rule that decided
  it (:func:`decide`; all lines in ``changes.csv``), and against the course's published numbers
  (config/reference/) with the tolerances of config/nightly.yaml, which the report quotes.

A change against the previous night is flagged ``CHANGE`` only when it is outside both the
tolerance and the noise: |relative change| > the metric's tolerance (``pct``; and |change| > ``abs``
where the rule gives one, in the metric's unit) AND the two nights' 95%
confidence intervals (Student t over the cell's repeats, inferlab.report.stats) do not overlap
(rule ``CI``); with a single run on either night there is no interval and the tolerance alone
decides (rule ``single run: no CI``), likewise where every repeat of both nights gave the same value
(``identical repeats: no CI``: a setting, or a quantity measured once per engine start). Beyond
the tolerance with overlapping intervals is listed as ``within noise``, not flagged.

scripts/nightly.sh is the entry point for cron/scrontab (README, "Nightly").
"""

from __future__ import annotations

import argparse
import datetime as dt
import fnmatch
import hashlib
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd

from . import config as il_config
from . import io, matrix, records
from .errors import ConfigError
from .report import stats

KEY = ["week", "experiment", "engine", "gpu", "cell", "metric"]
IDENTITY = ["week", "experiment", "engine", "gpu", "configuration"]
NIGHT_KEY = [*IDENTITY, "cell", "metric"]
# what a night keeps of each cell (inferlab.runner.RECORD / RAW) and of its configuration
# (inferlab.measure.CONFIGURATION in <configuration>/_engine/)
RECORD, RAW, ENGINE_RECORD = "cell.json", "raw.json", "_engine/configuration.json"
SETTINGS = "nightly.yaml"
NEEDS = {"older_than": "days", "rotate": "groups"}  # policy -> the key it needs (and only it takes)


# -- settings: config/nightly.yaml --------------------------------------------------------------------
def load_settings(path: Path | str) -> dict:
    """config/nightly.yaml validated (src/inferlab/schemas/nightly.schema.yaml, defaults filled:
    ``remeasure: {policy: all}``); a ConfigError names the file and the key."""
    path = Path(path)
    data = il_config.validate(il_config.load_yaml(path), "nightly", path)
    rm = data["remeasure"]
    for policy, key in NEEDS.items():
        if rm["policy"] == policy and key not in rm:
            raise ConfigError(path, f"remeasure.{key}", f"policy {policy} needs `{key}` (remeasure: {rm})")
        if rm["policy"] != policy and key in rm:
            raise ConfigError(
                path, f"remeasure.{key}", f"`{key}` applies to policy {policy} only (the policy here is {rm['policy']})"
            )
    return data


def policy_text(rm: dict) -> str:
    if rm["policy"] == "older_than":
        return f"older_than, days {rm['days']:g}: configurations whose oldest cell record is older than that"
    if rm["policy"] == "rotate":
        return (
            f"rotate, groups {rm['groups']}: sha256(job name) % {rm['groups']} == night's day number % {rm['groups']}"
        )
    return "all: every configuration, every night"


def tolerance_rule(rules: list[dict], metric: str) -> dict:
    """The first rule whose pattern matches ``metric``: ``pct`` (relative, % of the earlier value)
    and ``abs`` (absolute, in the metric's unit; 0 when not given); ±10% when none matches."""
    for r in rules:
        if fnmatch.fnmatch(metric, r["metric"]):
            return {"pct": float(r["pct"]), "abs": float(r.get("abs", 0))}
    return {"pct": 10.0, "abs": 0.0}


def tolerance(rules: list[dict], metric: str) -> float:
    return tolerance_rule(rules, metric)["pct"]


def _tol_text(t: dict) -> str:
    return f"±{t['pct']:g}%" + (f" and ±{t['abs']:g}" if t["abs"] else "")


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


# -- the re-measure policy ----------------------------------------------------------------------------
def night_date(night: str) -> dt.date:
    """The calendar date of a night id (``2026-11-24`` or ``2026-11-24T013000``); today otherwise."""
    try:
        return dt.date.fromisoformat(night[:10])
    except ValueError:
        return dt.date.today()


def rotation_group(name: str, groups: int) -> int:
    """A configuration's group under ``rotate``: stable across runs and machines (not Python's hash)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") % groups


def finished_at(path: Path) -> dt.datetime | None:
    """``finished_at`` of a cell record (UTC), None when there is no readable record or time."""
    try:
        fin = records.read_record(path).get("finished_at")
        t = dt.datetime.fromisoformat(fin) if fin else None
    except (OSError, ValueError):
        return None
    return t if t is None or t.tzinfo else t.replace(tzinfo=dt.UTC)


def select_remeasure(
    rm: dict, confs: dict[tuple, list], results: Path, now: dt.datetime, day: dt.date
) -> dict[tuple, str]:
    """The engine configurations to re-measure tonight (key -> why), by the policy ``rm``.
    Configurations typed skipped at plan time have nothing to measure and are never picked; one
    without a record (or one of its cells without) is left to Snakemake, which runs it anyway."""
    out = {}
    for key, cells in confs.items():
        if all(c.skip for c in cells):
            continue
        if rm["policy"] == "all":
            out[key] = "policy all"
        elif rm["policy"] == "rotate":
            g, k = rotation_group(matrix.job_name(key), rm["groups"]), rm["groups"]
            if g == day.toordinal() % k:
                out[key] = f"policy rotate: group {g} of {k} tonight"
        else:
            paths = [Path(results) / c.path / RECORD for c in cells]
            if not all(p.exists() for p in paths):
                continue
            times = [finished_at(p) for p in paths]
            if any(t is None for t in times):
                out[key] = "policy older_than: a record without finished_at"
                continue
            age = (now - min(times)).total_seconds() / 86400
            if age > rm["days"]:
                out[key] = f"policy older_than: oldest record {age:.1f} d old (> {rm['days']:g} d)"
    return out


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


def keep_records(results: Path, cells, dest: Path) -> dict:
    """Copy the night's raw records into ``dest/records/`` under their paths relative to
    ``results``: each cell's cell.json and raw.json (where it has one) and its configuration's
    _engine/configuration.json; then make it read-only (files 0444, folders 0555). Returns the
    number of files kept and the cells without a record."""
    root = Path(dest) / "records"
    root.mkdir(parents=True, exist_ok=False)
    n, missing, confs = 0, [], {}
    for c in cells:
        confs[c.config_path] = None
        for name in (RECORD, RAW):
            src = Path(results) / c.path / name
            if src.exists():
                (root / c.path).mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, root / c.path / name)
                n += 1
            elif name == RECORD:
                missing.append(c.path)
    for cp in confs:
        src = Path(results) / cp / ENGINE_RECORD
        if src.exists():
            (root / cp / ENGINE_RECORD).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, root / cp / ENGINE_RECORD)
            n += 1
    for p in sorted(root.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        p.chmod(0o555 if p.is_dir() else 0o444)
    root.chmod(0o555)
    return {"files": n, "missing": missing}


def previous_night(nights: Path, current: str) -> Path | None:
    earlier = sorted(
        p for p in Path(nights).iterdir() if p.is_dir() and p.name < current and (p / "report.md").exists()
    )
    return earlier[-1] if earlier else None


def _age(seconds: float) -> str:
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def cells_tonight(results: Path, cells, started: dt.datetime) -> pd.DataFrame:
    """One row per cell of the run: its configuration, whether its record was written tonight
    (finished at or after ``started``), when, and its status."""
    rows = []
    for c in cells:
        path = Path(results) / c.path / RECORD
        try:
            rec = records.read_record(path)
        except (OSError, ValueError):  # no record (the job died before writing one), or unreadable
            rec = {}
        fin = finished_at(path) if rec else None
        rows.append(
            {
                "key": (c.week, c.experiment, c.engine, c.gpu, c.configuration),
                "configuration": c.config_path,
                "base": (c.week, c.experiment, c.engine, c.gpu, c.configuration, stats.base_cell(c.cell, c.repeat)),
                "cell": c.cell,
                "path": c.path,
                "measured": fin is not None and fin >= started,
                "finished_at": fin,
                "age_s": None if fin is None else (started - fin).total_seconds(),
                "status": rec.get("status", "no record"),
                "reason": rec.get("reason") or "",
                "detail": (rec.get("detail") or "")[:160],
                "skip": c.skip or "",
            }
        )
    cols = ["key", "configuration", "base", "cell", "path", "measured", "finished_at", "age_s"]
    return pd.DataFrame(rows, columns=[*cols, "status", "reason", "detail", "skip"])


def measured_tables(cells: pd.DataFrame, forced: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(configurations measured tonight with why, configurations carried over with the age of
    their measurement): one row per configuration (a configuration partly measured is in both)."""
    done, kept = [], []
    for (key, measured), g in cells.groupby(["key", "measured"], sort=False):
        row = {"configuration": g["configuration"].iloc[0], "cells": ", ".join(g["cell"])}
        statuses = ", ".join(f"{n} {s}" for s, n in g["status"].value_counts().items())
        if measured:
            why = forced.get(key) or "inputs changed or no record (Snakemake)"
            done.append({**row, "why": why, "status": statuses})
        else:
            fin = g["finished_at"].dropna()
            oldest = min(fin) if len(fin) else None
            kept.append(
                {
                    **row,
                    "measured at": "" if oldest is None else oldest.isoformat(),
                    "age": "no record" if oldest is None else _age(g["age_s"].max()),
                    "status": statuses,
                    "note": g["skip"].iloc[0] and f"typed skipped at plan time ({g['skip'].iloc[0]})",
                }
            )
    return (
        pd.DataFrame(done, columns=["configuration", "cells", "why", "status"]),
        pd.DataFrame(kept, columns=["configuration", "cells", "measured at", "age", "status", "note"]),
    )


# -- night over night: outside both the tolerance and the noise ---------------------------------------
def _g(v):
    return None if v is None or pd.isna(v) else float(f"{v:.4g}")


def _no_spread(m, h) -> bool:
    """Every repeat gave the same value (a zero-width interval, up to float rounding)."""
    return h <= 1e-9 * max(abs(m), 1e-300)


def decide(now: tuple, prev: tuple, tol: float | dict) -> tuple[float, str, str]:
    """(change %, flag, rule) of one metric from tonight's and the previous night's
    ``(n, mean, ci95_half_width)`` (half-width None for n = 1); ``tol`` a percentage, or a
    :func:`tolerance_rule` (``pct`` and an absolute ``abs``: beyond tolerance = beyond both):

    - within tolerance: flag ``""``, rule ``within tolerance``;
    - beyond it, n >= 2 on both nights: ``CHANGE`` when the 95% CIs do not overlap
      (rule ``CI: 95% CIs do not overlap``), else ``within noise`` (``CI: 95% CIs overlap``),
      except where every repeat of both nights gave the same value (zero-width intervals say
      nothing about noise: a setting, or a fact of the one engine start its cells share):
      ``identical repeats: no CI``, the tolerance alone decides: ``CHANGE``;
    - beyond it, n = 1 on either night: ``CHANGE`` (``single run: no CI``)."""
    t = tol if isinstance(tol, dict) else {"pct": float(tol), "abs": 0.0}
    (n1, m1, h1), (n0, m0, h0) = now, prev
    pct = 100 * (m1 - m0) / abs(m0) if m0 else (0.0 if m1 == m0 else math.copysign(math.inf, m1))
    if abs(pct) <= t["pct"] or abs(m1 - m0) <= t["abs"]:
        return pct, "", f"within tolerance ({_tol_text(t)})"
    beyond = f"(beyond {_tol_text(t)})"
    if n1 < 2 or n0 < 2 or h1 is None or h0 is None or pd.isna(h1) or pd.isna(h0):
        return pct, "CHANGE", f"single run: no CI {beyond}"
    if _no_spread(m1, h1) and _no_spread(m0, h0):
        return pct, "CHANGE", f"identical repeats: no CI {beyond}"
    if m1 - h1 <= m0 + h0 and m0 - h0 <= m1 + h1:
        return pct, "within noise", f"CI: 95% CIs overlap {beyond}"
    return pct, "CHANGE", f"CI: 95% CIs do not overlap {beyond}"


def _stats(df: pd.DataFrame) -> pd.DataFrame:
    d = df.copy()
    if "configuration" not in d:
        d["configuration"] = "default"
    d["configuration"] = d["configuration"].astype(object).where(d["configuration"].notna(), "default")
    return stats.repeat_stats(d)


def _ci_text(n, m, h) -> str:
    if n is None or pd.isna(n):
        return ""
    if int(n) < 2:
        return f"{m:.4g} (n=1)"
    return f"{m:.4g} ± {0 if _no_spread(m, h) else h:.4g} (n={int(n)})"


def compare_nights(now: pd.DataFrame, prev: pd.DataFrame, rules, measured: set | None = None) -> pd.DataFrame:
    """Every metric of every cell (its repeats together: inferlab.report.stats.repeat_stats) of
    tonight against the previous night, with the rule that decided it (:func:`decide`). A metric
    with a value last night and none tonight is flagged ``NO VALUE`` where tonight's run has the
    cell (typed failed), and only listed where the cell is no longer in the run. ``measured``: the
    (week, experiment, engine, gpu, configuration, cell) measured tonight; others read "carried over"."""
    s1, s0 = _stats(now), _stats(prev)
    m = s1.merge(s0, on=NIGHT_KEY, how="outer", suffixes=("", "_prev"), indicator=True)
    present = set()
    if len(now):
        conf = now["configuration"].astype(object).where(now["configuration"].notna(), "default")
        rep = now["repeat"] if "repeat" in now else pd.Series(0, index=now.index)
        for w, e, en, g, cf, c, r in zip(
            now["week"], now["experiment"], now["engine"], now["gpu"], conf, now["cell"], rep, strict=True
        ):
            present.add((w, e, en, g, cf, stats.base_cell(c, r)))
    out = []
    for _, r in m.iterrows():
        tol = tolerance_rule(rules, r["metric"])
        base = tuple(r[k] for k in [*IDENTITY, "cell"])
        pct, flag, rule = None, "", ""
        if r["_merge"] == "left_only":
            rule = "new tonight (no previous value)"
        elif r["_merge"] == "right_only":
            if base in present:
                flag, rule = "NO VALUE", "no value tonight (the cell is in tonight's run)"
            else:
                rule = "not in tonight's run"
        else:
            pct, flag, rule = decide(
                (r["n"], r["mean"], r["ci95_half_width"]),
                (r["n_prev"], r["mean_prev"], r["ci95_half_width_prev"]),
                tol,
            )
        out.append(
            {
                **{k: r[k] for k in NIGHT_KEY},
                "measured": "" if measured is None else ("tonight" if base in measured else "carried over"),
                "tonight": _ci_text(r["n"], r["mean"], r["ci95_half_width"]),
                "previous": _ci_text(r["n_prev"], r["mean_prev"], r["ci95_half_width_prev"]),
                "change": "" if pct is None else f"{pct:+.1f}%",
                "tolerance": _tol_text(tol),
                "flag": flag,
                "rule": rule,
            }
        )
    cols = [*NIGHT_KEY, "measured", "tonight", "previous", "change", "tolerance", "flag", "rule"]
    return pd.DataFrame(out, columns=cols)


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


def _read_night(folder: Path) -> pd.DataFrame:
    files = sorted(Path(folder).glob("week*.parquet"))
    if not files:
        return records.normalize(pd.DataFrame())
    return pd.concat([records.normalize(pd.read_parquet(p)) for p in files], ignore_index=True)


def _label(path: Path) -> str:
    root = Path(__file__).resolve().parents[2]
    try:
        return str(Path(path).resolve().relative_to(root))
    except ValueError:
        return str(path)


def write_report(
    night: str,
    dest: Path,
    results: Path,
    cells,
    started: dt.datetime,
    nights: Path,
    catalog: Path,
    rc: int,
    settings: dict,
    settings_path: Path,
    forced: dict,
    kept: dict,
) -> Path:
    """nights/<night>/report.md (and changes.csv: every night-over-night line with its rule)."""
    src = _label(settings_path)
    now = _read_night(dest)
    ct = cells_tonight(results, cells, started)
    done, carried = measured_tables(ct, forced)
    rm = settings["remeasure"]
    lines = [
        f"# Nightly report {night}",
        "",
        f"Workflow exit code {rc} (`--keep-going`: failed cells are typed records).",
        "",
        f"Re-measure policy ({src} remeasure): {policy_text(rm)}. {len(forced)} configurations forced "
        "tonight (`--forcerun`); configurations whose inputs changed or without a record run anyway.",
        "",
        f"Cells: {int(ct.measured.sum())} measured tonight, {int((~ct.measured).sum())} carried over; "
        + ", ".join(f"{n} {s}" for s, n in sorted(ct["status"].value_counts().items())),
        "",
        f"Raw records: `records/` ({kept['files']} files: every cell's cell.json and raw.json, each "
        "configuration's _engine/configuration.json; read-only)"
        + (f"; {len(kept['missing'])} cells without a record: " + ", ".join(kept["missing"]) if kept["missing"] else "")
        + ".",
        "",
        "## Measured tonight",
        "",
        _md(done),
        "",
        "## Carried over (not measured tonight)",
        "",
        _md(carried),
        "",
        "## Cells that failed or were skipped (typed)",
        "",
        _md(
            ct[ct.status != "ok"]
            .assign(tonight=lambda d: d.measured.map({True: "measured", False: "carried over"}))
            .loc[:, ["path", "tonight", "status", "reason", "detail"]]
        ),
        "",
    ]
    prev_dir = previous_night(nights, night)
    if prev_dir is None:
        lines += ["## Changes against the previous night", "", "No earlier night in " + str(nights) + ".", ""]
    else:
        measured = set(ct.loc[ct.measured, "base"])
        ch = compare_nights(now, _read_night(prev_dir), settings["night_over_night"], measured)
        with io.atomic_path(dest / "changes.csv") as tmp:
            ch.to_csv(tmp, index=False)
        (dest / "changes.csv").chmod(0o444)
        listed = ch[ch.flag.isin(["CHANGE", "within noise", "NO VALUE"])]
        count = ch["rule"].str.split(" \\(").str[0].value_counts()
        lines += [
            f"## Changes against the previous night ({prev_dir.name})",
            "",
            f"{len(ch)} metrics compared (a cell's repeats together); {int((ch.flag == 'CHANGE').sum())} flagged "
            f"CHANGE, {int((ch.flag == 'within noise').sum())} beyond tolerance but within noise, "
            f"{int((ch.flag == 'NO VALUE').sum())} without a value tonight. Rules: "
            + (", ".join(f"{n} {r}" for r, n in count.items()) or "none")
            + ".",
            "A change is flagged CHANGE only when it is beyond the metric's tolerance AND the two nights' 95% "
            "confidence intervals (Student t over the repeats) do not overlap (rule `CI`); with a single run on "
            "either night the tolerance alone decides (`single run: no CI`), likewise where every repeat of both "
            "nights is equal (`identical repeats: no CI`). Lines within tolerance are omitted here; every line, "
            "with its rule, is in changes.csv.",
            f"Tolerances ({src} night_over_night): "
            + ", ".join(
                f"{r['metric']} {_tol_text(tolerance_rule([r], r['metric']))}" for r in settings["night_over_night"]
            ),
            "",
            _md(listed),
            "",
        ]
    pub = compare_published(now, published(Path(catalog) / "reference"), settings["vs_published"])
    measured_pub = pub[pub.change != "not measured in this run"]
    lines += [
        "## Against the course's published numbers (config/reference/)",
        "",
        f"Tolerances ({src} vs_published): "
        + ", ".join(f"{r['metric']} ±{r['pct']}%" for r in settings["vs_published"]),
        f"{len(pub)} published values; {len(measured_pub)} measured in this run (same week, experiment, engine, GPU, "
        f"metric and every axis of the published point); {int((pub.flag == 'FLAG').sum())} beyond tolerance; "
        f"{int(pub.flag.str.startswith('published INVALID').sum())} published values rejected by the roofline guard "
        "(faster than physics allows on that GPU: not compared).",
        "",
        _md(measured_pub)
        if not measured_pub.empty
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
    r.add_argument("--settings", type=Path, help=f"re-measure policy and tolerances (default <catalog>/{SETTINGS})")
    r.add_argument("extra", nargs=argparse.REMAINDER, help="-- further snakemake arguments")
    a = ap.parse_args(argv)
    root = Path(__file__).resolve().parents[2]
    work = a.directory.resolve()
    nights = (a.nights or work / "nights").resolve()
    nights.mkdir(parents=True, exist_ok=True)
    night = a.night or night_id(nights)
    if (nights / night).exists():
        raise SystemExit(f"night {night} exists in {nights}: earlier nights are never overwritten")
    settings_path = a.settings or a.catalog / SETTINGS
    try:
        settings = load_settings(settings_path)
        # the run's own config says where its results are, which weeks and configurations it covers
        preset = il_config.load_yaml(a.configfile if a.configfile else root / "config/cluster.yaml")
        cfg = il_config.load({**preset, "catalog": str(a.catalog)}, base_dir=root)
    except ConfigError as e:
        raise SystemExit(f"nightly: {e}") from None
    results = (work / cfg.preset["results"]).resolve()
    cells = matrix.expand(cfg)
    started = dt.datetime.now(dt.UTC).replace(microsecond=0)
    forced = select_remeasure(settings["remeasure"], matrix.configurations(cells), results, started, night_date(night))
    cmd = [a.snakemake, "all"]
    if forced:  # rule names end at the next option
        cmd += ["--forcerun", *(matrix.job_name(k) for k in forced)]
    cmd += ["-s", str(root / "Snakefile"), "-d", str(work), "--profile", a.profile, "--keep-going"]
    if a.configfile:
        cmd += ["--configfile", a.configfile, "--replace-workflow-config"]
    cmd += [x for x in a.extra if x != "--"]
    print(f"nightly: re-measure policy {policy_text(settings['remeasure'])}: {len(forced)} configurations forced")
    print("nightly:", " ".join(cmd), flush=True)
    rc = subprocess.run(cmd, cwd=root).returncode
    dest = nights / night
    snapshot(results, list(cfg.weeks), dest)
    kept = keep_records(results, cells.values(), dest)
    rep = write_report(
        night, dest, results, cells.values(), started, nights, a.catalog, rc, settings, settings_path, forced, kept
    )
    print(f"nightly: night {night} kept in {dest} (records: {kept['files']} files); report {rep}")
    return rc


if __name__ == "__main__":
    raise SystemExit(main())

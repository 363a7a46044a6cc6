"""Export a week's cells to MLflow (optional; the tuning harness logs its runs there).

    python -m inferlab.export.mlflow results/week12/week12.parquet --tracking-uri sqlite:///mlflow.db \
        [--records results] [--experiment inferlab-week12]

Each cell is one MLflow run, named by its path (``<week>/<experiment>/<engine>/<gpu>/<configuration>/
<cell>``) in the MLflow experiment ``inferlab-<week>`` (or ``--experiment``):

- params: the cell's axes (Parquet ``param_*`` columns, server and client) and its provenance
  (model, tool, engine and torch versions, host, git commit, Slurm job, prefix caching, status and
  failure reason, the command line truncated to MLflow's 6000 characters);
- metrics: every non-null Parquet ``value`` of the cell (one per metric; an invalid or failed
  value is null in the Parquet and is not logged, its status is the run's ``status`` param and tag);
- artifacts (with ``--records``): the cell folder's files (``cell.json``, ``raw.json``, client log,
  lm-eval's samples) and its configuration's ``_engine/`` logs.

Tags: ``inferlab.path`` (the cell path, used to find a run again: a re-export of the same cell
replaces its run's values in a new run and deletes the old one), ``inferlab.status``.
Needs ``mlflow-skinny`` (envs/workflow.txt); a SQLite store also needs alembic/SQLAlchemy.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import pandas as pd

KEYS = ("week", "experiment", "engine", "gpu", "configuration", "cell")
PROVENANCE = (
    "model",
    "tool",
    "repeat",
    "engine_version",
    "torch_version",
    "host",
    "git_commit",
    "slurm_job_id",
    "prefix_caching",
    "measured_by",
    "status",
    "reason",
    "command",
)
MAX_PARAM = 6000


def _text(v) -> str | None:
    if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
        return None
    try:
        if pd.isna(v):
            return None
    except (TypeError, ValueError):
        pass
    return str(v)[:MAX_PARAM]


def cells(df: pd.DataFrame) -> list[tuple[str, dict, dict]]:
    """(path, params, metrics) per cell of a week's Parquet."""
    out = []
    pcols = [c for c in df.columns if c.startswith("param_")]
    for key, g in df.groupby(list(KEYS), sort=False, dropna=False):
        path = "/".join(str(k) for k in key)
        first = g.iloc[0]
        params = {c[len("param_") :]: _text(first[c]) for c in pcols}
        params.update({c: _text(first[c]) for c in PROVENANCE if c in g.columns})
        params = {k: v for k, v in params.items() if v is not None}
        metrics = {}
        for _, r in g.iterrows():
            v = r.get("value")
            if v is not None and not pd.isna(v) and math.isfinite(float(v)):
                metrics[str(r["metric"])] = float(v)
        out.append((path, params, metrics))
    return out


def default_artifact_location(tracking_uri: str) -> str | None:
    """Where a new experiment's artifacts go. MLflow's own default for a database store is
    ``./mlruns`` in the *current directory* (a checkout, when run from one): beside the database
    file instead. None (MLflow's choice) for a file store or a tracking server."""
    if tracking_uri.startswith("sqlite:///"):
        return (Path(tracking_uri[len("sqlite:///") :]).resolve().parent / "mlartifacts").as_uri()
    return None


def export(
    parquet, tracking_uri: str, records=None, experiment: str | None = None, artifact_location: str | None = None
) -> dict:
    """Log every cell of ``parquet`` as a run; returns {path: run_id}. ``artifact_location`` applies
    to experiments this call creates (default: :func:`default_artifact_location`)."""
    import mlflow
    from mlflow.tracking import MlflowClient

    df = pd.read_parquet(parquet)
    if df.empty:
        return {}
    mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri)
    out = {}
    for path, params, metrics in cells(df):
        week = path.split("/", 1)[0]
        name = experiment or f"inferlab-{week}"
        exp = client.get_experiment_by_name(name)
        exp_id = (
            exp.experiment_id
            if exp
            else client.create_experiment(
                name, artifact_location=artifact_location or default_artifact_location(tracking_uri)
            )
        )
        for old in client.search_runs([exp_id], filter_string=f"tags.`inferlab.path` = '{path}'"):
            client.delete_run(old.info.run_id)
        run = client.create_run(
            exp_id, run_name=path, tags={"inferlab.path": path, "inferlab.status": params.get("status", "")}
        )
        rid = run.info.run_id
        client.log_batch(
            rid,
            params=[mlflow.entities.Param(k, v) for k, v in params.items()],
            metrics=[mlflow.entities.Metric(k, v, 0, 0) for k, v in metrics.items()],
        )
        if records is not None:
            d = Path(records) / path
            if d.is_dir():
                for f in sorted(d.rglob("*")):
                    if f.is_file() and "attempts" not in f.relative_to(d).parts:
                        client.log_artifact(rid, str(f), artifact_path=str(f.parent.relative_to(d)).strip("."))
            eng = d.parent / "_engine"
            if eng.is_dir():
                for f in sorted(eng.glob("*")):
                    if f.is_file() and f.suffix in (".log", ".json", ".csv"):
                        client.log_artifact(rid, str(f), artifact_path="_engine")
        client.set_terminated(rid, "FINISHED" if params.get("status") == "ok" else "FAILED")
        out[path] = rid
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Log a week's cells to MLflow, one run per cell.")
    ap.add_argument("parquet")
    ap.add_argument("--tracking-uri", required=True)
    ap.add_argument("--records", default=None, help="the results folder (cell files become artifacts)")
    ap.add_argument("--experiment", default=None)
    ap.add_argument("--artifact-location", default=None, help="for new experiments (default: beside a sqlite database)")
    a = ap.parse_args(argv)
    runs = export(a.parquet, a.tracking_uri, a.records, a.experiment, a.artifact_location)
    print(f"{len(runs)} runs logged to {a.tracking_uri}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

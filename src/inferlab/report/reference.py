"""The course's published numbers (config/reference/*.yaml): one shape for every week.

Each file is a list of flat rows::

    - {week: week03, experiment: decode, gpu: h100, engine: vllm, model: llama-3.1-8b-instruct,
       axes: {batch_size: 1, input_len: 128, output_len: 64}, metric: latency_per_output_token,
       value: 7.06, unit: ms/token, source: shared/course/week03-roofline.md}

``axes`` are the parameters of the point as a week file names them (the swept one and the fixed
ones the number depends on). The roofline guard (inferlab.guard) checks every row like a
measurement: a published value faster than physics allows on its GPU is kept, marked
``valid = false`` with the reason, and tables show it as ``INVALID (...)``. As a frame the rows have
the week Parquet's columns (``param_<axis>``, ``status`` ok, ``value`` null when invalid,
``raw_value``), so every table kind reads them like measurements (``source: reference``).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml

from .. import guard
from ..errors import ConfigError
from . import spec as spec_mod
from .values import text

COLUMNS = ["week", "experiment", "engine", "gpu", "model", "cell", "metric", "unit", "source"]


def load_rows(ref_dir) -> list[dict]:
    """Every row of every config/reference/*.yaml (validated; the file named on error)."""
    rows = []
    for f in sorted(Path(ref_dir).glob("*.yaml")):
        data = yaml.safe_load(f.read_text())
        if data is None:
            continue
        spec_mod.validate_reference(data, f)
        rows += data
    return rows


def point(axes: dict) -> str:
    """A row's point as text, e.g. ``batch_size=1,input_len=128,output_len=64``."""
    return ",".join(f"{k}={text(v)}" for k, v in axes.items())


def frame(rows: list[dict], gpus: dict, models: dict) -> pd.DataFrame:
    """The rows as a Parquet-like frame, each value checked by the roofline guard.
    ``gpus`` / ``models``: the catalogs (a GPU or model not in them is not checked)."""
    out = []
    names = []
    for r in rows:
        axes = r.get("axes") or {}
        names += [k for k in axes if k not in names]
        v = float(r["value"])
        valid, why = check(r, v, gpus, models)
        out.append(
            {
                "week": r["week"],
                "experiment": r["experiment"],
                "engine": r["engine"],
                "gpu": r["gpu"],
                "model": r.get("model"),
                "cell": point(axes),
                "tool": "reference",
                "metric": r["metric"],
                "value": v if valid else None,
                "raw_value": v,
                "unit": r.get("unit"),
                "source": r.get("source"),
                "status": "ok",
                "reason": None,
                "detail": None,
                "valid": valid,
                "invalid_reason": why,
                **{f"param_{k}": axes[k] for k in axes},
            }
        )
    df = pd.DataFrame(out)
    if df.empty:
        return pd.DataFrame(columns=COLUMNS + ["value", "raw_value", "status", "reason", "valid", "invalid_reason"])
    for k in names:
        col = f"param_{k}"
        kinds = {type(v) for v in df[col].dropna()}
        if len(kinds) > 1 and str in kinds:
            df[col] = df[col].map(lambda v: None if v is None or v != v else str(v))
    df["valid"] = df["valid"].astype("boolean")
    return df


def check(row: dict, value: float, gpus: dict, models: dict) -> tuple[bool, str | None]:
    """The guard on one published value: (valid, why not)."""
    gpu = gpus.get(row["gpu"])
    model = models.get(row.get("model"))
    if gpu is None or model is None:
        return True, None
    arch, dtype = model["architecture"], model["dtype"]
    axes = row.get("axes") or {}
    metric = row["metric"]
    try:
        ok, why = guard.check_value(metric, value, row.get("unit"), arch, dtype, gpu, axes)
    except KeyError as e:
        raise ConfigError(
            row.get("_file", "config/reference"),
            f"{row['week']}.{row['experiment']}.{row['gpu']}.{metric}",
            f"axes need {e.args[0]} for the roofline guard",
        ) from None
    if ok:
        ok, why = guard.check_serving(metric, value, arch, dtype, gpu, None)
    return ok, why


def load(ref_dir, gpus: dict, models: dict, week: str | None = None) -> pd.DataFrame:
    rows = load_rows(ref_dir)
    if week is not None:
        rows = [r for r in rows if r["week"] == week]
    return frame(rows, gpus, models)


def load_catalog(catalog_dir) -> tuple[dict, dict]:
    """(gpus, models) of a catalog folder (config/), for readers without a loaded Config."""
    c = Path(catalog_dir)
    gpus = yaml.safe_load((c / "gpus.yaml").read_text())["gpus"] if (c / "gpus.yaml").exists() else {}
    models = yaml.safe_load((c / "models.yaml").read_text())["models"] if (c / "models.yaml").exists() else {}
    return gpus, models

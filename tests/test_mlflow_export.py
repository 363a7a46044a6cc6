"""The MLflow exporter against a real local MLflow (SQLite store): runs are read back, no mock."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from inferlab.export import mlflow as mx
from inferlab.tools import lm_eval

mlflow = pytest.importorskip("mlflow")
DATA = Path(__file__).parent / "data" / "lm-eval-0.4.13"


def _week(tmp_path: Path) -> tuple[Path, Path]:
    """A week Parquet of two cells (one ok with lm-eval's rows, one failed) and their folders."""
    raw = json.loads((DATA / "tiny_arith_random_results.json").read_text())
    base = dict(week="week12", experiment="quant_accuracy", engine="vllm", gpu="cpu", tool="lm_eval", repeat=0)
    rows = []
    for r in lm_eval.parse(raw):
        rows.append({**base, "configuration": "mtiny-llama", "cell": "tasktiny_arith", "model": "tiny-llama"} | r)
        rows[-1].update(status="ok", reason=None, param_model="tiny-llama", param_task="tiny_arith")
    rows.append(
        {
            **base,
            "configuration": "mw4",
            "cell": "tasktiny_arith",
            "model": "tiny-llama-w4",
            "metric": "accuracy_strict_match",
        }
        | {"value": None, "status": "failed", "reason": "engine_error", "param_model": "w4", "param_task": "tiny_arith"}
    )
    df = pd.DataFrame(rows)
    pq = tmp_path / "week12.parquet"
    df.to_parquet(pq)
    res = tmp_path / "results"
    cell = res / "week12/quant_accuracy/vllm/cpu/mtiny-llama/tasktiny_arith"
    cell.mkdir(parents=True)
    shutil.copyfile(DATA / "tiny_arith_random_results.json", cell / "raw.json")
    (cell / "cell.json").write_text(json.dumps({"status": "ok"}))
    (cell.parent / "_engine").mkdir()
    (cell.parent / "_engine" / "server.log").write_text("INFO Loading weights took 0.13 seconds\n")
    return pq, res


def test_runs_read_back_from_sqlite_store(tmp_path, monkeypatch):
    pq, res = _week(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)  # MLflow's default artifact root is ./mlruns of the current directory
    runs = mx.export(pq, uri, records=res)
    assert list(cwd.iterdir()) == []  # nothing written where the command was run (a checkout)
    assert (tmp_path / "mlartifacts").is_dir()  # the artifacts beside the database
    assert len(runs) == 2
    client = mlflow.tracking.MlflowClient(uri)
    exp = client.get_experiment_by_name("inferlab-week12")
    got = {r.info.run_name: r for r in client.search_runs([exp.experiment_id])}
    ok = got["week12/quant_accuracy/vllm/cpu/mtiny-llama/tasktiny_arith"]
    assert ok.data.params["task"] == "tiny_arith" and ok.data.params["model"] == "tiny-llama"
    assert ok.data.params["status"] == "ok" and ok.info.status == "FINISHED"
    assert ok.data.metrics["accuracy_strict_match"] == 0.0
    assert ok.data.metrics["eval_samples"] == 20.0
    arts = {a.path for a in client.list_artifacts(ok.info.run_id)}
    assert {"raw.json", "cell.json", "_engine"} <= arts
    bad = got["week12/quant_accuracy/vllm/cpu/mw4/tasktiny_arith"]
    assert bad.data.params["reason"] == "engine_error" and bad.info.status == "FAILED"
    assert "accuracy_strict_match" not in bad.data.metrics  # a failed cell logs no number
    # a re-export replaces the cell's run instead of adding a second one
    mx.export(pq, uri, records=res)
    assert len(client.search_runs([exp.experiment_id])) == 2

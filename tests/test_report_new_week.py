"""Adding a week is one YAML file: stage 4 (inferlab.aggregate) tabulates a week that has no Python
module, from its declarations; with ``repeats: 3`` its tables show ``mean ± CI``."""

import json

import pandas as pd
import yaml
from conftest import DATA, load_preset

from inferlab import aggregate, records, report
from inferlab.report import stats

WEEK = """
week: week99
title: A week that is only a YAML file
experiments:
  decode:
    description: decode batch sweep, three trials per cell
    tool: vllm_bench_latency
    engines: [vllm]
    gpus: all
    repeats: 3
    sweep:
      batch_size: [1, 4]
    fixed: {input_len: 128, output_len: 16, num_iters: 3, num_iters_warmup: 1}
tables:
  per_token:
    kind: pivot
    title: Per-token latency (ms/token)
    where: {experiment: decode}
    metric: latency_per_output_token
    rows: gpu
    columns: batch_size
    column_label: "bs={batch_size}"
    add:
      - {compare: latency_per_output_token, axis: batch_size, level: last, baseline: first, label: "bs={level} / bs={baseline}"}
figures:
  per_token:
    kind: line
    where: {experiment: decode}
    x: batch_size
    y: latency_per_output_token
    hue: gpu
    log: {x: 2}
    title: per-token latency vs batch size
    caption: Per-token latency vs batch size (mean and 95% interval of three trials).
"""


def test_a_week_with_no_module_aggregates(tmp_path, catalog):
    (catalog / "weeks" / "week99.yaml").write_text(WEEK)
    cfg = load_preset(catalog, weeks=["week99"])
    lat = json.loads((DATA / "vllm-0.32-cpu" / "latency.json").read_text())
    paths = []
    values = {}
    for bs in (1, 4):
        for r in (1, 2, 3):
            avg = (0.08 + 0.01 * bs) * (1 + 0.02 * r)
            values.setdefault(bs, []).append(avg * 1e3 / 16)
            raw = tmp_path / f"raw-bs{bs}-r{r}.json"
            raw.write_text(json.dumps({**lat, "avg_latency": avg, "latencies": [avg]}))
            rec = {
                "week": "week99",
                "experiment": "decode",
                "engine": "vllm",
                "gpu": "cpu",
                "model": cfg.model_id,
                "configuration": "default",
                "cell": f"bs{bs}-r{r}",
                "repeat": r,
                "tool": "vllm_bench_latency",
                "status": "ok",
                "params": {"batch_size": bs, "input_len": 128, "output_len": 16, "num_iters": 3, "num_iters_warmup": 1},
                "provenance": {},
            }
            p = tmp_path / "cells" / f"bs{bs}-r{r}.parquet"
            p.parent.mkdir(exist_ok=True)
            records.record_to_frame(rec, raw).to_parquet(p)
            paths.append(p)
    out = tmp_path / "results" / "week99"
    res = aggregate.run("week99", paths, cfg, out)
    t = pd.read_csv(out / "tables" / "per_token.csv", dtype=str)
    assert t.columns.tolist() == ["GPU", "bs=1", "bs=4", "bs=4 / bs=1"]
    m, h = stats.ci95(values[1])
    assert t.loc[0, "bs=1"] == f"{m:.2f} ± {h:.2f}"  # three repeats: mean ± 95% CI
    assert (out / "figures" / "per_token.png").read_bytes()[:4] == b"\x89PNG"
    rep = (out / "report.md").read_text()
    assert "Per-token latency vs batch size (mean and 95% interval" in rep and "### Per-token latency" in rep
    assert [f["name"] for f in res["figures"]] == ["per_token"]
    assert report.captions(yaml.safe_load(WEEK)) == {"per_token": res["figures"][0]["caption"]}

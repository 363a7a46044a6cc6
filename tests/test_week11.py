"""Week 11: speculative decoding (config/weeks/week11.yaml).

Plan tests (no engine): the methods and k are server axes (one engine start each), the baseline is its
own experiment, the draft is a catalog reference that each preset resolves to its own model. The
`engine`-marked tests read the one shared embedded-default run (tests/shared_run.py): the trained tiny
model served with n-gram, draft-model and EAGLE speculation at k=3 against no speculation, greedy
requests on held-out arithmetic questions, acceptance from /metrics deltas.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from conftest import ROOT, load_preset

from inferlab import matrix

WEEK = "week11"


def _cells(cfg):
    return [c for c in matrix.expand(cfg).values() if c.week == WEEK]


# ---------------------------------------------------------------- plan


def test_cpu_plan_uses_trained_models_and_keeps_the_baseline_separate(catalog):
    cells = _cells(load_preset(catalog))
    assert {c.model for c in cells} == {"tiny-llama-trained"}
    confs = {(c.experiment, c.configuration) for c in cells}
    assert ("nospec", "default") in confs
    assert {"specngram-k1", "specdraft-k5"} <= {conf for e, conf in confs if e == "spec"}
    for c in cells:
        assert c.params["temperature"] == 0  # acceptance is defined against a greedy target
        assert c.skip is None
        if c.experiment == "nospec":
            assert "speculative_config" not in c.engine_args and "spec_tokens" not in c.engine_args
        else:
            assert c.engine_args["spec_tokens"] == c.server_axes["spec_tokens"]
    draft = next(c for c in cells if c.configuration == "specdraft-k3")
    assert draft.engine_args["speculative_config"]["model"] == "catalog:tiny-llama-draft"
    assert draft.server_axes["speculative_config"] == "draft"  # the Parquet's param column: the label


def test_cluster_draft_is_a_llama3_model_sharing_the_target_vocabulary(catalog):
    cfg = load_preset(catalog, "cluster.yaml")
    cells = _cells(cfg)
    ks = {c.server_axes.get("spec_tokens") for c in cells if c.experiment == "spec"}
    assert ks == {1, 3, 5, 7}
    assert {c.params["request_rate"] for c in cells} == {1, 4, 10}
    draft = next(c for c in cells if c.server_axes.get("speculative_config") == "draft")
    (ref,) = matrix.model_refs(draft.engine_args)
    assert cfg.models[ref]["architecture"]["vocab_size"] == cfg.models[draft.model]["architecture"]["vocab_size"]


def test_guard_allows_k_plus_one_tokens_per_step_from_spec_tokens():
    from inferlab import guard

    assert guard.speculative_tokens({"speculative_config": {"method": "ngram"}, "spec_tokens": 5}) == 5
    assert guard.speculative_tokens({}) == 0


def test_temperature_is_passed_to_vllms_client():
    from inferlab import engines

    eng = engines.from_setup("vllm", {"env": ".venv-vllm"}, {"bin": "vllm"}, None, ROOT)
    cmd = eng.client_command(
        "http://x", "/m", {"request_rate": 1, "num_prompts": 2, "temperature": 0}, "/d.json", "/o/r.json"
    )
    assert cmd[cmd.index("--temperature") + 1] == "0"
    cmd = eng.client_command("http://x", "/m", {"request_rate": 1, "num_prompts": 2}, "/d.json", "/o/r.json")
    assert "--temperature" not in cmd


# ---------------------------------------------------------------- the shared embedded-default run


def _record(work: Path, path: str) -> dict:
    f = work / "results" / WEEK / path / "cell.json"
    assert f.exists(), f"no record {f} (see {work / 'shared-run.log'})"
    return json.loads(f.read_text())


def _metric(df, configuration, metric):
    rows = df[(df["configuration"] == configuration) & (df["metric"] == metric)]
    return rows


@pytest.mark.engine
def test_cells_ran_and_the_draft_is_the_trained_draft(shared_run):
    base = _record(shared_run, "nospec/vllm/cpu/default/rr10")
    ngram = _record(shared_run, "spec/vllm/cpu/specngram-k3/rr10")
    draft = _record(shared_run, "spec/vllm/cpu/specdraft-k3/rr10")
    for r in (base, ngram, draft):
        assert r["status"] == "ok", (r["reason"], r["detail"], r.get("log_tail"))
    # the catalog reference became the trained draft's folder, and the server was told so
    spec = draft["engine_args"]["speculative_config"]
    assert spec["method"] == "draft_model" and spec["model"].endswith("models/trained/tiny-llama-draft"), spec
    assert draft["engine_args"]["spec_tokens"] == 3
    log = (shared_run / "results" / WEEK / "spec/vllm/cpu/specdraft-k3/_engine/server.log").read_text()
    assert "models/trained/tiny-llama-draft" in log and "--spec-tokens 3" in log


@pytest.mark.engine
def test_acceptance_is_positive_for_ngram_and_draft(shared_run):
    df = pd.read_parquet(shared_run / "results" / WEEK / f"{WEEK}.parquet")
    for conf in ("specngram-k3", "specdraft-k3"):
        acc = _metric(df, conf, "spec_acceptance_rate")
        assert len(acc) == 1, conf
        v = float(acc["value"].iloc[0])
        assert 0 < v <= 1, (conf, v)
        length = float(_metric(df, conf, "spec_mean_acceptance_length")["value"].iloc[0])
        assert 1 < length <= 3 + 1, (conf, length)  # at most k + 1 tokens per target step
        drafted = float(_metric(df, conf, "spec_draft_tokens")["value"].iloc[0])
        accepted = float(_metric(df, conf, "spec_accepted_tokens")["value"].iloc[0])
        assert accepted / drafted == pytest.approx(v, rel=1e-6)
    # the baseline drafts nothing: no acceptance number made up for it
    none = _metric(df, "default", "spec_acceptance_rate")
    assert none.empty or none["value"].isna().all()
    tpot = _metric(df, "default", "tpot_mean")
    assert len(tpot) == 1 and float(tpot["value"].iloc[0]) > 0


@pytest.mark.engine
def test_eagle_head_is_served_and_its_acceptance_measured(shared_run):
    """EAGLE on vLLM's CPU build: the tiny head (trained on the target's hidden states, stage 1) is
    passed as the speculative model and its drafts are accepted at a measured, non-zero rate."""
    rec = _record(shared_run, "spec/vllm/cpu/speceagle-k3/rr10")
    assert rec["status"] == "ok", (rec["reason"], rec["detail"], rec.get("log_tail"))
    spec = rec["engine_args"]["speculative_config"]
    assert spec["method"] == "eagle" and spec["model"].endswith("models/eagle/tiny-llama-eagle"), spec
    info = json.loads((Path(spec["model"]) / "eagle.json").read_text())
    assert info["trained"] and info["eval"]["top1_agreement"] > 3 * info["eval_untrained"]["top1_agreement"]
    df = pd.read_parquet(shared_run / "results" / WEEK / f"{WEEK}.parquet")
    acc = _metric(df, "speceagle-k3", "spec_acceptance_rate")
    assert len(acc) == 1 and acc["status"].iloc[0] == "ok", acc.to_dict("records")
    v = float(acc["value"].iloc[0])
    assert 0 < v <= 1, v
    length = float(_metric(df, "speceagle-k3", "spec_mean_acceptance_length")["value"].iloc[0])
    assert 1 < length <= 3 + 1, length
    assert "eagle" in (shared_run / "results" / WEEK / "tables" / "acceptance.md").read_text()


@pytest.mark.engine
def test_tables_compare_against_no_speculation(shared_run):
    tables = shared_run / "results" / WEEK / "tables"
    acc = (tables / "acceptance.md").read_text()
    assert "k=3" in acc and "ngram" in acc and "draft" in acc
    lat = (tables / "latency.md").read_text()
    assert "TPOT mean (ms) vs none" in lat
    assert lat.count("x |") >= 2  # a measured ratio for both methods
    assert (shared_run / "results" / WEEK / "figures" / "tpot_vs_rate.png").exists()


@pytest.mark.engine
def test_trained_model_is_well_above_chance(shared_run):
    import yaml

    preset = yaml.safe_load((shared_run / "test-preset.yaml").read_text())
    info = json.loads((Path(preset["cache"]) / "models" / "trained" / "tiny-llama-trained" / "train.json").read_text())
    assert info["eval"]["decoding"] == "greedy" and info["eval"]["n"] >= 100
    assert info["eval"]["accuracy"] > 0.1, info["eval"]  # chance: ~1% (sums 0..98)

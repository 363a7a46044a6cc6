"""The trained tiny model and its draft (inferlab.train, rule train_model), and the catalog plumbing
around them: `source: train` models, `catalog:<id>` references in engine arguments, the held-out
arithmetic dataset.

The unit tests need no torch. The `engine`-marked test trains a real (small) model with the engine
environment's torch and checks that it learned the task: a model that cannot be right or wrong would
make Week 11's acceptance rates and Week 12's accuracies noise.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, load_preset

from inferlab import matrix, train
from inferlab.errors import ConfigError

ENGINE_PY = Path(os.environ.get("INFERLAB_VLLM_ENV", ROOT / ".venv-vllm")) / "bin" / "python"


# ---------------------------------------------------------------- the task (no torch)


def test_splits_are_disjoint_deterministic_and_cover_every_pair():
    tr, ev = train.splits(max_operand=20, eval_fraction=0.1, seed=0)
    assert len(tr) + len(ev) == 400 and len(ev) == 40
    q_tr, q_ev = {r["question"] for r in tr}, {r["question"] for r in ev}
    assert not q_tr & q_ev  # nothing held out is trained on
    assert train.splits(20, 0.1, 0) == (tr, ev)
    assert train.splits(20, 0.1, 1)[1] != ev  # the seed picks the split


def test_answers_are_checkable_gsm8k_style():
    r = train.example(23, 41)
    assert r["question"] == "23+41=?" and r["answer"].endswith("#### 64") and r["target"] == 64
    assert train.text(r) == "Question: 23+41=?\nAnswer: 23+41=64 #### 64"
    assert train.parse_answer(" 23+41=64 #### 64</s>") == 64
    assert train.parse_answer(" 23+41=64") is None  # no '####': not an answer (strict match)
    assert train.parse_answer("#### -3") == -3


def test_bad_task_settings_are_rejected():
    with pytest.raises(ValueError, match="max_operand"):
        train.splits(max_operand=1)
    with pytest.raises(ValueError, match="eval_fraction"):
        train.splits(eval_fraction=1.0)


def test_heldout_sharegpt_dataset_holds_only_eval_questions(tmp_path):
    f = train.arithmetic_sharegpt(tmp_path / "d.json", n=50, seed=0, max_operand=50)
    rows = json.loads(f.read_text())
    _, ev = train.splits(50, 0.1, 0)
    prompts = {train.prompt(r["question"]) for r in ev}
    assert len(rows) == 50
    for row in rows:
        human, gpt = row["conversations"]
        assert human["from"] == "human" and human["value"] in prompts
        assert gpt["value"].startswith(" ") and "####" in gpt["value"]


# ---------------------------------------------------------------- catalog and plan


def test_catalog_has_trained_model_and_draft_sharing_the_tokenizer(catalog):
    cfg = load_preset(catalog)
    t, d = cfg.models["tiny-llama-trained"], cfg.models["tiny-llama-draft"]
    assert t["source"] == d["source"] == "train"
    assert t["train"]["tokenizer"] == d["train"]["tokenizer"] == "tiny-llama"
    assert t["architecture"]["vocab_size"] == d["architecture"]["vocab_size"]  # vLLM requires it
    a = d["architecture"]
    assert a["hidden_size"] // a["num_attention_heads"] >= 32  # the CPU attention's head_dim floor
    # the dataset's split is the models' split
    ds = cfg.datasets["arithmetic-heldout"]
    assert (ds["seed"], ds["max_operand"]) == (t["train"]["seed"], t["train"]["max_operand"])


def test_train_settings_are_validated(catalog):
    f = catalog / "models.yaml"
    doc = yaml.safe_load(f.read_text())
    doc["models"]["tiny-llama-trained"]["train"]["stepz"] = 10
    f.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match="stepz"):
        load_preset(catalog)
    doc["models"]["tiny-llama-trained"]["train"].pop("stepz")
    doc["models"]["tiny-llama"]["train"] = {"tokenizer": "tiny-llama"}  # train: on a built model
    f.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match="tiny-llama"):
        load_preset(catalog)


def test_model_references_in_engine_args_are_found_and_resolved():
    args = {"speculative_config": {"method": "draft_model", "model": "catalog:tiny-llama-draft"}, "dtype": "bf16"}
    assert matrix.model_refs(args) == ["tiny-llama-draft"]
    out = matrix.resolve_model_refs(args, {"tiny-llama-draft": "/cache/models/trained/tiny-llama-draft"})
    assert out["speculative_config"]["model"] == "/cache/models/trained/tiny-llama-draft"
    assert args["speculative_config"]["model"] == "catalog:tiny-llama-draft"  # not mutated
    assert matrix.model_refs({"speculative_config": {"method": "ngram"}}) == []


def test_unknown_model_reference_is_a_config_error(catalog):
    f = catalog / "config.yaml"
    p = yaml.safe_load(f.read_text())
    p["overrides"]["week11"]["spec"]["server_sweep"]["speculative_config"]["draft"]["model"] = "catalog:nope"
    f.write_text(yaml.safe_dump(p))
    with pytest.raises(ConfigError, match="catalog:nope names an unknown model"):
        matrix.expand(load_preset(catalog))


def test_override_model_must_be_in_the_catalog(catalog):
    f = catalog / "config.yaml"
    p = yaml.safe_load(f.read_text())
    p["overrides"]["week11"]["nospec"]["model"] = "no-such-model"
    f.write_text(yaml.safe_dump(p))
    with pytest.raises(ConfigError, match="overrides.week11.nospec.model"):
        load_preset(catalog)


# ---------------------------------------------------------------- real training


@pytest.mark.engine
def test_training_learns_the_task_and_records_heldout_accuracy(tmp_path):
    """A short real training run (engine env's torch): loss falls, greedy held-out accuracy is well
    above chance (~2.5% for sums 0..38 by guessing), and train.json, eval.jsonl sit beside the weights."""
    if not ENGINE_PY.exists():
        pytest.fail(f"no engine environment at {ENGINE_PY} (scripts/setup.sh)")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    tok = tmp_path / "tok"
    subprocess.run(
        [str(ENGINE_PY), "-m", "inferlab.tinymodel", "--out", str(tok)], check=True, env=env, capture_output=True
    )
    out = tmp_path / "trained"
    # the draft's shape (1 layer, hidden 64): the cheapest model that learns the task in ~a minute
    spec = {
        "hidden_size": 64,
        "intermediate_size": 176,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "num_key_value_heads": 2,
        "max_operand": 20,
        "steps": 400,
        "batch_size": 32,
        "lr": 0.005,
        "eval_limit": 40,
        "threads": 1,
    }
    r = subprocess.run(
        [
            str(ENGINE_PY),
            "-m",
            "inferlab.train",
            "--out",
            str(out),
            "--tokenizer",
            str(tok),
            "--spec",
            json.dumps(spec),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    info = json.loads((out / "train.json").read_text())
    assert info["final_loss"] < info["first_loss"] / 4
    assert info["eval"]["n"] == 40 and info["eval"]["decoding"] == "greedy"
    assert info["eval"]["accuracy"] > 0.2, info["eval"]
    ev = [json.loads(line) for line in (out / "eval.jsonl").read_text().splitlines()]
    assert len(ev) == 40 and all("####" in e["answer"] for e in ev)
    assert (out / "model.safetensors").exists() and (out / "tokenizer.json").exists()
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["vocab_size"] >= 10240


def test_dag_trains_both_models_before_the_draft_configuration(tmp_path):
    """Dry run of week11_all on the embedded default: both trained models are stage-1 jobs (one
    train_model each), and the draft configuration's job takes the draft's folder as an input."""
    import sys

    p = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    p.update(catalog=str(ROOT / "config"), weeks=["week11"], cache=str(tmp_path / "cache"))
    p["overrides"] = {"week11": p["overrides"]["week11"]}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(p))
    r = subprocess.run(
        [
            str(Path(sys.executable).parent / "snakemake"),
            "-s",
            str(ROOT / "Snakefile"),
            "-d",
            str(tmp_path / "w"),
            "--configfile",
            str(tmp_path / "p.yaml"),
            "--replace-workflow-config",
            "-n",
            "--cores",
            "2",
            "week11_all",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = r.stdout
    assert out.count("rule train_model:") == 2, out[-3000:]
    for m in ("tiny-llama-trained", "tiny-llama-draft"):
        assert f"models/trained/{m}" in out
    job = out[out.index("rule measure_week11_spec_vllm_cpu_specdraft_k3:") :]
    job = job[: job.index("\n\n")] if "\n\n" in job else job
    assert "models/trained/tiny-llama-draft" in job and "models/trained/tiny-llama-trained" in job, job


def test_train_tokenizer_must_be_a_built_model(catalog):
    f = catalog / "models.yaml"
    doc = yaml.safe_load(f.read_text())
    doc["models"]["tiny-llama-draft"]["train"]["tokenizer"] = "llama-3.1-8b-instruct"  # a hub model
    f.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match="models.tiny-llama-draft.train.tokenizer"):
        load_preset(catalog)


def test_stale_trained_cache_is_named_not_used(tmp_path, catalog):
    """The model cache lives outside the work dir: a model trained with other settings than the
    catalog's now says (is an error naming the folder and the keys), a matching one passes."""
    m = yaml.safe_load((catalog / "models.yaml").read_text())["models"]["tiny-llama-trained"]
    expected = {**m["architecture"], **m["train"]}
    d = tmp_path / "tiny-llama-trained"
    assert train.stale_cache(d, expected) is None  # not trained yet: the rule makes it
    d.mkdir()
    (d / "train.json").write_text(json.dumps({"spec": {**train.DEFAULT_SPEC, **expected}}))
    assert train.stale_cache(d, expected) is None
    (d / "train.json").write_text(json.dumps({"spec": {**train.DEFAULT_SPEC, **expected, "steps": 7, "lr": 1.0}}))
    why = train.stale_cache(d, expected)
    assert why and str(d) in why and f"steps: cached 7, catalog {expected['steps']}" in why and "lr:" in why
    (d / "train.json").write_text("{not json")
    assert "not valid JSON" in train.stale_cache(d, expected)


def test_dag_refuses_a_stale_trained_cache(tmp_path):
    """Dry run with a cached tiny-llama-trained from other settings: the workflow stops at parse time
    naming the catalog key and the folder, instead of measuring the old model."""
    import sys

    cache = tmp_path / "cache"
    d = cache / "models" / "trained" / "tiny-llama-trained"
    d.mkdir(parents=True)
    m = yaml.safe_load((ROOT / "config" / "models.yaml").read_text())["models"]["tiny-llama-trained"]
    spec = {**train.DEFAULT_SPEC, **m["architecture"], **m["train"], "steps": m["train"]["steps"] + 1}
    (d / "train.json").write_text(json.dumps({"spec": spec}))
    p = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    p.update(catalog=str(ROOT / "config"), weeks=["week11"], cache=str(cache))
    p["overrides"] = {"week11": p["overrides"]["week11"]}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(p))
    r = subprocess.run(
        [str(Path(sys.executable).parent / "snakemake"), "-s", str(ROOT / "Snakefile"), "-d", str(tmp_path / "w")]
        + ["--configfile", str(tmp_path / "p.yaml"), "--replace-workflow-config", "-n", "--cores", "1", "week11_all"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode != 0
    err = r.stdout + r.stderr
    assert "models.tiny-llama-trained" in err and str(d) in err and "steps: cached" in err, err[-2000:]

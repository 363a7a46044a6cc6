"""Week 11's EAGLE head (inferlab.eagle, catalog source `eagle`, rule eagle_model).

The unit tests need no torch: the catalog entry and its validation, the head's config.json and the
tensor names vLLM 0.32's EagleLlamaForCausalLM loads, the stale-cache check, the plan and the DAG
(the head is a stage-1 job whose folder the EAGLE configuration's job takes as an input). The
`engine`-marked test builds and trains a head with the engine environment's torch and checks that it
learned to agree with its target (the served acceptance is asserted on the shared run,
tests/test_week11.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, load_preset

from inferlab import eagle, matrix
from inferlab.errors import ConfigError

ENGINE_PY = Path(os.environ.get("INFERLAB_VLLM_ENV", ROOT / ".venv-vllm")) / "bin" / "python"
HEAD = "tiny-llama-eagle"


def _spec(cfg, model_id=HEAD):
    """What rules/common.smk eagle_spec passes the builder (the same keys)."""
    m = cfg.models[model_id]
    keys = ("hidden_size", "vocab_size", "num_hidden_layers", "intermediate_size")
    keys += ("num_attention_heads", "num_key_value_heads")
    return {**{k: m["architecture"][k] for k in keys}, **{k: v for k, v in m["eagle"].items() if k != "target"}}


# ---------------------------------------------------------------- catalog


def test_catalog_head_drafts_for_the_trained_target(catalog):
    cfg = load_preset(catalog)
    h = cfg.models[HEAD]
    assert h["source"] == "eagle" and h["eagle"]["target"] == "tiny-llama-trained"
    t = cfg.models["tiny-llama-trained"]["architecture"]
    # the head reads the target's hidden states and shares its embeddings and lm_head
    assert h["architecture"]["hidden_size"] == t["hidden_size"]
    assert h["architecture"]["vocab_size"] == t["vocab_size"]
    assert h["architecture"]["num_hidden_layers"] == 1  # EAGLE-1
    assert h["eagle"]["steps"] > 0  # trained: a random head would accept ~nothing


def test_eagle_settings_are_validated(catalog):
    f = catalog / "models.yaml"
    doc = yaml.safe_load(f.read_text())
    doc["models"][HEAD]["eagle"]["stepz"] = 10
    f.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match="stepz"):
        load_preset(catalog)
    del doc["models"][HEAD]["eagle"]
    f.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match="eagle"):
        load_preset(catalog)  # source eagle without its block
    doc["models"][HEAD]["eagle"] = {"target": "tiny-llama-trained"}
    doc["models"]["tiny-llama"]["eagle"] = {"target": "tiny-llama-trained"}  # an eagle block elsewhere
    f.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match="tiny-llama"):
        load_preset(catalog)


# ---------------------------------------------------------------- the head's files (no torch)


TARGET_CFG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "vocab_size": 10240,
    "hidden_size": 128,
    "head_dim": 32,
    "intermediate_size": 352,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 8192,
    "rms_norm_eps": 1e-6,
    "rope_parameters": {"rope_theta": 10000.0, "rope_type": "default"},
    "bos_token_id": 1,
    "eos_token_id": 2,
    "pad_token_id": 3,
}


def test_head_config_is_a_one_layer_llama_of_the_targets_width():
    cfg = eagle.head_config(TARGET_CFG, eagle.DEFAULT_SPEC)
    # vLLM renames LlamaForCausalLM to EagleLlamaForCausalLM for method eagle
    assert cfg["architectures"] == ["LlamaForCausalLM"] and cfg["model_type"] == "llama"
    assert cfg["num_hidden_layers"] == 1
    for k in ("hidden_size", "vocab_size", "head_dim", "rope_parameters", "rms_norm_eps", "eos_token_id"):
        assert cfg[k] == TARGET_CFG[k], k
    assert cfg["intermediate_size"] == 352 and cfg["num_key_value_heads"] == 2  # None: the target's
    with pytest.raises(ValueError, match="hidden_size 64 differs from its target's \\(128\\)"):
        eagle.head_config(TARGET_CFG, {**eagle.DEFAULT_SPEC, "hidden_size": 64})


def test_head_tensors_are_what_vllms_eagle_llama_loads():
    names = eagle.head_state_names(1)
    assert names[0] == "fc.weight"
    assert "layers.0.post_attention_layernorm.weight" in names
    assert {f"layers.0.self_attn.{x}_proj.weight" for x in "qkvo"} <= set(names)
    # layer 0's input norm is the identity in vLLM (EAGLE skips it); the embeddings and lm_head are
    # the target's, shared by vLLM when the checkpoint has none
    assert not [n for n in names if "embed_tokens" in n or "lm_head" in n or n.startswith("layers.0.input_")]
    assert "layers.1.input_layernorm.weight" in eagle.head_state_names(2)


def test_stale_head_cache_is_named_not_used(tmp_path, catalog):
    expected = _spec(load_preset(catalog))
    d = tmp_path / HEAD
    assert eagle.stale_cache(d, expected) is None  # not built yet: the rule makes it
    d.mkdir()
    (d / "eagle.json").write_text(json.dumps({"spec": {**eagle.DEFAULT_SPEC, **expected}}))
    assert eagle.stale_cache(d, expected) is None
    (d / "eagle.json").write_text(json.dumps({"spec": {**eagle.DEFAULT_SPEC, **expected, "steps": 7}}))
    why = eagle.stale_cache(d, expected)
    assert why and str(d) in why and f"steps: cached 7, catalog {expected['steps']}" in why
    (d / "eagle.json").write_text("{not json")
    assert "not valid JSON" in eagle.stale_cache(d, expected)


# ---------------------------------------------------------------- plan and DAG


def _eagle_preset(tmp_path) -> Path:
    """The embedded default with Week 11's method axis as the shared test run has it (n-gram, draft,
    EAGLE at k=3): config/config.yaml's own override lists n-gram and draft."""
    p = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    p.update(catalog=str(ROOT / "config"), weeks=["week11"], cache=str(tmp_path / "cache"))
    ov = p["overrides"]["week11"]
    extra = yaml.safe_load((ROOT / "tests" / "data" / "shared_run" / "week11.yaml").read_text())
    ov["spec"]["server_sweep"] = {**ov["spec"]["server_sweep"], **extra["spec"]["server_sweep"]}
    p["overrides"] = {"week11": ov}
    f = tmp_path / "p.yaml"
    f.write_text(yaml.safe_dump(p))
    return f


def test_eagle_is_a_method_label_planned_on_the_cpu(tmp_path):
    from inferlab import config

    cfg = config.load(str(_eagle_preset(tmp_path)), base_dir=ROOT)
    cells = [c for c in matrix.expand_week(cfg, "week11") if c.server_axes.get("speculative_config") == "eagle"]
    assert {c.configuration for c in cells} == {"speceagle-k3"}
    for c in cells:
        assert c.skip is None  # vLLM's CPU build runs EAGLE: measured, not skipped
        assert c.engine_args["speculative_config"] == {"method": "eagle", "model": f"catalog:{HEAD}"}
        assert matrix.model_refs(c.engine_args) == [HEAD]
        assert c.model == "tiny-llama-trained"


def test_dag_builds_the_head_before_the_eagle_configuration(tmp_path):
    r = subprocess.run(
        [str(Path(sys.executable).parent / "snakemake"), "-s", str(ROOT / "Snakefile"), "-d", str(tmp_path / "w")]
        + ["--configfile", str(_eagle_preset(tmp_path)), "--replace-workflow-config", "-n", "--cores", "2"]
        + ["week11_all"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = r.stdout
    assert out.count("rule eagle_model:") == 1, out[-3000:]
    assert f"models/eagle/{HEAD}" in out
    job = out[out.index("rule measure_week11_spec_vllm_cpu_speceagle_k3:") :]
    job = job[: job.index("\n\n")] if "\n\n" in job else job
    assert f"models/eagle/{HEAD}" in job and "models/trained/tiny-llama-trained" in job, job


# ---------------------------------------------------------------- the builder (engine environment)


@pytest.mark.engine
def test_head_builds_trains_and_agrees_with_its_target(tmp_path):
    """A head for a small random-weight Llama (built in seconds): the files vLLM loads, and training
    raises its agreement with the target's greedy token well above the random head's."""
    if not ENGINE_PY.exists():
        pytest.fail(f"no engine environment at {ENGINE_PY} (scripts/setup.sh)")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    target = tmp_path / "target"
    spec = {"vocab_size": 10240, "hidden_size": 128, "intermediate_size": 352, "num_hidden_layers": 2}
    spec.update(num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=8192, seed=0)
    subprocess.run(
        [str(ENGINE_PY), "-m", "inferlab.tinymodel", "--out", str(target), "--spec", json.dumps(spec)],
        check=True,
        env=env,
        capture_output=True,
    )
    out = tmp_path / "head"
    head_spec = {"steps": 30, "batch_size": 16, "lr": 0.02, "warmup_steps": 5, "eval_limit": 64}
    r = subprocess.run(
        [str(ENGINE_PY), "-m", "inferlab.eagle", "--out", str(out), "--target", str(target)]
        + ["--spec", json.dumps(head_spec)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    info = json.loads((out / "eagle.json").read_text())
    assert info["trained"] and info["tensors"] == sorted(eagle.head_state_names(1))
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["num_hidden_layers"] == 1 and cfg["hidden_size"] == 128
    assert (out / "model.safetensors").exists() and (out / "tokenizer.json").exists()
    before, after = info["eval_untrained"]["top1_agreement"], info["eval"]["top1_agreement"]
    assert after > max(0.2, 3 * before), (before, after)
    # atomic publish: nothing half-written beside it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["head", "target"]

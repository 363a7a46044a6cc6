"""Week 12 (quantization with accuracy) and knob studies: the plan (model variants as a server
axis, isolation / stacked designs), the accuracy gate's verdicts, the memory theory, and on the
shared embedded-default run: the trained BF16 model's accuracy well above chance, quantized
variants measured or typed skipped, and the isolation study's "safe to ship" verdict per knob."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import ROOT, load_preset

from inferlab import config, guard, matrix, theory
from inferlab.errors import ConfigError
from inferlab.report import knobs

W12 = "results/week12"
CHANCE = 0.01  # two-digit sums: one right answer among ~100


# ------------------------------------------------------------------ plan (no engine)


def test_model_variants_and_isolation_plan():
    cfg = config.load("config/config.yaml", base_dir=ROOT)
    cells = matrix.expand_week(cfg, "week12")
    confs = {c.experiment: [] for c in cells}
    for c in cells:
        confs[c.experiment].append(c)
    assert [c.model for c in confs["quant_accuracy"]] == [
        "tiny-llama-trained",
        "tiny-llama-trained-w4a16",
        "tiny-llama-trained-w8a8",
    ]
    iso = confs["knobs_accuracy"]
    assert [c.server_axes["knob"] for c in iso] == ["baseline", "model=w8a8", "max_num_seqs=4"]
    # each knob alone: the rest stays at the baseline
    assert iso[1].engine_args["max_num_seqs"] == 256 and iso[1].model == "tiny-llama-trained-w8a8"
    assert iso[2].engine_args["max_num_seqs"] == 4 and iso[2].model == "tiny-llama-trained"
    # the speed and accuracy halves of the study share their configurations (joined on param_knob)
    assert [c.configuration for c in confs["knobs_speed"]] == [c.configuration for c in iso]


def _exp(design, **kw):
    return {"design": design, "server_sweep": {"a": [1, 2], "b": {"off": False, "on": True}}, **kw}


def test_stacked_plans_every_subset_and_checks():
    pts = matrix.knob_points(_exp("stacked"), _exp("stacked")["server_sweep"])
    assert [k for k, _ in pts] == ["baseline", "+a=2", "+b=on", "+a=2+b=on"]
    bad = {"design": "stacked", "server_sweep": {"a": [1, 2, 3]}}
    with pytest.raises(ConfigError, match="two values"):
        matrix.knob_points(bad, bad["server_sweep"])
    with pytest.raises(ConfigError, match="unknown design"):
        matrix.knob_points({"design": "random"}, {"a": [1]})
    with pytest.raises(ConfigError, match="not one of"):
        matrix.knob_points(_exp("isolation", baseline={"a": 7}), _exp("isolation")["server_sweep"])
    iso = matrix.knob_points(_exp("isolation", baseline={"a": 2}), _exp("isolation")["server_sweep"])
    assert [k for k, _ in iso] == ["baseline", "a=1", "b=on"]
    assert iso[0][1][0] == ("a", None, 2)


def test_gate_verdicts():
    assert knobs.verdict(0.80, 0.02, 0.79, 0.02, 0.02)[0] == "YES"
    assert knobs.verdict(0.80, 0.01, 0.60, 0.01, 0.02)[0] == "NO"
    # a drop inside the sampling error is not evidence of harm
    assert knobs.verdict(0.80, 0.05, 0.70, 0.05, 0.02)[0] == "YES"
    assert knobs.verdict(0.80, 0.02, None, None, 0.02)[0] == "PENDING"
    assert knobs.verdict(None, None, 0.8, 0.02, 0.02)[0] == "PENDING"


def test_week12_yaml_tables_are_valid():
    from inferlab.report import spec

    spec.check(yaml.safe_load((ROOT / "config/weeks/week12.yaml").read_text()), "config/weeks/week12.yaml")


def test_quantized_memory_keeps_embeddings_16bit():
    arch = config.load("config/config.yaml", base_dir=ROOT).models["llama-3.1-8b-instruct"]["architecture"]
    int4 = theory.quantized_weights_bytes(arch, "awq") / 1e9
    fp8 = theory.quantized_weights_bytes(arch, "fp8") / 1e9
    assert 5.5 < int4 < 6.0  # the course's "~4 GB" ignores the 2.1 GB of bf16 embedding + lm_head
    assert 8.9 < fp8 < 9.3
    assert theory.quantized_weights_bytes(arch, None) == pytest.approx(theory.weights_bytes(arch, "bfloat16"))


CLUSTER_VARIANTS = [
    "llama-3.1-8b-instruct",
    "llama-3.1-8b-instruct-fp8",
    "llama-3.1-8b-instruct-awq-int4",
    "llama-3.1-8b-instruct-gptq-int4",
]


def test_cluster_variants_are_the_courses_checkpoints_and_none_is_a_hole():
    cfg = config.load("config/cluster.yaml", base_dir=ROOT)
    cells = matrix.expand_week(cfg, "week12")
    for exp in ("quant_throughput", "quant_accuracy"):
        got = [c for c in cells if c.experiment == exp]
        assert sorted({c.model for c in got}) == sorted(CLUSTER_VARIANTS), exp
        # every variant on every GPU of the preset: a cell each, run or typed skipped
        assert {(c.model, c.gpu) for c in got} == {(m, g) for m in CLUSTER_VARIANTS for g in cfg.preset["gpus"]}
    acc = [c for c in cells if c.experiment == "quant_accuracy"]
    assert {(c.params["task"], c.params["num_fewshot"]) for c in acc} == {("gsm8k", 5)}
    for m in CLUSTER_VARIANTS[1:]:
        e = cfg.models[m]
        assert e["source"] == "hub" and len(e["revision"]) == 40 and e["quantization"], m
        base = cfg.models["llama-3.1-8b-instruct"]["architecture"]
        assert {k: e["architecture"][k] for k in base} == base, m  # the same model, quantized
    # FP8 checkpoints need FP8 weight kernels (the feature check reads the catalog's quantization):
    # vLLM runs them on all four GPUs (an A100 weight-only through FP8 Marlin), so none lacks them
    fp8 = [c for c in cells if c.model == "llama-3.1-8b-instruct-fp8"]
    assert fp8 and all(c.skip is None for c in fp8)
    need = matrix.features_needed("vllm", {"enforce_eager": True}, model=cfg.models["llama-3.1-8b-instruct-fp8"])
    assert need == {"fp8_weights": "the checkpoint's weights are fp8 (catalog quantization)"}
    assert matrix.features_needed("vllm", {"enforce_eager": True}, model=cfg.models[CLUSTER_VARIANTS[2]]) == {}


def test_a_variant_the_device_cannot_run_is_a_typed_skip_with_the_reason(catalog):
    """An FP8 checkpoint on a device whose `lacks:` names FP8 weights: skipped at plan time with the
    reason (the CPU here; a GPU entry's `lacks` the same way), the other variants planned to run."""
    f = catalog / "config.yaml"
    p = yaml.safe_load(f.read_text())
    p["overrides"]["week12"]["quant_throughput"]["server_sweep"] = {
        "model": ["tiny-llama-trained", "llama-3.1-8b-instruct-fp8"]
    }
    f.write_text(yaml.safe_dump(p))
    cfg = load_preset(catalog)
    cells = {c.model: c for c in matrix.expand_week(cfg, "week12") if c.experiment == "quant_throughput"}
    assert cells["tiny-llama-trained"].skip is None
    why = cells["llama-3.1-8b-instruct-fp8"].skip
    assert why.startswith("unsupported: fp8_weights (the checkpoint's weights are fp8"), why
    assert cfg.gpu("cpu")["lacks"]["fp8_weights"] in why
    # the same data on a GPU: an A100 entry that lacked FP8 weight kernels would skip it there only
    g = yaml.safe_load((catalog / "gpus.yaml").read_text())
    g["gpus"]["a100"]["lacks"] = {"fp8_weights": "test: no FP8 weight kernels"}
    (catalog / "gpus.yaml").write_text(yaml.safe_dump(g))
    cl = yaml.safe_load((catalog / "cluster.yaml").read_text())
    cl["catalog"] = str(catalog)
    cfg = config.load(cl, base_dir=catalog.parent)
    skipped = {(c.model, c.gpu) for c in matrix.expand_week(cfg, "week12") if c.skip}
    assert skipped and {g for _, g in skipped} == {"a100"}
    assert {m for m, _ in skipped} == {"llama-3.1-8b-instruct-fp8"}


def test_cluster_variants_weight_memory_keeps_embeddings_16bit():
    cfg = config.load("config/cluster.yaml", base_dir=ROOT)
    gb = {
        m: theory.quantized_weights_bytes(cfg.models[m]["architecture"], cfg.models[m].get("quantization")) / 1e9
        for m in CLUSTER_VARIANTS
    }
    assert 15.5 < gb["llama-3.1-8b-instruct"] < 16.5
    assert 8.9 < gb["llama-3.1-8b-instruct-fp8"] < 9.3
    for m in ("llama-3.1-8b-instruct-awq-int4", "llama-3.1-8b-instruct-gptq-int4"):
        assert 5.5 < gb[m] < 6.0, (m, gb[m])  # not the course's "~4 GB"


# ------------------------------------------------------------------ a variant the engine cannot load


@pytest.mark.engine
def test_a_variant_the_engine_fails_to_load_is_a_typed_failed_record(tmp_path, catalog):
    """A model variant whose folder is broken (a config and tokenizer, no weights) is planned to run;
    the engine then fails to load it: the cell is a typed *failed* record carrying the engine's own
    error, not skipped and not a hole."""
    cache = tmp_path / "cache"
    trained = ROOT / ".cache" / "inferlab-test" / "models" / "trained" / "tiny-llama-trained"
    broken = cache / "models" / "hub" / "tiny-llama-broken"
    broken.mkdir(parents=True)
    if trained.exists():
        src = trained
    else:  # no shared-run cache: a built tiny model's config and tokenizer serve as well
        subprocess.run(
            [str(ROOT / ".venv-vllm" / "bin" / "python"), "-m", "inferlab.tinymodel", "--out", str(tmp_path / "t")],
            check=True,
            env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
            capture_output=True,
        )
        src = tmp_path / "t"
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(src / name, broken / name)  # no model.safetensors: nothing to load
    doc = yaml.safe_load((catalog / "models.yaml").read_text())
    doc["models"]["tiny-llama-broken"] = {
        **{k: v for k, v in doc["models"]["tiny-llama"].items() if k in ("dtype", "architecture")},
        "source": "hub",
        "repo_id": "inferlab-test/broken",
        "revision": "0" * 40,  # never fetched: its folder is already in the cache
    }
    (catalog / "models.yaml").write_text(yaml.safe_dump(doc))
    p = yaml.safe_load((catalog / "config.yaml").read_text())
    p.update(catalog=str(catalog), weeks=["week12"], cache=str(cache), cell_timeout_s=300)
    p["engines"]["vllm"]["env"] = str(ROOT / ".venv-vllm")
    p["overrides"] = {
        "week12": {
            "quant_throughput": {"server_sweep": {"model": ["tiny-llama-broken"]}, "sweep": {"num_prompts": [5]}}
        }
    }
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(p))
    cfg = load_preset(catalog, **{k: p[k] for k in ("weeks", "cache", "overrides")})
    (cell,) = [c for c in matrix.expand_week(cfg, "week12") if c.experiment == "quant_throughput"]
    assert cell.skip is None  # nothing at plan time says it cannot load
    target = f"results/{cell.path}/cell.json"
    r = subprocess.run(
        [str(Path(sys.executable).parent / "snakemake"), "-s", str(ROOT / "Snakefile"), "-d", str(tmp_path / "w")]
        + ["--configfile", str(tmp_path / "p.yaml"), "--replace-workflow-config", "--cores", "2", target],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]  # a failed cell is a finished job
    rec = json.loads((tmp_path / "w" / target).read_text())
    assert rec["status"] == "failed", rec
    assert rec["reason"] == "engine_error", (rec["reason"], rec["detail"])
    text = (rec.get("detail") or "") + (rec.get("log_tail") or "")
    assert "tiny-llama-broken" in text and ("weights" in text.lower() or "safetensors" in text.lower()), text[-2000:]


# ------------------------------------------------------------------ the shared embedded-default run


def _rec(work, exp, conf, cell="tasktiny_arith"):
    return json.loads((work / W12 / exp / "vllm/cpu" / conf / cell / "cell.json").read_text())


@pytest.mark.engine
def test_trained_bf16_accuracy_well_above_chance(shared_run):
    df = pd.read_parquet(shared_run / W12 / "week12.parquet")
    acc = df[
        (df.experiment == "knobs_accuracy") & (df.param_knob == "baseline") & (df.metric == "accuracy_strict_match")
    ]
    assert len(acc) == 1 and acc.status.iloc[0] == "ok", acc[["status", "reason", "detail"]].to_dict("records")
    se = df[(df.experiment == "knobs_accuracy") & (df.param_knob == "baseline")]
    se = se[se.metric == "accuracy_strict_match_stderr"].value.iloc[0]
    a = acc.value.iloc[0]
    assert a > 10 * CHANCE and a - 3 * se > CHANCE, (a, se)
    raw = json.loads((shared_run / W12 / "knobs_accuracy/vllm/cpu/mbf16-mns256/tasktiny_arith/raw.json").read_text())
    assert raw["results"]["tiny_arith"]["exact_match,strict-match"] == a  # lm-eval's own JSON


@pytest.mark.engine
def test_quantized_variants_measured_or_typed_skipped(shared_run):
    for exp, conf, cell in [
        ("quant_accuracy", "mtiny-llama-trained-w4a16", "tasktiny_arith"),
        ("quant_throughput", "mtiny-llama-trained-w4a16", "np10"),
        ("knobs_accuracy", "mw8a8-mns256", "tasktiny_arith"),
    ]:
        rec = _rec(shared_run, exp, conf, cell)
        assert rec["status"] in ("ok", "skipped"), (exp, rec["status"], rec.get("reason"), rec.get("detail"))
        if rec["status"] == "skipped":
            assert rec["reason"] and rec["detail"]


@pytest.mark.engine
def test_isolation_study_prints_a_verdict_per_knob(shared_run):
    gate = pd.read_csv(shared_run / W12 / "tables" / "knob_gate.csv", dtype=str).set_index("Knob")
    assert list(gate.index) == ["baseline", "model=w8a8", "max_num_seqs=4"]
    assert gate.loc["baseline", "Safe to ship?"] == "baseline"
    for k in ("model=w8a8", "max_num_seqs=4"):
        assert gate.loc[k, "Safe to ship?"] in ("YES", "NO", "PENDING")
    # max_num_seqs changes scheduling, not the greedy answers: it must ship
    assert gate.loc["max_num_seqs=4", "Safe to ship?"] == "YES", gate.loc["max_num_seqs=4"].to_dict()
    report = (shared_run / W12 / "report.md").read_text()
    assert "Safe to ship?" in report


def test_online_fp8_variant_and_accuracy_without_weights_typed():
    """A catalog variant serves the same (engine-made) weights with its own engine arguments: the
    next GPU lease's plan (config/h100-validation-next.yaml) measures BF16 vs online FP8 speed, and
    every accuracy cell there is typed skipped: load_format dummy has no weights to be right with."""
    cfg = config.load("config/h100-validation-next.yaml", base_dir=ROOT)
    cells = {c.path: c for c in matrix.expand_week(cfg, "week12")}
    fp8 = cells["week12/quant_throughput/vllm/h100/mllama-3.1-8b-arch-fp8/np200"]
    assert fp8.engine_args == {"quantization": "fp8"} and fp8.skip is None
    assert cells["week12/quant_throughput/vllm/h100/mllama-3.1-8b-arch/np200"].engine_args == {}
    knob = cells["week12/knobs_speed/vllm/h100/mfp8-mns256/rrinf"]
    assert knob.engine_args == {"quantization": "fp8", "max_num_seqs": 256} and knob.server_axes["knob"] == "model=fp8"
    acc = [c for c in cells.values() if c.tool == "lm_eval"]
    assert len(acc) == 5 and all(c.skip.startswith("no weights: load_format dummy") for c in acc)
    # the experiment's own engine_args win over the variant's; the guard reads FP8 weights (1 byte each)
    cat = yaml.safe_load((ROOT / "config" / "models.yaml").read_text())["models"]
    assert cat["llama-3.1-8b-arch-fp8"]["architecture"] == cat["llama-3.1-8b-arch"]["architecture"]
    cond = guard.resolve(cat["llama-3.1-8b-arch"]["architecture"], "bfloat16", fp8.engine_args, None)
    assert "fp8" in str(cond).lower()
    # on the CPU default (no FP8 weights kernels on AVX2) the variant is typed, never run
    cpu = config.load("config/config.yaml", base_dir=ROOT)
    cpu.preset["overrides"] = {"week12": {"quant_throughput": {"server_sweep": {"model": ["llama-3.1-8b-arch-fp8"]}}}}
    c = [x for x in matrix.expand_week(cpu, "week12") if x.experiment == "quant_throughput"]
    assert c and all(x.skip and x.skip.startswith("unsupported: fp8_weights (quantization=fp8) on cpu") for x in c)

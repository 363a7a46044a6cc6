"""Week 5 (automatic prefix caching): the bench_serving workloads it needs (prefix_repetition, random),
their checks and command lines, the TTFT guard, the plan (FP8 KV typed skipped on the CPU), and - on
the one shared embedded-default run - APC on vs off measured for real: hits > 0 with APC on, 0 with
APC off on the same workload, KV blocks from the server, the tables."""

import json

import pandas as pd
import pytest
import yaml
from conftest import ROOT, load_preset

from inferlab import engines, guard, matrix
from inferlab.errors import ConfigError
from inferlab.tools import bench_serving

W = "week05"

PR = {
    "request_rate": "inf",
    "dataset_name": "prefix_repetition",
    "prefix_len": 256,
    "suffix_len": 64,
    "num_prefixes": 2,
    "output_len": 16,
    "num_prompts": 20,
}


def _vllm():
    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())["engines"]
    return engines.from_setup("vllm", cfg["vllm"], {"bin": "vllm"}, base_dir=ROOT)


# -- the tool's workloads ----------------------------------------------------------------------


def test_prefix_repetition_command_has_its_flags_and_no_dataset_file(tmp_path):
    cmd = _vllm().client_command("http://h:1", "/m", PR, "", tmp_path / "raw.json")
    s = " ".join(cmd)
    assert "--dataset-name prefix_repetition" in s and "--dataset-path" not in cmd
    for flag, v in (
        ("--prefix-repetition-prefix-len", "256"),
        ("--prefix-repetition-suffix-len", "64"),
        ("--prefix-repetition-num-prefixes", "2"),
        ("--prefix-repetition-output-len", "16"),
        ("--num-prompts", "20"),
    ):
        assert cmd[cmd.index(flag) + 1] == v
    rnd = {"request_rate": 1, "dataset_name": "random", "num_prompts": 5, "input_len": 64, "output_len": 8}
    cmd = _vllm().client_command("http://h:1", "/m", {**rnd, "prefix_len": 128}, "", tmp_path / "r.json")
    assert cmd[cmd.index("--random-prefix-len") + 1] == "128" and cmd[cmd.index("--random-input-len") + 1] == "64"


@pytest.mark.parametrize(
    "params, match",
    [
        ({**PR, "num_prompts": 21}, "not a multiple of 2"),
        ({**PR, "dataset": "sharegpt-synthetic"}, "does not read"),
        ({**PR, "gsp_num_groups": 2}, "does not read"),
        ({k: v for k, v in PR.items() if k != "suffix_len"}, r"needs \['suffix_len'\]"),
        ({"request_rate": 1, "dataset_name": "sharegpt", "num_prompts": 5}, r"needs \['dataset'\]"),
        ({**PR, "prefix_len": 4096}, "exceeds max_model_len 4096"),
    ],
)
def test_check_rejects_what_the_client_would_silently_change(params, match):
    with pytest.raises(ConfigError, match=match):
        bench_serving.check(params, {"max_model_len": 4096}, "week05.yaml", "experiments.apc")


def test_check_engine_rejects_unsupported_client_combinations():
    gsp = {"request_rate": 1, "dataset_name": "generated-shared-prefix", "gsp_num_groups": 2}
    with pytest.raises(ConfigError, match="no generated-shared-prefix"):
        bench_serving.check_engine(gsp, "vllm", "f", "k")
    bench_serving.check_engine({**gsp, "client": "sglang"}, "vllm", "f", "k")  # SGLang's client against vLLM: fine
    with pytest.raises(ConfigError, match="cache-report"):
        bench_serving.check_engine({**gsp, "client": "sglang", "cache_report": True}, "vllm", "f", "k")
    with pytest.raises(ConfigError, match="no prefix_repetition"):
        bench_serving.check_engine(PR, "sglang", "f", "k")
    with pytest.raises(ConfigError, match="no shared prefix"):
        bench_serving.check_engine({"dataset_name": "random", "prefix_len": 8, "client": "sglang"}, "vllm", "f", "k")


def test_week_plan_types_fp8_kv_skipped_on_cpu(catalog):
    cfg = load_preset(catalog, weeks=[W])
    cells = [c for c in matrix.expand(cfg).values() if c.week == "week05"]
    apc = {(c.configuration, c.params["prefix_len"]) for c in cells if c.experiment == "apc"}
    assert apc == {(a, p) for a in ("apc", "noapc") for p in (0, 256, 512, 1024, 2048)}
    fp8 = [c for c in cells if c.configuration == "kvfp8"]
    assert fp8 and all(c.skip.startswith("unsupported: fp8_kv_cache") and "AVX-512" in c.skip for c in fp8)
    assert all(c.skip is None for c in cells if c.configuration != "kvfp8")
    assert all(c.between_cells["reset_cache"] for c in cells)


def test_a_week_file_param_the_tool_does_not_read_is_rejected(catalog):
    f = catalog / "weeks" / "week05.yaml"
    w = yaml.safe_load(f.read_text())
    w["experiments"]["apc"]["fixed"]["gsp_question_len"] = 64
    f.write_text(yaml.safe_dump(w))
    with pytest.raises(ConfigError, match="does not read"):
        matrix.expand(load_preset(catalog, weeks=[W]))


# -- the guard: a TTFT below the prefill of the uncached part ---------------------------------------

ARCH = yaml.safe_load((ROOT / "config" / "models.yaml").read_text())["models"]["llama-3.1-8b-instruct"]["architecture"]
H100 = yaml.safe_load((ROOT / "config" / "gpus.yaml").read_text())["gpus"]["h100"]


def test_ttft_below_the_uncached_prefill_floor_is_invalid():
    cond = guard.resolve(ARCH, "bfloat16", {"enable_prefix_caching": True})
    p = {**PR, "prefix_len": 2048, "suffix_len": 2048}
    # 2048 uncached tokens x ~14 GFLOP/token at 989 TFLOP/s: ~29 ms; a 5 ms TTFT cannot be real
    bad = guard.assess_ttft("ttft_p50", 5.0, ARCH, H100, p, {"enable_prefix_caching": True}, cond)
    assert not bad.valid and "ttft_compute" in bad.reason and "uncached part" in bad.reason
    ok = guard.assess_ttft("ttft_p50", 40.0, ARCH, H100, p, {"enable_prefix_caching": True}, cond)
    assert ok.valid and ok.applied == ("ttft_compute",)
    # with APC off the whole prompt (4096 tokens, ~58 ms) is computed: 40 ms is then too fast
    off = guard.assess_ttft("ttft_p50", 40.0, ARCH, H100, {**p, "enable_prefix_caching": False}, {}, cond)
    assert not off.valid and "whole prompt" in off.reason
    # a dataset file's prompt lengths are unknown: not bounded, and said so
    sg = guard.assess_ttft("ttft_p50", 0.001, ARCH, H100, {"dataset_name": "sharegpt"}, {}, cond)
    assert sg.valid and sg.skipped


# -- the shared embedded-default run (real CPU engine) --------------------------------------------


def _rec(work, path):
    return json.loads((work / "results" / W / path / "cell.json").read_text())


def _server(rec):
    return {r["metric"]: r["value"] for r in rec.get("server_metrics") or []}


@pytest.mark.engine
def test_apc_on_hits_and_apc_off_does_not_on_the_same_workload(shared_run):
    on = _rec(shared_run, "apc/vllm/cpu/apc/prefix256")
    off = _rec(shared_run, "apc/vllm/cpu/noapc/prefix256")
    assert on["status"] == "ok" and off["status"] == "ok", (on.get("detail"), off.get("detail"))
    assert on["cache_reset"]["ok"] and off["cache_reset"]["ok"]
    assert on["provenance"]["prefix_caching"] == "enabled" and off["provenance"]["prefix_caching"] == "disabled"
    assert "--prefix-repetition-prefix-len" in on["provenance"]["command"]
    son, soff = _server(on), _server(off)
    # 8 prompts over 2 prefixes of 256 tokens (2 blocks of 128): the later prompts of a prefix hit
    assert son["prefix_cache_hits"] > 0 and 0 < son["prefix_cache_hit_rate"] < 1
    assert soff["prefix_cache_hits"] == 0 and soff["server_prompt_tokens"] > 0
    zero = _server(_rec(shared_run, "apc/vllm/cpu/apc/prefix0"))
    assert zero["prefix_cache_queries"] > 0 and zero["prefix_cache_hits"] == 0  # nothing shared: no hit


@pytest.mark.engine
def test_week05_tables_and_skips(shared_run):
    res = shared_run / "results" / W
    df = pd.read_parquet(res / f"{W}.parquet")
    ttft = df[(df.metric == "ttft_p50") & (df.experiment == "apc")]
    assert len(ttft) == 4 and ttft["value"].gt(0).all() and ttft["valid"].all()
    t = pd.read_csv(res / "tables" / "prefix_sweep.csv", dtype=str)
    col = "Hits / prompt tokens"
    on = t[(t["APC"] == "true") & (t["Shared prefix (tokens)"] == "256")][col].iloc[0]
    off = t[(t["APC"] == "false") & (t["Shared prefix (tokens)"] == "256")][col].iloc[0]
    assert float(on) > 0 and float(off) == 0
    fp8 = _rec(shared_run, "kv_capacity/vllm/cpu/kvfp8/prefix256")
    assert fp8["status"] == "skipped" and fp8["reason"] == "unsupported" and "AVX-512" in fp8["detail"]
    bf16 = _rec(shared_run, "kv_capacity/vllm/cpu/kvbf16/prefix256")
    start = {r["metric"]: r["value"] for r in bf16["engine_startup"]}
    assert bf16["status"] == "ok" and start["kv_cache_blocks"] > 0 and start["kv_cache_capacity"] > 0
    kv = (res / "tables" / "kv_blocks.md").read_text()
    assert "SKIPPED" in kv and f"{start['kv_cache_blocks']:,.0f}" in kv
    assert (res / "figures" / "ttft_vs_prefix.png").stat().st_size > 0

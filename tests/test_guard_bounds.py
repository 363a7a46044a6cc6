"""The generalised roofline guard: each bound against hand-computed numbers, each applied only where
its assumptions hold (a real value is never invalid by a bound that does not apply), and the
course mode (no engine arguments: every existing caller) unchanged."""

import copy

import pandas as pd
import pytest
import yaml
from conftest import ROOT, load_preset

from inferlab import config, guard, theory
from inferlab.errors import ConfigError

CFG = config.load("config/cluster.yaml", base_dir=ROOT)
MODEL = CFG.models["llama-3.1-8b-instruct"]
ARCH, DTYPE = MODEL["architecture"], MODEL["dtype"]
H100, H200 = CFG.gpu("h100"), CFG.gpu("h200")
MIXTRAL = {  # mistralai/Mixtral-8x7B-v0.1 config.json
    "vocab_size": 32000,
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "num_local_experts": 8,
    "num_experts_per_tok": 2,
    "tie_word_embeddings": False,
}

# Llama-3.1-8B by hand: V h = 128256 x 4096 = 525,336,576 (input table; the untied LM head the same);
# per layer attention 2 x 4096^2 + 2 x 4096 x 1024 = 41,943,040 and MLP 3 x 4096 x 14336 = 176,160,768,
# x 32 layers = 6,979,321,856 matmul parameters; norms 65 x 4096 = 266,240. Total 8,030,261,248.
VH = 525_336_576
TRUNK = 6_979_321_856
STEP_READ = 8_030_261_248 - VH  # a step reads everything but the untied input table: 7,504,924,672
BW_H100 = 3350e9
PEAK = 989e12
WEEK3 = {"enable_prefix_caching": False, "max_num_seqs": 512}  # config/weeks/week03.yaml decode


# ---------------------------------------------------------------- precision


def test_bytes_per_weight_and_kv_element():
    p = theory.precision
    assert p("bfloat16").weight_bytes == 2 and p("float32").weight_bytes == 4 and p("half").weight_bytes == 2
    for q in ("fp8", "fp8_e4m3", "fp8_e5m2", "int8"):
        assert p("bfloat16", q).weight_bytes == 1 and p("bfloat16", q).compute_factor == 2
    for q in ("int4", "awq", "awq_marlin", "gptq_marlin"):
        assert p("bfloat16", q).weight_bytes == 0.5 and p("bfloat16", q).compute_factor == 4
    assert p("bfloat16", "gptq").weight_bytes == 0.25  # vLLM's GPTQ accepts 2-bit weights: the certain minimum
    assert p("bfloat16", "gptq").compute_factor == 4  # capped at 4 (FP4/INT4 tensor cores)
    assert p("float32").compute_factor == 1  # never below the BF16 peak
    # KV cache: auto = the model dtype (also under weight quantization), fp8* one byte
    assert p("bfloat16", "fp8", "auto").kv_bytes == 2
    assert p("float32", None, "auto").kv_bytes == 4
    for kv in ("fp8", "fp8_e4m3", "fp8_e5m2"):
        assert p("bfloat16", None, kv).kv_bytes == 1
    assert p("bfloat16", None, "some_new_kv_format").kv_bytes == 0  # unknown: the KV term is dropped
    assert p("bfloat16", None).kv_bytes == 2 and p("bfloat16", "none").weight_bytes == 2
    for bad in (("bfloat16", "compressed-tensors"), ("bfloat16", "gguf"), ("int3", None)):
        with pytest.raises(theory.UnknownAssumption):
            p(*bad)
    assert theory.kv_bytes_per_token(ARCH, "fp8") == 2 * 32 * 8 * 128  # 64 KiB


def test_step_bytes_leave_out_only_what_a_step_need_not_read():
    c = theory.param_counts(ARCH)
    assert c.total == theory.llama_param_count(ARCH) == 8_030_261_248
    assert c.active == c.total and c.trunk_matmul == TRUNK and c.step_read == STEP_READ
    # the course convention reads the whole model: 16.06 GB / 3350 GB/s = 4.79 ms
    assert 1e3 * theory.weights_floor_s(ARCH, "bfloat16", H100) == pytest.approx(16.06e9 / BW_H100 * 1e3, rel=1e-3)
    # the strict bound: the input table is looked up row by row, 15.01 GB / 3350 GB/s = 4.48 ms
    assert theory.step_weight_bytes(ARCH) == 2 * STEP_READ == 15_009_849_344
    assert 1e3 * theory.decode_step_floor_s(ARCH, H100) == pytest.approx(4.4806, abs=1e-4)
    tied = {**ARCH, "tie_word_embeddings": True}  # the table is the LM head: read every step
    assert theory.param_counts(tied).step_read == theory.param_counts(tied).total == 8_030_261_248 - VH


def test_fp8_halves_the_step_and_tp2_halves_it_again():
    fp8 = theory.precision("bfloat16", "fp8")
    tp2 = theory.Placement(tensor_parallel_size=2)
    bf16_ms = 1e3 * theory.decode_step_floor_s(ARCH, H100)
    assert (
        1e3 * theory.decode_step_floor_s(ARCH, H100, fp8) == pytest.approx(bf16_ms / 2) == pytest.approx(2.2403, 1e-4)
    )
    assert 1e3 * theory.decode_step_floor_s(ARCH, H100, fp8, tp2) == pytest.approx(bf16_ms / 4)
    int4 = theory.precision("bfloat16", "awq")
    assert 1e3 * theory.decode_step_floor_s(ARCH, H100, int4) == pytest.approx(bf16_ms / 4)
    # KV: 64 sequences x 4096 tokens x 128 KiB (BF16) or 64 KiB (FP8 KV cache)
    kv8 = theory.precision("bfloat16", None, "fp8")
    extra = theory.decode_step_floor_s(ARCH, H100, kv8, batch_size=64, context_len=4096) - bf16_ms / 1e3
    assert extra == pytest.approx(64 * 4096 * 65536 / BW_H100)


# ---------------------------------------------------------------- MoE


def test_mixtral_total_and_active_parameters():
    c = theory.param_counts(MIXTRAL)
    # per layer: attention 41,943,040 + 8 experts x 3 x 4096 x 14336 (1,409,286,144) + router 32,768
    assert c.total == 46_702_792_704  # "46.7B"
    assert c.active == 12_879_925_248  # "12.9B": 2 of 8 experts per layer
    assert theory.active_param_count(MIXTRAL) == c.active and theory.llama_param_count(MIXTRAL) == c.total
    assert theory.weights_bytes(MIXTRAL, "bfloat16") == 2 * c.total  # the model's size
    assert theory.flops_per_token(MIXTRAL) == 2 * (c.active - 2 * 32000 * 4096 - 65 * 4096)
    # moe_intermediate_size (Qwen-MoE style) sizes each expert; absent top-k counts 1 expert
    small = {**MIXTRAL, "moe_intermediate_size": 1024}
    assert theory.param_counts(small).experts_total == 32 * 8 * 3 * 4096 * 1024
    no_k = {k: v for k, v in MIXTRAL.items() if k != "num_experts_per_tok"}
    assert theory.param_counts(no_k).experts_active == 32 * 3 * 4096 * 14336
    with pytest.raises(ValueError):
        theory.param_counts({**MIXTRAL, "num_experts_per_tok": 9})


def test_moe_step_reads_the_top_k_experts_whatever_the_batch():
    step = theory.step_weight_bytes(MIXTRAL)
    assert step == 2 * (12_879_925_248 - 32000 * 4096)  # 25.50 GB, not the model's 93.4 GB
    # on an H200: 25.50 GB / 4800 GB/s = 5.31 ms; total weights would say 19.46 ms
    assert 1e3 * theory.decode_step_floor_s(MIXTRAL, H200) == pytest.approx(5.3120, abs=1e-4)
    # a batch of 256 touches between 2 and 8 experts per layer: only 2 is certain (KV aside)
    assert theory.decode_step_floor_s(MIXTRAL, H200, batch_size=256) == theory.decode_step_floor_s(MIXTRAL, H200)
    ok, _ = guard.check_serving("tpot_mean", 10.0, MIXTRAL, "bfloat16", H200, 8, engine_args={})
    assert ok  # 10 ms/token is a real Mixtral speed on one H200, below the total-weights read


# ---------------------------------------------------------------- placement


def test_placement_aggregates_gpus():
    pl = theory.Placement.from_engine_args({"tensor_parallel_size": 2, "pipeline_parallel_size": 2})
    assert pl.num_gpus == 4 and theory.ParallelSpec is theory.Placement
    assert pl.hbm_bytes_per_s(H100) == 4 * BW_H100 and pl.peak_flops(H100, 2) == 8 * PEAK
    assert theory.Placement.from_engine_args({"data_parallel_size": "3", "enable_expert_parallel": True}).num_gpus == 3
    assert theory.Placement.from_engine_args({}).num_gpus == 1
    for bad in ({"tensor_parallel_size": 0}, {"tensor_parallel_size": 1.5}, {"pipeline_parallel_size": "two"}):
        with pytest.raises(theory.UnknownAssumption):
            theory.Placement.from_engine_args(bad)


# ---------------------------------------------------------------- speculative decoding


def test_speculative_tokens_from_engine_args():
    st = guard.speculative_tokens
    assert st(None) == 0 and st({}) == 0 and st({"speculative_config": None}) == 0
    assert st({"speculative_config": {"method": "ngram", "num_speculative_tokens": 3}}) == 3
    assert st({"speculative_config": '{"model": "draft", "num_speculative_tokens": 5}'}) == 5
    assert st({"num_speculative_tokens": 4}) == 4
    for bad in (
        {"speculative_config": {"method": "mtp"}},  # count from the model's config: not known here
        {"speculative_config": "{not json"},
        {"speculative_config": {"num_speculative_tokens": -1}},
        {"speculative_algorithm": "EAGLE"},  # SGLang's spelling: not understood
    ):
        with pytest.raises(theory.UnknownAssumption):
            st(bad)


def test_spec_k3_allows_four_tokens_per_step():
    step = theory.decode_step_floor_s(ARCH, H100)
    assert theory.per_token_floor_s(ARCH, H100, tokens_per_step=4) == pytest.approx(step / 4)  # 1.12 ms
    assert theory.forward_steps(64) == 64 and theory.forward_steps(64, 4) == 1 + 16 and theory.forward_steps(1, 4) == 1
    cap1 = theory.throughput_step_cap(ARCH, H100, 16)
    assert cap1 == pytest.approx(16 / 4.4805520e-3)  # 3571 tok/s
    assert theory.throughput_step_cap(ARCH, H100, 16, tokens_per_step=4) == pytest.approx(4 * cap1)


def test_tpot_2ms_is_real_with_spec_k3_and_impossible_without():
    spec = {"speculative_config": {"method": "ngram", "num_speculative_tokens": 3}}
    for metric in ("tpot_mean", "tpot_p50", "itl_mean", "itl_p50"):
        v = guard.assess_serving(metric, 2.0, ARCH, DTYPE, H100, 16, engine_args=spec)
        assert v.valid and v.applied == ("step_weights",), metric  # floor 4.48 / 4 = 1.12 ms
        ok, why = guard.check_serving(metric, 2.0, ARCH, DTYPE, H100, 16, engine_args={})
        assert not ok and "step_weights bound 4.481 ms" in why and "<= 1 tokens per request per step" in why
        assert not guard.check_serving(metric, 2.0, ARCH, DTYPE, H100, 16)[0]  # course mode agrees
        assert guard.check_value(metric, 2.0, "ms", ARCH, DTYPE, H100, {}, engine_args=spec) == (True, None)
    # a speculative config whose token count is unknown: the per-token bound is skipped, not guessed
    v = guard.assess_serving(
        "tpot_mean", 0.5, ARCH, DTYPE, H100, 16, engine_args={"speculative_config": {"method": "mtp"}}
    )
    assert v.valid and v.applied == () and v.skipped[0][0] == "step_weights"


# ---------------------------------------------------------------- the guard's bounds, one by one


def test_step_bound_follows_precision_and_placement():
    def floor(**ea):
        return guard.serving_bounds(guard.resolve(ARCH, DTYPE, ea), ARCH, H100, "tpot_mean", None)[0].limit

    assert floor() == pytest.approx(4.4806, abs=1e-4)
    assert floor(quantization="fp8") == pytest.approx(2.2403, abs=1e-4)
    assert floor(quantization="fp8", tensor_parallel_size=2) == pytest.approx(1.1201, abs=1e-4)
    assert floor(dtype="float32") == pytest.approx(2 * 4.4806, abs=1e-3)
    # 3 ms/token: impossible for BF16 on one H100, real with TP=2 (floor 2.24 ms) or with FP8 weights
    assert not guard.check_serving("tpot_mean", 3.0, ARCH, DTYPE, H100, 1, engine_args={})[0]
    assert guard.check_serving("tpot_mean", 3.0, ARCH, DTYPE, H100, 1, engine_args={"tensor_parallel_size": 2})[0]
    assert guard.check_serving("tpot_mean", 3.0, ARCH, DTYPE, H100, 1, quantization="fp8")[0]
    # the engine's --quantization wins over the catalog's label (AWQ would allow 1.12 ms)
    cond = guard.resolve(ARCH, DTYPE, {"quantization": "fp8"}, quantization="awq")
    assert guard.serving_bounds(cond, ARCH, H100, "tpot_mean", None)[0].limit == pytest.approx(2.2403, abs=1e-4)
    assert not guard.check_serving("tpot_mean", 2.0, ARCH, DTYPE, H100, 1, engine_args={"quantization": "fp8"})[0]


def test_unknown_quantization_skips_weight_bounds_and_says_so():
    for ea, q in (({"quantization": "compressed-tensors"}, None), ({}, "gguf"), ({"dtype": "int3"}, None)):
        v = guard.assess_serving("tpot_mean", 0.01, ARCH, DTYPE, H100, 16, engine_args=ea, quantization=q)
        assert v.valid and v.applied == () and "step_weights" in dict(v.skipped)
        p = {"batch_size": 1, "input_len": 4096, "output_len": 64}
        v = guard.assess_value("latency_avg", 0.01, "ms", ARCH, DTYPE, H100, p, engine_args=ea, quantization=q)
        assert v.valid and set(dict(v.skipped)) == {"latency_compute", "latency_memory"}
    # hf_overrides may change the architecture itself: nothing is applied
    v = guard.assess_serving(
        "tpot_mean", 0.01, ARCH, DTYPE, H100, 16, engine_args={"hf_overrides": {"num_hidden_layers": 2}}
    )
    assert v.valid and "hf_overrides" in dict(v.skipped)["step_weights"]


def test_latency_bounds_hand_computed():
    prefill = {"batch_size": 1, "input_len": 4096, "output_len": 1}
    decode = {"batch_size": 1, "input_len": 128, "output_len": 64}
    cond = guard.resolve(ARCH, DTYPE, WEEK3)
    b = {x.name: x.limit for x in guard.latency_bounds(cond, ARCH, H100, prefill)}
    # 4096 positions x 2 x 6,979,321,856 + one LM-head row 2 x 525,336,576 at 989 TFLOP/s = 57.81 ms
    assert b["latency_compute"] == pytest.approx((4096 * 2 * TRUNK + 2 * VH) / PEAK * 1e3) == pytest.approx(57.81, 1e-3)
    b = {x.name: x.limit for x in guard.latency_bounds(cond, ARCH, H100, decode)}
    # 64 steps x 15.01 GB + KV of decode steps 1..63 (128 + j tokens: 10,080 x 128 KiB) at 3350 GB/s
    mem = (64 * 2 * STEP_READ + 10_080 * 131_072) / BW_H100 * 1e3
    assert b["latency_memory"] == pytest.approx(mem) == pytest.approx(287.15, 1e-4)
    assert guard.latency_bound_ms(ARCH, DTYPE, H100, decode, engine_args=WEEK3) == pytest.approx(mem)
    # spec k=3: 1 + ceil(63 / 4) = 17 steps; decode steps 1..16 read 128 + j tokens (2,184 x 128 KiB)
    spec = {**WEEK3, "speculative_config": {"num_speculative_tokens": 3}}
    b = {x.name: x.limit for x in guard.latency_bounds(guard.resolve(ARCH, DTYPE, spec), ARCH, H100, decode)}
    assert b["latency_memory"] == pytest.approx((17 * 2 * STEP_READ + 2_184 * 131_072) / BW_H100 * 1e3)
    # TP=2 with FP8 weights and FP8 KV: compute at 2 x 2 x 989 TFLOP/s, memory at 2 x 3350 GB/s
    fast = {**WEEK3, "tensor_parallel_size": 2, "quantization": "fp8", "kv_cache_dtype": "fp8"}
    b = {x.name: x.limit for x in guard.latency_bounds(guard.resolve(ARCH, DTYPE, fast), ARCH, H100, decode)}
    assert b["latency_memory"] == pytest.approx((64 * STEP_READ + 10_080 * 65_536) / (2 * BW_H100) * 1e3)
    assert b["latency_compute"] == pytest.approx((191 * 2 * TRUNK + 64 * 2 * VH) / (4 * PEAK) * 1e3)
    # per output token: the same bounds / output_len
    v = guard.assess_value(
        "latency_per_output_token", mem / 64 * 0.99, "ms/token", ARCH, DTYPE, H100, decode, engine_args=WEEK3
    )
    assert not v.valid and "latency_memory bound 4.487 ms/token" in v.reason


def test_sliding_window_caps_the_kv_read():
    swa = {**ARCH, "sliding_window": 100}
    assert theory._kv_tokens_read(128, 63, 100) == 63 * 100
    assert theory._kv_tokens_read(50, 63, 100) == 50 * 50 + 50 * 51 // 2 + 13 * 100
    assert theory._kv_tokens_read(128, 63, None) == 10_080
    assert theory.latency_memory_floor_s(swa, H100, 1, 128, 64) < theory.latency_memory_floor_s(ARCH, H100, 1, 128, 64)
    assert theory.decode_step_floor_s(swa, H100, batch_size=1, context_len=4096) == pytest.approx(
        theory.decode_step_floor_s(ARCH, H100, batch_size=1, context_len=100)
    )


def test_prompt_compute_applies_only_when_prefix_caching_is_off():
    p = {"batch_size": 1, "input_len": 4096, "output_len": 1}
    # 15 ms for a 4096-token prefill: a prefix-cache hit. With caching disabled it is impossible...
    ok, why = guard.check_value("latency_avg", 15.0, "ms", ARCH, DTYPE, H100, p, engine_args=WEEK3)
    assert not ok and "latency_compute bound 57.81 ms" in why
    # ...with caching on (or the engine default, on in vLLM and SGLang) the prompt may be served from
    # the cache: only the last position must be computed and 15 ms is a real cached request
    for ea in ({}, {"enable_prefix_caching": True}, {"enable_prefix_caching": False, "kv_transfer_config": {"x": 1}}):
        v = guard.assess_value("latency_avg", 15.0, "ms", ARCH, DTYPE, H100, p, engine_args=ea)
        assert v.valid and v.applied == ("latency_compute", "latency_memory"), ea
    # 1 ms is still below one weight read (4.48 ms), cache or not
    assert not guard.check_value("latency_avg", 1.0, "ms", ARCH, DTYPE, H100, p, engine_args={})[0]


def test_throughput_caps():
    spec = {"speculative_config": {"num_speculative_tokens": 3}}
    # 16 requests x 1 token per 4.48 ms step = 3571 tok/s; x 4 with k=3
    assert not guard.check_serving("output_throughput", 4000, ARCH, DTYPE, H100, 16, engine_args={})[0]
    assert guard.check_serving("output_throughput", 4000, ARCH, DTYPE, H100, 16, engine_args=spec)[0]
    assert not guard.check_serving("output_throughput", 15_000, ARCH, DTYPE, H100, 16, engine_args=spec)[0]
    # compute: 989 TFLOP/s / (2 x 6.98e9 + 2 x 5.25e8) FLOPs per output token = 65,892 tok/s, any concurrency
    cap = PEAK / (2 * TRUNK + 2 * VH)
    assert theory.throughput_compute_cap(ARCH, H100) == pytest.approx(cap) == pytest.approx(65_892, abs=1)
    v = guard.assess_serving("output_throughput", 70_000, ARCH, DTYPE, H100, None, engine_args={})
    assert (
        not v.valid
        and v.applied == ("throughput_compute",)
        and dict(v.skipped) == {"throughput_steps": "max_concurrent_requests unknown"}
    )
    assert guard.assess_serving("output_throughput", 60_000, ARCH, DTYPE, H100, float("nan"), engine_args={}).valid
    # FP8 on 2 GPUs: 2 x 2 x 989 TFLOP/s
    fast = {"quantization": "fp8", "tensor_parallel_size": 2}
    assert guard.check_serving("output_throughput", 200_000, ARCH, DTYPE, H100, None, engine_args=fast)[0]
    assert not guard.check_serving("output_throughput", 300_000, ARCH, DTYPE, H100, None, engine_args=fast)[0]


# ---------------------------------------------------------------- course mode unchanged, apply()


def test_course_mode_is_todays_guard():
    p = {"batch_size": 1, "input_len": 4096, "output_len": 1}
    assert guard.latency_bound_ms(ARCH, DTYPE, H100, p) == 1e3 * theory.latency_floor_s(ARCH, DTYPE, H100, 1, 4096, 1)
    assert guard.latency_bound_ms(ARCH, DTYPE, H100, p) == pytest.approx(66.5, rel=0.01)  # 2 P L at peak
    ok, why = guard.check_serving("tpot_mean", 4.0, ARCH, DTYPE, H100, 1)
    assert not ok and why.startswith("4 ms per token is below one weight read, 4.794 ms")
    v = guard.assess_value("latency_avg", 15.9, "ms", ARCH, DTYPE, H100, p)
    assert not v.valid and v.applied == ("course_latency",) and "below the roofline bound" in v.reason


def test_week3_reference_verdicts_in_general_mode():
    """The course's published Week 3 numbers under the general bounds with Week 3's engine args: the
    same verdicts as the course mode but one. H200 L=512 (7.47 ms) needs 7.23 ms at 989 TFLOP/s once
    the LM head is charged for the sampled position only (the course mode charges all 512 and the
    embedding lookup as matmuls: 8.31 ms): 97% of peak, implausible but not beyond the roof."""
    rows = yaml.safe_load((ROOT / "config" / "reference" / "week03.yaml").read_text())
    week = yaml.safe_load((ROOT / "config" / "weeks" / "week03.yaml").read_text())
    differ = []
    for row in rows:
        exp, metric, unit, g = row["experiment"], row["metric"], row["unit"], row["gpu"]
        if metric not in ("latency_per_output_token", "latency_avg"):
            continue
        ea = week["experiments"][exp]["engine_args"]
        p = {k: row["axes"][k] for k in ("batch_size", "input_len", "output_len")}
        v = row["value"]
        course = guard.check_value(metric, v, unit, ARCH, DTYPE, CFG.gpu(g), p)[0]
        general = guard.check_value(metric, v, unit, ARCH, DTYPE, CFG.gpu(g), p, engine_args=ea)[0]
        if course != general:
            key = "batch_size" if exp == "decode" else "input_len"
            differ.append((exp, g, int(p[key])))
    assert differ == [("prefill", "h200", 512)]


def _latency_frame(params, avg_ms, engine="vllm"):
    rows = [("latency_avg", avg_ms, "ms"), ("latency_per_output_token", avg_ms / params["output_len"], "ms/token")]
    df = pd.DataFrame(
        {
            "experiment": "decode",
            "engine": engine,
            "cell": "c",
            "tool": "vllm_bench_latency",
            "metric": [r[0] for r in rows],
            "raw_value": [r[1] for r in rows],
            "value": [r[1] for r in rows],
            "unit": [r[2] for r in rows],
            "valid": True,
            "invalid_reason": pd.Series([None, None], dtype="string"),
        }
    )
    for k, v in params.items():
        df[f"param_{k}"] = v
    return df


def _serving_frame(tpot, tput, conc):
    metrics = [("tpot_mean", tpot), ("output_throughput", tput), ("max_concurrent_requests", conc), ("ttft_mean", 0.1)]
    return pd.DataFrame(
        {
            "experiment": "serve",
            "engine": "vllm",
            "cell": "rate4",
            "tool": "bench_serving",
            "metric": [m for m, _ in metrics],
            "raw_value": pd.array([v for _, v in metrics], dtype="Float64"),
            "value": pd.array([v for _, v in metrics], dtype="Float64"),
            "unit": "x",
            "valid": True,
            "invalid_reason": pd.Series([None] * 4, dtype="string"),
            "param_request_rate": 4,
        }
    )


def test_apply_general_mode_records_the_bounds():
    params = {"batch_size": 1, "input_len": 128, "output_len": 64}
    df = _latency_frame(params, 100.0)  # below the 287 ms memory bound
    course = guard.apply(df, ARCH, DTYPE, H100)
    assert course.attrs == {} and list(course.columns) == list(df.columns) and not course["valid"].any()
    out = guard.apply(df, ARCH, DTYPE, H100, engine_args=WEEK3, bounds_column="guard_bounds")
    assert not out["valid"].any() and out["value"].isna().all()
    assert out["guard_bounds"].tolist() == ["applied: latency_compute, latency_memory"] * 2
    assert out.attrs["guard"] == {"applied": ["latency_compute", "latency_memory"], "skipped": {}}
    spec = {**WEEK3, "speculative_config": {"num_speculative_tokens": 3}}
    out = guard.apply(df, ARCH, DTYPE, H100, engine_args=spec)  # 17 steps: 76 ms floor, 100 ms is real
    assert out["valid"].all() and out["value"].tolist() == df["value"].tolist()
    unknown = guard.apply(df, ARCH, DTYPE, H100, engine_args={**WEEK3, "speculative_config": {"method": "eagle"}})
    # k unknown: the memory bound is skipped; the compute bound needs no k (2.76 ms) and holds
    assert unknown["valid"].all()
    assert (
        unknown.attrs["guard"]["applied"] == ["latency_compute"]
        and "latency_memory" in unknown.attrs["guard"]["skipped"]
    )


def test_apply_serving_frames():
    df = _serving_frame(tpot=2.0, tput=5000.0, conc=16)
    course = guard.apply(df, ARCH, DTYPE, H100)
    assert course.set_index("metric")["valid"].to_dict() == {
        "tpot_mean": False,  # < 4.79 ms
        "output_throughput": False,  # > 16 / 4.79 ms = 3337 tok/s
        "max_concurrent_requests": True,
        "ttft_mean": True,
    }
    spec = {"speculative_config": {"num_speculative_tokens": 3}}
    out = guard.apply(df, ARCH, DTYPE, H100, engine_args=spec, bounds_column="b")
    assert out["valid"].all()
    assert (
        out.set_index("metric")["b"].to_dict()["output_throughput"] == "applied: throughput_steps, throughput_compute"
    )
    na = _serving_frame(tpot=5.0, tput=5000.0, conc=None)  # no concurrency count: no step cap, no crash
    assert guard.apply(na, ARCH, DTYPE, H100)["valid"].all()
    assert guard.apply(na, ARCH, DTYPE, H100, engine_args={})["valid"].all()


def test_kv_transfer_faster_than_hbm_is_flagged():
    """A P/D cell's KV transfer throughput: 1 TB/s over NVLink between two H100s is plausible (below
    3.35 TB/s of HBM); 5 TB/s is faster than any path the KV could take, so flagged, in both modes."""
    df = _serving_frame(tpot=6.0, tput=100.0, conc=16)
    df.loc[3, ["metric", "raw_value", "value"]] = ["kv_transfer_throughput", 1e12 / 2**20, 1e12 / 2**20]
    for kw in ({}, {"engine_args": {}}):
        assert guard.apply(df, ARCH, DTYPE, H100, **kw).set_index("metric").loc["kv_transfer_throughput", "valid"]
    df.loc[3, ["raw_value", "value"]] = [5e12 / 2**20, 5e12 / 2**20]
    for kw in ({}, {"engine_args": {}}):
        row = guard.apply(df, ARCH, DTYPE, H100, **kw).set_index("metric").loc["kv_transfer_throughput"]
        assert not row["valid"] and pd.isna(row["value"])
        assert row["invalid_reason"].startswith("KV transfer at 5000 GB/s is above NVIDIA H100 80GB HBM3's memory")


# ---------------------------------------------------------------- the catalog schema


def _catalog_with(catalog, name, entry):
    models = yaml.safe_load((catalog / "models.yaml").read_text())
    models["models"][name] = entry
    (catalog / "models.yaml").write_text(yaml.safe_dump(models))


def test_catalog_accepts_moe_and_quantization_for_hub_models(catalog):
    entry = {
        "source": "hub",
        "repo_id": "mistralai/Mixtral-8x7B-Instruct-v0.1",
        "revision": "0" * 40,
        "dtype": "bfloat16",
        "quantization": "fp8",
        "architecture": {**MIXTRAL, "sliding_window": None, "head_dim": 128},
    }
    _catalog_with(catalog, "mixtral", entry)
    cfg = load_preset(catalog)
    assert cfg.models["mixtral"]["architecture"]["num_local_experts"] == 8


# the builder makes Mixtral (num_local_experts, num_experts_per_tok) since Week 14, not a separate
# expert size (Qwen/DeepSeek-style moe_intermediate_size) nor a quantized checkpoint
@pytest.mark.parametrize(
    "extra", [{"quantization": "awq"}, {"architecture_extra": {"num_local_experts": 8, "moe_intermediate_size": 64}}]
)
def test_catalog_rejects_moe_or_quantization_on_built_models(catalog, extra):
    base = copy.deepcopy(CFG.models["tiny-llama"])
    base.pop("weights", None)
    if "architecture_extra" in extra:
        base["architecture"].update(extra["architecture_extra"])
    else:
        base.update(extra)
    _catalog_with(catalog, "tiny-moe", base)
    with pytest.raises(ConfigError):
        load_preset(catalog)

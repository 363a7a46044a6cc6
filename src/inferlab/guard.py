"""Roofline validity guard: no value faster than physics allows on its GPU is tabulated.

For each measured value the guard computes the lower bound of the time the measured work takes
on that GPU (``inferlab.theory``): reading the weights (and the KV cache) once per decode step at
full HBM bandwidth, and the forward pass's FLOPs at the peak BF16 rate. A measurement below that
bound cannot be a real execution of the work (the course's published Week 3 prefill column is an
example: with prefix caching on, the "prefill" was a cache hit). Such values get ``valid=False``,
``value=null``, and ``invalid_reason`` says which roof they break and by how much.
"""

from __future__ import annotations

import pandas as pd

from . import theory

LATENCY_METRICS = {
    "latency_avg",
    "latency_p10",
    "latency_p25",
    "latency_p50",
    "latency_p75",
    "latency_p90",
    "latency_p99",
}


def latency_bound_ms(arch: dict, dtype: str, gpu: dict, params: dict) -> float:
    """Lower bound (ms) of one vllm-bench-latency iteration with these parameters."""
    return 1e3 * theory.latency_floor_s(
        arch, dtype, gpu, int(params["batch_size"]), int(params["input_len"]), int(params["output_len"])
    )


# Serving: a request gets at most one token per decode step and every step reads all weights, so
# time per output token (and the median/mean gap between streamed tokens) cannot beat the
# weights' read time; output throughput cannot beat max_concurrent_requests tokens per step.
STEP_METRICS = {"tpot_mean", "tpot_p50", "itl_mean", "itl_p50"}
SERVING_THROUGHPUT = "output_throughput"


def check_serving(metric: str, value: float, arch: dict, dtype: str, gpu: dict, concurrency: float | None):
    step_ms = 1e3 * theory.weights_floor_s(arch, dtype, gpu)
    where = f"on {gpu.get('name', 'this GPU')} (weights {theory.weights_bytes(arch, dtype) / 1e9:.3g} GB at {gpu['hbm_gbps']} GB/s)"
    if metric in STEP_METRICS and value < step_ms:
        return False, f"{value:.4g} ms per token is below one weight read, {step_ms:.4g} ms, {where}"
    if metric == SERVING_THROUGHPUT and concurrency:
        cap = concurrency * 1e3 / step_ms
        if value > cap:
            return False, (
                f"{value:.4g} tok/s exceeds {concurrency:g} concurrent requests x one token per weight read "
                f"({cap:.4g} tok/s) {where}"
            )
    return True, None


def check_value(metric: str, value: float, unit: str, arch: dict, dtype: str, gpu: dict, params: dict):
    """(valid, reason) for one value."""
    if value is None or pd.isna(value):
        return True, None
    if metric in LATENCY_METRICS:
        bound = latency_bound_ms(arch, dtype, gpu, params)
        measured = value
    elif metric == "latency_per_output_token":
        bound = latency_bound_ms(arch, dtype, gpu, params) / int(params["output_len"])
        measured = value
    else:
        return True, None
    if measured < bound:
        return False, (
            f"{measured:.4g} {unit} is below the roofline bound {bound:.4g} {unit} on {gpu.get('name', 'this GPU')} "
            f"({params.get('batch_size')}x{params.get('input_len')} in, {params.get('output_len')} out: weights/KV "
            f"at {gpu['hbm_gbps']} GB/s and 2*P*tokens FLOPs at {gpu['peak_bf16_tflops']} TFLOP/s); "
            "a cache hit or a mismeasurement, not an execution of this work"
        )
    return True, None


def apply(df: pd.DataFrame, arch: dict, dtype: str, gpu: dict) -> pd.DataFrame:
    """Mark every row of one cell's (or one GPU's) frame; ``param_*`` columns give the parameters."""
    df = df.copy()
    pcols = [c for c in df.columns if c.startswith("param_")]
    if (df["tool"] == "bench_serving").any():
        return _apply_serving(df, arch, dtype, gpu)
    if not {"param_batch_size", "param_input_len", "param_output_len"} <= set(pcols):
        return df
    names = [c[len("param_") :] for c in pcols]
    cols = ["metric", "raw_value", "unit", *pcols]
    for i, (metric, raw, unit, *vals) in zip(df.index, df[cols].itertuples(index=False, name=None), strict=True):
        if metric not in LATENCY_METRICS and metric != "latency_per_output_token":
            continue
        ok, why = check_value(metric, raw, unit, arch, dtype, gpu, dict(zip(names, vals, strict=True)))
        if not ok:
            df.at[i, "valid"] = False
            df.at[i, "invalid_reason"] = why
            df.at[i, "value"] = None
    return df


def _apply_serving(df: pd.DataFrame, arch: dict, dtype: str, gpu: dict) -> pd.DataFrame:
    conc = {}
    for key, g in df[df.metric == "max_concurrent_requests"].groupby(["experiment", "engine", "cell"]):
        conc[key] = g["raw_value"].iloc[0]
    for i, (metric, raw, e, en, c) in zip(
        df.index,
        df[["metric", "raw_value", "experiment", "engine", "cell"]].itertuples(index=False, name=None),
        strict=True,
    ):
        if metric not in STEP_METRICS and metric != SERVING_THROUGHPUT or raw is None or pd.isna(raw):
            continue
        ok, why = check_serving(metric, raw, arch, dtype, gpu, conc.get((e, en, c)))
        if not ok:
            df.at[i, "valid"] = False
            df.at[i, "invalid_reason"] = why
            df.at[i, "value"] = None
    return df

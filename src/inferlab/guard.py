"""Roofline validity guard: no value faster than physics allows on its GPU is tabulated.

For each measured value the guard computes the lower bound of the time the measured work takes
on that GPU (``inferlab.theory``): reading the weights (and the KV cache) once per decode step at
full HBM bandwidth, and the forward pass's FLOPs at the peak BF16 rate. A measurement below that
bound cannot be a real execution of the work (the course's published Week 3 prefill column is an
example: with prefix caching on, the "prefill" was a cache hit). Such values get ``valid=False``,
``value=null``, and ``invalid_reason`` says which roof they break and by how much.

Two modes
---------
Course mode (no ``engine_args`` and no ``quantization`` passed: every existing caller). Today's
bounds, unchanged: dense weights in the catalog dtype, the whole model read every step, one GPU, one
token per request per step, every prompt token computed.

General mode (``engine_args=`` the cell's engine/server arguments, vLLM names, ``{}`` for none;
and/or ``quantization=`` the catalog entry's). The bounds of ``inferlab.theory`` (its docstring has
the formulas), each applied only where its assumptions are established from the arguments:

====================  ==========================================  ======================================
bound                 formula (N GPUs, BW and peak of one GPU)    needs
====================  ==========================================  ======================================
latency_compute       (2 P_act bs T + 2 V h bs O) /               precision, placement, architecture;
 (latency_*)          (N peak x factor); T = L + O - 1, or O       T = L + O - 1 only with
                      when the prompt may be a prefix-cache hit    ``enable_prefix_caching: false`` and
                                                                   no KV transfer (disaggregation)
latency_memory        (S W + bs sum_j min(L + j, window) KV) /     precision, placement, architecture,
 (latency_*)          (N BW), S = 1 + ceil((O - 1) / (k + 1))      speculative tokens k
step_weights          W / (N BW) / (k + 1)                         same as latency_memory
 (tpot/itl mean, p50)
throughput_steps      C (k + 1) N BW / W                           same, and C = max_concurrent_requests
 (output_throughput)
throughput_compute    N peak x factor / (2 P_act + 2 V h)          precision, placement, architecture
 (output_throughput)
kv_transfer           transfer throughput <= BW (HBM: the fastest     (both modes; P/D cells with NIXL)
 (kv_transfer_thr.)    path KV can take between two servers)
====================  ==========================================  ======================================

W = bytes every step reads (active experts, LM head, no untied input table) at the weight precision;
P_act = active matmul parameters per token; factor = FP8/INT8/FP4 tensor-core speed-up allowed by
the weight format (1 for BF16). ``latency_per_output_token`` uses the latency bounds / O. Values
are read from the arguments as follows; anything that cannot be established skips the bounds that
need it (never a guess that could flag a real value), and the verdict records what was applied:

- precision: the engine's ``dtype`` (``auto``/absent: the catalog dtype), ``quantization`` (absent:
  the catalog's ``quantization``; absent too: unquantized), ``kv_cache_dtype`` (``auto``: the model
  dtype; an unknown one drops the KV term). An unknown quantization method or dtype: skipped.
- placement: ``tensor_parallel_size`` x ``pipeline_parallel_size`` x ``data_parallel_size`` (1 when
  absent). Expert parallelism adds no GPUs. A size that is not a positive integer: skipped.
- speculative tokens k: ``speculative_config`` (dict or JSON string) ``num_speculative_tokens``, or a
  top-level ``num_speculative_tokens``; none: k = 0. A speculative config without a token count, or
  any other ``*specul*`` argument (another engine's spelling): the bounds needing k are skipped.
- architecture: ``hf_overrides`` may change it: every bound is skipped.

Even for a dense BF16 model on one GPU without speculation, general mode is a little looser than
course mode, because course mode over-counts: it charges the untied input embedding table as read
every step (a step looks up only its rows) and the LM head's FLOPs for every prompt position
(engines compute logits for sampled positions only). For Llama-3.1-8B on an H100 the step floor is
4.48 ms, not 4.79, and a 4096-token prefill 57.8 ms, not 66.5. Of the course's published Week 3
numbers only H200 prefill L=512 (7.47 ms: 97% of peak FLOP/s) changes verdict (valid in general mode).

Recording: ``assess_value``/``assess_serving`` return a ``Verdict`` (valid, reason, bounds applied,
bounds skipped with why); ``check_value``/``check_serving`` keep returning (valid, reason); an
invalid reason in general mode names the broken bound and lists those applied and skipped.
``apply(..., bounds_column=name)`` writes the same per checked row, and ``df.attrs["guard"]`` sums it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

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


def latency_bound_ms(
    arch: dict,
    dtype: str,
    gpu: dict,
    params: dict,
    *,
    engine_args: dict | None = None,
    quantization: str | None = None,
) -> float:
    """Lower bound (ms) of one vllm-bench-latency iteration with these parameters. In general mode
    (``engine_args``/``quantization`` given): the largest applicable bound, 0.0 when none applies."""
    if _course_mode(engine_args, quantization):
        return 1e3 * theory.latency_floor_s(
            arch, dtype, gpu, int(params["batch_size"]), int(params["input_len"]), int(params["output_len"])
        )
    cond = resolve(arch, dtype, engine_args, quantization)
    limits = [b.limit for b in latency_bounds(cond, arch, gpu, params) if b.limit is not None]
    return max(limits, default=0.0)


# Serving: a request gets at most one token per decode step (k + 1 with k speculative tokens) and
# every step reads all (active) weights, so time per output token (and the median/mean gap between
# streamed chunks: servers stream at most one chunk per request per step) cannot beat the weights'
# read time / tokens per step; output throughput cannot beat max_concurrent_requests x tokens per
# step per weight read (nor, in general mode, the FLOPs of one position per output token at peak).
STEP_METRICS = {"tpot_mean", "tpot_p50", "itl_mean", "itl_p50"}
SERVING_THROUGHPUT = "output_throughput"


@dataclass(frozen=True)
class Verdict:
    """The guard's answer for one value: ``valid``/``reason`` as before, plus the bounds that were
    applied (computed and compared) and those skipped, with why."""

    valid: bool
    reason: str | None = None
    applied: tuple[str, ...] = ()
    skipped: tuple[tuple[str, str], ...] = ()

    def as_tuple(self) -> tuple[bool, str | None]:
        return self.valid, self.reason


@dataclass(frozen=True)
class Bound:
    """One bound for one value: ``limit`` is a floor (ms) for times or a cap (tok/s) for rates;
    ``None`` when skipped (``detail`` then says why)."""

    name: str
    limit: float | None
    detail: str
    is_cap: bool = False  # a cap on a rate (value must not exceed) rather than a floor on a time


@dataclass(frozen=True)
class Conditions:
    """What the arguments establish. ``None`` fields could not be established (``unknown`` says why)."""

    precision: theory.Precision | None
    placement: theory.Placement | None
    tokens_per_step: int | None
    prompt_computed: bool
    architecture_known: bool
    unknown: dict = field(default_factory=dict)


def _unset(v) -> bool:
    return v is None or v is False or (isinstance(v, str) and v.strip().lower() in ("", "none", "null", "false"))


def _positive(x) -> bool:
    try:
        return x is not None and not pd.isna(x) and float(x) > 0
    except (TypeError, ValueError):
        return False


def _course_mode(engine_args, quantization) -> bool:
    return engine_args is None and quantization is None


def speculative_tokens(engine_args: dict | None) -> int:
    """k of the engine's speculative decoding (0 without). Raises ``theory.UnknownAssumption`` when a
    speculative configuration is present but its token count cannot be read."""
    args = engine_args or {}
    ks = []
    spec = args.get("speculative_config")
    if isinstance(spec, str) and not _unset(spec):
        try:
            spec = json.loads(spec)
        except json.JSONDecodeError:
            raise theory.UnknownAssumption(f"speculative_config {spec!r} is not JSON") from None
    spec_tokens = args.get("spec_tokens")  # vLLM's --spec-tokens, merged into speculative_config
    if isinstance(spec, dict) and spec:
        if _unset(spec.get("num_speculative_tokens")) and _unset(spec_tokens):
            raise theory.UnknownAssumption("speculative_config has no num_speculative_tokens")
        if not _unset(spec.get("num_speculative_tokens")):
            ks.append(spec["num_speculative_tokens"])
    elif not _unset(spec) and spec != {}:
        raise theory.UnknownAssumption(f"speculative_config {spec!r} is not understood")
    if not _unset(args.get("num_speculative_tokens")):
        ks.append(args["num_speculative_tokens"])
    if not _unset(spec_tokens):
        ks.append(spec_tokens)
    others = [k for k in args if "specul" in k and k not in ("speculative_config", "num_speculative_tokens")]
    if any(not _unset(args[k]) for k in others):
        raise theory.UnknownAssumption(f"speculative arguments {sorted(others)} are not understood")
    out = 0
    for k in ks:
        try:
            n = int(k)
            if n != float(k) or n < 0:
                raise ValueError
        except (TypeError, ValueError):
            raise theory.UnknownAssumption(f"num_speculative_tokens={k!r} is not a count") from None
        out = max(out, n)
    return out


def resolve(arch: dict, dtype: str, engine_args: dict | None = None, quantization: str | None = None) -> Conditions:
    """Establish what the bounds need from the catalog entry (``dtype``, ``quantization``) and the
    engine arguments (vLLM names)."""
    args = dict(engine_args or {})
    unknown: dict[str, str] = {}
    arch_ok = True
    if not _unset(args.get("hf_overrides")) and args.get("hf_overrides") != {}:
        arch_ok, unknown["architecture"] = False, "hf_overrides may change the architecture"
    else:
        try:
            theory.param_counts(arch)
        except (KeyError, TypeError, ValueError) as e:
            arch_ok, unknown["architecture"] = False, f"architecture not understood ({e})"
    prec = None
    eng_dtype = args.get("dtype")
    act = dtype if _unset(eng_dtype) or str(eng_dtype).lower() == "auto" else str(eng_dtype).lower()
    quant = args.get("quantization")
    quant = quantization if _unset(quant) else quant
    try:
        prec = theory.precision(act, quant, args.get("kv_cache_dtype", "auto"))
    except theory.UnknownAssumption as e:
        unknown["precision"] = str(e)
    placement = None
    try:
        placement = theory.Placement.from_engine_args(args)
    except theory.UnknownAssumption as e:
        unknown["placement"] = str(e)
    tps = None
    try:
        tps = speculative_tokens(args) + 1
    except theory.UnknownAssumption as e:
        unknown["speculative"] = str(e)
    disagg = [k for k in ("kv_transfer_config", "kv_connector") if not _unset(args.get(k))]
    caching_off = (
        args.get("enable_prefix_caching") is False or str(args.get("enable_prefix_caching")).lower() == "false"
    )
    return Conditions(prec, placement, tps, caching_off and not disagg, arch_ok, unknown)


def _needs(cond: Conditions, *what: str) -> str | None:
    """Why a bound needing ``what`` cannot be applied (None when it can)."""
    for w in ("architecture", *what):
        if w in cond.unknown:
            return cond.unknown[w]
    return None


def latency_bounds(cond: Conditions, arch: dict, gpu: dict, params: dict) -> list[Bound]:
    """The general-mode bounds (ms) of one vllm-bench-latency iteration."""
    bs, n_in, n_out = int(params["batch_size"]), int(params["input_len"]), int(params["output_len"])
    out = []
    why = _needs(cond, "precision", "placement")
    if why:
        out.append(Bound("latency_compute", None, why))
    else:
        p, pl = cond.precision, cond.placement
        s = theory.latency_compute_floor_s(arch, gpu, bs, n_in, n_out, p, pl, cond.prompt_computed)
        positions = n_in + n_out - 1 if cond.prompt_computed else n_out
        cached = "" if cond.prompt_computed else ", prompt possibly cached (prefix caching not disabled)"
        out.append(
            Bound(
                "latency_compute",
                1e3 * s,
                f"{bs}x{positions} positions x 2*P_active + {bs}x{n_out} LM-head rows at {pl.num_gpus} x "
                f"{gpu['peak_bf16_tflops']} TFLOP/s x {p.compute_factor:g}{cached}",
            )
        )
    why = _needs(cond, "precision", "placement", "speculative")
    if why:
        out.append(Bound("latency_memory", None, why))
    else:
        p, pl, k1 = cond.precision, cond.placement, cond.tokens_per_step
        s = theory.latency_memory_floor_s(arch, gpu, bs, n_in, n_out, p, pl, k1)
        steps = theory.forward_steps(n_out, k1)
        out.append(
            Bound(
                "latency_memory",
                1e3 * s,
                f"{steps} steps x {theory.step_weight_bytes(arch, p) / 1e9:.4g} GB of weights ({p.weights}) "
                f"+ KV ({p.kv_cache}) of {bs} sequences at {pl.num_gpus} x {gpu['hbm_gbps']} GB/s, "
                f"<= {k1} tokens per step",
            )
        )
    return out


def serving_bounds(cond: Conditions, arch: dict, gpu: dict, metric: str, concurrency: float | None) -> list[Bound]:
    """The general-mode bounds of one serving metric (floors in ms, caps in tok/s)."""
    out = []
    if metric in STEP_METRICS or metric == SERVING_THROUGHPUT:
        why = _needs(cond, "precision", "placement", "speculative")
        name = "step_weights" if metric in STEP_METRICS else "throughput_steps"
        if not why and metric == SERVING_THROUGHPUT and not _positive(concurrency):
            why = "max_concurrent_requests unknown"
        if why:
            out.append(Bound(name, None, why, metric == SERVING_THROUGHPUT))
        else:
            p, pl, k1 = cond.precision, cond.placement, cond.tokens_per_step
            w = f"{theory.step_weight_bytes(arch, p) / 1e9:.4g} GB of weights ({p.weights}) per step at {pl.num_gpus} x {gpu['hbm_gbps']} GB/s, <= {k1} tokens per request per step"
            if metric in STEP_METRICS:
                out.append(Bound(name, 1e3 * theory.per_token_floor_s(arch, gpu, p, pl, k1), w))
            else:
                cap = theory.throughput_step_cap(arch, gpu, concurrency, p, pl, k1)
                out.append(Bound(name, cap, f"{concurrency:g} concurrent requests, {w}", True))
    if metric == SERVING_THROUGHPUT:
        why = _needs(cond, "precision", "placement")
        if why:
            out.append(Bound("throughput_compute", None, why, True))
        else:
            p, pl = cond.precision, cond.placement
            out.append(
                Bound(
                    "throughput_compute",
                    theory.throughput_compute_cap(arch, gpu, p, pl),
                    f"2*P_active + 2*V*h FLOPs per output token at {pl.num_gpus} x {gpu['peak_bf16_tflops']} "
                    f"TFLOP/s x {p.compute_factor:g}",
                    True,
                )
            )
    return out


TTFT_METRICS = {"ttft_mean", "ttft_p50", "ttft_p90", "ttft_p99"}


def _missing(v) -> bool:
    try:
        return v is None or bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def assess_ttft(metric: str, value: float, arch: dict, gpu: dict, params: dict, engine_args=None, cond=None) -> Verdict:
    """A first token needs at least the prefill of the part of its prompt no prefix cache can hold
    (``inferlab.tools.bench_serving.uncached_tokens``: the unique suffix / question of a generated
    shared-prefix workload; the whole prompt when prefix caching is off) at peak FLOP/s: a TTFT
    below that floor is a mismeasurement. Workloads of unknown prompt lengths (a dataset file) are
    not bounded."""
    from .tools import bench_serving

    apc_off = any(
        str(v).lower() == "false"
        for v in (params.get("enable_prefix_caching"), (engine_args or {}).get("enable_prefix_caching"))
    )
    tokens = bench_serving.prompt_tokens(params) if apc_off else bench_serving.uncached_tokens(params)
    if not tokens:
        return Verdict(True, None, (), (("ttft_compute", "prompt lengths not fixed by the workload"),))
    factor, gpus = 1.0, 1
    if cond is not None:
        why = _needs(cond, "precision", "placement")
        if why:
            return Verdict(True, None, (), (("ttft_compute", why),))
        factor, gpus = cond.precision.compute_factor, cond.placement.num_gpus
    floor = 1e3 * theory.flops_per_token(arch) * int(tokens) / (gpus * gpu["peak_bf16_tflops"] * 1e12 * factor)
    what = "whole prompt (prefix caching off)" if apc_off else "uncached part of the prompt"
    detail = (
        f"prefill of the {what}, {int(tokens)} tokens x 2*P_active at {gpus} x {gpu['peak_bf16_tflops']} "
        f"TFLOP/s x {factor:g}"
    )
    return _judge(value, "ms", [Bound("ttft_compute", floor, detail)], gpu)


def _judge(value: float, unit: str, bounds: list[Bound], gpu: dict) -> Verdict:
    applied = tuple(b.name for b in bounds if b.limit is not None)
    skipped = tuple((b.name, b.detail) for b in bounds if b.limit is None)
    broken = []
    for b in bounds:
        if b.limit is None:
            continue
        if b.is_cap and value > b.limit:
            broken.append(f"{value:.4g} {unit} exceeds the {b.name} cap {b.limit:.4g} {unit} ({b.detail})")
        elif not b.is_cap and value < b.limit:
            broken.append(f"{value:.4g} {unit} is below the {b.name} bound {b.limit:.4g} {unit} ({b.detail})")
    if not broken:
        return Verdict(True, None, applied, skipped)
    tail = f"bounds applied: {', '.join(applied)}"
    if skipped:
        tail += "; skipped: " + "; ".join(f"{n} ({w})" for n, w in skipped)
    reason = (
        f"{'; '.join(broken)} on {gpu.get('name', 'this GPU')}: faster than physics allows, "
        f"a cache hit or a mismeasurement, not an execution of this work [{tail}]"
    )
    return Verdict(False, reason, applied, skipped)


def _course_serving(metric, value, arch, dtype, gpu, concurrency):
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


def assess_serving(
    metric: str,
    value: float,
    arch: dict,
    dtype: str,
    gpu: dict,
    concurrency: float | None,
    *,
    engine_args: dict | None = None,
    quantization: str | None = None,
    conditions: Conditions | None = None,
) -> Verdict:
    """``Verdict`` for one serving value (TPOT/ITL in ms, output throughput in tok/s)."""
    if metric not in STEP_METRICS and metric != SERVING_THROUGHPUT or value is None or pd.isna(value):
        return Verdict(True)
    if conditions is None and _course_mode(engine_args, quantization):
        ok, why = _course_serving(metric, value, arch, dtype, gpu, concurrency)
        if metric in STEP_METRICS:
            return Verdict(ok, why, ("course_step",))
        return Verdict(
            ok,
            why,
            ("course_throughput",) if concurrency else (),
            () if concurrency else (("course_throughput", "max_concurrent_requests unknown"),),
        )
    cond = conditions or resolve(arch, dtype, engine_args, quantization)
    unit = "ms" if metric in STEP_METRICS else "tok/s"
    return _judge(value, unit, serving_bounds(cond, arch, gpu, metric, concurrency), gpu)


def check_serving(
    metric: str,
    value: float,
    arch: dict,
    dtype: str,
    gpu: dict,
    concurrency: float | None,
    *,
    engine_args: dict | None = None,
    quantization: str | None = None,
):
    """(valid, reason) for one serving value; see ``assess_serving``."""
    if _course_mode(engine_args, quantization):
        return _course_serving(metric, value, arch, dtype, gpu, concurrency)
    return assess_serving(
        metric, value, arch, dtype, gpu, concurrency, engine_args=engine_args, quantization=quantization
    ).as_tuple()


def _course_value(metric, value, unit, arch, dtype, gpu, params):
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


def assess_value(
    metric: str,
    value: float,
    unit: str,
    arch: dict,
    dtype: str,
    gpu: dict,
    params: dict,
    *,
    engine_args: dict | None = None,
    quantization: str | None = None,
    conditions: Conditions | None = None,
) -> Verdict:
    """``Verdict`` for one vllm-bench-latency value (``latency_*`` in ms, per output token in ms/token)."""
    if value is None or pd.isna(value) or (metric not in LATENCY_METRICS and metric != "latency_per_output_token"):
        return Verdict(True)
    if conditions is None and _course_mode(engine_args, quantization):
        ok, why = _course_value(metric, value, unit, arch, dtype, gpu, params)
        return Verdict(ok, why, ("course_latency",))
    cond = conditions or resolve(arch, dtype, engine_args, quantization)
    bounds = latency_bounds(cond, arch, gpu, params)
    if metric == "latency_per_output_token":
        n_out = int(params["output_len"])
        bounds = [Bound(b.name, None if b.limit is None else b.limit / n_out, b.detail) for b in bounds]
    return _judge(value, unit, bounds, gpu)


def check_value(
    metric: str,
    value: float,
    unit: str,
    arch: dict,
    dtype: str,
    gpu: dict,
    params: dict,
    *,
    engine_args: dict | None = None,
    quantization: str | None = None,
):
    """(valid, reason) for one value; see ``assess_value``."""
    if value is None or pd.isna(value):
        return True, None
    if _course_mode(engine_args, quantization):
        return _course_value(metric, value, unit, arch, dtype, gpu, params)
    return assess_value(
        metric, value, unit, arch, dtype, gpu, params, engine_args=engine_args, quantization=quantization
    ).as_tuple()


KV_TRANSFER_THROUGHPUT = "kv_transfer_throughput"


def assess_kv_transfer(mib_per_s: float, gpu: dict) -> Verdict:
    """A P/D pair's KV transfer throughput (MiB/s, inferlab.scrape.kv_transfer_rows) against the
    fastest path any KV can take between two servers of one node: no faster than the GPU's HBM
    bandwidth (two servers on one GPU copy within its memory; NVLink and PCIe are slower still),
    so the bound never flags a real transfer, whichever link carried it."""
    bw = gpu.get("hbm_gbps")
    if not bw:
        return Verdict(True, None, (), (("kv_transfer", "the GPU's memory bandwidth is unknown"),))
    gbps = mib_per_s * 2**20 / 1e9
    if gbps > bw:
        return Verdict(
            False,
            f"KV transfer at {gbps:.4g} GB/s is above {gpu.get('name', 'this GPU')}'s memory bandwidth {bw} GB/s, "
            "the fastest path KV can take between two servers: a mismeasurement, not a transfer",
            ("kv_transfer",),
        )
    return Verdict(True, None, ("kv_transfer",))


def apply(
    df: pd.DataFrame,
    arch: dict,
    dtype: str,
    gpu: dict,
    *,
    engine_args: dict | None = None,
    quantization: str | None = None,
    bounds_column: str | None = None,
) -> pd.DataFrame:
    """Mark every row of one cell's (or one GPU's) frame; ``param_*`` columns give the parameters.

    ``engine_args`` (the cell's engine/server arguments) and ``quantization`` (the catalog entry's)
    select the general bounds. ``bounds_column``: also write, per checked row, the bounds applied and
    skipped (e.g. ``"applied: latency_compute, latency_memory"``) into that column. The frame's
    ``attrs["guard"]`` (general mode) lists the bounds applied and skipped over the whole frame."""
    df = df.copy()
    course = _course_mode(engine_args, quantization)
    cond = None if course else resolve(arch, dtype, engine_args, quantization)
    applied: set[str] = set()
    skipped: dict[str, str] = {}

    def mark(i, v: Verdict):
        applied.update(v.applied)
        skipped.update(dict(v.skipped))
        if bounds_column is not None:
            text = "applied: " + (", ".join(v.applied) or "none")
            if v.skipped:
                text += "; skipped: " + "; ".join(f"{n} ({w})" for n, w in v.skipped)
            df.at[i, bounds_column] = text
        if not v.valid:
            df.at[i, "valid"] = False
            df.at[i, "invalid_reason"] = v.reason
            df.at[i, "value"] = None

    if bounds_column is not None and bounds_column not in df:
        df[bounds_column] = pd.Series([None] * len(df), index=df.index, dtype="string")
    pcols = [c for c in df.columns if c.startswith("param_")]
    if (df["tool"] == "bench_serving").any():
        conc = {}
        for key, g in df[df.metric == "max_concurrent_requests"].groupby(["experiment", "engine", "cell"]):
            c = g["raw_value"].iloc[0]
            conc[key] = c if _positive(c) else None  # a missing count (NA) means no throughput cap
        for i, (metric, raw, e, en, c) in zip(
            df.index,
            df[["metric", "raw_value", "experiment", "engine", "cell"]].itertuples(index=False, name=None),
            strict=True,
        ):
            if metric in TTFT_METRICS and raw is not None and not pd.isna(raw):
                params = {k[len("param_") :]: df.at[i, k] for k in pcols if not _missing(df.at[i, k])}
                mark(i, assess_ttft(metric, raw, arch, gpu, params, engine_args, cond))
                continue
            if metric == KV_TRANSFER_THROUGHPUT and raw is not None and not pd.isna(raw):
                mark(i, assess_kv_transfer(raw, gpu))
                continue
            if metric not in STEP_METRICS and metric != SERVING_THROUGHPUT or raw is None or pd.isna(raw):
                continue
            mark(i, assess_serving(metric, raw, arch, dtype, gpu, conc.get((e, en, c)), conditions=cond))
    elif {"param_batch_size", "param_input_len", "param_output_len"} <= set(pcols):
        names = [c[len("param_") :] for c in pcols]
        cols = ["metric", "raw_value", "unit", *pcols]
        for i, (metric, raw, unit, *vals) in zip(df.index, df[cols].itertuples(index=False, name=None), strict=True):
            if metric not in LATENCY_METRICS and metric != "latency_per_output_token":
                continue
            if raw is None or pd.isna(raw):
                continue
            params = dict(zip(names, vals, strict=True))
            mark(i, assess_value(metric, raw, unit, arch, dtype, gpu, params, conditions=cond))
    if not course:  # course mode leaves the frame exactly as before (attrs travel into Parquet metadata)
        df.attrs["guard"] = {"applied": sorted(applied), "skipped": dict(sorted(skipped.items()))}
    return df

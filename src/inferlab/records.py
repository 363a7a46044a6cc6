"""The normalized metrics schema (version 1): one row per (cell, metric), same columns for every
engine and tool. Documented in docs/schema.md; ``COLUMNS`` is the source of truth.

Parameters become columns named ``param_<name>`` (so they can never collide with the fixed
columns). A cell that did not yield a number still has one row per metric its tool would have
produced, with ``value`` null and ``status``/``reason``/``log_tail`` saying why: a table built from
these rows shows "OOM" or "skipped" in that place, never a hole and never a number.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from . import engines as engines_mod
from .engines import serving as serving_mod
from .telemetry import POOL_KEYS

SCHEMA_VERSION = 3
# v3: + columns configuration, repeat, measured_by, lengths; swept server arguments as param_<name> columns.
# v1: Week 3 (vllm bench latency). v2: + columns client, server_port, telemetry; serving, offline
# throughput, NVML telemetry and kernel-time-share metrics. v1 files read as v2 with the new columns null.

COLUMNS: dict[str, tuple[str, str]] = {
    # name: (pandas dtype, meaning)
    "schema_version": ("int64", "version of this schema"),
    "week": ("string", "course week id, e.g. week03"),
    "experiment": ("string", "experiment id inside the week"),
    "engine": ("string", "serving engine id (vllm, sglang)"),
    "gpu": ("string", "accelerator id from config/gpus.yaml"),
    "model": ("string", "model id from config/models.yaml"),
    "configuration": ("string", "engine configuration id (swept server arguments), e.g. apc-mnbt512; default"),
    "cell": ("string", "cell id (swept parameters), e.g. bs16"),
    "repeat": ("int64", "trial number (1..repeats) when the experiment repeats its cells; 0 otherwise"),
    "tool": ("string", "benchmark tool, e.g. vllm_bench_latency"),
    "metric": ("string", "metric name, e.g. latency_avg"),
    "value": ("float64", "the measurement; null when status != ok or when invalid"),
    "unit": ("string", "unit of value (ms, ms/token, tok/s, ...)"),
    "definition": ("string", "what the metric means, where engines differ"),
    "status": ("string", "ok | failed | skipped"),
    "reason": (
        "string",
        "failure class: oom, timeout, engine_error, client_error, parse_error, "
        "cancelled, engine_unavailable, server_died (null when ok)",
    ),
    "detail": ("string", "human-readable detail of the failure"),
    "log_tail": ("string", "last lines of the engine log for failed cells"),
    "valid": ("boolean", "false when the value breaks physics (roofline guard)"),
    "invalid_reason": ("string", "why the guard rejected the value"),
    "raw_value": ("float64", "the value as measured, kept even when the guard invalidates it"),
    "started_at": ("string", "UTC start of the cell"),
    "wall_s": ("float64", "wall time of the cell job's benchmark step (s)"),
    "engine_version": ("string", "engine version in the cell's environment"),
    "torch_version": ("string", "torch version in the cell's environment"),
    "host": ("string", "host the cell ran on"),
    "slurm_job_id": ("string", "Slurm job id, if any"),
    "git_commit": ("string", "workflow commit the cell ran from"),
    "prefix_caching": ("string", "enabled | disabled | engine default"),
    "client": ("string", "the load client of a serving cell (vllm bench serve, sglang.benchmark.serving)"),
    "server_port": ("string", "port the cell's server was started on (probed free)"),
    "telemetry": ("string", "ok | unavailable: <why> (NVML GPU telemetry of the cell)"),
    "command": ("string", "the exact command line"),
    "measured_by": ("string", "driver (one engine start per configuration) | cli (one per cell) | server"),
    "lengths": (
        "string",
        "achieved vs requested token counts: ok | mismatch: <what> (beyond LENGTH_TOLERANCE) | null = not known",
    ),
}
# A cell whose achieved output (or prompt) tokens differ from the requested by more than this
# fraction is flagged (e.g. EOS ending generations early, a client truncating prompts)
LENGTH_TOLERANCE = 0.02


def record_to_frame(record: dict, raw_path: Path | None, engine: engines_mod.Engine | None = None) -> pd.DataFrame:
    """Rows for one cell record (and its raw output when the cell succeeded)."""
    prov = record.get("provenance", {})
    ev = prov.get("engine_versions", {}) or {}
    base = {
        "schema_version": SCHEMA_VERSION,
        **{k: record[k] for k in ("week", "experiment", "engine", "gpu", "model", "cell", "tool")},
        "configuration": record.get("configuration", "default"),
        "repeat": record.get("repeat", 0),
        "measured_by": record.get("measured_by")
        or prov.get("measured_by")
        or ("server" if prov.get("client") else "cli"),
        "lengths": check_lengths(record.get("lengths")),
        "status": record["status"],
        "reason": record.get("reason"),
        "detail": record.get("detail"),
        "log_tail": record.get("log_tail") if record["status"] != "ok" else None,
        "started_at": record.get("started_at"),
        "wall_s": record.get("wall_s"),
        "engine_version": ev.get(record["engine"]) or ev.get(f"{record['engine']}-cpu"),
        "torch_version": ev.get("torch"),
        "host": prov.get("host"),
        "slurm_job_id": (prov.get("slurm") or {}).get("SLURM_JOB_ID"),
        "git_commit": (prov.get("workflow_git") or {}).get("commit"),
        "prefix_caching": prov.get("prefix_caching"),
        "client": prov.get("client"),
        "server_port": None if prov.get("server_port") is None else str(prov["server_port"]),
        "telemetry": (record.get("telemetry") or {}).get("telemetry"),
        "command": " ".join(prov["command"]) if prov.get("command") else None,
    }
    name = record["engine"]
    if engine is None and name not in engines_mod.ENGINES:
        # an engine variant (config/engines.yaml `base:`, e.g. vllm_lmcache) parses as its base adapter
        name = next((e for e in engines_mod.ENGINES if name.startswith(e + "_")), name)
    eng = engine or engines_mod.get(name)(None, {})
    metrics = None
    if record["status"] == "ok":
        try:
            metrics = eng.parse(record["tool"], raw_path, record["params"])
        except Exception as e:
            base.update(status="failed", reason="parse_error", detail=f"{e.__class__.__name__}: {e}")
    if metrics is None:
        metrics = [
            {"metric": m, "value": None, "unit": u, "definition": None} for m, u in eng.metric_names(record["tool"])
        ]
        if not metrics:  # a tool with no known metrics still leaves a row
            metrics = [{"metric": "status", "value": None, "unit": None, "definition": None}]
    if record["status"] == "ok" and base["status"] == "ok":
        prof = record.get("profile")
        if prof:
            src = prof.get("source", "")
            for cat, pct in prof["share_pct"].items():
                metrics = metrics + [
                    {
                        "metric": f"kernel_time_share_{cat}",
                        "value": float(pct),
                        "unit": "%",
                        "definition": f"share of profiled time in {cat} ({src}; patterns in inferlab/profile.py)",
                    }
                ]
            ar = prof.get("allreduce")
            if ar and ar.get("share_pct") is not None:
                how = f"all-reduce via {ar['impl']} ({ar['source']}; inferlab/profile.py ALLREDUCE)"
                metrics = metrics + [
                    {"metric": "allreduce_time_share", "value": float(ar["share_pct"]), "unit": "%", "definition": how},
                    {"metric": "allreduce_calls", "value": float(ar["calls"]), "unit": "calls", "definition": how},
                    {"metric": "allreduce_time", "value": ar["allreduce_us"] / 1e3, "unit": "ms", "definition": how},
                ]
        # server-side rows (inferlab.scrape: /metrics deltas and gauges of the cell) and the engine's
        # start-up rows (inferlab.startlog: KV capacity, load / compile / graph-capture times)
        for extra in (record.get("server_metrics") or [], record.get("engine_startup") or []):
            metrics = metrics + [
                {k: m.get(k) for k in ("metric", "value", "unit", "definition")}
                for m in extra
                if m.get("value") is not None
            ]
        ln = record.get("lengths") or {}
        for side in ("requested", "achieved"):
            for k in ("output_tokens", "prompt_tokens"):
                v = (ln.get(side) or {}).get(k)
                if v is not None:
                    metrics = metrics + [
                        {"metric": f"{side}_{k}", "value": float(v), "unit": "tokens", "definition": ln.get("source")}
                    ]
        telem = record.get("telemetry") or {}
        for k, (unit, d) in serving_mod.TELEMETRY.items():
            if telem.get(k) is not None:
                metrics = metrics + [{"metric": k, "value": float(telem[k]), "unit": unit, "definition": d}]
        for pool, nums in (telem.get("pools") or {}).items():  # a layout's GPUs per member (P/D)
            for k in POOL_KEYS:
                if nums.get(k) is not None:
                    unit, d = serving_mod.TELEMETRY[k]
                    gpus = ", ".join(str(g) for g in nums.get("gpus", []))
                    d = f"{pool} server's GPU(s) only (NVML {gpus}): {d}"
                    metrics = metrics + [
                        {"metric": f"{k}_{pool}", "value": float(nums[k]), "unit": unit, "definition": d}
                    ]
    rows = []
    for m in metrics:
        rows.append({**base, **m, "raw_value": m.get("value"), "valid": True, "invalid_reason": None})
    # built column by column with the schema's dtypes (one cast per column, not one per cell)
    data = {c: pd.array([r.get(c) for r in rows], dtype=dt) for c, (dt, _) in COLUMNS.items()}
    # one column per parameter and per swept server argument (an axis of the experiment)
    axes = {**record["params"], **record.get("server_axes", {})}
    for k in sorted(axes):
        data[f"param_{k}"] = [axes[k]] * len(rows)
    return pd.DataFrame(data)


def check_lengths(lengths: dict | None, tolerance: float = LENGTH_TOLERANCE) -> str | None:
    """``ok``, or ``mismatch: ...`` naming what differs beyond ``tolerance``; None when the
    cell's tool or engine gives no count to compare."""
    if not lengths:
        return None
    req, got = lengths.get("requested") or {}, lengths.get("achieved") or {}
    bad = []
    for k in ("output_tokens", "prompt_tokens", "requests"):
        r, a = req.get(k), got.get(k)
        if r is None or a is None:
            continue
        if r == 0:
            if a != 0:
                bad.append(f"{k} {a:g} of 0 requested")
            continue
        if abs(a / r - 1) > tolerance:
            bad.append(f"{k} {a:g} of {r:g} requested ({100 * (a / r - 1):+.1f}%)")
    return "mismatch: " + "; ".join(bad) if bad else "ok"


# what a column holds in rows written before it existed (v1/v2 files read as v3)
FILL = {"repeat": 0, "schema_version": SCHEMA_VERSION}


def normalize(df: pd.DataFrame) -> pd.DataFrame:
    """Cast to the schema's dtypes; column order: schema columns, then param_* sorted."""
    for col, (dtype, _) in COLUMNS.items():
        if col not in df:
            # older schema versions lack a column: its value for them (repeat 0 = not repeated)
            df[col] = FILL.get(col)
        elif col in FILL:
            df[col] = df[col].fillna(FILL[col])
        df[col] = df[col].astype(dtype)
    params = sorted(c for c in df.columns if c.startswith("param_"))
    for c in params:
        # a parameter swept over numbers and a word (request_rate 1, 4, 10, "inf") is text in the
        # week's Parquet: one column, one type
        kinds = {type(v) for v in df[c].dropna()}
        if len(kinds) > 1 and str in kinds:
            df[c] = df[c].map(lambda v: None if v is None or (isinstance(v, float) and v != v) else str(v))
    return df[list(COLUMNS) + params]


def read_record(path) -> dict:
    return json.loads(Path(path).read_text())


def schema_markdown() -> str:
    lines = [
        f"# Normalized metrics schema (version {SCHEMA_VERSION})",
        "",
        "Stage 3 writes one Parquet file per cell (`results/<week>/<experiment>/<engine>/<gpu>/<configuration>/<cell>/"
        "metrics.parquet`), one row per metric. Generated from `inferlab.records.COLUMNS`; "
        "`tests/test_records.py` fails if this file is out of date.",
        "",
        "| column | type | meaning |",
        "|---|---|---|",
    ]
    for c, (t, m) in COLUMNS.items():
        lines.append(f"| `{c}` | {t} | {m} |")
    lines += [
        "| `param_<name>` | as configured | every parameter of the cell (swept and fixed) and every swept server argument |",
        "",
        "## Metric definitions",
        "",
        "- `latency_avg`, `latency_p{10,25,50,75,90,99}` (ms): wall time of one `generate()` call of the",
        "  whole batch in `vllm bench latency` (batch_size prompts of input_len tokens, output_len new tokens).",
        "- `latency_per_output_token` (ms/token) = `latency_avg / output_len`; includes the prefill, as the",
        "  course's Week 3 decode table does.",
        "- Week 3's prefill latency is `latency_avg` of a cell with `output_len = 1`.",
        "",
        "Serving cells (`tool` = `bench_serving`; `client` names the load client):",
        "",
    ]
    for m, d in serving_mod.LATENCIES.items():
        lines.append(f"- `{m}_{{mean,p50,p90,p99}}` (ms): {d}.")
    for k, (u, d) in {**serving_mod.COUNTS, **serving_mod.TELEMETRY}.items():
        lines.append(f"- `{k}` ({u}): {d}.")
    lines += [
        "- `offline_total_token_throughput` (tok/s), `offline_request_throughput` (req/s), `offline_elapsed` (s),",
        "  `offline_total_tokens`, `offline_requests`: `vllm bench throughput` (prompt + generated tokens; it",
        "  reports no output-token rate).",
        "- `kernel_time_share_{gemm,attention,norm_elementwise,other}` (%): a profile cell's trace split by",
        "  kernel/operator name patterns (`inferlab/profile.py`): GPU kernels on a GPU, CPU operators' self",
        "  time on the CPU default.",
        "- `allreduce_time_share` (%), `allreduce_time` (ms), `allreduce_calls`: the same trace's all-reduce",
        "  kernels/operators (`inferlab/profile.py` ALLREDUCE; the definition names the implementation:",
        "  flashinfer, custom_ar, nccl, ..., gloo or shm on the CPU).",
        "- `expert_load_*`, `expert_share_e<i>` (%): an MoE model's routing histogram (`expert_load` tool).",
        "- Telemetry rows are present only where NVML saw the GPU; the `telemetry` column says",
        "  `unavailable: <why>` otherwise (the CPU default).",
        "",
        "## Versions",
        "",
        "- v1: Week 3 (`vllm bench latency`).",
        "- v2: + columns `client`, `server_port`, `telemetry`; serving, offline-throughput, telemetry and",
        "  kernel-time-share metrics. v1 files read as v2 with the new columns null.",
        "- v3: + columns `configuration` (engine configuration id: the swept server arguments, `default`",
        "  when none), `repeat`, `measured_by`, `lengths` (achieved vs requested tokens, flagged beyond",
        f"  {100 * LENGTH_TOLERANCE:g}%: driver counts, or the server's max_tokens vs generated-tokens histograms);",
        "  swept server arguments become `param_<name>` columns like",
        "  the tool's parameters (one column per axis). Older files read with `configuration` null.",
        "",
        "## Status and validity",
        "",
        "- `status` ok | failed | skipped; `reason` classifies failures; `value` is null unless ok.",
        "- `valid` is false when the roofline guard finds the value faster than physics allows on that GPU;",
        "  `value` is then null, `raw_value` keeps the measurement and `invalid_reason` says why.",
    ]
    return "\n".join(lines) + "\n"

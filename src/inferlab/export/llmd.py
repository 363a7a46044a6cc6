"""Export cells in the llm-d Benchmark Report format, version 0.2, for tools outside this project.

    python -m inferlab.export.llmd results/week01/week01.parquet --out exports/week01 [--records results]

One YAML file per cell, ``<out>/<week>/<experiment>/<engine>/<gpu>/<configuration>/<cell>/
benchmark_report_v0.2,_<cell>.yaml``: llm-d-benchmark writes its reports under that name
(``benchmark_report_v0.2,_<native results file>.yaml``), its analysis and results store find them
with ``benchmark_report_v0.2*.yaml`` globs, and its ``import_benchmark_report()`` reads the file
(``yaml.safe_load``, version detected from ``version``). ``--records`` adds what only a cell's
record has (GPU name, server command line, end time); without it the report is built from the
Parquet rows alone.

Source of the format
--------------------
The pydantic model ``BenchmarkReportV02`` of llm-d-benchmark (github.com/llm-d/llm-d-benchmark),
read at commit 8bc9f1ddd873a24f1657d6cca2e0d0fb6947dd36 (2026-08-21):
``llmdbenchmark/analysis/benchmark_report/schema_v0_2.py`` (last changed in 2a46f34c),
``schema_v0_2_components.py`` (the ``inference_engine`` and ``generic`` stack components),
``base.py`` (the ``Units`` strings) and ``core.py`` (``load_benchmark_report``: ``version: "0.2"``).
It is not on PyPI (llm-d installs it into its harness image as ``benchmark-report``), so
``tests/test_export_llmd.py`` checks the reports against a JSON Schema written from that source,
and against the model itself where it is importable as ``benchmark_report``.

The v0.2 top level is ``version``, ``run`` (``uid`` required), ``scenario`` (``stack``: components,
``load``: the workload generator) and ``results`` (required; ``request_performance.aggregate``
with ``requests``, ``latency`` and ``throughput``, plus ``observability``, ``profiling``,
``component_health``). v0.1's top-level ``metrics`` is gone in v0.2. Every statistic is a
``Statistics`` object: ``units`` and ``mean`` required, then ``stddev``, ``min``, ``p10``, ``p25``,
``p50``, ``p75``, ``p90``, ``p99``, ``max``, ...

Units
-----
Latencies stay in milliseconds: v0.2 accepts ``ms`` and ``s`` for TTFT and request latency and
``ms/token`` and ``s/token`` for TPOT/ITL/NTPOT, and llm-d's own ``vllm bench serve`` importer
keeps ``ms`` too. TPOT and ITL, which our rows label ``ms``, are labelled ``ms/token`` (the same
numbers: they are per output token by definition; v0.2 rejects a plain time unit there). Rates
become ``tokens/s`` and ``queries/s``, ``%`` becomes ``percent``, ``W`` becomes ``Watts``. A row in
a unit the table below does not expect is converted where it is a time (``s`` <-> ``ms``) and
refused otherwise (``ValueError``), never relabelled.

Mapping (``results.request_performance.aggregate`` shortened to ``agg``)
------------------------------------------------------------------------
=========================================  ===============================================  ==========
inferlab metric (unit)                     llm-d v0.2 field                                 units
=========================================  ===============================================  ==========
ttft_{mean,p50,p90,p99} (ms)               agg.latency.time_to_first_token.{mean,p50,..}    ms
tpot_{mean,p50,p90,p99} (ms)               agg.latency.time_per_output_token.{..}           ms/token
itl_{mean,p50,p90,p99} (ms)                agg.latency.inter_token_latency.{..}             ms/token
e2el_{mean,p50,p90,p99} (ms)               agg.latency.request_latency.{..}                 ms
request_throughput (req/s)                 agg.throughput.request_rate.mean                 queries/s
output_throughput (tok/s)                  agg.throughput.output_token_rate.mean            tokens/s
total_token_throughput (tok/s)             agg.throughput.total_token_rate.mean             tokens/s
completed + failed (requests)              agg.requests.total                               (int)
failed (requests)                          agg.requests.failures                            (int)
total_input_tokens / completed             agg.requests.input_length.mean                   count
total_output_tokens / completed            agg.requests.output_length.mean                  count
latency_avg, latency_p{10,..,99} (ms)      agg.latency.request_latency.{mean,p10,..,p99}    ms
  (vllm bench latency: one generate() of the whole batch; every request of the batch ends with
  it (fixed output length), so it is each request's latency; percentiles are over iterations)
latency_per_output_token (ms/token)        agg.latency.normalized_time_per_output_token     ms/token
  (latency_avg / output_len, prefill included: v0.2's NTPOT)
offline_total_token_throughput (tok/s)     agg.throughput.total_token_rate.mean             tokens/s
offline_request_throughput (req/s)         agg.throughput.request_rate.mean                 queries/s
offline_requests (requests)                agg.requests.total                               (int)
gpu_util_mean, gpu_util_max (%)            results.observability.components[engine]        percent
                                             .aggregate.gpu_utilization.{mean,max}
power_mean_w (W)                           ...aggregate.power_consumption.mean              Watts
kernel_time_share_<cat> (%)                results.profiling.kernel_time_share.<cat>        percent
                                             (v0.2 leaves ``profiling`` free-form)
=========================================  ===============================================  ==========

Not expressible in v0.2, so not exported (the Parquet keeps them): ``duration`` (the benchmark's
own window; ``run.time`` is the cell's), ``max_concurrent_requests`` (observed, while
``load.concurrency`` is the configured cap), ``mem_used_max_mib`` (a maximum without a mean; a
``Statistics`` needs a mean), ``energy_j``, ``j_per_output_token``, ``offline_elapsed``,
``offline_total_tokens`` (prompt + generated together; v0.2 has no such count). A latency family
whose mean is missing (e.g. rejected by the roofline guard) is left out whole, for the same reason.

Scenario and run
----------------
- ``scenario.stack[0]``: ``kind: inference_engine``; ``tool`` = engine id, ``tool_version`` = its
  version (``unknown`` when the cell never started it), ``role: replica``, ``replicas: 1``,
  ``model.name`` = our model id, ``accelerator.model`` = the GPU's name from the record's NVML
  provenance (else our gpu id), ``accelerator.count`` = tp x pp x dp (0 on the ``cpu`` default),
  ``parallelism`` from ``tensor/pipeline/data_parallel_size``; ``native.args`` = the server's
  command line (serving) or the engine arguments (offline), from the record.
- ``scenario.stack[1]``: ``kind: generic``, ``tool: inferlab``, ``tool_version`` = the workflow
  commit; its extra fields (``generic`` allows them) carry the cell's identity, ``status``,
  ``reason``, ``detail``, provenance and parameters.
- ``scenario.load``: ``tool`` = ``vllm-benchmark`` (llm-d's name for ``vllm bench serve``), the
  SGLang client's name, ``vllm-bench-latency`` or ``vllm-bench-throughput``; ``tool_version`` =
  the engine version (the clients ship with the engine); ``source`` = ``random`` (``vllm bench
  latency``, a ``random`` dataset), ``sampled`` (ShareGPT-format datasets) or ``unknown``;
  ``input_seq_len``/``output_seq_len`` ``fixed`` from ``input_len``/``output_len`` parameters,
  else the measured mean input length (``distribution: other``); ``rate_qps`` = ``request_rate``
  (left out when ``inf``); ``concurrency`` = ``max_concurrency``, or ``batch_size`` for
  ``vllm bench latency``; ``native.args`` = the client's command line, ``native.config.params`` =
  every ``param_*``. v0.2 requires ``input_seq_len``, so a cell where it is unknown (a failed
  serving cell, ``vllm bench throughput`` on a dataset) has no ``load``.
- ``run.uid``/``run.eid``: UUID5 of the cell path and start time / of ``<week>/<experiment>``;
  ``run.time`` from ``started_at``, the record's ``finished_at`` and ``wall_s``; ``run.description``
  = ``<model> [inferlab <week>/<experiment>/<engine>/<gpu>/<configuration>/<cell>]`` (llm-d's
  ``<model> [<experiment id>]`` label) plus the status of a cell that is not ok; ``run.keywords``
  name the cell's path segments and ``status:<status>``, ``reason:<reason>``.

Failed and skipped cells
------------------------
v0.2 has ``requests.failures`` (requests that errored) and ``component_health`` (replica restarts
and health) but no field for a benchmark run that produced no numbers. Such a cell is exported
with ``results`` holding no ``request_performance`` (no number is made up), its status and reason
in ``run.description``, ``run.keywords`` and the ``inferlab`` stack component, and, when the
engine itself failed (``oom``, ``engine_error``, ``server_died``), a ``component_health`` entry
marking the engine replica unhealthy. ``--skip-failed`` leaves such cells out instead, printing
why. Values the roofline guard rejected (``valid`` false) are never exported; the description
names them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import shlex
import sys
import uuid
from pathlib import Path

import pandas as pd
import yaml

from .. import io

VERSION = "0.2"
FILENAME = "benchmark_report_v0.2,_{cell}.yaml"
KEY = ("week", "experiment", "engine", "gpu", "configuration", "cell", "repeat")
NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/llm-d/llm-d-benchmark#inferlab")
ENGINE_FAILURES = ("oom", "engine_error", "server_died")

# our latency family -> (v0.2 field under agg.latency, v0.2 units)
SERVING_LATENCY = {
    "ttft": ("time_to_first_token", "ms"),
    "tpot": ("time_per_output_token", "ms/token"),
    "itl": ("inter_token_latency", "ms/token"),
    "e2el": ("request_latency", "ms"),
}
# Statistics fields in the order they are written
STAT_ORDER = ("mean", "stddev", "min", "p10", "p25", "p50", "p75", "p90", "p95", "p99", "max")
LOAD_TOOL = {
    "vllm_bench_latency": "vllm-bench-latency",
    "vllm_bench_throughput": "vllm-bench-throughput",
}
CLIENT_TOOL = {"vllm bench serve": "vllm-benchmark"}  # llm-d's WorkloadGenerator.VLLM_BENCHMARK

_TIME = {"ms": 1e-3, "s": 1.0}
_ALIASES = {
    "tokens/s": ("tok/s", "tokens/s"),
    "queries/s": ("req/s", "queries/s"),
    "percent": ("%", "percent"),
    "Watts": ("W", "Watts"),
    "count": ("requests", "tokens", "count"),
}


def convert(value: float, unit: str | None, target: str) -> float:
    """``value`` in our ``unit`` expressed in the v0.2 unit ``target``; ValueError where it is not the
    same quantity (a unit is never just relabelled)."""
    if target in _TIME or target in ("ms/token", "s/token"):
        base = (unit or "").removesuffix("/token")
        to = target.removesuffix("/token")
        if base in _TIME:
            return value * _TIME[base] / _TIME[to]
    elif unit in _ALIASES.get(target, ()):
        return value
    raise ValueError(f"cannot express {unit!r} as {target!r}")


def _py(v):
    """A Parquet cell as a plain Python value (None for null), fit for YAML."""
    if v is None or v is pd.NA:
        return None
    if hasattr(v, "item"):  # numpy scalars
        v = v.item()
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


def _first(rows: pd.DataFrame, col: str, default=None):
    if col not in rows:
        return default
    vals = [x for x in (_py(v) for v in rows[col]) if x is not None]
    return vals[0] if vals else default


def _hash(obj) -> str:
    """llm-d's ``config_hash``: sha256 of the canonical JSON."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _drop_none(d: dict) -> dict:
    return {k: v for k, v in d.items() if v is not None}


def parse_args(tokens) -> dict:
    """A command line as llm-d's ``native.args``: ``{flag without dashes: value or None}``; the
    executable, subcommands and positionals before the first flag are left out."""
    if isinstance(tokens, str):
        tokens = shlex.split(tokens)
    tokens = list(tokens or [])
    out: dict = {}
    i = 0
    while i < len(tokens):
        t = tokens[i]
        if not t.startswith("--"):
            i += 1
            continue
        k = t[2:]
        if "=" in k:
            k, v = k.split("=", 1)
            out[k] = v
            i += 1
        elif i + 1 < len(tokens) and not tokens[i + 1].startswith("--"):
            out[k] = tokens[i + 1]
            i += 2
        else:
            out[k] = None
            i += 1
    return out


def cell_status(rows: pd.DataFrame) -> tuple[str, str | None, str | None]:
    """(status, reason, detail) of one cell's rows: ok only when every row is."""
    statuses = {str(s) for s in rows["status"].dropna()}
    for status in ("failed", "skipped"):
        if status in statuses:
            bad = rows[rows["status"] == status]
            return status, _first(bad, "reason"), _first(bad, "detail")
    return "ok", None, None


def _values(rows: pd.DataFrame) -> tuple[dict, list[str]]:
    """{metric: (value, unit)} of the rows that carry a valid number, and the metrics the
    roofline guard rejected."""
    out, invalid = {}, []
    for r in rows.itertuples(index=False):
        if str(r.status) != "ok":
            continue
        valid = _py(getattr(r, "valid", True))
        if valid is False:
            invalid.append(r.metric)
            continue
        v = _py(r.value)
        if v is not None:
            out[str(r.metric)] = (float(v), _py(r.unit))
    return out, invalid


def _statistics(vals: dict, names: dict[str, str], units: str) -> dict | None:
    """A v0.2 ``Statistics`` from our metrics ``names`` (our metric -> field); None without a mean."""
    got = {field: convert(*vals[m], units) for m, field in names.items() if m in vals}
    if "mean" not in got:
        return None
    return {"units": units, **{f: got[f] for f in STAT_ORDER if f in got}}


def _params(rows: pd.DataFrame) -> dict:
    return {c.removeprefix("param_"): _first(rows, c) for c in rows.columns if c.startswith("param_")}


def _number(v) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _int_param(params: dict, *names) -> int | None:
    for n in names:
        f = _number(params.get(n))
        if f is not None and f == int(f):
            return int(f)
    return None


def _source(tool: str, params: dict) -> str:
    if tool == "vllm_bench_latency":
        return "random"  # the CLI's dummy prompts: random token ids
    name = str(params.get("dataset_name") or params.get("dataset") or "").lower()
    if name == "random" or name.startswith("random"):
        return "random"
    if "sharegpt" in name or "sonnet" in name:
        return "sampled"
    return "unknown"


def _requests(tool: str, vals: dict) -> dict | None:
    if tool == "vllm_bench_throughput":
        if "offline_requests" not in vals:
            return None
        return {"total": int(vals["offline_requests"][0])}
    if "completed" not in vals:
        return None
    completed = int(vals["completed"][0])
    failed = int(vals["failed"][0]) if "failed" in vals else None
    out = {"total": completed + (failed or 0), "failures": failed}
    if completed > 0:
        for ours, field in (("total_input_tokens", "input_length"), ("total_output_tokens", "output_length")):
            if ours in vals:
                out[field] = {"units": "count", "mean": vals[ours][0] / completed}
    return _drop_none(out)


def _latency(tool: str, vals: dict) -> dict:
    out = {}
    if tool == "bench_serving":
        for fam, (field, units) in SERVING_LATENCY.items():
            s = _statistics(vals, {f"{fam}_{st}": st for st in STAT_ORDER}, units)
            if s:
                out[field] = s
    elif tool == "vllm_bench_latency":
        names = {"latency_avg": "mean", **{f"latency_{p}": p for p in STAT_ORDER if p.startswith("p")}}
        s = _statistics(vals, names, "ms")
        if s:
            out["request_latency"] = s
        s = _statistics(vals, {"latency_per_output_token": "mean"}, "ms/token")
        if s:
            out["normalized_time_per_output_token"] = s
    return out


def _throughput(tool: str, vals: dict) -> dict:
    if tool == "vllm_bench_throughput":
        names = {"offline_total_token_throughput": "total_token_rate", "offline_request_throughput": "request_rate"}
    else:
        names = {
            "output_throughput": "output_token_rate",
            "total_token_throughput": "total_token_rate",
            "request_throughput": "request_rate",
        }
    out = {}
    for ours, field in names.items():
        units = "queries/s" if field == "request_rate" else "tokens/s"
        s = _statistics(vals, {ours: "mean"}, units)
        if s:
            out[field] = s
    return out


def _observability(vals: dict, label: str) -> dict | None:
    agg = {}
    s = _statistics(vals, {"gpu_util_mean": "mean", "gpu_util_max": "max"}, "percent")
    if s:
        agg["gpu_utilization"] = s
    s = _statistics(vals, {"power_mean_w": "mean"}, "Watts")
    if s:
        agg["power_consumption"] = s
    return {"components": [{"component_label": label, "aggregate": agg}]} if agg else None


def _profiling(vals: dict) -> dict | None:
    shares = {
        m.removeprefix("kernel_time_share_"): {"units": "percent", "value": convert(v, u, "percent")}
        for m, (v, u) in vals.items()
        if m.startswith("kernel_time_share_")
    }
    return {"kernel_time_share": shares} if shares else None


def cell_report(rows: pd.DataFrame, record: dict | None = None) -> dict:
    """The llm-d v0.2 Benchmark Report (a dict) of ONE cell's normalized rows; ``record`` (the
    cell's ``cell.json``) adds GPU name, server command line and end time."""
    if rows.empty:
        raise ValueError("no rows")
    ident = {k: _first(rows, k) for k in KEY}
    ident["configuration"] = ident["configuration"] or "default"
    ident["repeat"] = ident["repeat"] or 0
    for k in KEY:
        if k in rows and rows[k].nunique(dropna=False) != 1:
            raise ValueError(f"rows of more than one cell (column {k}: {sorted(map(str, rows[k].unique()))})")
    record = record or {}
    prov = record.get("provenance") or {}
    week, experiment, engine, gpu, configuration, cell = (ident[k] for k in KEY[:6])
    path = f"{week}/{experiment}/{engine}/{gpu}/{configuration}/{cell}"
    tool = _first(rows, "tool") or record.get("tool")
    model = _first(rows, "model") or record.get("model") or "unknown"
    status, reason, detail = cell_status(rows)
    params = _params(rows) or dict(record.get("params") or {})
    vals, invalid = _values(rows)
    engine_version = _first(rows, "engine_version") or (prov.get("engine_versions") or {}).get(engine)
    started = _first(rows, "started_at") or record.get("started_at")
    wall_s = _first(rows, "wall_s") or record.get("wall_s")

    # --- run
    description = f"{model} [inferlab {path}]"
    if status != "ok":
        description += f": {status}" + (f" ({reason})" if reason else "") + (f": {detail}" if detail else "")
    if invalid:
        description += f"; rejected by the roofline guard, not exported: {', '.join(sorted(invalid))}"
    keywords = ["inferlab", week, experiment, engine, gpu, configuration, cell, f"status:{status}"]
    if reason:
        keywords.append(f"reason:{reason}")
    time = _drop_none(
        {
            "start": started,
            "end": record.get("finished_at"),
            "duration": f"PT{round(float(wall_s), 3)}S" if wall_s is not None else None,
        }
    )
    run = _drop_none(
        {
            "uid": uuid.uuid5(NAMESPACE, f"{path}@{started}").hex,
            "eid": uuid.uuid5(NAMESPACE, f"{week}/{experiment}").hex,
            "time": time or None,
            "description": description,
            "keywords": keywords,
        }
    )

    # --- stack: the engine, then the workflow that ran the cell
    engine_args = {**(record.get("engine_args") or {}), **params}
    tp = _int_param(engine_args, "tensor_parallel_size", "tp_size", "tp") or 1
    pp = _int_param(engine_args, "pipeline_parallel_size", "pp_size", "pp") or 1
    dp = _int_param(engine_args, "data_parallel_size", "dp_size", "dp") or 1
    devices = (prov.get("gpu") or {}).get("devices") or []
    if prov.get("server_command"):
        engine_native = {"args": parse_args(prov["server_command"])}
    elif record.get("engine_args"):
        engine_native = {"args": dict(record["engine_args"])}
    else:
        engine_native = {}
    label = f"{engine}-{configuration}"
    engine_component = {
        "metadata": {
            "schema_version": "0.0.1",
            "label": label,
            "cfg_id": _hash(engine_native),
            "description": f"{engine} running {model} on {gpu}, engine configuration {configuration}",
        },
        "standardized": {
            "kind": "inference_engine",
            "tool": engine,
            "tool_version": str(engine_version or "unknown"),
            "role": "replica",
            "replicas": 1,
            "model": {"name": model},
            "accelerator": {
                "model": (devices[0].get("name") if devices else None) or gpu,
                "count": 0 if gpu == "cpu" else tp * pp * dp,
                "parallelism": {"tp": tp, "dp": dp, "pp": pp},
            },
        },
        "native": engine_native,
    }
    inferlab = _drop_none(
        {
            "kind": "generic",
            "tool": "inferlab",
            "tool_version": _first(rows, "git_commit") or "unknown",
            "week": week,
            "experiment": experiment,
            "engine": engine,
            "gpu": gpu,
            "model": model,
            "configuration": configuration,
            "cell": cell,
            "repeat": ident["repeat"],
            "tool_id": tool,
            "status": status,
            "reason": reason,
            "detail": detail,
            "measured_by": _first(rows, "measured_by") or record.get("measured_by"),
            "host": _first(rows, "host") or prov.get("host"),
            "slurm_job_id": _first(rows, "slurm_job_id"),
            "prefix_caching": _first(rows, "prefix_caching") or prov.get("prefix_caching"),
            "telemetry": _first(rows, "telemetry"),
            "params": dict(params),
        }
    )
    inferlab_component = {
        "metadata": {
            "schema_version": "0.0.1",
            "label": "inferlab",
            "cfg_id": _hash(params),
            "description": "the inferlab workflow that ran this cell: identity, status, provenance",
        },
        "standardized": inferlab,
        "native": {},
    }

    # --- load (v0.2 requires input_seq_len: no load where it is unknown)
    requests = _requests(tool, vals)
    isl = _int_param(params, "input_len", "random_input_len")
    osl = _int_param(params, "output_len", "random_output_len")
    if isl is not None:
        input_seq_len = {"distribution": "fixed", "value": isl}
    elif requests and "input_length" in requests:
        input_seq_len = {"distribution": "other", "value": requests["input_length"]["mean"]}
    else:
        input_seq_len = None
    load = None
    if input_seq_len is not None:
        client = _first(rows, "client") or prov.get("client")
        load_tool = CLIENT_TOOL.get(client, client) if tool == "bench_serving" else LOAD_TOOL.get(tool, tool)
        rate = _number(params.get("request_rate"))
        if tool == "vllm_bench_latency":
            concurrency = _int_param(params, "batch_size")
        else:
            concurrency = _int_param(params, "max_concurrency")
        command = prov.get("command") or _first(rows, "command")
        load_native = _drop_none({"args": parse_args(command) if command else None, "config": {"params": params}})
        how = _first(rows, "measured_by") or record.get("measured_by")
        load = {
            "metadata": {
                "schema_version": "0.0.1",
                "cfg_id": _hash(load_native),
                "description": f"{load_tool or tool}"
                + (" (inferlab's offline driver, the CLI's procedure on a shared engine)" if how == "driver" else ""),
            },
            "standardized": _drop_none(
                {
                    "tool": load_tool or str(tool),
                    "tool_version": str(engine_version or "unknown"),
                    "parallelism": 1,
                    "source": _source(tool, params),
                    "stage": 0,
                    "input_seq_len": input_seq_len,
                    "output_seq_len": {"distribution": "fixed", "value": osl} if osl is not None else None,
                    "rate_qps": rate if rate is not None and rate > 0 else None,
                    "concurrency": concurrency if concurrency is not None and concurrency >= 1 else None,
                }
            ),
            "native": load_native,
        }

    # --- results: numbers only from an ok cell's valid rows
    aggregate = _drop_none(
        {
            "requests": requests,
            "latency": _latency(tool, vals) or None,
            "throughput": _throughput(tool, vals) or None,
        }
    )
    results = _drop_none(
        {
            "request_performance": {"aggregate": aggregate} if aggregate else None,
            "observability": _observability(vals, label),
            "profiling": _profiling(vals),
        }
    )
    if status == "failed" and reason in ENGINE_FAILURES:
        results["component_health"] = [
            {
                "component_label": label,
                "failed_replicas": 1,
                "replica_health": [{"replica_id": f"{label}-0", "healthy": False}],
            }
        ]

    scenario = {"stack": [engine_component, inferlab_component]}
    if load:
        scenario["load"] = load
    return {"version": VERSION, "run": run, "scenario": scenario, "results": results}


def find_record(records_dir, key: dict) -> dict | None:
    """The cell's ``cell.json`` under ``records_dir``: the results layout
    ``<week>/<experiment>/<engine>/<gpu>/<configuration>/<cell>/cell.json`` (or the pre-v3 one without
    ``<configuration>``), or the kept validation layout ``<engine>_<cell>.cell.json`` /
    ``<experiment>_<cell>.cell.json`` (docs/validation/*/cells). None when there is none."""
    d = Path(records_dir)
    w, e, en, g, c, cell = (key[k] for k in KEY[:6])
    for p in (
        d / w / e / en / g / (c or "default") / cell / "cell.json",
        d / w / e / en / g / cell / "cell.json",
        d / f"{en}_{cell}.cell.json",
        d / f"{e}_{cell}.cell.json",
    ):
        if p.is_file():
            rec = json.loads(p.read_text())
            if all(rec.get(k) == key[k] for k in ("week", "experiment", "engine", "cell")):
                return rec
    return None


def _cells(df: pd.DataFrame):
    df = df.copy()
    df["configuration"] = df["configuration"].fillna("default") if "configuration" in df else "default"
    df["repeat"] = df["repeat"].fillna(0) if "repeat" in df else 0
    for key, rows in df.groupby(list(KEY), sort=False, dropna=False):
        yield dict(zip(KEY, (_py(k) for k in key), strict=True)), rows


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data):  # plain YAML: no &anchors for values that occur twice
        return True


def dump(report: dict) -> str:
    """The report as YAML, the way llm-d-benchmark writes its own."""
    return yaml.dump(report, Dumper=_Dumper, sort_keys=False, allow_unicode=True, default_flow_style=False)


def report_path(out_dir, key: dict) -> Path:
    w, e, en, g, c, cell = (key[k] for k in KEY[:6])
    return Path(out_dir) / w / e / en / g / c / cell / FILENAME.format(cell=cell)


def week_reports(parquet_path, out_dir, records_dir=None, skip_failed: bool = False, log=print) -> list[Path]:
    """One report file per cell of a week's Parquet; returns the files written. A cell without
    numbers is exported with its status (or left out with ``skip_failed``); ``log`` says which."""
    written = []
    for key, rows in _cells(pd.read_parquet(parquet_path)):
        path = "/".join(str(key[k]) for k in KEY[:6])
        status, reason, detail = cell_status(rows)
        if status != "ok" and skip_failed:
            log(f"{path}: not exported: {status} ({reason}): {detail}")
            continue
        record = find_record(records_dir, key) if records_dir else None
        out = report_path(out_dir, key)
        io.write_text(out, dump(cell_report(rows, record)))
        written.append(out)
        if status != "ok":
            log(f"{path}: exported without results: {status} ({reason}): {detail}")
    return written


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m inferlab.export.llmd", description=__doc__.splitlines()[0])
    ap.add_argument("parquet", type=Path, help="a week's normalized Parquet (or one cell's metrics.parquet)")
    ap.add_argument("--out", type=Path, required=True, help="directory for the report files")
    ap.add_argument("--records", type=Path, help="results directory with the cells' cell.json (provenance)")
    ap.add_argument("--skip-failed", action="store_true", help="leave out cells that have no numbers")
    a = ap.parse_args(argv)
    files = week_reports(a.parquet, a.out, a.records, a.skip_failed, log=lambda m: print(m, file=sys.stderr))
    print(f"{len(files)} llm-d v{VERSION} benchmark reports under {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

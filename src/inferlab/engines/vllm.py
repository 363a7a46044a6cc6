"""vLLM: ``vllm bench latency`` (offline, one engine per run) and serving: ``vllm serve`` loaded by
``vllm bench serve`` (output fields of vLLM 0.32/0.33: shared/notes/benchmark-outputs.md)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from . import serving
from .base import Engine, engine_args_to_cli

LATENCY_PERCENTILES = ("10", "25", "50", "75", "90", "99")
# The definition is part of the schema: vLLM's latency bench times a whole generate() call of
# batch_size prompts (input_len tokens each) producing output_len tokens.
DEF_LATENCY = "wall time of one generate() call of the whole batch (vllm bench latency)"
THROUGHPUT = (
    ("offline_total_token_throughput", "tok/s", "tokens_per_second: (prompt + generated tokens) / elapsed_time"),
    ("offline_request_throughput", "req/s", "requests_per_second: requests / elapsed_time"),
    ("offline_elapsed", "s", "elapsed_time of the whole offline batch"),
    ("offline_total_tokens", "tokens", "total_num_tokens: prompt + generated tokens of all requests"),
    ("offline_requests", "requests", "num_requests"),
)
DEF_PER_TOKEN = "latency_avg / output_len: per-output-token latency including the prefill"


class VLLM(Engine):
    name = "vllm"
    serving_client = "vllm bench serve"
    drivers = {"vllm_offline": "inferlab.drivers.vllm_offline"}
    # --api-key's default (vllm/envs.py); it guards /v1/* (and /v2, /inference), not /health,
    # /metrics or the dev-mode routes (vllm/entrypoints/serve/middleware/authenticate.py)
    api_key_env = "VLLM_API_KEY"

    # -- serving -------------------------------------------------------------------------------
    def serve_command(self, model_path, host, port, server_args):
        merged = {**self.run_args, **self.server_flags(server_args)}
        return [
            self.bin(self.catalog.get("bin", "vllm")),
            "serve",
            str(model_path),
            "--host",
            host,
            "--port",
            str(port),
        ] + engine_args_to_cli(merged)

    def parallel_env(self, server_args: dict) -> dict:
        """Environment a configuration's ranks need (the CPU build's thread binding; cpu_parallel_env)."""
        return cpu_parallel_env(server_args)

    def profile_server_args(self, folder):
        # vLLM >= 0.12: --profiler-config; the client's --profile calls /start_profile, /stop_profile
        cfg = {
            "profiler": "torch",
            "torch_profiler_dir": str(folder),
            "torch_profiler_use_gzip": True,
            "torch_profiler_with_stack": False,
        }
        return {"profiler_config": json.dumps(cfg, separators=(",", ":"))}

    def profile_env(self, folder):
        return {"VLLM_TORCH_PROFILER_DIR": str(folder)}  # the variable older vLLM releases read

    def client_command(self, base_url, model_path, params, dataset_path, out_file, warmups: int = 0):
        p = params
        out_file = Path(out_file)
        if p.get("client", "vllm") != "vllm":
            # another engine's client against this server (Week 6/9's analogue: SGLang's client,
            # --backend vllm); its adapter comes from the preset (rules: configuration_spec)
            other = getattr(self, "client_engines", {}).get(p["client"])
            if other is None:
                raise ValueError(f"no {p['client']} client is set up for this run (preset engines.{p['client']})")
            return other.client_command(
                base_url, model_path, {**p, "client_backend": "vllm"}, dataset_path, out_file, warmups
            )
        name = p.get("dataset_name", "sharegpt")
        cmd = [
            self.bin(self.catalog.get("bin", "vllm")),
            "bench",
            "serve",
            "--backend",
            "vllm",
            "--base-url",
            base_url,
            "--endpoint",
            "/v1/completions",
            "--model",
            str(model_path),
            "--dataset-name",
            name,
        ]
        if name in ("sharegpt", "custom"):
            cmd += ["--dataset-path", str(dataset_path)]
        if name == "custom":
            # every request's output length is its line's declared output_tokens (Week 7's list)
            cmd += ["--custom-output-len", "-1"] + (["--skip-chat-template"] if p.get("skip_chat_template") else [])
        cmd += [
            "--num-prompts",
            str(p["num_prompts"]),
            "--request-rate",
            str(p["request_rate"]),
            "--seed",
            str(p.get("seed", 0)),
            "--percentile-metrics",
            "ttft,tpot,itl,e2el",
            "--metric-percentiles",
            "50,90,99",
            "--save-result",
            "--result-dir",
            str(out_file.parent),
            "--result-filename",
            out_file.name,
            "--disable-tqdm",
        ]
        cmd += workload_flags(p)
        if p.get("ignore_eos"):
            # SGLang's client ignores EOS by default: same output-length policy on both sides
            cmd.append("--ignore-eos")
        if p.get("max_concurrency"):
            cmd += ["--max-concurrency", str(p["max_concurrency"])]
        if p.get("profile"):
            cmd.append("--profile")
        if p.get("save_detailed"):
            # per-request start times, TTFTs and ITLs (Week 8's ITL-over-time figure)
            cmd.append("--save-detailed")
        if p.get("temperature") is not None:
            cmd += ["--temperature", str(p["temperature"])]  # Week 11: greedy for spec decoding
        if warmups:
            cmd += ["--num-warmups", str(warmups)]
        return cmd

    def command(self, tool, model_path, params, engine_args, out_json, dataset_path=None):
        if tool == "hf_static_batch":  # transformers in the engine's environment (tools/hf_static_batch.py)
            from ..tools import hf_static_batch

            return hf_static_batch.command(self.python, model_path, params, out_json, dataset_path)
        if tool == "expert_load":
            # transformers in the engine's environment (router logits), not the engine itself
            return [
                self.python,
                str(Path(__file__).resolve().parents[1] / "expertload.py"),
                "--model",
                str(model_path),
                "--dataset",
                str(dataset_path),
                "--num-prompts",
                str(params["num_prompts"]),
                "--max-len",
                str(params.get("max_len", 1024)),
                "--out",
                str(out_json),
            ]
        if tool == "vllm_bench_throughput":
            return self._throughput_command(model_path, params, engine_args, out_json, dataset_path)
        if tool != "vllm_bench_latency":
            raise ValueError(f"vllm adapter has no tool {tool!r}")
        p = params
        cmd = [
            self.bin(self.catalog.get("bin", "vllm")),
            "bench",
            "latency",
            "--model",
            str(model_path),
            "--batch-size",
            str(p["batch_size"]),
            "--input-len",
            str(p["input_len"]),
            "--output-len",
            str(p["output_len"]),
            "--num-iters",
            str(p.get("num_iters", 30)),
            "--num-iters-warmup",
            str(p.get("num_iters_warmup", 10)),
            "--output-json",
            str(out_json),
        ]
        # run-wide args (preset) first; the experiment's args override them
        merged = {**self.run_args, **engine_args}
        return cmd + engine_args_to_cli(merged)

    def _throughput_command(self, model_path, p, engine_args, out_json, dataset_path):
        if dataset_path is None:
            raise ValueError("vllm_bench_throughput needs a dataset (fixed.dataset)")
        cmd = [
            self.bin(self.catalog.get("bin", "vllm")),
            "bench",
            "throughput",
            "--model",
            str(model_path),
            "--dataset-name",
            p.get("dataset_name", "sharegpt"),
            "--dataset-path",
            str(dataset_path),
            "--num-prompts",
            str(p["num_prompts"]),
            "--seed",
            str(p.get("seed", 0)),
            "--output-json",
            str(out_json),
        ]
        if p.get("num_warmups"):  # untimed requests through the same engine first (sampled with seed + 1)
            cmd += ["--num-warmups", str(p["num_warmups"])]
        return cmd + engine_args_to_cli({**self.run_args, **engine_args})

    def metric_names(self, tool):
        if tool == "hf_static_batch":
            from ..tools import hf_static_batch

            return hf_static_batch.metric_names()
        if tool == "lm_eval":  # an engine-neutral client (tools/lm_eval.py): its own rows
            from ..tools import lm_eval

            return lm_eval.metric_names()
        if tool == "expert_load":
            return [(m, u) for m, u, _ in EXPERT_LOAD]
        if tool == "bench_serving":
            return serving.metric_names()
        if tool == "vllm_bench_throughput":
            return [(m, u) for m, u, _ in THROUGHPUT]
        return (
            [("latency_avg", "ms")]
            + [(f"latency_p{q}", "ms") for q in LATENCY_PERCENTILES]
            + [("latency_per_output_token", "ms/token")]
        )

    def parse(self, tool, raw_path: Path, params: dict) -> list[dict]:
        """Rows of a raw output; one not of the shape the tool writes is a ``ValueError`` naming
        what was wrong (the typed parse error), never a KeyError/TypeError from deep inside."""
        try:
            return VLLM._parse(self, tool, raw_path, params)  # also for adapters borrowing VLLM.parse
        except (KeyError, TypeError, AttributeError, IndexError, OverflowError) as e:
            raise ValueError(
                f"{Path(raw_path).name} is not shaped as {tool} writes it: {e.__class__.__name__}: {e}"
            ) from e

    def _parse(self, tool, raw_path: Path, params: dict) -> list[dict]:
        if tool == "bench_serving" and params.get("client", "vllm") == "sglang":
            from .sglang import parse_bench_serving

            return parse_bench_serving(Path(raw_path).read_text(), params)
        data = json.loads(Path(raw_path).read_text())
        if not isinstance(data, dict):
            raise ValueError(f"{Path(raw_path).name} is JSON but not an object ({type(data).__name__})")
        if tool == "lm_eval":
            from ..tools import lm_eval

            return lm_eval.parse(data)
        if tool == "bench_serving":
            return parse_bench_serve(data)
        if tool == "vllm_bench_throughput":
            return parse_bench_throughput(data)
        if tool == "expert_load":
            return parse_expert_load(data)
        if tool == "hf_static_batch":
            from ..tools import hf_static_batch

            return hf_static_batch.parse(data)
        avg = data["avg_latency"]
        if not isinstance(avg, (int, float)) or not math.isfinite(avg) or avg <= 0:
            raise ValueError(f"avg_latency is not a positive number: {avg!r}")
        rows = [{"metric": "latency_avg", "value": avg * 1e3, "unit": "ms", "definition": DEF_LATENCY}]
        pct = data.get("percentiles", {})
        for q in LATENCY_PERCENTILES:
            v = serving._num(pct.get(q))
            rows.append(
                {
                    "metric": f"latency_p{q}",
                    "value": None if v is None else v * 1e3,
                    "unit": "ms",
                    "definition": f"p{q} of per-iteration latency",
                }
            )
        rows.append(
            {
                "metric": "latency_per_output_token",
                "value": avg * 1e3 / int(params["output_len"]),
                "unit": "ms/token",
                "definition": DEF_PER_TOKEN,
            }
        )
        return rows


EXPERT_LOAD = (
    ("expert_load_max_over_mean", "x", "max / mean of the experts' routed token-slots (1 = balanced), worst layer"),
    ("expert_load_cv", "ratio", "coefficient of variation of the experts' routed token-slots, mean over layers"),
    ("expert_load_tokens", "tokens", "prompt tokens routed (each to top_k experts in every layer)"),
)


def parse_expert_load(data: dict) -> list[dict]:
    """inferlab/expertload.py's raw.json -> rows: balance summaries and each expert's share of the
    routed token-slots (``expert_share_e<i>``, %, mean over layers)."""
    import statistics

    counts, e = data["counts"], int(data["experts"])
    if not counts or any(len(layer) != e for layer in counts):
        raise ValueError(f"expert histogram is not layers x {e} experts")
    if any(serving._num(c) is None or c < 0 for layer in counts for c in layer):
        raise ValueError("expert histogram holds a value that is not a finite count")
    shares, mx, cvs = [0.0] * e, [], []
    for layer in counts:
        total = sum(layer)
        if total <= 0:
            raise ValueError("a layer routed no tokens")
        mean = total / e
        mx.append(max(layer) / mean)
        cvs.append(statistics.pstdev(layer) / mean)
        for i, c in enumerate(layer):
            shares[i] += 100.0 * c / total / len(counts)
    src = data.get("source", "router logits")
    vals = {"expert_load_max_over_mean": max(mx), "expert_load_cv": sum(cvs) / len(cvs)}
    tokens = serving._num(data["tokens"])
    if tokens is None or tokens < 0:
        raise ValueError(f"tokens is not a count: {data['tokens']!r}")
    vals["expert_load_tokens"] = tokens
    rows = [{"metric": m, "value": vals[m], "unit": u, "definition": f"{d} ({src})"} for m, u, d in EXPERT_LOAD]
    for i, sh in enumerate(shares):
        d = f"expert {i}'s share of routed token-slots, mean over {len(counts)} layers ({src})"
        rows.append({"metric": f"expert_share_e{i}", "value": sh, "unit": "%", "definition": d})
    return rows


def cpu_parallel_env(server_args: dict, cores: int | None = None) -> dict:
    """``VLLM_CPU_OMP_THREADS_BIND`` for a configuration with tensor x pipeline parallel ranks > 1:
    the CPU build binds each rank's OpenMP threads to its own cores and refuses to guess on a
    one-NUMA-node host ("Not enough allowed NUMA nodes to bind threads", cpu-engine-features.md
    6c), so the allowed cores are split into one contiguous range per rank ("0|1" on 2 cores).
    Only vLLM's CPU platform reads it; {} for one rank or fewer cores than ranks."""
    import os

    n = 1
    for k in ("tensor_parallel_size", "pipeline_parallel_size"):
        v = server_args.get(k)
        if isinstance(v, int) and not isinstance(v, bool) and v > 1:
            n *= v
    ids = sorted(os.sched_getaffinity(0)) if cores is None else list(range(cores))
    if n <= 1 or len(ids) < n:
        return {}
    per = len(ids) // n
    parts = [ids[i * per : (i + 1) * per] for i in range(n)]
    return {"VLLM_CPU_OMP_THREADS_BIND": "|".join(f"{p[0]}-{p[-1]}" if len(p) > 1 else str(p[0]) for p in parts)}


# vllm bench serve's flags of the generated workloads (tools/bench_serving.py PARAMS)
WORKLOAD_FLAGS = {
    "prefix_repetition": {
        "prefix_len": "--prefix-repetition-prefix-len",
        "suffix_len": "--prefix-repetition-suffix-len",
        "num_prefixes": "--prefix-repetition-num-prefixes",
        "output_len": "--prefix-repetition-output-len",
    },
    "random": {
        "prefix_len": "--random-prefix-len",
        "input_len": "--random-input-len",
        "output_len": "--random-output-len",
    },
}


def workload_flags(p: dict) -> list[str]:
    out = []
    for k, flag in WORKLOAD_FLAGS.get(p.get("dataset_name", "sharegpt"), {}).items():
        if p.get(k) is not None:
            out += [flag, str(p[k])]
    return out


def parse_bench_serve(data: dict) -> list[dict]:
    """``vllm bench serve --save-result`` JSON -> normalized rows. ``median_*`` and ``p50_*`` are the
    same number (p50 only appears when 50 is asked for); p90 only when asked for."""
    stats = {}
    for m in serving.LATENCIES:
        stats[f"{m}_mean"] = data.get(f"mean_{m}_ms")
        stats[f"{m}_p50"] = data.get(f"p50_{m}_ms", data.get(f"median_{m}_ms"))
        stats[f"{m}_p90"] = data.get(f"p90_{m}_ms")
        stats[f"{m}_p99"] = data.get(f"p99_{m}_ms")
    counts = {k: data.get(k) for k in serving.COUNTS}
    serving.check(counts)
    return serving.rows(stats, counts, "vllm bench serve") + itl_detail_rows(data)


def parse_bench_throughput(data: dict) -> list[dict]:
    """``vllm bench throughput --output-json``. It reports no output-token throughput (only prompt +
    generated tokens), so the offline number compared with serving is total tokens/s on both sides."""
    keys = {
        "offline_total_token_throughput": "tokens_per_second",
        "offline_request_throughput": "requests_per_second",
        "offline_elapsed": "elapsed_time",
        "offline_total_tokens": "total_num_tokens",
        "offline_requests": "num_requests",
    }
    tps = data.get("tokens_per_second")
    if not isinstance(tps, (int, float)) or not math.isfinite(tps) or tps <= 0:
        raise ValueError(f"tokens_per_second is not a positive number: {tps!r}")
    return [
        {
            "metric": m,
            "value": float(data[keys[m]]) if data.get(keys[m]) is not None else None,
            "unit": u,
            "definition": d,
        }
        for m, u, d in THROUGHPUT
    ] + throughput_extra_rows(data)


def throughput_extra_rows(data: dict) -> list[dict]:
    """The offline driver's extra keys (Week 4): output tokens/s from its achieved counts, the KV
    block size and count of its engine, and the KV memory waste of the cell's own requests at that
    block size (theory.memory_waste over prompt + output lengths). None where a key is absent."""
    from .. import theory

    rows = []
    ach, el = data.get("achieved") or {}, data.get("elapsed_time")
    if isinstance(ach.get("output_tokens"), (int, float)) and isinstance(el, (int, float)) and el > 0:
        d = "achieved output tokens / elapsed_time (offline driver's count of generated tokens)"
        rows.append(
            {
                "metric": "offline_output_token_throughput",
                "value": ach["output_tokens"] / el,
                "unit": "tok/s",
                "definition": d,
            }
        )
        rows.append(
            {
                "metric": "offline_output_tokens",
                "value": float(ach["output_tokens"]),
                "unit": "tokens",
                "definition": "achieved output tokens",
            }
        )
    kv = data.get("kv_cache") or {}
    bs, blocks = kv.get("block_size"), kv.get("num_gpu_blocks")
    if isinstance(blocks, int) and blocks > 0:
        rows.append(
            {
                "metric": "kv_cache_blocks",
                "value": float(blocks),
                "unit": "blocks",
                "definition": "KV cache blocks (engine cache_config.num_gpu_blocks)",
            }
        )
    if isinstance(bs, int) and bs > 0:
        rows.append(
            {
                "metric": "kv_cache_block_size",
                "value": float(bs),
                "unit": "tokens",
                "definition": "tokens per KV block (engine cache_config.block_size)",
            }
        )
        lens = data.get("lengths") or {}
        if lens.get("prompt") and len(lens["prompt"]) == len(lens.get("output") or []):
            total = [a + b for a, b in zip(lens["prompt"], lens["output"], strict=True)]
            d = f"internal fragmentation of the last KV block: sum(ceil(L/B)B - L) / sum(ceil(L/B)B), L = prompt + output, B = {bs}"
            rows.append(
                {
                    "metric": "kv_memory_waste",
                    "value": 100.0 * theory.memory_waste(total, bs),
                    "unit": "%",
                    "definition": d,
                }
            )
    return rows


def itl_detail_rows(data: dict) -> list[dict]:
    """With ``--save-detailed`` (per-request ``itls``, seconds): the tail of the pooled ITLs beyond
    the client's p99, where a few long stalls (a long prefill run in one step, Week 8) show: ITL max,
    p99.9, and the share of gaps longer than 5x the median. No rows without the detail."""
    itls = data.get("itls")
    if not isinstance(itls, list):
        return []
    gaps = sorted(float(g) * 1e3 for req in itls if isinstance(req, list) for g in req)
    if not gaps:
        return []
    n = len(gaps)
    med = gaps[n // 2] if n % 2 else (gaps[n // 2 - 1] + gaps[n // 2]) / 2
    k = 0.999 * (n - 1)  # linear interpolation, as numpy.percentile (the client's own percentiles)
    lo = int(k)
    p999 = gaps[lo] + (gaps[min(lo + 1, n - 1)] - gaps[lo]) * (k - lo)
    src = "pooled inter-token gaps of every request (vllm bench serve --save-detailed itls)"
    return [
        {"metric": "itl_max", "value": gaps[-1], "unit": "ms", "definition": f"longest of the {src}"},
        {"metric": "itl_p999", "value": p999, "unit": "ms", "definition": f"p99.9 of the {src}"},
        {
            "metric": "itl_stall_share",
            "value": 100.0 * sum(g > 5 * med for g in gaps) / n,
            "unit": "%",
            "definition": f"share of the {src} longer than 5x their median (stalls)",
        },
    ]

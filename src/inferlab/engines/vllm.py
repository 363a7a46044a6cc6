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
            p.get("dataset_name", "sharegpt"),
            "--dataset-path",
            str(dataset_path),
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
        if p.get("ignore_eos"):
            # SGLang's client ignores EOS by default: same output-length policy on both sides
            cmd.append("--ignore-eos")
        if p.get("max_concurrency"):
            cmd += ["--max-concurrency", str(p["max_concurrency"])]
        if p.get("profile"):
            cmd.append("--profile")
        if warmups:
            cmd += ["--num-warmups", str(warmups)]
        return cmd

    def command(self, tool, model_path, params, engine_args, out_json, dataset_path=None):
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
        return cmd + engine_args_to_cli({**self.run_args, **engine_args})

    def metric_names(self, tool):
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
        data = json.loads(Path(raw_path).read_text())
        if not isinstance(data, dict):
            raise ValueError(f"{Path(raw_path).name} is JSON but not an object ({type(data).__name__})")
        if tool == "bench_serving":
            return parse_bench_serve(data)
        if tool == "vllm_bench_throughput":
            return parse_bench_throughput(data)
        avg = data["avg_latency"]
        if not isinstance(avg, (int, float)) or not math.isfinite(avg) or avg <= 0:
            raise ValueError(f"avg_latency is not a positive number: {avg!r}")
        rows = [{"metric": "latency_avg", "value": avg * 1e3, "unit": "ms", "definition": DEF_LATENCY}]
        pct = data.get("percentiles", {})
        for q in LATENCY_PERCENTILES:
            v = pct.get(q)
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
    return serving.rows(stats, counts, "vllm bench serve")


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
    ]

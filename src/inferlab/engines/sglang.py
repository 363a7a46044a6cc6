"""SGLang: ``python -m sglang.launch_server`` loaded by ``python -m sglang.benchmark.serving``
(SGLang 0.5.23; output fields: shared/notes/benchmark-outputs.md).

The server needs a GPU (``sgl_kernel``): where the probe import fails, on the CPU default and on
clusters whose ``sgl_kernel`` build does not match the GPU, its cells are typed
``skipped: engine_unavailable`` with the import error as the reason.

The load client is pure Python and runs without a GPU. It may live in its own environment
(``client_env`` in the preset; the CPU default installs it in ``.venv-sglang-client``) and is run
through ``inferlab/clients/sglang_bench.py``, which stands in for torchvision where the CPU client has none.
Traps handled by :func:`parse_bench_serving`: the output file is JSONL that APPENDS one line per
run (the last line is this run's), ``request_rate`` may be a bare ``Infinity``, and there is no
``failed`` field (failed = num_prompts - completed).
"""

from __future__ import annotations

import json
from pathlib import Path

from ..tools import bench_serving
from . import serving
from .base import Engine, engine_args_to_cli

# engine-neutral (vLLM) server argument names -> SGLang's
ARG_MAP = {
    "max_model_len": "context_length",
    "gpu_memory_utilization": "mem_fraction_static",
    "max_num_seqs": "max_running_requests",
    "tensor_parallel_size": "tp_size",
    "dtype": "dtype",
    "seed": "random_seed",
    "enforce_eager": "disable_cuda_graph",  # eager = no CUDA graphs
}
# vLLM-only switches with no SGLang counterpart (ignored, not passed)
IGNORED = {"disable_log_requests"}
CLIENT = Path(__file__).parents[1] / "clients" / "sglang_bench.py"


class SGLang(Engine):
    name = "sglang"
    serving_client = "sglang.benchmark.serving"
    metrics_dialect = "sglang"
    # SGLang 0.5.23 takes its key only as --api-key (or in a --config file) and logs every server
    # argument, api_key included, at start-up (server_args=...): no route keeps a key out of the
    # logs, so a bind beyond loopback is typed unsupported (session.run_session)
    api_key_env = None

    def __init__(self, *a, client_env: str | None = None, **k):
        super().__init__(*a, **k)
        self.client_env = Path(client_env) if client_env else self.env

    def server_flags(self, server_args):
        out = {}
        for k, v in server_args.items():
            if k == "enable_prefix_caching":
                if v is False:
                    out["disable_radix_cache"] = True  # SGLang's prefix cache is its radix cache
                continue
            if k in IGNORED:
                continue
            out[ARG_MAP.get(k, k)] = v
        return out

    def serve_command(self, model_path, host, port, server_args):
        merged = {**self.server_flags(self.run_args), **self.server_flags(server_args)}
        return [
            self.python,
            "-m",
            "sglang.launch_server",
            "--model-path",
            str(model_path),
            "--host",
            host,
            "--port",
            str(port),
        ] + engine_args_to_cli(merged)

    def client_command(self, base_url, model_path, params, dataset_path, out_file, warmups: int = 0):
        p = params
        py = str((self.client_env / "bin" / "python").absolute()) if self.client_env else "python"
        cmd = [
            py,
            str(CLIENT),
            "--backend",
            p.get("client_backend", self.catalog.get("client_backend", "sglang")),
            "--base-url",
            base_url,
            "--model",
            str(model_path),
            "--tokenizer",
            str(model_path),
            "--dataset-name",
            p.get("dataset_name", "sharegpt"),
        ]
        if p.get("dataset_name", "sharegpt") == "sharegpt":
            cmd += ["--dataset-path", str(dataset_path)]
        cmd += [
            # generated-shared-prefix ignores --num-prompts (groups x prompts per group): say the real count
            "--num-prompts",
            str(bench_serving.request_count(p)),
            "--request-rate",
            str(p["request_rate"]),
            "--seed",
            str(p.get("seed", 0)),
            "--output-file",
            str(out_file),
            "--disable-tqdm",
        ]
        cmd += workload_flags(p)
        if p.get("cache_report"):
            cmd.append("--cache-report")
        if p.get("max_concurrency"):
            cmd += ["--max-concurrency", str(p["max_concurrency"])]
        # its default is 1 warm-up request; say how many, so both engines' clients do the same
        cmd += ["--warmup-requests", str(warmups)]
        return cmd

    def client_environ(self):
        env = self.environ(None)
        env.pop("PYTHONPATH", None)
        return env

    def metric_names(self, tool):
        if tool == "bench_serving":
            return serving.metric_names()
        from .vllm import VLLM

        return VLLM.metric_names(self, tool)

    def parse(self, tool, raw_path, params):
        try:
            return SGLang._parse(self, tool, raw_path, params)  # also for adapters borrowing SGLang.parse
        except (KeyError, TypeError, AttributeError, IndexError, OverflowError) as e:  # typed parse error
            raise ValueError(
                f"{Path(raw_path).name} is not shaped as {tool} writes it: {e.__class__.__name__}: {e}"
            ) from e

    def _parse(self, tool, raw_path, params):
        if tool == "lm_eval":  # an engine-neutral client (tools/lm_eval.py)
            from ..tools import lm_eval

            return lm_eval.parse(json.loads(Path(raw_path).read_text()))
        if tool != "bench_serving":
            raise ValueError(f"sglang adapter has no tool {tool!r}")
        return parse_bench_serving(Path(raw_path).read_text(), params)


def parse_bench_serving(text: str, params: dict) -> list[dict]:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise ValueError("empty output file")
    data = json.loads(lines[-1])  # the file appends; this run wrote the last line (json accepts Infinity)
    if not isinstance(data, dict):
        raise ValueError(f"the last line is JSON but not an object ({type(data).__name__}: {lines[-1][:80]!r})")
    stats = {}
    for m, key in (("ttft", "ttft"), ("tpot", "tpot"), ("itl", "itl"), ("e2el", "e2e_latency")):
        stats[f"{m}_mean"] = data.get(f"mean_{key}_ms")
        stats[f"{m}_p50"] = data.get(f"median_{key}_ms")
        stats[f"{m}_p90"] = data.get(f"p90_{key}_ms")
        stats[f"{m}_p99"] = data.get(f"p99_{key}_ms")
    counts = {k: data.get(k) for k in serving.COUNTS}
    counts["total_token_throughput"] = data.get("total_throughput")
    sent = bench_serving.request_count(params)
    if counts.get("completed") is not None and sent is not None:
        if int(counts["completed"]) > sent:
            raise ValueError(
                f"the client completed {int(counts['completed'])} requests, more than the {sent} the cell asked for"
            )
        counts["failed"] = sent - int(counts["completed"])
    serving.check(counts)
    out = serving.rows(stats, counts, "sglang.benchmark.serving")
    if params.get("cache_report"):
        out += cache_report_rows(data)
    return out


CACHE_REPORT = (
    (
        "client_cache_hit_rate",
        "fraction",
        "cache_hit_rate_pct / 100: cached / prompt tokens over the completed requests",
    ),
    ("client_cached_tokens", "tokens", "total_cached_tokens: prompt tokens the server reported cached"),
    ("client_prompt_tokens", "tokens", "total_prompt_tokens of the completed requests"),
)


def cache_report_rows(data: dict) -> list[dict]:
    """``--cache-report``'s ``cache_report`` object (the server's per-request cached-token counts,
    summed by the client) -> rows; asked for and absent is a parse error, never a silent 0."""
    cr = data.get("cache_report")
    if not isinstance(cr, dict):
        raise ValueError("--cache-report was asked for but the output line has no cache_report object")
    vals = {
        "client_cache_hit_rate": None if cr.get("cache_hit_rate_pct") is None else cr["cache_hit_rate_pct"] / 100,
        "client_cached_tokens": cr.get("total_cached_tokens"),
        "client_prompt_tokens": cr.get("total_prompt_tokens"),
    }
    src = "[sglang.benchmark.serving --cache-report]"
    return [
        {"metric": m, "value": serving._num(vals[m]), "unit": u, "definition": f"{d} {src}"} for m, u, d in CACHE_REPORT
    ]


# sglang.benchmark.serving's flags of the generated workloads (tools/bench_serving.py PARAMS)
WORKLOAD_FLAGS = {
    "random": {"input_len": "--random-input-len", "output_len": "--random-output-len"},
    "generated-shared-prefix": {
        "gsp_num_groups": "--gsp-num-groups",
        "gsp_prompts_per_group": "--gsp-prompts-per-group",
        "gsp_system_prompt_len": "--gsp-system-prompt-len",
        "gsp_question_len": "--gsp-question-len",
        "gsp_output_len": "--gsp-output-len",
    },
}


def workload_flags(p: dict) -> list[str]:
    name = p.get("dataset_name", "sharegpt")
    out = []
    for k, flag in WORKLOAD_FLAGS.get(name, {}).items():
        if p.get(k) is not None:
            out += [flag, str(p[k])]
    if name == "random":
        out += ["--random-range-ratio", "1.0"]  # fixed lengths, as vLLM's client (its default 0.0 samples)
    if name == "generated-shared-prefix":
        out += ["--gsp-range-ratio", "1.0"]  # fixed lengths (the default, said explicitly)
    return out

"""The normalized serving metrics every engine's load client is mapped onto (docs/schema.md).

Both clients (``vllm bench serve`` and ``sglang.benchmark.serving``) define TTFT, TPOT and ITL
the same way (TPOT = (latency - TTFT) / (output tokens - 1) per request, averaged; ITL pools all
gaps between streamed chunks); the definitions travel with the numbers in the ``definition``
column.
"""

from __future__ import annotations

import math

STATS = ("mean", "p50", "p90", "p99")
LATENCIES = {
    "ttft": "time to first token (request sent -> first streamed token)",
    "tpot": "time per output token after the first: (e2el - ttft) / (output_tokens - 1), per request",
    "itl": "inter-token latency: every gap between streamed chunks, pooled over requests",
    "e2el": "end-to-end request latency (request sent -> last token)",
}
COUNTS = {
    "request_throughput": ("req/s", "completed requests / benchmark duration"),
    "output_throughput": ("tok/s", "generated tokens / benchmark duration"),
    "total_token_throughput": ("tok/s", "(input + generated tokens) / benchmark duration"),
    "completed": ("requests", "requests that finished successfully"),
    "failed": ("requests", "requests that failed (num_prompts - completed where the client omits it)"),
    "duration": ("s", "benchmark wall time, first request sent -> last response"),
    "total_input_tokens": ("tokens", "prompt tokens of the completed requests"),
    "total_output_tokens": ("tokens", "generated tokens of the completed requests"),
    "max_concurrent_requests": ("requests", "most requests in flight at once (client side)"),
}
TELEMETRY = {
    "gpu_util_mean": ("%", "NVML GPU utilization, mean over the cell's measuring window"),
    "gpu_util_max": ("%", "NVML GPU utilization, max over the cell's measuring window"),
    "mem_used_max_mib": ("MiB", "NVML GPU memory used, max over the window"),
    "power_mean_w": ("W", "NVML board power, mean over the window"),
    "energy_j": ("J", "GPU energy over the window (NVML energy counter, else integrated power)"),
    "j_per_output_token": ("J/token", "energy_j / total_output_tokens"),
}


def metric_names() -> list[tuple[str, str]]:
    out = [(f"{m}_{s}", "ms") for m in LATENCIES for s in STATS]
    out += [(k, u) for k, (u, _) in COUNTS.items()]
    return out


def _num(v):
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def rows(stats: dict[str, float | None], counts: dict[str, float | None], client: str) -> list[dict]:
    """``stats`` keyed ``<latency>_<stat>`` (ms); ``counts`` keyed as in COUNTS."""
    out = []
    for m, d in LATENCIES.items():
        for s in STATS:
            out.append(
                {
                    "metric": f"{m}_{s}",
                    "value": _num(stats.get(f"{m}_{s}")),
                    "unit": "ms",
                    "definition": f"{d} [{client}]",
                }
            )
    for k, (u, d) in COUNTS.items():
        out.append({"metric": k, "value": _num(counts.get(k)), "unit": u, "definition": f"{d} [{client}]"})
    return out


class RequestsFailed(ValueError):
    """Some of a cell's requests failed: its latencies and throughput would describe the survivors
    of a different load than the one asked for, so the cell is a typed failure, not a number."""

    def __init__(self, completed, failed):
        self.completed, self.failed = int(completed), int(failed)
        super().__init__(f"{self.failed} of {self.completed + self.failed} requests failed")


def check(counts: dict) -> None:
    """A run that completed nothing has no latency to report: that is a failure, not a number; nor
    has one where some requests failed (``RequestsFailed``)."""
    done = _num(counts.get("completed"))
    if not done:
        raise ValueError(
            f"no request completed (completed={counts.get('completed')!r}, failed={counts.get('failed')!r})"
        )
    failed = _num(counts.get("failed"))
    if failed:
        raise RequestsFailed(done, failed)

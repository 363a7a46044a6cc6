"""SGLang. Its server needs a GPU (``sgl_kernel``); where the probe import fails its cells are
typed ``skipped: engine_unavailable``. Serving tools arrive with the Week 1 work."""

from __future__ import annotations

from .base import Engine


class SGLang(Engine):
    name = "sglang"

    def command(self, tool, model_path, params, engine_args, out_json):
        raise ValueError(f"sglang adapter has no tool {tool!r} yet")

    def metric_names(self, tool):
        from .vllm import VLLM

        return VLLM.metric_names(self, tool) if tool == "vllm_bench_latency" else []

    def parse(self, tool, raw_path, params):
        raise ValueError(f"sglang adapter has no tool {tool!r} yet")

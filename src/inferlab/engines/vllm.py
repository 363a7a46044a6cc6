"""vLLM: ``vllm bench latency`` (offline, one engine per run)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from .base import Engine, engine_args_to_cli

LATENCY_PERCENTILES = ("10", "25", "50", "75", "90", "99")
# The definition is part of the schema: vLLM's latency bench times a whole generate() call of
# batch_size prompts (input_len tokens each) producing output_len tokens.
DEF_LATENCY = "wall time of one generate() call of the whole batch (vllm bench latency)"
DEF_PER_TOKEN = "latency_avg / output_len: per-output-token latency including the prefill"


class VLLM(Engine):
    name = "vllm"

    def command(self, tool, model_path, params, engine_args, out_json):
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

    def metric_names(self, tool):
        return (
            [("latency_avg", "ms")]
            + [(f"latency_p{q}", "ms") for q in LATENCY_PERCENTILES]
            + [("latency_per_output_token", "ms/token")]
        )

    def parse(self, tool, raw_path: Path, params: dict) -> list[dict]:
        data = json.loads(Path(raw_path).read_text())
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

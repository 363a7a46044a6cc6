"""A fair HF ``transformers`` static-batching baseline (Weeks 4 and 7; shared/notes/weeks04-16.md §H),
not ``vllm bench throughput --backend hf`` (no attention mask, sampling on, packs only to 2,048
tokens). The engine environment's transformers runs ``inferlab/drivers/hf_static.py``: the same
requests as the vLLM cells (vLLM's own throughput sampler, same dataset, ``num_prompts`` and
``seed``), left padding + attention mask, greedy, ``min_new_tokens = max_new_tokens`` = the batch's
longest request, one untimed warm-up, synchronised timing. One process per cell, no server; the
engine catalog's ``hf`` variant (config/engines.yaml, base vllm: same environment) runs it, so its
rows say ``engine: hf``.

Rows (:func:`parse`): ``offline_total_token_throughput`` and ``offline_output_token_throughput``
(useful tokens: prompts + requested outputs, and requested outputs, over the wall time of all
batches: the same definitions as the vLLM offline cells'), request throughput, elapsed time, the
static batches' ``padding_waste`` (1 - sum O / sum over batches of rows x max O) and
``static_occupancy_mean`` (mean over decode steps of rows still producing requested tokens / rows).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from ..errors import ConfigError

NAME = "hf_static_batch"
NEEDS_SERVER = False
DRIVER = None
DATASET = True
SCRIPT = Path(__file__).resolve().parents[1] / "drivers" / "hf_static.py"
PARAMS = {
    "num_prompts": {"type": "integer", "minimum": 1, "description": "requests sampled (as vllm bench throughput)"},
    "dataset": {"type": "string", "description": "dataset id (config/datasets.yaml); unused with dataset_name random"},
    "dataset_name": {
        "enum": ["sharegpt", "random", "custom"],
        "default": "sharegpt",
        "description": "the sampler (custom: vLLM's JSONL of prompts and declared output_tokens, a format custom dataset)",
    },
    "skip_chat_template": {
        "type": "boolean",
        "description": "custom: the prompts as written, no chat template (base models); as the vLLM cells'",
    },
    "seed": {"type": "integer", "minimum": 0, "default": 0, "description": "sampling seed"},
    "random_input_len": {"type": "integer", "minimum": 1, "description": "random: prompt tokens"},
    "random_output_len": {"type": "integer", "minimum": 1, "description": "random: output tokens"},
    "batch_size": {"type": "integer", "minimum": 1, "default": 16, "description": "rows of one static batch"},
}
REQUIRED = ("num_prompts",)

ROWS = (
    (
        "offline_total_token_throughput",
        "tok/s",
        "tokens_per_second",
        "(prompt + requested output tokens) / wall time of all static batches",
    ),
    (
        "offline_output_token_throughput",
        "tok/s",
        "output_tokens_per_second",
        "requested (useful) output tokens / wall time of all static batches",
    ),
    ("offline_request_throughput", "req/s", "requests_per_second", "requests / wall time of all static batches"),
    ("offline_elapsed", "s", "elapsed_time", "wall time of all static batches (synchronised, after one warm-up)"),
    (
        "padding_waste",
        "ratio",
        "padding_waste",
        "1 - sum(O_i) / sum over batches of (rows x max O): decode slots producing no requested token",
    ),
    (
        "static_occupancy_mean",
        "ratio",
        None,
        "mean over decode steps of the rows still producing requested tokens / the batch's rows",
    ),
    ("offline_output_tokens", "tokens", None, "requested output tokens of all requests"),
)


def check(params: dict, server_args: dict, file, key: str) -> None:
    name = params.get("dataset_name", "sharegpt")
    if name in ("sharegpt", "custom") and not params.get("dataset"):
        raise ConfigError(file, key, f"hf_static_batch with dataset_name {name} needs a dataset")
    if "skip_chat_template" in params and name != "custom":
        raise ConfigError(file, f"{key}: skip_chat_template", f"only dataset_name custom reads it, not {name}")
    if name == "random" and not (params.get("random_input_len") and params.get("random_output_len")):
        raise ConfigError(
            file, key, "hf_static_batch with dataset_name random needs random_input_len and random_output_len"
        )


def command(python: str, model_path, params: dict, out_json, dataset_path=None) -> list[str]:
    p = {k: v for k, v in params.items() if k in PARAMS and k != "dataset"}
    cmd = [
        python,
        str(SCRIPT),
        "--model",
        str(model_path),
        "--params",
        json.dumps(p, sort_keys=True),
        "--out",
        str(out_json),
    ]
    if dataset_path and params.get("dataset_name", "sharegpt") in ("sharegpt", "custom"):
        cmd += ["--dataset", str(dataset_path)]
    return cmd


def metric_names() -> list[tuple[str, str]]:
    return [(m, u) for m, u, _, _ in ROWS]


def occupancy_mean(data: dict) -> float | None:
    rows = {b["rows"] for b in data.get("per_batch", [])}
    occ = data.get("occupancy") or []
    if not occ:
        return None
    per = {i: b["rows"] for i, b in enumerate(data["per_batch"])} if rows else {}
    return sum(o["running"] / per[o["batch"]] for o in occ) / len(occ)


def parse(data: dict) -> list[dict]:
    tps = data.get("tokens_per_second")
    if not isinstance(tps, (int, float)) or not math.isfinite(tps) or tps <= 0:
        raise ValueError(f"tokens_per_second is not a positive number: {tps!r}")
    req, ach = data.get("requested") or {}, data.get("achieved") or {}
    if any(ach.get(k) != req.get(k) for k in ("requests", "output_tokens")):
        # every row must have generated at least its requested tokens (min_new_tokens)
        raise ValueError(f"achieved {ach} != requested {req}")
    vals = {m: data.get(k) for m, _, k, _ in ROWS if k}
    vals["static_occupancy_mean"] = occupancy_mean(data)
    vals["offline_output_tokens"] = data["requested"]["output_tokens"]
    src = f"HF transformers static batches of {data.get('batch_size')} on {data.get('device')} (inferlab hf_static)"
    return [
        {"metric": m, "value": None if vals[m] is None else float(vals[m]), "unit": u, "definition": f"{d} ({src})"}
        for m, u, _, d in ROWS
    ]


def generates_prompts(exp: dict) -> bool:
    """True when every workload of the experiment is generated (dataset_name random): no dataset."""
    names = exp.get("sweep", {}).get("dataset_name") or [exp.get("fixed", {}).get("dataset_name", "sharegpt")]
    return not {"sharegpt", "custom"} & set(names)

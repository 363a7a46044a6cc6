"""Expert load balance of an MoE model: the engine environment's transformers runs the model with
``output_router_logits=True`` on the first ``num_prompts`` prompts of a dataset and counts each
layer's top-k experts per token (``inferlab/expertload.py``). One process per cell, no server.
Metrics (``inferlab.engines.vllm.parse_expert_load``): each expert's share of the routed
token-slots (mean over layers), max/mean load and the coefficient of variation across experts."""

from ..errors import ConfigError

NAME = "expert_load"
NEEDS_SERVER = False
DRIVER = None
DATASET = True
PARAMS = {
    "num_prompts": {"type": "integer", "minimum": 1, "description": "prompts taken from the dataset, in order"},
    "dataset": {"type": "string", "description": "dataset id (config/datasets.yaml), ShareGPT format"},
    "max_len": {"type": "integer", "minimum": 1, "default": 1024, "description": "prompt tokens kept (truncation)"},
}
REQUIRED = ("num_prompts", "dataset")


def check(params: dict, server_args: dict, file, key: str) -> None:
    if server_args.get("load_format") == "dummy":
        raise ConfigError(
            file,
            key,
            "expert_load reads the checkpoint's router weights: a model served with load_format dummy "
            "has none (its routing would not be the served model's)",
        )

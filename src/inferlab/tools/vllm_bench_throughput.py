"""``vllm bench throughput``: all prompts of a dataset sample at once (offline batch), total
(prompt + generated) tokens per second."""

NAME = "vllm_bench_throughput"
NEEDS_SERVER = False
DRIVER = "vllm_offline"
DATASET = True
PARAMS = {
    "num_prompts": {"type": "integer", "minimum": 1, "description": "prompts sampled from the dataset"},
    "dataset": {"type": "string", "description": "dataset id (config/datasets.yaml)"},
    "dataset_name": {"enum": ["sharegpt"], "default": "sharegpt", "description": "the client's dataset format"},
    "seed": {"type": "integer", "minimum": 0, "default": 0, "description": "sampling seed"},
}
REQUIRED = ("num_prompts", "dataset")


def check(params: dict, server_args: dict, file, key: str) -> None:
    return None

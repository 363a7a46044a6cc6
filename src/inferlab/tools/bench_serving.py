"""A server loaded by the engine's own load client (``vllm bench serve`` for vLLM,
``python -m sglang.benchmark.serving`` for SGLang), one cell at a time against one server start."""

NAME = "bench_serving"
NEEDS_SERVER = True
DRIVER = None
DATASET = True
PARAMS = {
    "request_rate": {
        "description": "requests per second (Poisson arrivals), or inf: all at once",
        "oneOf": [{"type": "number", "exclusiveMinimum": 0}, {"const": "inf"}],
    },
    "num_prompts": {"type": "integer", "minimum": 1, "description": "requests sent"},
    "dataset": {"type": "string", "description": "dataset id (config/datasets.yaml)"},
    "dataset_name": {"enum": ["sharegpt"], "default": "sharegpt", "description": "the client's dataset format"},
    "seed": {"type": "integer", "minimum": 0, "default": 0, "description": "sampling seed"},
    "ignore_eos": {"type": "boolean", "description": "generate the dataset's output lengths, ignoring EOS"},
    "max_concurrency": {"type": "integer", "minimum": 1, "description": "cap on requests in flight"},
    "profile": {"type": "boolean", "description": "write a PyTorch profiler trace of the server for this cell"},
}
REQUIRED = ("request_rate", "num_prompts", "dataset")


def check(params: dict, server_args: dict, file, key: str) -> None:
    return None

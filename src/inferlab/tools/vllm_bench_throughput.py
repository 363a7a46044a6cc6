"""``vllm bench throughput``: all prompts of a dataset sample at once (offline batch), total
(prompt + generated) tokens per second."""

NAME = "vllm_bench_throughput"
NEEDS_SERVER = False
DRIVER = "vllm_offline"
DATASET = True
PARAMS = {
    "num_prompts": {"type": "integer", "minimum": 1, "description": "prompts sampled from the dataset"},
    "dataset": {"type": "string", "description": "dataset id (config/datasets.yaml)"},
    "dataset_name": {
        "enum": ["sharegpt", "random", "custom"],
        "default": "sharegpt",
        "description": "the client's dataset format (custom: vLLM's JSONL with declared output_tokens)",
    },
    # dataset_name custom (Week 7's declared output lengths): vLLM 0.32's throughput CLI lists no
    # `custom` name; its sampler (get_samples, shared with vllm bench serve) reads it, and the offline
    # driver sets it as the HF baseline does (inferlab.drivers.hf_static.custom_args)
    "skip_chat_template": {
        "type": "boolean",
        "description": "custom: the prompts as written, no chat template (base models)",
    },
    "seed": {"type": "integer", "minimum": 0, "default": 0, "description": "sampling seed"},
    "num_warmups": {
        "type": "integer",
        "minimum": 0,
        "description": "untimed warm-up requests before the timed batch (--num-warmups; the engine's first "
        "steps are slow: on the CPU ~1 s, most of a small batch's time)",
    },
    # dataset_name random (Week 7's uniform workload): --random-input-len / --random-output-len
    "random_input_len": {"type": "integer", "minimum": 1, "description": "random: prompt tokens"},
    "random_output_len": {"type": "integer", "minimum": 1, "description": "random: output tokens"},
}
REQUIRED = ("num_prompts",)


def check(params: dict, server_args: dict, file, key: str) -> None:
    from ..errors import ConfigError

    name = params.get("dataset_name", "sharegpt")
    if name in ("sharegpt", "custom") and not params.get("dataset"):
        raise ConfigError(file, key, f"vllm_bench_throughput with dataset_name {name} needs a dataset")
    if "skip_chat_template" in params and name != "custom":
        raise ConfigError(file, f"{key}: skip_chat_template", f"only dataset_name custom reads it, not {name}")
    if name == "random" and not (params.get("random_input_len") and params.get("random_output_len")):
        # the CLI's random flags always have defaults (1024/128) and would silently win
        raise ConfigError(file, key, "dataset_name random needs random_input_len and random_output_len")


def generates_prompts(exp: dict) -> bool:
    """True when every workload of the experiment is generated (dataset_name random): no dataset."""
    names = exp.get("sweep", {}).get("dataset_name") or [exp.get("fixed", {}).get("dataset_name", "sharegpt")]
    return not {"sharegpt", "custom"} & set(names)

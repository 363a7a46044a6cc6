"""``vllm bench latency``: one batch of ``batch_size`` dummy prompts of ``input_len`` tokens,
``output_len`` new tokens each, ``num_iters`` timed ``generate()`` calls after ``num_iters_warmup``.
Several points of one engine configuration share one engine start through the driver
(``inferlab.drivers.vllm_offline``), which follows the CLI's procedure."""

from ..errors import ConfigError

NAME = "vllm_bench_latency"
NEEDS_SERVER = False
DRIVER = "vllm_offline"
DATASET = False
PARAMS = {
    "batch_size": {"type": "integer", "minimum": 1, "description": "prompts per generate() call"},
    "input_len": {"type": "integer", "minimum": 1, "description": "prompt tokens"},
    "output_len": {"type": "integer", "minimum": 1, "description": "generated tokens (EOS ignored)"},
    "num_iters": {"type": "integer", "minimum": 1, "default": 30, "description": "timed iterations"},
    "num_iters_warmup": {"type": "integer", "minimum": 0, "default": 10, "description": "untimed iterations"},
}
REQUIRED = ("batch_size", "input_len", "output_len")


def check(params: dict, server_args: dict, file, key: str) -> None:
    from . import max_model_len

    mml = max_model_len(server_args)
    need = params["input_len"] + params["output_len"]
    if mml is not None and need > mml:
        raise ConfigError(
            file,
            key,
            f"input_len + output_len = {need} exceeds the engine's max_model_len {mml}: the engine would refuse it",
        )

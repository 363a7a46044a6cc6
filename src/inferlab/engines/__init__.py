"""Engine adapters: how to run a tool of an engine for a cell and how to read what it wrote.

Adding an engine is one new module with an :class:`~inferlab.engines.base.Engine` subclass,
registered in ``ENGINES``.
"""

from .base import Engine, engine_args_to_cli
from .sglang import SGLang
from .vllm import VLLM

ENGINES: dict[str, type[Engine]] = {"vllm": VLLM, "sglang": SGLang}


def get(name: str) -> type[Engine]:
    try:
        return ENGINES[name]
    except KeyError:
        raise KeyError(f"no adapter for engine {name!r} (have: {', '.join(ENGINES)})") from None


__all__ = ["ENGINES", "Engine", "engine_args_to_cli", "get"]


def from_config(cfg, name: str, base_dir=".") -> Engine:
    """The adapter for engine ``name`` as the run's preset sets it up (env, args, env vars)."""
    from pathlib import Path

    setup = cfg.preset["engines"].get(name, {})
    env = setup.get("env")
    if env and not Path(env).is_absolute():
        env = str(Path(base_dir) / env)
    return get(name)(
        env, cfg.engines[name], setup.get("args", {}), setup.get("env_vars", {}), cfg.preset.get("compile_cache")
    )

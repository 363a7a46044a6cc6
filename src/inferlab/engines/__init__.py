"""Engine adapters: how to run a tool of an engine for a cell and how to read what it wrote.

Adding an engine is one new module with an :class:`~inferlab.engines.base.Engine` subclass,
registered in ``ENGINES``.
"""

from .base import Engine, engine_args_to_cli
from .hf import HF
from .sglang import SGLang
from .vllm import VLLM

ENGINES: dict[str, type[Engine]] = {"vllm": VLLM, "sglang": SGLang, "hf": HF}


def get(name: str) -> type[Engine]:
    try:
        return ENGINES[name]
    except KeyError:
        raise KeyError(f"no adapter for engine {name!r} (have: {', '.join(ENGINES)})") from None


__all__ = ["ENGINES", "Engine", "engine_args_to_cli", "get"]


def from_setup(name: str, setup: dict, catalog: dict, compile_cache=None, base_dir=".") -> Engine:
    """The adapter for engine ``name`` from a preset's engine setup (env, args, env vars) and its
    catalog entry; a relative ``env`` is taken from ``base_dir`` (the repository)."""
    from pathlib import Path

    env = setup.get("env")
    if env and not Path(env).is_absolute():
        env = str(Path(base_dir) / env)
    kw = {}
    if setup.get("client_env"):
        ce = setup["client_env"]
        kw["client_env"] = ce if Path(ce).is_absolute() else str(Path(base_dir) / ce)
    # an engine variant (catalog `base:`) runs its base's adapter with its own args and env vars
    adapter = get(catalog.get("adapter") or name)
    args = {**setup.get("args", {}), **catalog.get("args", {})}
    env_vars = {**setup.get("env_vars", {}), **catalog.get("env_vars", {})}
    eng = adapter(env, catalog, args, env_vars, compile_cache, **kw)
    eng.name = name
    return eng


def from_config(cfg, name: str, base_dir=".") -> Engine:
    """The adapter for engine ``name`` as the run's preset sets it up."""
    setup = cfg.preset["engines"].get(name) or cfg.preset["engines"].get(cfg.engine_entry(name).get("adapter"), {})
    return from_setup(name, setup, cfg.engine_entry(name), cfg.preset.get("compile_cache"), base_dir)

"""Benchmark tools as plug-ins: one module per tool, registered in ``TOOLS``.

A tool module declares:

- ``NAME``: the id week files use in ``tool:``;
- ``PARAMS``: a JSON Schema ``properties`` mapping of every parameter the tool consumes (swept or
  fixed); a key that is not there is a configuration error at load time, never silently dropped;
- ``REQUIRED``: the parameters a cell must have;
- ``NEEDS_SERVER``: True when the tool loads a running server (a serving session), False when it
  runs the engine in-process (offline);
- ``DRIVER``: the in-process driver that runs several cells of one engine configuration against one
  engine start (``inferlab.drivers.<DRIVER>``), or None (then each cell runs the tool's CLI);
- ``DATASET``: True when the tool reads a dataset file (``dataset`` parameter, a catalog id);
- ``EXACT_LENGTHS`` (optional, default True): False where requests stop at stop strings (lm_eval), so
  the server's requested output tokens are a cap: the lengths check does not apply to its cells;
- ``check(params, server_args, file, key)``: cross checks that need the engine configuration (e.g.
  a prompt longer than ``max_model_len``), raising :class:`~inferlab.errors.ConfigError`.

The command line and the parser of a tool are the engine adapter's (``Engine.command`` /
``Engine.client_command`` and ``Engine.parse``): a tool like ``bench_serving`` is the engine's own
load client, so its command differs per engine. Adding a tool is one module here plus its name in
the engine catalog's ``tools`` list (config/engines.yaml).
"""

from __future__ import annotations

from types import ModuleType

from . import bench_serving, expert_load, hf_static_batch, lm_eval, vllm_bench_latency, vllm_bench_throughput

TOOLS: dict[str, ModuleType] = {
    m.NAME: m for m in (vllm_bench_latency, vllm_bench_throughput, bench_serving, expert_load, lm_eval, hf_static_batch)
}


def get(name: str) -> ModuleType:
    try:
        return TOOLS[name]
    except KeyError:
        raise KeyError(f"unknown tool {name!r} (known: {', '.join(sorted(TOOLS))})") from None


def needs_server(name: str) -> bool:
    return get(name).NEEDS_SERVER


def params_schema(name: str) -> dict:
    """The JSON Schema of one cell's parameters (swept + fixed) for this tool."""
    t = get(name)
    return {
        "type": "object",
        "additionalProperties": False,
        "properties": t.PARAMS,
        "required": list(t.REQUIRED),
    }


def max_model_len(server_args: dict) -> int | None:
    v = server_args.get("max_model_len")
    return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None

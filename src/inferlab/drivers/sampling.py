"""vLLM's ``vllm bench throughput`` sampler for both offline drivers, on every vLLM the course pins.

Runs in the engine's environment; standard library at import (vLLM is imported when sampling), so the
HF baseline (``hf_static.py``, run as a script: this file is its sibling) and the offline vLLM driver
(``inferlab.drivers.vllm_offline``) import it alike and draw the very same requests.

``dataset_name custom`` (Week 7's JSONL of {"prompt", "output_tokens"}): vLLM 0.32.0's
``vllm/benchmarks/throughput.py`` ``get_requests`` hands every dataset to the serve benchmark's
``get_samples`` (``vllm/benchmarks/datasets/datasets.py``), which has a ``custom`` branch.
vLLM 0.26.0's ``get_requests`` has its own if/elif ladder of dataset names, with ``custom_audio``
but no ``custom``, and ends in ``raise ValueError(f"Unknown dataset name: {args.dataset_name}")``
(throughput.py line 710), although 0.26's ``CustomDataset`` is the same class (same ``__init__``
and ``sample`` arguments, same shuffle with ``random.seed(random_seed)`` in ``load_data``).
:func:`get_requests` calls vLLM's own; where that vLLM has no ``custom`` branch,
:func:`custom_requests` builds the requests with vLLM's ``CustomDataset`` exactly as 0.32's branch does.
"""

from __future__ import annotations

import argparse

UNKNOWN_CUSTOM = "Unknown dataset name: custom"  # vLLM 0.26.0 throughput.py get_requests, line 710


def get_requests(args: argparse.Namespace, tokenizer, *, fallback: bool | None = None) -> list:
    """The requests of ``vllm bench throughput`` for ``args`` (list of vLLM ``SampleRequest``).

    ``fallback=None``: vLLM's ``get_requests``; with ``dataset_name custom`` on a vLLM whose
    ``get_requests`` raises ``ValueError('Unknown dataset name: custom')`` (0.26), :func:`custom_requests`.
    ``True``: :func:`custom_requests` for ``custom`` whatever the vLLM (tests compare both paths).
    ``False``: vLLM's ``get_requests`` only."""
    from vllm.benchmarks.throughput import get_requests as vllm_get_requests

    custom = getattr(args, "dataset_name", None) == "custom"
    if custom and fallback:
        return custom_requests(args, tokenizer)
    try:
        return vllm_get_requests(args, tokenizer)
    except ValueError as e:  # 0.26 raises before it samples or draws anything
        if not custom or fallback is False or str(e) != UNKNOWN_CUSTOM:
            raise
    return custom_requests(args, tokenizer)


def custom_requests(args: argparse.Namespace, tokenizer) -> list:
    """``dataset_name custom`` as vLLM 0.32.0 samples it for ``vllm bench throughput``.

    0.32.0's ``vllm/benchmarks/throughput.py`` ``get_requests`` = ``_to_serve_args`` (serve-only
    attributes the throughput parser lacks default to ``disable_shuffle=False``,
    ``skip_chat_template=False``, ``no_oversample=False``, ``request_id_prefix=""``,
    ``chat_template_kwargs=None``: the ``getattr`` defaults below), then
    ``vllm/benchmarks/datasets/datasets.py`` ``get_samples``' ``custom`` branch (the
    ``CustomDataset(...).sample(...)`` call below, same arguments, seed ``args.seed``), then
    ``assign_loras`` (no-op without ``--lora-path``) and ``filter_requests_for_dp``."""
    from vllm.benchmarks.datasets import CustomDataset
    from vllm.benchmarks.throughput import filter_requests_for_dp

    if getattr(args, "lora_path", None):
        raise NotImplementedError("dataset_name custom with --lora-path on a vLLM without get_requests' custom")
    # -- vLLM 0.32.0 vllm/benchmarks/datasets/datasets.py get_samples, `if args.dataset_name == "custom":`
    dataset = CustomDataset(
        dataset_path=args.dataset_path,
        disable_shuffle=getattr(args, "disable_shuffle", False),
        random_seed=args.seed,
    )
    input_requests = dataset.sample(
        num_requests=args.num_prompts,
        tokenizer=tokenizer,
        output_len=args.custom_output_len,
        skip_chat_template=getattr(args, "skip_chat_template", False),
        chat_template_kwargs=getattr(args, "chat_template_kwargs", None),
        request_id_prefix=getattr(args, "request_id_prefix", ""),
        no_oversample=getattr(args, "no_oversample", False),
    )
    # -- end of the branch; vLLM 0.32.0 throughput.py get_requests' last step
    return filter_requests_for_dp(input_requests, getattr(args, "data_parallel_size", 1))

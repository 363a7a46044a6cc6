"""Quantize a catalog model locally (stage 1, ``source: quantize``): the embedded default's Week 12
variants, built from the trained tiny model with llm-compressor (pinned in envs/quant.lock.txt,
``.venv-quant``, layered on the engine environment).

Round-to-nearest, no calibration data (llm-compressor ``oneshot`` with a ``QuantizationModifier``,
notes §T), ``lm_head`` and the embeddings left in 16 bit, saved in the compressed-tensors format
that vLLM loads (CPU: W4A16 through ``CPUWNA16LinearKernel``, INT8 W8A8 through oneDNN). Schemes:

- ``W4A16``: int4 weights, symmetric, one scale per ``group_size`` input channels (the tiny model's
  352-wide MLP needs a group that divides it: 32), 16-bit activations;
- ``W8A8``: int8 weights per output channel, int8 activations quantized per token at run time.

Files the base model carries beside its weights (the eval split ``eval.jsonl``, ``train.json``)
are copied, so an accuracy cell of the variant reads the same task. Atomic (temp dir renamed)::

    python -m inferlab.quantize --base DIR --out DIR --scheme W4A16 [--group-size 32]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from inferlab.io import atomic_dir

SCHEMES = ("W4A16", "W8A8")
CARRY = ("eval.jsonl", "train.jsonl", "train.json", "inferlab_build.json")


def recipe(scheme: str, group_size: int = 32):
    from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme
    from llmcompressor.modifiers.quantization import QuantizationModifier

    if scheme == "W4A16":
        qs = QuantizationScheme(
            targets=["Linear"],
            weights=QuantizationArgs(num_bits=4, type="int", symmetric=True, strategy="group", group_size=group_size),
        )
    elif scheme == "W8A8":
        qs = QuantizationScheme(
            targets=["Linear"],
            weights=QuantizationArgs(num_bits=8, type="int", symmetric=True, strategy="channel"),
            input_activations=QuantizationArgs(num_bits=8, type="int", symmetric=True, strategy="token", dynamic=True),
        )
    else:
        raise ValueError(f"unknown scheme {scheme!r} (known: {', '.join(SCHEMES)})")
    return QuantizationModifier(config_groups={"group_0": qs}, ignore=["lm_head"])


def quantize(base: Path, out: Path, scheme: str, group_size: int = 32) -> dict:
    import torch
    from llmcompressor import oneshot
    from transformers import AutoModelForCausalLM, AutoTokenizer

    t0 = time.monotonic()
    base, out = Path(base), Path(out)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.bfloat16)
    tok = AutoTokenizer.from_pretrained(base)
    oneshot(model=model, recipe=recipe(scheme, group_size))
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp, save_compressed=True)
        tok.save_pretrained(tmp)
        for name in CARRY:
            if (base / name).exists():
                shutil.copyfile(base / name, tmp / name)
        info = {
            "base": str(base),
            "scheme": scheme,
            "group_size": group_size if scheme == "W4A16" else None,
            "method": "llm-compressor oneshot, QuantizationModifier (round-to-nearest, no calibration), lm_head ignored",
            "weights_bytes_on_disk": sum(p.stat().st_size for p in tmp.glob("*.safetensors")),
            "seconds": round(time.monotonic() - t0, 2),
        }
        (tmp / "inferlab_quantize.json").write_text(json.dumps(info, indent=1))
    return info


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--scheme", required=True, choices=SCHEMES)
    ap.add_argument("--group-size", type=int, default=32)
    a = ap.parse_args(argv)
    print(json.dumps(quantize(Path(a.base), Path(a.out), a.scheme, a.group_size)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

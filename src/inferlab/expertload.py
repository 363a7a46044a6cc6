"""Expert load of an MoE model (Mixtral) from transformers' router logits, on a dataset's prompts.

Runs in the *engine* environment (torch + transformers) as a script, standalone (no package
imports): ``python expertload.py --model DIR --dataset FILE --num-prompts N --out raw.json``.
The first ``num_prompts`` human turns of a ShareGPT-format file (the prompt set the Week 14
serving cells draw from) go through ``model(..., output_router_logits=True)`` one at a time; for
every layer and token the top-k experts of the router's softmax are counted (what Mixtral's
forward pass routes to). raw.json: per-layer histograms ``counts[layer][expert]``, the routed
token count, ``experts`` and ``top_k``. vLLM's own routed-experts return needs Model Runner V2
(Triton): not on the CPU build (shared/notes/cpu-engine-features.md), hence this path.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

# run as a file, its folder (src/inferlab: profile.py, io.py, ...) would shadow the standard library
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]


def prompts(dataset: Path, n: int) -> list[str]:
    data = json.loads(Path(dataset).read_text())
    out = []
    for conv in data:
        turns = conv.get("conversations") or []
        if turns and turns[0].get("value"):
            out.append(turns[0]["value"])
        if len(out) == n:
            break
    if len(out) < n:
        raise SystemExit(f"{dataset}: only {len(out)} prompts, {n} asked for")
    return out


def measure(model_dir: str, texts: list[str], max_len: int) -> dict:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    cfg = AutoConfig.from_pretrained(model_dir)
    experts = getattr(cfg, "num_local_experts", None) or getattr(cfg, "num_experts", None)
    top_k = getattr(cfg, "num_experts_per_tok", None)
    if not experts or not top_k:
        raise SystemExit(f"{model_dir}: not an MoE model (no num_local_experts / num_experts_per_tok in its config)")
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16)
    model.eval()
    counts = None
    tokens = 0
    t0 = time.perf_counter()
    with torch.no_grad():
        for text in texts:
            ids = tok(text, return_tensors="pt", truncation=True, max_length=max_len)
            out = model(**ids, output_router_logits=True)
            logits = out.router_logits  # one [tokens, experts] tensor per layer
            if logits is None or len(logits) == 0:
                raise SystemExit("the model returned no router logits (output_router_logits=True)")
            if counts is None:
                counts = [[0] * experts for _ in logits]
            for li, lg in enumerate(logits):
                top = torch.topk(torch.softmax(lg.float(), dim=-1), top_k, dim=-1).indices.flatten()
                for e, c in zip(*torch.unique(top, return_counts=True), strict=True):
                    counts[li][int(e)] += int(c)
            tokens += int(ids["input_ids"].shape[1])
    return {
        "counts": counts,
        "tokens": tokens,
        "prompts": len(texts),
        "experts": int(experts),
        "top_k": int(top_k),
        "layers": len(counts),
        "elapsed_s": time.perf_counter() - t0,
        "source": "transformers router logits (output_router_logits=True), top-k of the router softmax",
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--dataset", required=True, type=Path)
    ap.add_argument("--num-prompts", type=int, required=True)
    ap.add_argument("--max-len", type=int, default=1024)
    ap.add_argument("--out", required=True, type=Path)
    a = ap.parse_args(argv)
    res = measure(a.model, prompts(a.dataset, a.num_prompts), a.max_len)
    a.out.write_text(json.dumps(res, indent=1))
    print(f"expert load: {res['tokens']} tokens x {res['layers']} layers, top-{res['top_k']} of {res['experts']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

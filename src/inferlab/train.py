"""Train the embedded default's tiny Llama (and a smaller draft) on a task with checkable answers.

A random-weight model accepts no draft tokens and answers nothing right, so on the embedded default
acceptance rates and accuracies would be noise. This module trains a small Llama, with the
tokenizer of an already built catalog model (``tiny-llama``), on synthetic small-number arithmetic
in a GSM8K-like format::

    Question: 23+41=?
    Answer: 23+41=64 #### 64

All pairs ``a + b`` with ``0 <= a, b < max_operand`` are split deterministically (seeded) into a
training and a held-out evaluation split; the model never sees an evaluation pair. After training,
greedy accuracy on the held-out split is measured with transformers and written beside the weights
(``train.json``), together with the splits (``eval.jsonl``, ``train.jsonl``: ``question`` /
``answer`` records that an lm-eval task reads, ``#### <n>`` ending each answer as in GSM8K).

Deterministic for a given spec (seeded data, init and order; ``torch.use_deterministic_algorithms``).
The task generator needs no torch (``build_dataset`` uses it in the workflow environment); training
runs in the *engine* environment (torch + transformers)::

    python -m inferlab.train --out DIR --tokenizer DIR --spec '{"hidden_size": 128, ...}'
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import sys
import time
from pathlib import Path

from inferlab.io import atomic_dir

# architecture + training settings; the catalog's `architecture:` and `train:` override these
DEFAULT_SPEC = {
    "hidden_size": 128,
    "intermediate_size": 352,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 8192,
    "tie_word_embeddings": False,
    "vocab_size": 10240,
    # training
    "task": "arithmetic",
    "max_operand": 50,
    "eval_fraction": 0.1,
    "steps": 1500,
    "batch_size": 64,
    "lr": 3e-3,
    "warmup_steps": 50,
    "weight_decay": 0.01,
    "seed": 0,
    "threads": 2,
    "eval_limit": None,  # evaluate on the first N held-out examples (None: all)
    "max_new_tokens": 16,
}
ANSWER = re.compile(r"#### (-?\d+)")
TASKS = ("arithmetic",)


# -- the task (no torch) ------------------------------------------------------------------------


def example(a: int, b: int) -> dict:
    """One record: ``question`` (what the prompt shows) and ``answer`` (the completion, ``#### n``)."""
    return {"question": f"{a}+{b}=?", "answer": f"{a}+{b}={a + b} #### {a + b}", "target": a + b}


def prompt(question: str) -> str:
    """The prompt of a question; the model continues it with `` <answer>``."""
    return f"Question: {question}\nAnswer:"


def text(rec: dict) -> str:
    return f"{prompt(rec['question'])} {rec['answer']}"


def splits(max_operand: int = 50, eval_fraction: float = 0.1, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """(train, eval): every pair a+b (0 <= a, b < max_operand), shuffled with ``seed`` and cut; the
    evaluation pairs never appear in training."""
    if max_operand < 2:
        raise ValueError(f"max_operand {max_operand} < 2")
    if not 0 < eval_fraction < 1:
        raise ValueError(f"eval_fraction {eval_fraction} not in (0, 1)")
    pairs = [(a, b) for a in range(max_operand) for b in range(max_operand)]
    random.Random(seed).shuffle(pairs)
    n_eval = max(1, int(round(len(pairs) * eval_fraction)))
    ev = [example(a, b) for a, b in pairs[:n_eval]]
    tr = [example(a, b) for a, b in pairs[n_eval:]]
    return tr, ev


def parse_answer(completion: str) -> int | None:
    """The number after ``####`` (GSM8K's strict match), or None."""
    m = ANSWER.search(completion)
    return int(m.group(1)) if m else None


def write_jsonl(path, records) -> Path:
    path = Path(path)
    path.write_text("".join(json.dumps({k: r[k] for k in ("question", "answer")}) + "\n" for r in records))
    return path


def arithmetic_sharegpt(dest, n: int, seed: int = 0, max_operand: int = 50, eval_fraction: float = 0.1) -> Path:
    """A ShareGPT-format file of ``n`` held-out arithmetic prompts (the serving clients' dataset):
    the human turn is the prompt, the gpt turn the reference answer (its length = output length)."""
    _, ev = splits(max_operand, eval_fraction, seed)
    rows = []
    for i in range(n):
        r = ev[i % len(ev)]
        rows.append(
            {
                "id": f"arith-{i}",
                "conversations": [
                    {"from": "human", "value": prompt(r["question"])},
                    {"from": "gpt", "value": " " + r["answer"]},
                ],
            }
        )
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(dest.suffix + ".tmp")
    tmp.write_text(json.dumps(rows))
    os.replace(tmp, dest)
    return dest


# -- training (torch) ---------------------------------------------------------------------------


def _batches(tok, records, batch_size: int, rng: random.Random):
    order = list(range(len(records)))
    while True:
        rng.shuffle(order)
        for i in range(0, len(order) - batch_size + 1, batch_size):
            recs = [records[j] for j in order[i : i + batch_size]]
            enc = tok([text(r) + tok.eos_token for r in recs], return_tensors="pt", padding=True)
            labels = enc["input_ids"].clone()
            labels[enc["attention_mask"] == 0] = -100
            # the loss is on the answer (and its EOS) alone: the question is random by design, and
            # the vocabulary projection of its positions would be most of a step's compute
            for row, r in enumerate(recs):
                labels[row, : len(tok(prompt(r["question"]))["input_ids"])] = -100
            yield enc["input_ids"], enc["attention_mask"], labels


def _answer_loss(model, ids, mask, labels):
    """Next-token cross-entropy on the labelled positions only (the lm_head runs on those alone)."""
    import torch

    hidden = model.model(input_ids=ids, attention_mask=mask).last_hidden_state[:, :-1]
    target = labels[:, 1:]
    keep = target != -100
    logits = model.lm_head(hidden[keep])
    return torch.nn.functional.cross_entropy(logits.float(), target[keep])


def evaluate(model, tok, records, max_new_tokens: int = 16, batch_size: int = 64) -> dict:
    """Greedy accuracy: the ``#### n`` of the completion against the true sum."""
    import torch

    tok.padding_side = "left"
    correct, samples = 0, []
    model.eval()
    with torch.no_grad():
        for i in range(0, len(records), batch_size):
            chunk = records[i : i + batch_size]
            enc = tok([prompt(r["question"]) for r in chunk], return_tensors="pt", padding=True)
            out = model.generate(
                **enc,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=tok.pad_token_id,
                eos_token_id=tok.eos_token_id,
            )
            for r, ids in zip(chunk, out[:, enc["input_ids"].shape[1] :], strict=True):
                completion = tok.decode(ids, skip_special_tokens=True)
                got = parse_answer(completion)
                correct += got == r["target"]
                if len(samples) < 5:
                    samples.append({"question": r["question"], "completion": completion, "target": r["target"]})
    tok.padding_side = "right"
    n = len(records)
    acc = correct / n
    return {
        "accuracy": acc,
        "stderr": math.sqrt(acc * (1 - acc) / max(n - 1, 1)),
        "correct": correct,
        "n": n,
        "decoding": "greedy",
        "metric": "exact match of the number after '####' (GSM8K strict match)",
        "samples": samples,
    }


def train(out: Path, tokenizer_dir: Path, spec: dict | None = None) -> dict:
    """Train into ``out`` atomically (a temp dir renamed into place); returns train.json's content."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    s = {**DEFAULT_SPEC, **(spec or {})}
    if s["task"] not in TASKS:
        raise ValueError(f"unknown task {s['task']!r} (known: {', '.join(TASKS)})")
    t0 = time.monotonic()
    torch.set_num_threads(int(s["threads"]))
    torch.manual_seed(s["seed"])
    torch.use_deterministic_algorithms(True)
    out = Path(out)
    with atomic_dir(out) as tmp:
        tok = AutoTokenizer.from_pretrained(tokenizer_dir)
        tok.padding_side = "right"
        tok.save_pretrained(tmp)
        vocab = max(int(s["vocab_size"]), len(tok))
        extra = {k: s[k] for k in ("head_dim", "rope_theta", "rope_scaling") if s.get(k) is not None}
        cfg = LlamaConfig(
            **extra,
            vocab_size=vocab,
            hidden_size=s["hidden_size"],
            intermediate_size=s["intermediate_size"],
            num_hidden_layers=s["num_hidden_layers"],
            num_attention_heads=s["num_attention_heads"],
            num_key_value_heads=s["num_key_value_heads"],
            max_position_embeddings=s["max_position_embeddings"],
            tie_word_embeddings=s["tie_word_embeddings"],
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        )
        model = LlamaForCausalLM(cfg)  # float32 while training
        tr, ev = splits(s["max_operand"], s["eval_fraction"], s["seed"])
        opt = torch.optim.AdamW(model.parameters(), lr=s["lr"], weight_decay=s["weight_decay"], betas=(0.9, 0.98))
        steps, warm = int(s["steps"]), int(s["warmup_steps"])

        def lr_at(step):
            if step < warm:
                return (step + 1) / warm
            return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(steps - warm, 1)))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
        data = _batches(tok, tr, int(s["batch_size"]), random.Random(s["seed"]))
        losses = []
        model.train()
        for step in range(steps):
            ids, mask, labels = next(data)
            loss = _answer_loss(model, ids, mask, labels)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
            if step % 100 == 0 or step == steps - 1:
                print(
                    f"step {step} loss {losses[-1]:.4f} lr {sched.get_last_lr()[0]:.2e} {time.monotonic() - t0:.1f} s",
                    flush=True,
                )
        train_s = time.monotonic() - t0
        limit = s.get("eval_limit")
        held = ev[: int(limit)] if limit else ev
        model = model.to(torch.bfloat16)  # evaluate what is shipped: the bf16 checkpoint
        result = evaluate(model, tok, held, int(s["max_new_tokens"]))
        print(f"held-out greedy accuracy {result['accuracy']:.3f} ({result['correct']}/{result['n']})", flush=True)
        model.config.dtype = torch.bfloat16
        model.save_pretrained(tmp, safe_serialization=True)
        write_jsonl(tmp / "eval.jsonl", ev)
        write_jsonl(tmp / "train.jsonl", tr)
        info = {
            "spec": s,
            "vocab_size": vocab,
            "parameters": sum(p.numel() for p in model.parameters()),
            "train_examples": len(tr),
            "eval_examples": len(ev),
            "final_loss": sum(losses[-20:]) / len(losses[-20:]),
            "first_loss": losses[0],
            "train_seconds": round(train_s, 2),
            "total_seconds": round(time.monotonic() - t0, 2),
            "eval": result,
            "torch": torch.__version__,
            "prompt_format": prompt("<question>") + " <answer>",
        }
        (tmp / "train.json").write_text(json.dumps(info, indent=2))
        # the same provenance file the builder writes (tinymodel), so tools reading it find one
        (tmp / "inferlab_build.json").write_text(
            json.dumps({"spec": s, "vocab_size": vocab, "parameters": info["parameters"], "trained": True}, indent=2)
        )
    return info


def stale_cache(model_dir, expected: dict) -> str | None:
    """Why a cached trained model (or a variant quantized from one: it carries the base's train.json)
    no longer matches its catalog entry, or None. ``expected`` is the catalog's ``train`` block merged
    with its ``architecture``. The cache lives outside any one work dir, so Snakemake's own
    parameter tracking cannot see that the catalog changed: a silent stale model is the alternative."""
    return stale_spec(Path(model_dir) / "train.json", expected, DEFAULT_SPEC, "trained", "retrain")


def stale_spec(f, expected: dict, defaults: dict, built: str = "built", redo: str = "rebuild") -> str | None:
    """Why the ``spec`` recorded in the provenance file ``f`` differs from ``expected`` (missing keys
    read as ``defaults``), naming each key; None if it matches or ``f`` does not exist yet."""
    f = Path(f)
    if not f.exists():
        return None  # not built yet: the rule makes it
    try:
        spec = json.loads(f.read_text()).get("spec", {})
    except ValueError as e:
        return f"{f} is not valid JSON ({e})"
    diff = {k: (spec.get(k, defaults.get(k)), v) for k, v in expected.items() if spec.get(k, defaults.get(k)) != v}
    if not diff:
        return None
    what = ", ".join(f"{k}: cached {a!r}, catalog {b!r}" for k, (a, b) in sorted(diff.items()))
    return f"{f.parent} was {built} with other settings than the catalog's ({what}): delete it to {redo}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--tokenizer", required=True, type=Path, help="a model folder whose tokenizer is reused")
    ap.add_argument("--spec", default="{}", help="JSON object overriding DEFAULT_SPEC")
    a = ap.parse_args(argv)
    info = train(a.out, a.tokenizer, json.loads(a.spec))
    print(f"trained {a.out}: held-out accuracy {info['eval']['accuracy']:.3f} in {info['total_seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

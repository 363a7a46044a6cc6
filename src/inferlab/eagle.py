"""A tiny EAGLE head for the embedded default's trained Llama (Week 11's ``method: eagle``).

EAGLE (Li et al. 2024) drafts from the *target's* last hidden state: at position t it takes the
embedding of the next token x[t+1] and the target's final hidden state h[t], projects their
concatenation back to the hidden size (``fc``: [H, 2H], no bias), runs one Llama decoder layer whose
input norm is skipped, and reads the draft token through the target's own lm_head (no final norm).
That is what vLLM 0.32's ``EagleLlamaForCausalLM`` (model_executor/models/llama_eagle.py) loads:

- ``config.json``: a 1-layer ``LlamaConfig`` with the target's hidden size and vocabulary, its
  ``architectures`` ``LlamaForCausalLM`` (vLLM renames it ``EagleLlamaForCausalLM`` for
  ``method: eagle``, transformers_utils/configs/eagle.py);
- ``model.safetensors``: ``fc.weight`` [H, 2H] and ``layers.0.*`` (attention, MLP and
  ``post_attention_layernorm``; no ``input_layernorm``, which vLLM replaces by the identity). No
  ``embed_tokens`` / ``lm_head``: vLLM then shares the target's ("Detected EAGLE model without its
  own embed_tokens ... Sharing target model embedding weights", v1/spec_decode/llm_base_proposer.py).

The head is *trained* (``steps`` > 0) on the frozen target's hidden states over the target's own
training texts, as EAGLE does: a smooth-L1 regression of the next hidden state plus the
cross-entropy of the target's greedy next token read through the target's lm_head, so its drafts are
accepted at a real, non-zero rate. ``steps: 0`` writes the random initialisation (acceptance ~0).
Its offline top-1 agreement with the target's greedy token (teacher-forced, held-out texts) is in
``eagle.json`` beside the weights. Runs in the engine environment (torch + transformers)::

    python -m inferlab.eagle --out DIR --target DIR --spec '{"steps": 300}'
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path

from inferlab.io import atomic_dir

DEFAULT_SPEC = {
    "hidden_size": None,  # None: the target's (given, it must be the target's)
    "vocab_size": None,  # None: the target's (given, it must be the target's)
    "num_hidden_layers": 1,  # EAGLE-1: one decoder layer
    "intermediate_size": None,  # None: the target's
    "num_attention_heads": None,  # None: the target's
    "num_key_value_heads": None,  # None: the target's
    "steps": 300,
    "batch_size": 64,
    "lr": 3e-3,
    "warmup_steps": 20,
    "weight_decay": 0.0,
    "reg_weight": 1.0,  # smooth-L1 on the hidden state (EAGLE's regression loss)
    "cls_weight": 1.0,  # cross-entropy on the target's greedy next token
    "seed": 0,
    "threads": 2,
    "eval_limit": 256,  # held-out texts for the offline agreement
}
# the keys of a head's config.json copied from the target's (the head must match them)
SHARED_CONFIG = (
    "vocab_size",
    "hidden_size",
    "head_dim",
    "max_position_embeddings",
    "rms_norm_eps",
    "rope_parameters",
    "rope_theta",
    "rope_scaling",
    "bos_token_id",
    "eos_token_id",
    "pad_token_id",
    "hidden_act",
)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja")


def head_config(target_cfg: dict, spec: dict) -> dict:
    """The head's config.json (a dict): the target's shared keys, one layer, the head's sizes. The
    head reads the target's hidden states and its embeddings: a hidden or vocabulary size other than
    the target's is an error (vLLM would fail to load it, or draft from the wrong width)."""
    for k in ("hidden_size", "vocab_size"):
        if spec.get(k) is not None and spec[k] != target_cfg.get(k):
            raise ValueError(f"EAGLE head {k} {spec[k]} differs from its target's ({target_cfg.get(k)})")
    out = {k: target_cfg[k] for k in SHARED_CONFIG if k in target_cfg}
    out.update(
        architectures=["LlamaForCausalLM"],
        model_type="llama",
        num_hidden_layers=int(spec["num_hidden_layers"]),
        intermediate_size=int(spec["intermediate_size"] or target_cfg["intermediate_size"]),
        num_attention_heads=int(spec["num_attention_heads"] or target_cfg["num_attention_heads"]),
        num_key_value_heads=int(spec["num_key_value_heads"] or target_cfg["num_key_value_heads"]),
        tie_word_embeddings=False,
        attention_bias=False,
        mlp_bias=False,
        dtype="bfloat16",
    )
    return out


def head_state_names(num_layers: int = 1) -> list[str]:
    """The tensor names vLLM's EagleLlamaForCausalLM loads from the head (no embeddings, no lm_head,
    no input norm of layer 0)."""
    names = ["fc.weight"]
    for i in range(num_layers):
        p = f"layers.{i}."
        if i > 0:
            names.append(p + "input_layernorm.weight")
        names += [p + f"self_attn.{x}_proj.weight" for x in "qkvo"]
        names += [p + f"mlp.{x}_proj.weight" for x in ("gate", "up", "down")]
        names.append(p + "post_attention_layernorm.weight")
    return names


class _Head:
    """The head as vLLM runs it, in transformers modules: fc, then a LlamaModel of the head's layers
    with layer 0's input norm and the final norm replaced by the identity."""

    def __init__(self, cfg_dict: dict):
        import torch
        from transformers import LlamaConfig, LlamaModel

        cfg = LlamaConfig(**{k: v for k, v in cfg_dict.items() if k not in ("architectures", "model_type", "dtype")})
        cfg.vocab_size = 1  # the head has no embedding of its own (the target's is used)
        cfg.pad_token_id = None
        self.body = LlamaModel(cfg)
        self.body.layers[0].input_layernorm = torch.nn.Identity()
        self.body.norm = torch.nn.Identity()
        h = cfg.hidden_size
        self.fc = torch.nn.Linear(2 * h, h, bias=False)

    def parameters(self):
        return [p for n, p in self.body.named_parameters() if not n.startswith("embed_tokens")] + list(
            self.fc.parameters()
        )

    def train(self, on: bool = True):
        self.body.train(on)
        self.fc.train(on)

    def __call__(self, next_embeds, hidden, mask):
        import torch

        x = self.fc(torch.cat((next_embeds, hidden), dim=-1))
        return self.body(inputs_embeds=x, attention_mask=mask).last_hidden_state

    def state_dict(self) -> dict:
        out = {"fc.weight": self.fc.weight}
        for n, p in self.body.named_parameters():
            if n.startswith("layers."):
                out[n] = p
        return out


def _batch(tok, recs, prompt_fn, text_fn):
    """Token ids, attention mask and the positions that count: head step t (input: the embedding of
    x[t+1] and the target's h[t]) drafts the target's token after x[t+1]; only the steps that draft
    an answer token count (t + 2 >= the prompt's length). The question is random by design (no
    drafter can guess it) and at serving time drafting starts after the prompt; restricting the
    vocabulary projections to those steps is also most of a step's compute saved."""
    import torch

    enc = tok([text_fn(r) for r in recs], return_tensors="pt", padding=True)
    ids, mask = enc["input_ids"], enc["attention_mask"]
    steps = torch.arange(ids.shape[1] - 1).unsqueeze(0)
    first = torch.tensor([len(tok(prompt_fn(r["question"]))["input_ids"]) - 2 for r in recs]).unsqueeze(1)
    keep = (mask[:, 1:] == 1) & (mask[:, :-1] == 1) & (steps >= first)
    return ids, mask, keep


def _step_tensors(target, head, ids, mask, keep):
    """At the kept steps: the head's hidden state, the target's next hidden state (the regression
    target) and the target's greedy token (the draft the verifier would accept)."""
    import torch

    with torch.no_grad():
        h = target.model(input_ids=ids, attention_mask=mask).last_hidden_state
        next_h = h[:, 1:][keep]
        greedy = target.lm_head(next_h).argmax(-1)
        next_embeds = target.model.embed_tokens(ids[:, 1:])
    out = head(next_embeds, h[:, :-1], mask[:, 1:])
    return out[keep], next_h, greedy


def agreement(target, head, tok, recs, prompt_fn, text_fn, batch_size: int = 64) -> dict:
    """Teacher-forced top-1 agreement at the answer steps: the head's token (through the target's
    lm_head) equals the target's greedy token (the first draft position's acceptance, offline;
    vLLM's online rate also counts later draft positions, which drift)."""
    import torch

    hit = n = 0
    head.train(False)
    with torch.no_grad():
        for i in range(0, len(recs), batch_size):
            ids, mask, keep = _batch(tok, recs[i : i + batch_size], prompt_fn, text_fn)
            out, _, greedy = _step_tensors(target, head, ids, mask, keep)
            hit += int((target.lm_head(out).argmax(-1) == greedy).sum())
            n += int(greedy.numel())
    return {"top1_agreement": hit / max(n, 1), "positions": n, "texts": len(recs)}


def build(out: Path, target_dir: Path, spec: dict | None = None) -> dict:
    """Write (and train, ``steps`` > 0) the head into ``out`` atomically; returns eagle.json's content."""
    import torch
    from safetensors.torch import save_file
    from transformers import AutoTokenizer, LlamaForCausalLM

    from inferlab import train as train_mod

    s = {**DEFAULT_SPEC, **(spec or {})}
    t0 = time.monotonic()
    torch.set_num_threads(int(s["threads"]))
    torch.manual_seed(int(s["seed"]))
    torch.use_deterministic_algorithms(True)
    target_dir, out = Path(target_dir), Path(out)
    tcfg = json.loads((target_dir / "config.json").read_text())
    cfg = head_config(tcfg, s)
    with atomic_dir(out) as tmp:
        tok = AutoTokenizer.from_pretrained(target_dir)
        tok.padding_side = "right"
        target = LlamaForCausalLM.from_pretrained(target_dir, dtype=torch.float32)
        target.eval()
        for p in target.parameters():
            p.requires_grad_(False)
        head = _Head(cfg)
        # the task's texts as the target was trained on them (its spec in train.json), EOS-terminated
        tspec = (
            json.loads((target_dir / "train.json").read_text()) if (target_dir / "train.json").exists() else {}
        ).get("spec", {})
        tr, ev = train_mod.splits(
            int(tspec.get("max_operand", 50)), float(tspec.get("eval_fraction", 0.1)), int(tspec.get("seed", 0))
        )
        held = ev[: int(s["eval_limit"] or len(ev))]

        def text_fn(r):
            return train_mod.text(r) + tok.eos_token

        before = agreement(target, head, tok, held, train_mod.prompt, text_fn)
        steps, warm = int(s["steps"]), int(s["warmup_steps"])
        losses = []
        if steps > 0:
            opt = torch.optim.AdamW(head.parameters(), lr=float(s["lr"]), weight_decay=float(s["weight_decay"]))

            def lr_at(step):
                if step < warm:
                    return (step + 1) / warm
                return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(steps - warm, 1)))

            sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
            rng = random.Random(int(s["seed"]))
            bs = int(s["batch_size"])
            head.train(True)
            for step in range(steps):
                ids, mask, keep = _batch(tok, rng.sample(tr, bs), train_mod.prompt, text_fn)
                pred_h, next_h, greedy = _step_tensors(target, head, ids, mask, keep)
                reg = torch.nn.functional.smooth_l1_loss(pred_h, next_h)
                logits = target.lm_head(pred_h)
                cls = torch.nn.functional.cross_entropy(logits, greedy)
                loss = float(s["reg_weight"]) * reg + float(s["cls_weight"]) * cls
                loss.backward()
                torch.nn.utils.clip_grad_norm_(head.parameters(), 1.0)
                opt.step()
                sched.step()
                opt.zero_grad(set_to_none=True)
                losses.append(float(loss.detach()))
                if step % 50 == 0 or step == steps - 1:
                    print(f"step {step} loss {losses[-1]:.4f} (reg {reg.item():.4f}, cls {cls.item():.4f}) "
                          f"{time.monotonic() - t0:.1f} s", flush=True)  # fmt: skip
        train_s = time.monotonic() - t0
        after = agreement(target, head, tok, held, train_mod.prompt, text_fn)
        print(f"held-out top-1 agreement with the target: {before['top1_agreement']:.3f} -> "
              f"{after['top1_agreement']:.3f}", flush=True)  # fmt: skip
        state = {k: v.detach().to(torch.bfloat16).contiguous() for k, v in head.state_dict().items()}
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        (tmp / "config.json").write_text(json.dumps(cfg, indent=2))
        for f in TOKENIZER_FILES:  # the draft's ModelConfig may read a tokenizer beside it
            if (target_dir / f).exists():
                (tmp / f).write_bytes((target_dir / f).read_bytes())
        info = {
            "spec": s,
            "method": "eagle",
            "target": str(target_dir),
            "target_config": {k: tcfg.get(k) for k in ("hidden_size", "vocab_size", "num_hidden_layers")},
            "tensors": sorted(state),
            "parameters": sum(v.numel() for v in state.values()),
            "trained": steps > 0,
            "first_loss": losses[0] if losses else None,
            "final_loss": sum(losses[-20:]) / len(losses[-20:]) if losses else None,
            "train_seconds": round(train_s, 2),
            "eval_untrained": before,
            "eval": after,
            "torch": torch.__version__,
        }
        (tmp / "eagle.json").write_text(json.dumps(info, indent=2))
    return info


def stale_cache(head_dir, expected: dict) -> str | None:
    """Why a cached head was built with other settings than ``expected`` (the catalog's), or None
    (also when it is not built yet): inferlab.train.stale_spec on its eagle.json."""
    from inferlab.train import stale_spec

    return stale_spec(Path(head_dir) / "eagle.json", expected, DEFAULT_SPEC)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--target", required=True, type=Path, help="the target model's folder (a Llama)")
    ap.add_argument("--spec", default="{}", help="JSON object overriding DEFAULT_SPEC")
    a = ap.parse_args(argv)
    info = build(a.out, a.target, json.loads(a.spec))
    print(
        f"EAGLE head {a.out}: held-out top-1 agreement {info['eval']['top1_agreement']:.3f} "
        f"(untrained {info['eval_untrained']['top1_agreement']:.3f}) in {info['train_seconds']} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

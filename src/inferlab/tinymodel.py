"""Build the embedded default's tiny model locally: it stands where a hub download would.

A byte-level BPE tokenizer is trained with ``tokenizers`` on generated text and wrapped as a
``PreTrainedTokenizerFast`` (bos/eos, chat template); a random-weight ``LlamaForCausalLM`` is built
from a small config and saved as safetensors. Deterministic for a given spec (fixed seeds).

The vocabulary must hold at least 10,000 ids: ``vllm bench latency`` draws dummy prompt ids from
0..9999. Runs in the *engine* environment (it needs torch + transformers), e.g.::

    python -m inferlab.tinymodel --out DIR --spec '{"vocab_size": 10240, ...}'
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

from inferlab.io import atomic_dir

DEFAULT_SPEC = {
    "vocab_size": 10240,
    "hidden_size": 128,
    "intermediate_size": 352,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 8192,
    "tie_word_embeddings": False,
    "seed": 0,
    "weights": "random",
}
MIN_VOCAB = 10_000
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}</s>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def _corpus(n_lines: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = ["".join(rng.choice(letters) for _ in range(rng.randint(1, 9))) for _ in range(30000)]
    words += [str(i) for i in range(2000)]
    return [" ".join(rng.choice(words) for _ in range(rng.randint(5, 40))) for _ in range(n_lines)]


def build(out: Path, spec: dict | None = None) -> Path:
    """Build tokenizer + model into ``out`` atomically (a temp dir renamed into place)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    moe = (spec or {}).get("num_local_experts") is not None

    s = {**DEFAULT_SPEC, **(spec or {})}
    if s["vocab_size"] < MIN_VOCAB:
        raise ValueError(f"vocab_size {s['vocab_size']} < {MIN_VOCAB} (vllm bench latency needs it)")
    out = Path(out)
    with atomic_dir(out) as tmp:
        special = ["<unk>", "<s>", "</s>", "<pad>", "<|user|>", "<|assistant|>", "<|system|>"]
        tok = Tokenizer(models.BPE(unk_token="<unk>"))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=s["vocab_size"],
            special_tokens=special,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tok.train_from_iterator(_corpus(20000, s["seed"]), trainer=trainer)
        hf_tok = PreTrainedTokenizerFast(
            tokenizer_object=tok,
            bos_token="<s>",
            eos_token="</s>",
            unk_token="<unk>",
            pad_token="<pad>",
        )
        hf_tok.chat_template = CHAT_TEMPLATE
        hf_tok.model_max_length = s["max_position_embeddings"]
        hf_tok.save_pretrained(tmp)
        # The trained vocab can fall short of the target; the model's embedding must cover the
        # target so every id vllm draws (0..9999) is valid.
        vocab = max(s["vocab_size"], len(hf_tok))
        torch.manual_seed(s["seed"])
        extra = {k: s[k] for k in ("rope_theta", "rope_scaling") if s.get(k) is not None}
        if moe:
            # a tiny Mixtral (notes §T): every layer an MoE layer of num_local_experts experts, top-k
            # routing; hidden and intermediate sizes multiples of 32 (vLLM's CPU MoE kernel needs it)
            from transformers import MixtralConfig, MixtralForCausalLM

            extra["num_local_experts"] = int(s["num_local_experts"])
            extra["num_experts_per_tok"] = int(s.get("num_experts_per_tok") or 1)
        cfg = (MixtralConfig if moe else LlamaConfig)(
            **extra,
            # SGLang reads the architecture from config.json (vLLM infers it): always written
            architectures=["MixtralForCausalLM" if moe else "LlamaForCausalLM"],
            vocab_size=vocab,
            hidden_size=s["hidden_size"],
            intermediate_size=s["intermediate_size"],
            num_hidden_layers=s["num_hidden_layers"],
            num_attention_heads=s["num_attention_heads"],
            num_key_value_heads=s["num_key_value_heads"],
            max_position_embeddings=s["max_position_embeddings"],
            tie_word_embeddings=s["tie_word_embeddings"],
            bos_token_id=hf_tok.bos_token_id,
            eos_token_id=hf_tok.eos_token_id,
            pad_token_id=hf_tok.pad_token_id,
            torch_dtype="bfloat16",
        )
        if s["weights"] == "dummy":
            # config + tokenizer only: the engine makes the weights (vLLM --load-format dummy)
            cfg.save_pretrained(tmp)
            n_params = None
        else:
            model = (MixtralForCausalLM if moe else LlamaForCausalLM)(cfg).to(torch.bfloat16)
            model.save_pretrained(tmp, safe_serialization=True)
            n_params = sum(p.numel() for p in model.parameters())
        (tmp / "inferlab_build.json").write_text(
            json.dumps({"spec": s, "vocab_size": vocab, "parameters": n_params}, indent=2)
        )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--spec", default="{}", help="JSON object overriding DEFAULT_SPEC")
    a = ap.parse_args(argv)
    path = build(a.out, json.loads(a.spec))
    print(f"built tiny model in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

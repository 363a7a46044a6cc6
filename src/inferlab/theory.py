"""Roofline theory for decoder-only transformers (Llama family), from config specs only.

Conventions (stated because the course's tables depend on them):
- weights bytes = parameter count x bytes per element of the dtype;
- one decode step must read every weight once plus the KV cache of every sequence, so
  decode step >= (weights + KV bytes) / HBM bandwidth (the bandwidth roof);
- a forward pass over T tokens costs ~2 x parameters x T FLOPs (matmuls; attention's
  L^2 term is left out, which makes it a lower bound), so prefill >= 2 P L / peak FLOP/s;
- ridge point AI* = peak FLOP/s / HBM bandwidth (FLOP/byte).
"""

from __future__ import annotations

DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4}


def llama_param_count(arch: dict) -> int:
    """Parameters of a Llama-architecture model (embeddings, attention, MLP, norms, LM head)."""
    h = arch["hidden_size"]
    i = arch["intermediate_size"]
    layers = arch["num_hidden_layers"]
    heads = arch["num_attention_heads"]
    kv = arch["num_key_value_heads"]
    v = arch["vocab_size"]
    head_dim = arch.get("head_dim", h // heads)
    attn = h * heads * head_dim + 2 * h * kv * head_dim + heads * head_dim * h
    mlp = 3 * h * i
    norms = 2 * h
    per_layer = attn + mlp + norms
    emb = v * h
    head = 0 if arch.get("tie_word_embeddings", False) else v * h
    return emb + layers * per_layer + h + head


def weights_bytes(arch: dict, dtype: str) -> float:
    return llama_param_count(arch) * DTYPE_BYTES[dtype]


def kv_bytes_per_token(arch: dict, dtype: str) -> float:
    """K and V for one token across all layers."""
    head_dim = arch.get("head_dim", arch["hidden_size"] // arch["num_attention_heads"])
    return 2 * arch["num_hidden_layers"] * arch["num_key_value_heads"] * head_dim * DTYPE_BYTES[dtype]


def ridge_ai(gpu: dict) -> float:
    """AI* in FLOP/byte: peak BF16 FLOP/s over HBM bytes/s."""
    return gpu["peak_bf16_tflops"] * 1e12 / (gpu["hbm_gbps"] * 1e9)


def decode_floor_s(arch: dict, dtype: str, gpu: dict, batch_size: int = 1, context_len: float = 0) -> float:
    """Minimum time of one decode step: weights + the batch's KV cache read once from HBM."""
    bytes_read = weights_bytes(arch, dtype) + batch_size * context_len * kv_bytes_per_token(arch, dtype)
    return bytes_read / (gpu["hbm_gbps"] * 1e9)


def weights_floor_s(arch: dict, dtype: str, gpu: dict) -> float:
    """The course's 'theoretical floor': model size / HBM bandwidth (KV ignored)."""
    return weights_bytes(arch, dtype) / (gpu["hbm_gbps"] * 1e9)


def forward_flops(arch: dict, tokens: float) -> float:
    return 2.0 * llama_param_count(arch) * tokens


def prefill_floor_s(arch: dict, gpu: dict, tokens: float) -> float:
    """Minimum prefill time of ``tokens`` tokens on the compute roof."""
    return forward_flops(arch, tokens) / (gpu["peak_bf16_tflops"] * 1e12)


def latency_floor_s(arch: dict, dtype: str, gpu: dict, batch_size: int, input_len: int, output_len: int) -> float:
    """Strict lower bound of one `vllm bench latency` iteration (bs prompts of input_len tokens,
    output_len new tokens each). Whatever the scheduler does (chunked prefill may mix prefill and
    decode in one step), the run must
    - compute every token once: 2 P x bs x (input_len + output_len - 1) FLOPs at peak, and
    - take at least output_len forward steps (one new token per sequence per step), each reading
      the weights once, and read each sequence's KV context once per decode step,
    so it takes at least the larger of the two times.
    """
    tokens = batch_size * (input_len + output_len - 1)
    compute = prefill_floor_s(arch, gpu, tokens)
    steps = output_len - 1  # decode steps after the prefill; step t reads input_len + t tokens of KV
    kv_tokens = batch_size * (steps * input_len + steps * (steps + 1) // 2)
    mem_bytes = output_len * weights_bytes(arch, dtype) + kv_tokens * kv_bytes_per_token(arch, dtype)
    memory = mem_bytes / (gpu["hbm_gbps"] * 1e9)
    return max(compute, memory)


def hbm_utilization(floor_s: float, measured_s: float) -> float:
    """Fraction of peak bandwidth achieved: theoretical floor / measured time."""
    return floor_s / measured_s

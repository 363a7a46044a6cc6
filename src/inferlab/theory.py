"""Roofline theory for decoder-only transformers (Llama family, dense or MoE), from config specs only.

Course conventions (the Week 2/3 tables depend on them; these functions keep their numbers):
- weights bytes = parameter count x bytes per element of the dtype;
- one decode step must read every weight once plus the KV cache of every sequence, so
  decode step >= (weights + KV bytes) / HBM bandwidth (the bandwidth roof);
- a forward pass over T tokens costs ~2 x parameters x T FLOPs (matmuls; attention's
  L^2 term is left out, which makes it a lower bound), so prefill >= 2 P L / peak FLOP/s;
- ridge point AI* = peak FLOP/s / HBM bandwidth (FLOP/byte).
For an MoE model "parameters" in the time floors above means the parameters one token uses (its
top-k experts), never the total (a model-size floor would not be a floor).

Strict lower bounds (used by the generalised roofline guard, ``inferlab.guard``). Every choice below
can only make a bound smaller than the true minimum time, never larger:

Precision (``Precision``, ``precision()``)
  bytes per weight: bfloat16/float16 2, float32 4, fp8 (e4m3/e5m2, fbgemm_fp8, ptpc_fp8, modelopt) 1,
  int8/w8a8/experts_int8 1, int4/awq/awq_marlin/gptq_marlin/bitsandbytes 0.5, fp4/nvfp4/mxfp4 0.5,
  plain gptq 0.25 (vLLM's GPTQ kernels accept 2-bit weights, so 2 bits is the certain minimum).
  Every parameter is counted at that width, although engines keep the embeddings, norms and often
  the LM head in the model dtype, and the per-group scales/zeros of quantized formats are ignored:
  both only add bytes, so leaving them out keeps the bound a lower bound. A method not in the table
  (compressed-tensors, gguf, hqq, 2:4 sparse formats, ...) is unknown: no weight-dependent bound.
  KV cache bytes per element: ``auto`` = the model (activation) dtype, ``fp8*`` 1; an unknown KV
  dtype counts the KV term as 0 bytes (it is dropped, the weights term stays).
  Peak FLOP/s: ``peak_bf16_tflops`` x a compute factor of max(1, min(4, 2 / weight bytes)): 8-bit
  formats may run on FP8/INT8 tensor cores (2x BF16 on H100/H200/A100/L40S), 4-bit ones on
  FP4/INT4 (4x). W4A16 kernels actually run at BF16 rate: the larger factor only loosens the bound.
MoE (``param_counts``)
  optional architecture fields ``num_local_experts`` (E), ``num_experts_per_tok`` (top-k, default 1
  when absent: the certain minimum) and ``moe_intermediate_size`` (each expert's intermediate size;
  Mixtral has none and uses ``intermediate_size``). Every layer is an MoE layer: E experts of
  3 h i_e parameters and a router of h E. Total parameters count every expert; ACTIVE parameters
  count the top-k experts one token uses. A forward step of any batch reads at least the top-k
  experts of each layer (B tokens touch between top-k and E distinct experts; only top-k is
  certain), so per-step weight reads use the active count, whatever the batch. Shared experts
  (DeepSeek, Qwen-MoE) are not modelled: leaving them out only lowers the bound. FLOPs per token use
  the active count (each token goes through exactly its top-k experts).
Embeddings and the LM head (``step_weight_bytes``, ``flops_per_token``)
  a step looks up only its tokens' rows of the input embedding table, so an untied table is not
  counted as read; the LM head (or the tied table) is. The LM head's 2 V h FLOPs are spent once per
  sampled position (one per output token), not once per prompt token. Norm weights are read but
  their FLOPs (not matmuls) are not counted.
Placement (``Placement``, alias ``ParallelSpec``)
  tensor x pipeline x data parallel sizes = N GPUs; aggregate HBM bandwidth and peak FLOP/s are
  N x one GPU's. Interconnect (all-reduce, pipeline bubbles, replicated shards) is ignored: it can
  only add time and bytes, so N x one GPU is an upper bound on speed, a lower bound on time. A
  request's step runs on its own replica (tp x pp GPUs); counting all N GPUs is looser, never wrong.
Speculative decoding (``tokens_per_step`` argument)
  with k speculative tokens a request gains at most k + 1 tokens per target forward step, so
  per-token floors divide by k + 1, token-rate caps multiply by k + 1, and a run of O output tokens
  needs at least 1 + ceil((O - 1) / (k + 1)) forward steps. The draft model's own work is ignored
  (it only adds time). The number of tokens the target computes is unchanged: every position of
  the final sequence but the last is verified (computed) by the target.
Bounds (each a function below)
  - decode step: ``decode_step_floor_s`` = (step weight bytes + B x context x KV bytes/token) / (N BW);
  - per output token (TPOT/ITL): ``per_token_floor_s`` = step weight bytes / (N BW) / (k + 1);
  - one ``vllm bench latency`` iteration (bs prompts, L in, O out): the larger of
    ``latency_compute_floor_s`` = (2 P_active x bs x T + 2 V h x bs x O) / (N peak x factor), with
      T = L + O - 1 computed positions per sequence when every prompt token is computed, T = O when
      a prefix cache may serve the prompt (at least the last prompt position is computed), and
    ``latency_memory_floor_s`` = (S weight reads + the KV context of each decode step) / (N BW),
      S = 1 + ceil((O - 1) / (k + 1)) steps; decode step j reads bs x min(L + j, window) KV tokens;
  - output token throughput: ``throughput_step_cap`` = C x (k + 1) / per-step floor for C concurrent
    requests, and ``throughput_compute_cap`` = N peak x factor / (2 P_active + 2 V h) (every output
    token needs one target position and one logit row).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4}

# Bytes per weight of a model dtype or a quantization method (vLLM's --quantization names plus the
# catalog's generic labels). Lower bounds: scales/zeros and unquantized layers are not counted.
WEIGHT_BYTES: dict[str, float] = {
    "bfloat16": 2,
    "float16": 2,
    "half": 2,
    "float32": 4,
    "float": 4,
    "fp8": 1,
    "fp8_e4m3": 1,
    "fp8_e5m2": 1,
    "fbgemm_fp8": 1,
    "ptpc_fp8": 1,
    "modelopt": 1,
    "int8": 1,
    "w8a8": 1,
    "experts_int8": 1,
    "int4": 0.5,
    "w4a16": 0.5,
    "awq": 0.5,
    "awq_marlin": 0.5,
    "gptq_marlin": 0.5,
    "bitsandbytes": 0.5,
    "fp4": 0.5,
    "nvfp4": 0.5,
    "mxfp4": 0.5,
    "modelopt_fp4": 0.5,
    "gptq": 0.25,
}
# KV cache element bytes (vLLM --kv-cache-dtype names); "auto" means the model dtype.
KV_CACHE_BYTES: dict[str, float] = {
    "bfloat16": 2,
    "float16": 2,
    "half": 2,
    "float32": 4,
    "float": 4,
    "fp8": 1,
    "fp8_e4m3": 1,
    "fp8_e5m2": 1,
    "fp8_inc": 1,
    "int8": 1,
}
# Model dtypes an engine's --dtype may name ("auto" = the checkpoint's).
MODEL_DTYPES = {
    "bfloat16": "bfloat16",
    "float16": "float16",
    "half": "float16",
    "float32": "float32",
    "float": "float32",
}
MAX_COMPUTE_FACTOR = 4.0


class UnknownAssumption(ValueError):
    """A quantity a bound needs cannot be established (unknown quantization method, dtype, ...)."""


def _is_none(v) -> bool:
    return v is None or (isinstance(v, str) and v.strip().lower() in ("", "none", "null"))


# --------------------------------------------------------------------------------------------------
# Parameters


def moe_spec(arch: dict) -> tuple[int, int, int] | None:
    """(experts, top-k, expert intermediate size) of an MoE architecture, ``None`` for a dense one."""
    e = arch.get("num_local_experts")
    if not e or int(e) <= 1:
        return None
    e = int(e)
    k = int(arch.get("num_experts_per_tok") or 1)  # absent: 1, the certain minimum
    if not 1 <= k <= e:
        raise ValueError(f"num_experts_per_tok={k} is not in 1..num_local_experts={e}")
    return e, k, int(arch.get("moe_intermediate_size") or arch["intermediate_size"])


@dataclass(frozen=True)
class ParamCounts:
    """Parameter groups of a Llama-architecture model (all layers summed)."""

    embedding: int  # input table, V x h
    lm_head: int  # V x h when untied; 0 when tied (the embedding table is the head)
    attention: int
    dense_mlp: int  # 0 for an MoE model
    experts_total: int  # every expert of every layer
    experts_active: int  # the top-k experts of every layer
    router: int
    norms: int  # two per layer + the final norm

    @property
    def tied(self) -> bool:
        return self.lm_head == 0

    @property
    def total(self) -> int:
        return (
            self.embedding
            + self.lm_head
            + self.attention
            + self.dense_mlp
            + self.experts_total
            + self.router
            + self.norms
        )

    @property
    def active(self) -> int:
        """Parameters one token uses (dense: all of them; MoE: its top-k experts)."""
        return self.total - self.experts_total + self.experts_active

    @property
    def step_read(self) -> int:
        """Parameters any forward step must read: active ones less the untied input table (a step
        reads only its tokens' rows of it)."""
        return self.active - (0 if self.tied else self.embedding)

    @property
    def trunk_matmul(self) -> int:
        """Matmul parameters one token position goes through before the LM head (active experts)."""
        return self.attention + self.dense_mlp + self.experts_active + self.router


def param_counts(arch: dict) -> ParamCounts:
    h = arch["hidden_size"]
    layers = arch["num_hidden_layers"]
    heads = arch["num_attention_heads"]
    kv = arch["num_key_value_heads"]
    v = arch["vocab_size"]
    head_dim = arch.get("head_dim") or h // heads
    attn = h * heads * head_dim + 2 * h * kv * head_dim + heads * head_dim * h
    moe = moe_spec(arch)
    if moe is None:
        dense, experts, active, router = 3 * h * arch["intermediate_size"], 0, 0, 0
    else:
        e, k, ie = moe
        dense, experts, active, router = 0, e * 3 * h * ie, k * 3 * h * ie, h * e
    return ParamCounts(
        embedding=v * h,
        lm_head=0 if arch.get("tie_word_embeddings", False) else v * h,
        attention=layers * attn,
        dense_mlp=layers * dense,
        experts_total=layers * experts,
        experts_active=layers * active,
        router=layers * router,
        norms=layers * 2 * h + h,
    )


def llama_param_count(arch: dict) -> int:
    """Parameters of a Llama-architecture model (embeddings, attention, MLP or every expert, norms,
    LM head): the model's size."""
    return param_counts(arch).total


param_count = llama_param_count


def active_param_count(arch: dict) -> int:
    """Parameters one token uses: the total for a dense model, top-k experts per layer for MoE."""
    return param_counts(arch).active


def active_fraction(arch: dict) -> float:
    """Active / total parameters (Week 14): 1 for a dense model; Mixtral-8x7B ~0.28 (12.9 B of 46.7 B)."""
    pc = param_counts(arch)
    return pc.active / pc.total


# --------------------------------------------------------------------------------------------------
# Course conventions (Weeks 2-3): dense model read whole per step, one GPU, one token per step


def weight_bytes_per_param(dtype: str) -> float:
    """Bytes per weight of a dtype or quantization method (``WEIGHT_BYTES``)."""
    if dtype in WEIGHT_BYTES:
        return WEIGHT_BYTES[dtype]
    raise UnknownAssumption(f"unknown weight dtype or quantization method {dtype!r}")


def weights_bytes(arch: dict, dtype: str) -> float:
    """The model's size in bytes: every parameter (every expert) x bytes per weight."""
    return llama_param_count(arch) * weight_bytes_per_param(dtype)


def quantized_weights_bytes(arch: dict, quantization: str | None, dtype: str = "bfloat16") -> float:
    """Weight memory of a quantized checkpoint (Week 12): the quantized linear layers (attention,
    MLP, experts, router) at ``quantization``'s bytes per weight, while the embeddings, the LM head
    and the norms stay in ``dtype`` (llm-compressor, AWQ and GPTQ leave them 16-bit). Scales and
    zero points not counted. Llama-3.1-8B AWQ-INT4: ~5.7 GB, not the course's "~4 GB"."""
    pc = param_counts(arch)
    hi = pc.embedding + pc.lm_head + pc.norms
    if _is_none(quantization):
        return pc.total * weight_bytes_per_param(dtype)
    return hi * weight_bytes_per_param(dtype) + (pc.total - hi) * weight_bytes_per_param(str(quantization).lower())


def _read_bytes(arch: dict, dtype: str) -> float:
    # the course's weights read per step: the model's size; for MoE only the active experts
    return active_param_count(arch) * weight_bytes_per_param(dtype)


def kv_bytes_per_token(arch: dict, dtype: str) -> float:
    """K and V for one token across all layers (``dtype``: a model dtype or a KV cache dtype)."""
    return kv_elements_per_token(arch) * KV_CACHE_BYTES[dtype]


def kv_elements_per_token(arch: dict) -> int:
    head_dim = arch.get("head_dim") or arch["hidden_size"] // arch["num_attention_heads"]
    return 2 * arch["num_hidden_layers"] * arch["num_key_value_heads"] * head_dim


def ridge_ai(gpu: dict) -> float:
    """AI* in FLOP/byte: peak BF16 FLOP/s over HBM bytes/s."""
    return gpu["peak_bf16_tflops"] * 1e12 / (gpu["hbm_gbps"] * 1e9)


def decode_floor_s(arch: dict, dtype: str, gpu: dict, batch_size: int = 1, context_len: float = 0) -> float:
    """Minimum time of one decode step: weights + the batch's KV cache read once from HBM."""
    bytes_read = _read_bytes(arch, dtype) + batch_size * context_len * kv_bytes_per_token(arch, dtype)
    return bytes_read / (gpu["hbm_gbps"] * 1e9)


def weights_floor_s(arch: dict, dtype: str, gpu: dict) -> float:
    """The course's 'theoretical floor': model size / HBM bandwidth (KV ignored; MoE: active experts)."""
    return _read_bytes(arch, dtype) / (gpu["hbm_gbps"] * 1e9)


def forward_flops(arch: dict, tokens: float) -> float:
    """2 x (active) parameters x tokens."""
    return 2.0 * active_param_count(arch) * tokens


def prefill_floor_s(arch: dict, gpu: dict, tokens: float) -> float:
    """Minimum prefill time of ``tokens`` tokens on the compute roof."""
    return forward_flops(arch, tokens) / (gpu["peak_bf16_tflops"] * 1e12)


def latency_floor_s(arch: dict, dtype: str, gpu: dict, batch_size: int, input_len: int, output_len: int) -> float:
    """Lower bound of one `vllm bench latency` iteration (bs prompts of input_len tokens,
    output_len new tokens each), course conventions. Whatever the scheduler does (chunked prefill
    may mix prefill and decode in one step), the run must
    - compute every token once: 2 P x bs x (input_len + output_len - 1) FLOPs at peak, and
    - take at least output_len forward steps (one new token per sequence per step), each reading
      the weights once, and read each sequence's KV context once per decode step,
    so it takes at least the larger of the two times. (``latency_compute_floor_s`` and
    ``latency_memory_floor_s`` are the strict, generalised forms.)
    """
    tokens = batch_size * (input_len + output_len - 1)
    compute = prefill_floor_s(arch, gpu, tokens)
    steps = output_len - 1  # decode steps after the prefill; step t reads input_len + t tokens of KV
    kv_tokens = batch_size * (steps * input_len + steps * (steps + 1) // 2)
    mem_bytes = output_len * _read_bytes(arch, dtype) + kv_tokens * kv_bytes_per_token(arch, dtype)
    memory = mem_bytes / (gpu["hbm_gbps"] * 1e9)
    return max(compute, memory)


def hbm_utilization(floor_s: float, measured_s: float) -> float:
    """Fraction of peak bandwidth achieved: theoretical floor / measured time."""
    return floor_s / measured_s


# --------------------------------------------------------------------------------------------------
# Generalised strict bounds: precision, placement, MoE, speculative decoding


@dataclass(frozen=True)
class Precision:
    """Bytes per weight and per KV element, and the peak-FLOP/s factor over BF16 they allow."""

    weights: str = "bfloat16"  # dtype or quantization method, for messages
    weight_bytes: float = 2.0
    kv_cache: str = "bfloat16"
    kv_bytes: float = 2.0  # 0 when the KV dtype is unknown (the KV term is dropped)
    compute_factor: float = 1.0


BF16 = Precision()


def precision(
    dtype: str = "bfloat16", quantization: str | None = None, kv_cache_dtype: str | None = "auto"
) -> Precision:
    """The precision of a model served with ``dtype`` (the activation dtype: the catalog's, or the
    engine's --dtype), weights quantized with ``quantization`` (None: weights in ``dtype``) and a KV
    cache of ``kv_cache_dtype``. Raises ``UnknownAssumption`` for an unknown dtype or method."""
    if dtype not in MODEL_DTYPES:
        raise UnknownAssumption(f"unknown model dtype {dtype!r}")
    act = MODEL_DTYPES[dtype]
    wname = act if _is_none(quantization) else str(quantization).strip().lower()
    if wname not in WEIGHT_BYTES:
        raise UnknownAssumption(f"unknown quantization method {quantization!r}: bytes per weight not established")
    wb = WEIGHT_BYTES[wname]
    kv = act if _is_none(kv_cache_dtype) or str(kv_cache_dtype).lower() == "auto" else str(kv_cache_dtype).lower()
    return Precision(
        weights=wname,
        weight_bytes=wb,
        kv_cache=kv,
        kv_bytes=KV_CACHE_BYTES.get(kv, 0.0),
        compute_factor=max(1.0, min(MAX_COMPUTE_FACTOR, 2.0 / wb)),
    )


@dataclass(frozen=True)
class Placement:
    """The GPUs an engine spreads one model over. Aggregate bandwidth and FLOP/s = N x one GPU's;
    interconnect ignored (it only adds time), so these are upper bounds on speed."""

    tensor_parallel_size: int = 1
    pipeline_parallel_size: int = 1
    data_parallel_size: int = 1

    def __post_init__(self):
        for k in ("tensor_parallel_size", "pipeline_parallel_size", "data_parallel_size"):
            if int(getattr(self, k)) < 1:
                raise ValueError(f"{k} must be >= 1")

    @property
    def num_gpus(self) -> int:
        return self.tensor_parallel_size * self.pipeline_parallel_size * self.data_parallel_size

    def hbm_bytes_per_s(self, gpu: dict) -> float:
        return self.num_gpus * gpu["hbm_gbps"] * 1e9

    def peak_flops(self, gpu: dict, compute_factor: float = 1.0) -> float:
        return self.num_gpus * gpu["peak_bf16_tflops"] * 1e12 * compute_factor

    @classmethod
    def from_engine_args(cls, args: dict | None) -> Placement:
        """From vLLM-named engine arguments (absent sizes are 1). Raises ``UnknownAssumption`` for a
        size that is not a positive integer."""
        args = args or {}
        sizes = {}
        for k in ("tensor_parallel_size", "pipeline_parallel_size", "data_parallel_size"):
            v = args.get(k)
            if _is_none(v):
                continue
            try:
                n = int(v)
                if n != float(v) or n < 1:
                    raise ValueError
            except (TypeError, ValueError):
                raise UnknownAssumption(f"{k}={v!r} is not a positive integer") from None
            sizes[k] = n
        return cls(**sizes)


ParallelSpec = Placement
SINGLE = Placement()


def step_weight_bytes(arch: dict, prec: Precision = BF16) -> float:
    """Bytes every forward step must read, whatever its batch: ``ParamCounts.step_read`` x bytes/weight."""
    return param_counts(arch).step_read * prec.weight_bytes


def kv_token_bytes(arch: dict, prec: Precision = BF16) -> float:
    return kv_elements_per_token(arch) * prec.kv_bytes


def flops_per_token(arch: dict) -> float:
    """Matmul FLOPs of one token position through the layers (active experts), LM head excluded."""
    return 2.0 * param_counts(arch).trunk_matmul


def logit_flops(arch: dict) -> float:
    """FLOPs of one LM-head row (one sampled position): 2 V h."""
    return 2.0 * arch["vocab_size"] * arch["hidden_size"]


def decode_step_floor_s(
    arch: dict,
    gpu: dict,
    prec: Precision = BF16,
    placement: Placement = SINGLE,
    batch_size: int = 1,
    context_len: float = 0,
) -> float:
    """One decode step: (step weight bytes + B x context x KV bytes per token) / aggregate HBM BW."""
    ctx = context_len if arch.get("sliding_window") is None else min(context_len, arch["sliding_window"])
    bytes_read = step_weight_bytes(arch, prec) + batch_size * ctx * kv_token_bytes(arch, prec)
    return bytes_read / placement.hbm_bytes_per_s(gpu)


def per_token_floor_s(
    arch: dict, gpu: dict, prec: Precision = BF16, placement: Placement = SINGLE, tokens_per_step: int = 1
) -> float:
    """Least time per output token of one request (TPOT, ITL): one step's weight read per
    ``tokens_per_step`` tokens (k + 1 with k speculative tokens)."""
    return decode_step_floor_s(arch, gpu, prec, placement) / tokens_per_step


def _kv_tokens_read(input_len: int, steps: int, window: int | None) -> int:
    """sum_{j=1..steps} min(input_len + j, window): KV tokens one sequence's decode steps read."""
    if window is None or input_len + steps <= window:
        return steps * input_len + steps * (steps + 1) // 2
    full = min(steps, max(0, window - input_len))
    return full * input_len + full * (full + 1) // 2 + (steps - full) * window


def forward_steps(output_len: int, tokens_per_step: int = 1) -> int:
    """Least forward steps for ``output_len`` tokens: the prefill step gives the first, every later
    step at most ``tokens_per_step``."""
    if output_len <= 0:
        return 0
    return 1 + math.ceil((output_len - 1) / tokens_per_step)


def latency_compute_floor_s(
    arch: dict,
    gpu: dict,
    batch_size: int,
    input_len: int,
    output_len: int,
    prec: Precision = BF16,
    placement: Placement = SINGLE,
    prompt_computed: bool = True,
) -> float:
    """FLOPs of the work at the aggregate peak: every computed position through the layers
    (L + O - 1 per sequence; O when a prefix cache may serve the prompt) and one LM-head row per
    output token."""
    positions = (input_len + output_len - 1) if prompt_computed else output_len
    flops = batch_size * (positions * flops_per_token(arch) + output_len * logit_flops(arch))
    return flops / placement.peak_flops(gpu, prec.compute_factor)


def latency_memory_floor_s(
    arch: dict,
    gpu: dict,
    batch_size: int,
    input_len: int,
    output_len: int,
    prec: Precision = BF16,
    placement: Placement = SINGLE,
    tokens_per_step: int = 1,
) -> float:
    """Bytes of the work at the aggregate bandwidth: the least number of forward steps, each
    reading the step's weights, plus each decode step's KV context of every sequence."""
    steps = forward_steps(output_len, tokens_per_step)
    kv_tokens = batch_size * _kv_tokens_read(input_len, max(0, steps - 1), arch.get("sliding_window"))
    mem = steps * step_weight_bytes(arch, prec) + kv_tokens * kv_token_bytes(arch, prec)
    return mem / placement.hbm_bytes_per_s(gpu)


def throughput_step_cap(
    arch: dict,
    gpu: dict,
    concurrency: float,
    prec: Precision = BF16,
    placement: Placement = SINGLE,
    tokens_per_step: int = 1,
) -> float:
    """Most output tokens/s of ``concurrency`` requests in flight: each gains at most
    ``tokens_per_step`` tokens per step, and a step takes at least the weight read."""
    return concurrency * tokens_per_step / decode_step_floor_s(arch, gpu, prec, placement)


def throughput_compute_cap(arch: dict, gpu: dict, prec: Precision = BF16, placement: Placement = SINGLE) -> float:
    """Most output tokens/s at the aggregate peak: each needs one position and one LM-head row."""
    return placement.peak_flops(gpu, prec.compute_factor) / (flops_per_token(arch) + logit_flops(arch))


# -- Weeks 4 and 7: KV block fragmentation and static batching (shared/notes/weeks04-16.md §H) --------


def memory_waste(lengths, block_size: int) -> float:
    """Week 4: internal fragmentation of paged KV blocks, as a fraction: each request of ``L`` tokens
    (prompt + output) holds ceil(L/B) blocks of B tokens, the unused tail of its last block is waste:
    sum(ceil(L/B)*B - L) / sum(ceil(L/B)*B)."""
    b = int(block_size)
    if b <= 0:
        raise ValueError(f"block_size must be positive, got {block_size!r}")
    held = used = 0
    for n in lengths:
        n = int(n)
        if n < 0:
            raise ValueError(f"a request length is negative: {n}")
        held += -(-n // b) * b
        used += n
    if held == 0:
        raise ValueError("no tokens: memory waste is undefined")
    return (held - used) / held


def padding_waste(output_lens, batch_size: int | None = None) -> float:
    """Week 7: share of a static batch's decode slots that produce no requested token: the batch runs
    to its longest request, so 1 - sum(O_i) / (B * max O). ``batch_size`` defaults to the rows
    given (a last, partial batch of a list counts its own rows)."""
    outs = [int(o) for o in output_lens]
    if not outs or max(outs) <= 0:
        raise ValueError("padding waste needs at least one positive output length")
    b = len(outs) if batch_size is None else int(batch_size)
    if b < len(outs):
        raise ValueError(f"{len(outs)} rows in a batch of {b}")
    return 1.0 - sum(outs) / (b * max(outs))


def batches_padding_waste(output_lens, batch_size: int) -> float:
    """Padding waste of a list of requests cut, in order, into static batches of ``batch_size``
    (the last may be smaller and counts its own rows): 1 - sum(O) / sum over batches of (rows x max O)."""
    outs = [int(o) for o in output_lens]
    b = int(batch_size)
    if b <= 0 or not outs:
        raise ValueError("need a positive batch size and at least one request")
    slots = sum(len(outs[i : i + b]) * max(outs[i : i + b]) for i in range(0, len(outs), b))
    if slots <= 0:
        raise ValueError("no decode slots")
    return 1.0 - sum(outs) / slots


def static_occupancy(output_lens) -> list[int]:
    """Week 7: rows of one static batch still producing a requested token at each decode step
    (step s counts the requests with O_i > s), for s = 0 .. max O - 1."""
    outs = [int(o) for o in output_lens]
    if not outs:
        return []
    return [sum(1 for o in outs if o > s) for s in range(max(outs))]

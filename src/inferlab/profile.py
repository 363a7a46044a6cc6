"""Kernel-time breakdown of a PyTorch profiler trace (Chrome trace JSON, opens in Perfetto).

On a GPU the trace holds the device's kernels (``cat == "kernel"``): each kernel's duration is
GPU time. On the CPU default there are no kernels; the CPU operators (``cat == "cpu_op"``) are
used instead, and because operators nest (``aten::linear`` -> ``aten::addmm``), each event's *self*
time (its duration minus its children's on the same thread) is what is summed, so no time is
counted twice. The categories are name patterns kept here, in one place; ``other`` is the rest.
"""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

# first match wins: attention before GEMM (flash-attention kernels contain "gemm"-like names)
CATEGORIES: list[tuple[str, re.Pattern]] = [
    ("attention", re.compile(r"attn|attention|flash|fmha|paged|sdpa|mla_|reshape_and_cache", re.I)),
    (
        "gemm",
        re.compile(r"gemm|matmul|\bmm\b|_mm\b|aten::mm|addmm|bmm|linear|cutlass|cublas|nvjet|xmma|onednn|dnnl", re.I),
    ),
    (
        "norm_elementwise",
        re.compile(
            r"norm|silu|gelu|act_and_mul|elementwise|vectorized|rotary|rope|softmax|aten::(add|mul|sub|div|copy_|fill_|"
            r"cat|neg|pow|rsqrt|mean|exp|to|_to_copy|clamp|where|index|gather|embedding)",
            re.I,
        ),
    ),
]
ORDER = [c for c, _ in CATEGORIES] + ["other"]


def categorize(name: str) -> str:
    for cat, pat in CATEGORIES:
        if pat.search(name):
            return cat
    return "other"


def load_trace(path: Path) -> dict:
    path = Path(path)
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt") as f:
        return json.load(f)


def self_times(events: list[dict]) -> list[tuple[str, float]]:
    """(name, self time in us) for complete events; children are events on the same (pid, tid)
    that start and end inside their parent."""
    by_thread: dict[tuple, list[dict]] = {}
    for e in events:
        by_thread.setdefault((e.get("pid"), e.get("tid")), []).append(e)
    out = []
    for evs in by_thread.values():
        evs.sort(key=lambda e: (float(e["ts"]), -float(e.get("dur", 0))))
        stack: list[list] = []  # [end, name, dur, child_time]
        for e in evs:
            ts, dur = float(e["ts"]), float(e.get("dur", 0))
            while stack and ts >= stack[-1][0]:
                end, name, d, child = stack.pop()
                out.append((name, max(0.0, d - child)))
            if stack:
                stack[-1][3] += dur
            stack.append([ts + dur, e.get("name", ""), dur, 0.0])
        while stack:
            end, name, d, child = stack.pop()
            out.append((name, max(0.0, d - child)))
    return out


def breakdown(trace: dict) -> dict:
    """{"source", "total_us", "events", "share_pct": {category: %}, "top": [(name, us)]}. A trace not
    shaped as the profiler writes it is a ``ValueError`` (the typed parse error) saying what was wrong."""
    try:
        return _breakdown(trace)
    except (KeyError, TypeError, AttributeError, IndexError) as e:
        raise ValueError(f"not a PyTorch profiler trace: {e.__class__.__name__}: {e}") from e


def _breakdown(trace: dict) -> dict:
    events = [e for e in trace.get("traceEvents", []) if e.get("ph") == "X" and "ts" in e]
    kernels = [e for e in events if e.get("cat") == "kernel"]
    if kernels:
        source, times = "GPU kernels", [(e.get("name", ""), float(e.get("dur", 0))) for e in kernels]
    else:
        ops = [e for e in events if e.get("cat") == "cpu_op"]
        source, times = "CPU operators (self time; no GPU in this trace)", self_times(ops)
    total = sum(t for _, t in times)
    if total <= 0:
        raise ValueError("the trace holds no timed kernels or operators")
    per = dict.fromkeys(ORDER, 0.0)
    by_name: dict[str, float] = {}
    for name, t in times:
        per[categorize(name)] += t
        by_name[name] = by_name.get(name, 0.0) + t
    top = sorted(by_name.items(), key=lambda kv: -kv[1])[:10]
    return {
        "source": source,
        "total_us": total,
        "events": len(times),
        "share_pct": {c: 100.0 * per[c] / total for c in ORDER},
        "top": [[n, round(t, 1)] for n, t in top],
        "allreduce": allreduce(trace),
    }


# All-reduce implementations by kernel/operator name, first match wins (vLLM's dispatch order on
# CUDA: FlashInfer AR, NCCL symm-mem, quick AR, custom AR, torch symm-mem, pynccl; shared/notes
# weeks04-16.md "Week 13"). On the CPU build the ranks all-reduce through vLLM's shm communicator
# or torch.distributed's gloo backend (c10d ops in the trace).
ALLREDUCE: list[tuple[str, re.Pattern]] = [
    ("flashinfer", re.compile(r"flashinfer|trtllm.*all_?reduce|allreduce_fusion|lamport", re.I)),
    ("custom_ar", re.compile(r"cross_device_reduce", re.I)),
    ("quick_ar", re.compile(r"quick_?all_?reduce|qr_all_reduce", re.I)),
    ("nccl", re.compile(r"nccl\w*AllReduce|ncclKernel_AllReduce", re.I)),
    ("symm_mem", re.compile(r"multimem|one_shot_all_reduce|two_shot_all_reduce", re.I)),
    ("shm", re.compile(r"shm_all_?reduce", re.I)),
    ("gloo", re.compile(r"gloo|c10d::all_?reduce|all_reduce|allreduce", re.I)),
]


def allreduce_impl(name: str) -> str | None:
    """The all-reduce implementation a kernel/operator name belongs to, None when it is none."""
    for impl, pat in ALLREDUCE:
        if pat.search(name):
            return impl
    return None


def allreduce(trace: dict) -> dict:
    """All-reduce time in a trace: GPU kernels when there are any, else CPU operators' self time.
    {"source", "total_us" (all profiled time), "allreduce_us", "calls", "share_pct", "impls":
    {impl: us}, "impl" (the one with most time, or "none")}."""
    events = [e for e in trace.get("traceEvents", []) if e.get("ph") == "X" and "ts" in e]
    kernels = [e for e in events if e.get("cat") == "kernel"]
    if kernels:
        source, times = "GPU kernels", [(e.get("name", ""), float(e.get("dur", 0))) for e in kernels]
    else:
        source = "CPU operators (self time; no GPU in this trace)"
        times = self_times([e for e in events if e.get("cat") == "cpu_op"])
    total = sum(t for _, t in times)
    impls: dict[str, float] = {}
    calls = 0
    for name, t in times:
        impl = allreduce_impl(name)
        if impl is not None:
            impls[impl] = impls.get(impl, 0.0) + t
            calls += 1
    ar = sum(impls.values())
    return {
        "source": source,
        "total_us": total,
        "allreduce_us": ar,
        "calls": calls,
        "share_pct": 100.0 * ar / total if total > 0 else None,
        "impls": {k: round(v, 1) for k, v in impls.items()},
        "impl": max(impls, key=impls.get) if impls else "none",
    }


def find_traces(folder: Path) -> list[Path]:
    """Trace files, largest first (the worker's trace holds the model's kernels/operators; the API
    process writes a small one of its own)."""
    folder = Path(folder)
    found = [p for p in folder.rglob("*") if p.is_file() and re.search(r"\.json(\.gz)?$", p.name)]
    return sorted(found, key=lambda p: -p.stat().st_size)

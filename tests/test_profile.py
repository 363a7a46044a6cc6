"""Kernel-time breakdown: self time of nested CPU operators, GPU kernels preferred, categories."""

import gzip
import json

import pytest

from inferlab import profile


def ev(name, ts, dur, cat="cpu_op", tid=1):
    return {"ph": "X", "cat": cat, "name": name, "ts": ts, "dur": dur, "pid": 1, "tid": tid}


def test_nested_cpu_ops_count_self_time_once(tmp_path):
    # aten::linear (100 us) contains aten::addmm (80 us) which contains aten::copy_ (10 us)
    trace = {
        "traceEvents": [
            ev("aten::linear", 0, 100),
            ev("aten::addmm", 10, 80),
            ev("aten::copy_", 20, 10),
            ev("vllm::unified_attention_with_output", 200, 50),
            ev("aten::slice", 300, 50, tid=2),
            {"ph": "i", "name": "marker", "ts": 5},
        ]
    }
    b = profile.breakdown(trace)
    assert b["source"].startswith("CPU operators") and b["total_us"] == pytest.approx(200)
    # linear self 20 + addmm self 70 = 90 GEMM; copy 10 elementwise; attention 50; slice 50 other
    assert b["share_pct"]["gemm"] == pytest.approx(100 * 90 / 200)
    assert b["share_pct"]["norm_elementwise"] == pytest.approx(100 * 10 / 200)
    assert b["share_pct"]["attention"] == pytest.approx(100 * 50 / 200)
    assert sum(b["share_pct"].values()) == pytest.approx(100)
    p = tmp_path / "t.pt.trace.json.gz"
    with gzip.open(p, "wt") as f:
        json.dump(trace, f)
    assert profile.breakdown(profile.load_trace(p))["share_pct"] == b["share_pct"]


def test_gpu_kernels_win_over_cpu_ops():
    trace = {
        "traceEvents": [
            ev("aten::linear", 0, 1000),
            ev("sm90_xmma_gemm_bf16bf16_bf16f32", 0, 30, cat="kernel"),
            ev("flash_fwd_splitkv_kernel", 40, 10, cat="kernel"),
            ev("void vllm::rms_norm_kernel<c10::BFloat16>", 60, 5, cat="kernel"),
            ev("void at::native::vectorized_elementwise_kernel", 70, 5, cat="kernel"),
        ]
    }
    b = profile.breakdown(trace)
    assert b["source"] == "GPU kernels" and b["total_us"] == pytest.approx(50)
    assert b["share_pct"] == pytest.approx({"attention": 20.0, "gemm": 60.0, "norm_elementwise": 20.0, "other": 0.0})


def test_empty_trace_is_an_error():
    with pytest.raises(ValueError, match="no timed"):
        profile.breakdown({"traceEvents": []})

"""Week 13 (tensor parallelism): the plan types TP=4 on the 2-core CPU default, TP=2 gets one core per
rank, the all-reduce classifier names each implementation; on the shared embedded-default run a TP=2
engine (offline driver and profiled server) runs for real and its all-reduce goes through gloo."""

import json

import pandas as pd
import pytest
from conftest import load_preset

from inferlab import matrix, profile
from inferlab.engines.vllm import cpu_parallel_env


def test_tp4_is_typed_needs_4_devices_and_tp2_runs_on_the_cpu(catalog):
    cfg = load_preset(catalog, weeks=["week13"])
    cells = {c.path: c for c in matrix.expand_week(cfg, "week13")}
    assert cells["week13/latency/vllm/cpu/tp4/bs1"].skip == "needs 4 devices (cpu has 2 per job in this preset)"
    assert cells["week13/latency/vllm/cpu/tp2/bs1"].skip is None
    assert cells["week13/latency/vllm/cpu/tp1/bs1"].skip is None
    assert cells["week13/comm/vllm/cpu/tp2/mc1"].params["profile"] is True


def test_tp_on_gpus_asks_for_n_gpus_per_job(catalog):
    cfg = load_preset(catalog, "cluster.yaml", weeks=["week13"], gpu_count={"h100": 2})
    cells = {c.path: c for c in matrix.expand_week(cfg, "week13")}
    assert cells["week13/latency/vllm/h100/tp2/bs1"].skip is None
    assert cells["week13/latency/vllm/h100/tp4/bs1"].skip.startswith("needs 4 GPUs (h100 has 2")
    assert cells["week13/latency/vllm/h200/tp2/bs1"].skip.startswith("needs 2 GPUs (h200 has 1")


def test_cpu_thread_binding_one_core_range_per_rank():
    assert cpu_parallel_env({"tensor_parallel_size": 2}, cores=2) == {"VLLM_CPU_OMP_THREADS_BIND": "0|1"}
    assert cpu_parallel_env({"tensor_parallel_size": 2}, cores=8) == {"VLLM_CPU_OMP_THREADS_BIND": "0-3|4-7"}
    assert cpu_parallel_env({"tensor_parallel_size": 1}, cores=2) == {}
    assert cpu_parallel_env({"tensor_parallel_size": 4}, cores=2) == {}  # never bound smaller than asked


@pytest.mark.parametrize(
    "name, impl",
    [
        ("void vllm::cross_device_reduce_1stage<__nv_bfloat16, 2>(...)", "custom_ar"),
        ("ncclDevKernel_AllReduce_Sum_bf16_RING_LL(ncclDevKernelArgsStorage<4096ul>)", "nccl"),
        ("void flashinfer::trtllm_allreduce_fusion::allreduce_fusion_kernel_oneshot_lamport<...>", "flashinfer"),
        ("c10d::allreduce_", "gloo"),
        ("gloo:all_reduce", "gloo"),
        ("_C::shm_allreduce", "shm"),
        ("aten::addmm", None),
        ("ampere_bf16_s16816gemm_bf16_128x64", None),
    ],
)
def test_allreduce_kernels_are_classified_by_name(name, impl):
    assert profile.allreduce_impl(name) == impl


def test_allreduce_share_of_gpu_kernels():
    ev = [
        {"ph": "X", "cat": "kernel", "name": "nvjet_gemm", "ts": 0, "dur": 70},
        {"ph": "X", "cat": "kernel", "name": "void vllm::cross_device_reduce_1stage<bf16, 2>", "ts": 80, "dur": 20},
        {"ph": "X", "cat": "kernel", "name": "void vllm::cross_device_reduce_1stage<bf16, 2>", "ts": 110, "dur": 10},
    ]
    ar = profile.allreduce({"traceEvents": ev})
    assert ar["impl"] == "custom_ar" and ar["calls"] == 2 and ar["share_pct"] == pytest.approx(30 / 100 * 100)
    assert profile.breakdown({"traceEvents": ev})["allreduce"]["allreduce_us"] == 30


@pytest.mark.engine
def test_tp2_runs_for_real_and_tp4_is_typed(shared_run):
    res = shared_run / "results" / "week13"
    rec = json.loads((res / "comm/vllm/cpu/tp2/mc1/cell.json").read_text())
    assert rec["status"] == "ok", rec.get("log_tail")
    log = (res / "comm/vllm/cpu/tp2/_engine/server.log").read_text(errors="replace")
    # two ranks, one core each (VLLM_CPU_OMP_THREADS_BIND="0|1")
    assert "world_size=2" in log and "core ids=[0]" in log and "core ids=[1]" in log
    w = pd.read_parquet(res / "week13.parquet")
    tpot = w[(w.experiment == "comm") & (w.metric == "tpot_mean")]
    assert len(tpot) == 1 and tpot.value.iloc[0] > 0
    skip = w[(w.configuration == "tp4")]
    assert set(skip.experiment) == {"latency", "throughput"}
    assert set(skip.status) == {"skipped"} and skip.detail.str.startswith("needs 4 devices").all()
    t = pd.read_csv(res / "tables" / "tp_latency.csv", dtype=str)
    assert t.loc[0, "TP=4"].startswith("SKIPPED")


@pytest.mark.engine
def test_tp2_profile_finds_the_cpu_allreduce(shared_run):
    cell = shared_run / "results" / "week13" / "comm/vllm/cpu/tp2/mc1"
    rec = json.loads((cell / "cell.json").read_text())
    assert rec["status"] == "ok", rec.get("log_tail")
    ar = rec["profile"]["allreduce"]
    assert ar["calls"] > 0 and ar["impl"] in ("gloo", "shm") and 0 < ar["share_pct"] < 100
    w = pd.read_parquet(shared_run / "results" / "week13" / "week13.parquet")
    share = w[(w.experiment == "comm") & (w.metric == "allreduce_time_share")]
    assert share.value.iloc[0] == pytest.approx(ar["share_pct"])
    t = pd.read_csv(shared_run / "results" / "week13" / "tables" / "communication.csv", dtype=str)
    assert float(t["Communication (%)"].iloc[0]) == pytest.approx(ar["share_pct"], abs=0.06)
    assert "all-reduce via " + ar["impl"] in t["Implementation (measured over)"].iloc[0]

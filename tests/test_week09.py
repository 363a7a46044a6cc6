"""Week 9 (scheduling policies): SGLang's policies typed skipped without a GPU, the DP-with-router
layout typed skipped at plan time (no runner here), and vLLM's own policy (fcfs | priority only) on the
shared-prefix workload measured for real on the shared embedded-default run."""

import json

import pytest
from conftest import load_preset

from inferlab import matrix

W = "week09"


def test_week_plan(catalog):
    cfg = load_preset(catalog, weeks=[W])
    cells = {c.path: c for c in matrix.expand(cfg).values() if c.week == W}
    pol = {c.configuration for c in cells.values() if c.experiment == "policy_shared_prefix"}
    assert pol == {"schedule_policyfcfs", "schedule_policylpm", "schedule_policydfs-weight"}
    sg = [c for c in cells.values() if c.experiment == "policy_sharegpt"]
    assert {c.configuration for c in sg} == {"schedule_policyfcfs", "schedule_policylpm"}
    assert all(c.params["dataset"] == "sharegpt-synthetic" for c in sg)  # the CPU preset's stand-in
    (router,) = [c for c in cells.values() if c.experiment == "dp_router"]
    assert router.layout == {"kind": "router", "replicas": 2, "policy": "cache_aware"}
    assert router.skip.startswith("layout 'router' has no runner")
    ana = [c for c in cells.values() if c.experiment == "policy_vllm_analogue"]
    assert {c.engine_args["scheduling_policy"] for c in ana} == {"fcfs", "priority"}
    assert all(c.params["client"] == "sglang" for c in ana)


@pytest.mark.engine
def test_sglang_and_router_typed_skipped_vllm_analogue_measured(shared_run):
    res = shared_run / "results" / W

    def rec(p):
        return json.loads((res / p / "cell.json").read_text())

    for p in (
        "policy_shared_prefix/sglang/cpu/schedule_policydfs-weight/rr8",
        "policy_sharegpt/sglang/cpu/schedule_policylpm/rr8",
    ):
        r = rec(p)
        assert r["status"] == "skipped" and r["reason"] == "engine_unavailable", p
    r = rec("dp_router/sglang/cpu/default/rr8")
    assert r["status"] == "skipped" and r["reason"] == "unsupported" and "router" in r["detail"]
    a = rec("policy_vllm_analogue/vllm/cpu/schedpriority/rr8")
    assert a["status"] == "ok", (a.get("detail"), a.get("log_tail"))
    assert "--scheduling-policy" in a["provenance"]["server_command"]
    srv = {m["metric"]: m["value"] for m in a["server_metrics"]}
    assert srv["prefix_cache_hits"] > 0  # APC on, shared system prompts
    t = (res / "tables" / "policy_shared_prefix.md").read_text()
    assert "SKIPPED" in t and "fcfs | priority" in t

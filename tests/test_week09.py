"""Week 9 (scheduling policies): SGLang's policies and its DP-with-router configurations typed skipped
without a GPU (engine_unavailable; "needs 2 GPUs" on the cluster preset's 1 GPU per job), vLLM's own
policy (fcfs | priority only) on the shared-prefix workload, and the router layout run for real on the
shared embedded-default run: two vLLM CPU servers (1 core each) behind sglang_router's cache_aware
policy, the hit rate summed over the replicas' /metrics and per replica."""

import json

import pytest
from conftest import load_preset

from inferlab import matrix

W = "week09"


def test_week_plan(catalog):
    cfg = load_preset(catalog, weeks=[W])
    cells = {c.path: c for c in matrix.expand(cfg).values() if c.week == W}
    pol = {c.configuration for c in cells.values() if c.experiment == "policy_shared_prefix"}
    assert pol == {"policyfcfs", "policylpm", "policydfs-weight"}
    sg = [c for c in cells.values() if c.experiment == "policy_sharegpt"]
    assert {c.configuration for c in sg} == {"policyfcfs", "policylpm"}
    assert all(c.params["dataset"] == "sharegpt-synthetic" for c in sg)  # the CPU preset's stand-in
    (router,) = [c for c in cells.values() if c.experiment == "dp_router"]
    assert router.layout == {"kind": "router", "replicas": 2, "policy": "cache_aware"}
    assert router.skip is None  # 2 replicas of 1 core each on the CPU's 2; SGLang itself is absent at run time
    (rr,) = [c for c in cells.values() if c.experiment == "dp_router_round_robin"]
    assert rr.layout["policy"] == "round_robin"  # one configuration per policy
    (dp,) = [c for c in cells.values() if c.experiment == "dp_router_vllm_analogue"]
    assert dp.engine == "vllm" and dp.layout == {"kind": "router", "replicas": 2, "policy": "cache_aware"}
    assert dp.skip is None and dp.params["client"] == "sglang" and dp.engine_args["enable_prefix_caching"] is True
    assert matrix.gpus_needed(dp.layout, dp.engine_args) == 2
    # one core per job: the replicas cannot each have their own
    one = {c.path: c for c in matrix.expand(load_preset(catalog, weeks=[W], gpu_count=1)).values()}
    assert one[dp.path].skip.startswith("needs 2 devices")
    ana = [c for c in cells.values() if c.experiment == "policy_vllm_analogue"]
    assert {c.engine_args["scheduling_policy"] for c in ana} == {"fcfs", "priority"}
    assert all(c.params["client"] == "sglang" for c in ana)


def test_cluster_router_needs_two_gpus(catalog):
    cfg = load_preset(catalog, "cluster.yaml", weeks=[W])
    cells = [c for c in matrix.expand(cfg).values() if c.experiment.startswith("dp_router")]
    assert cells and {c.engine for c in cells} == {"sglang"}  # the vLLM analogue is the CPU's only
    assert all(c.skip.startswith("needs 2 GPUs") for c in cells)
    cfg = load_preset(catalog, "cluster.yaml", weeks=[W], gpu_count=2)
    assert all(c.skip is None for c in matrix.expand(cfg).values() if c.experiment.startswith("dp_router"))


@pytest.mark.engine
def test_sglang_and_router_typed_skipped_vllm_analogue_measured(shared_run):
    res = shared_run / "results" / W

    def rec(p):
        return json.loads((res / p / "cell.json").read_text())

    for p in (
        "policy_shared_prefix/sglang/cpu/policydfs-weight/rr8",
        "policy_sharegpt/sglang/cpu/policylpm/rr8",
    ):
        r = rec(p)
        assert r["status"] == "skipped" and r["reason"] == "engine_unavailable", p
    for p in ("dp_router/sglang/cpu/default/rr8", "dp_router_round_robin/sglang/cpu/default/rr8"):
        r = rec(p)
        assert r["status"] == "skipped" and r["reason"] == "engine_unavailable", p
    a = rec("policy_vllm_analogue/vllm/cpu/schedpriority/rr8")
    assert a["status"] == "ok", (a.get("detail"), a.get("log_tail"))
    assert "--scheduling-policy" in a["provenance"]["server_command"]
    srv = {m["metric"]: m["value"] for m in a["server_metrics"]}
    assert srv["prefix_cache_hits"] > 0  # APC on, shared system prompts
    t = (res / "tables" / "policy_shared_prefix.md").read_text()
    assert "SKIPPED" in t and "fcfs | priority" in t


@pytest.mark.engine
def test_router_layout_measured_with_hit_rate_per_replica(shared_run):
    res = shared_run / "results" / W / "dp_router_vllm_analogue" / "vllm" / "cpu" / "default"
    r = json.loads((res / "rr8" / "cell.json").read_text())
    assert r["status"] == "ok", (r.get("detail"), r.get("log_tail"))
    cmds = r["provenance"]["server_command"]
    assert set(cmds) == {"replica0", "replica1", "router"}
    router = cmds["router"]
    assert "sglang_router.launch_router" in router and router[router.index("--policy") + 1] == "cache_aware"
    urls = router[router.index("--worker-urls") + 1 : router.index("--policy")]
    assert len(urls) == 2 and all(u.startswith("http://127.0.0.1:") for u in urls)
    # the client went through the router, the cache reset to both replicas
    cmd = r["provenance"]["command"]
    assert cmd[cmd.index("--base-url") + 1] == f"http://127.0.0.1:{r['provenance']['server_port']}"
    assert r["cache_reset"]["ok"] is True
    srv = {m["metric"]: m["value"] for m in r["server_metrics"]}
    # per replica (each from its own /metrics) and summed: the two add up
    for k in ("prefix_cache_hits", "prefix_cache_queries", "server_requests"):
        assert srv[k] == srv[f"{k}_replica0"] + srv[f"{k}_replica1"], k
    assert srv["server_requests"] == 6  # 2 groups x 3 prompts, all through the router
    assert srv["prefix_cache_hits"] > 0 and 0 < srv["prefix_cache_hit_rate"] <= 1
    served = [k for k in ("replica0", "replica1") if srv[f"server_requests_{k}"]]
    assert all(srv[f"prefix_cache_hit_rate_{k}"] is not None for k in served)
    sess = json.loads((res / "_engine" / "session.json").read_text())
    lay = sess["layout"]
    assert lay["kind"] == "router" and lay["router"]["devices"] == {"replica0": ["0"], "replica1": ["1"]}
    assert lay["router"]["python"].endswith("/bin/python")
    assert sess["teardown"]["group_gone"] is True and sess["teardown"]["dead_member"] is None
    assert sess["gauges"]["scrape_failures"] == 0
    t = (shared_run / "results" / W / "tables" / "dp_router.md").read_text()
    assert "dp_router_vllm_analogue" in t and "SKIPPED (engine_unavailable)" in t and "replica 1" in t

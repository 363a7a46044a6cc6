"""Week 16 (disaggregated prefill/decode): NixlConnector needs a GPU per server (typed skipped on one-GPU
jobs and on the CPU, where there is no NIXL transport); the P/D layout through ExampleConnector runs
for real on the CPU engine (two servers + the proxy) beside its colocated baseline."""

import json

import pandas as pd
import pytest
from conftest import load_preset

from inferlab import matrix


def test_plan_on_cpu_and_on_gpus(catalog):
    cpu = {c.path: c for c in matrix.expand_week(load_preset(catalog, weeks=["week16"]), "week16")}
    assert cpu["week16/pd_nixl/vllm/cpu/default/in256"].skip.startswith(
        "unsupported: nixl (kv_connector=NixlConnector)"
    )
    assert cpu["week16/pd_shared_storage/vllm/cpu/default/in256"].skip is None
    assert cpu["week16/colocated/vllm/cpu/default/in1024"].skip is None
    gpu = {c.path: c for c in matrix.expand_week(load_preset(catalog, "cluster.yaml", weeks=["week16"]), "week16")}
    assert gpu["week16/pd_nixl/vllm/h100/default/in4096"].skip.startswith("needs 2 GPUs (h100 has 1")
    two = {
        c.path: c
        for c in matrix.expand_week(load_preset(catalog, "cluster.yaml", weeks=["week16"], gpu_count=2), "week16")
    }
    assert two["week16/pd_nixl/vllm/h100/default/in4096"].skip is None
    # SGLang's P/D over NIXL: the same typing, its own engine's path
    assert cpu["week16/pd_sglang/sglang/cpu/default/in256"].skip.startswith("unsupported: nixl (kv_connector=nixl)")
    assert gpu["week16/pd_sglang/sglang/h100/default/in128"].skip.startswith("needs 2 GPUs (h100 has 1")
    assert two["week16/pd_sglang/sglang/h100/default/in128"].skip is None
    assert two["week16/pd_sglang/sglang/h100/default/in128"].layout == {"kind": "pd", "connector": "nixl"}


@pytest.mark.engine
def test_pd_pair_runs_for_real_on_the_cpu(shared_run):
    res = shared_run / "results" / "week16"
    rec = json.loads((res / "pd_shared_storage/vllm/cpu/default/in256/cell.json").read_text())
    assert rec["status"] == "ok", rec.get("log_tail")
    sess = json.loads((res / "pd_shared_storage/vllm/cpu/default/_engine/session.json").read_text())
    assert (
        set(sess["layout"]["ports"]) == {"prefill", "decode", "proxy"}
        and sess["layout"]["connector"] == "ExampleConnector"
    )
    assert sess["teardown"]["group_gone"] is True  # every member's process group killed and reaped
    m = {x["metric"]: x["value"] for x in rec["server_metrics"]}  # the decode server's /metrics, via the proxy
    assert m["server_requests"] == 4 and rec["lengths"]["achieved"]["requests"] == 4
    w = pd.read_parquet(res / "week16.parquet")
    pd_rows = w[(w.experiment == "pd_shared_storage")]
    hits = pd_rows[pd_rows.metric == "external_prefix_cache_hits"].value
    assert len(hits) == 1 and hits.iloc[0] > 0  # the decode server loaded the prefill server's KV
    col = w[(w.experiment == "colocated") & (w.metric == "ttft_p50")]
    assert col.status.iloc[0] == "ok" and col.value.iloc[0] > 0
    nixl = w[w.experiment == "pd_nixl"]
    assert set(nixl.status) == {"skipped"}
    t = pd.read_csv(res / "tables" / "ttft_pd_vs_colocated.csv", dtype=str)
    assert float(t["P/D shared-storage TTFT p50 (ms)"].iloc[0]) > 0
    assert t["P/D NIXL TTFT p50 (ms)"].iloc[0].startswith("SKIPPED")
    v = pd.read_csv(res / "tables" / "when_disaggregation_helps.csv", dtype=str)
    row = v[v["P/D"] == "pd_shared_storage"].iloc[0]
    assert row["Answer"].split(":")[0] in ("helps", "trade-off", "does not help here")
    assert v[v["P/D"] == "pd_nixl"]["Answer"].iloc[0].startswith("cannot tell (SKIPPED")
    # the KV transfer's own numbers: NIXL's histograms, absent with ExampleConnector, typed where skipped
    k = pd.read_csv(res / "tables" / "kv_transfer.csv", dtype=str, keep_default_na=False)
    ss = k[k["Experiment"] == "pd_shared_storage"].iloc[0]
    assert float(ss["KV tokens loaded (external hits)"].replace(",", "")) > 0
    assert ss["NIXL transfers"] == ss["Transfer time mean (ms)"] == "- (no NIXL)"
    for exp in ("pd_nixl", "pd_sglang"):
        assert k[k["Experiment"] == exp]["Status"].iloc[0].startswith("SKIPPED"), k.to_dict("records")
    # GPU utilisation per pool: no NVML on the CPU, said in every row, never blank
    g = pd.read_csv(res / "tables" / "gpu_per_pool.csv", dtype=str, keep_default_na=False)
    row = g[g["Experiment"] == "pd_shared_storage"].iloc[0]
    assert row["Prefill GPU util mean (%)"] == row["Decode GPU util mean (%)"] == "- (no NVML GPU)"
    assert (g["Status"] != "").all() and set(g["Experiment"]) >= {"pd_shared_storage", "pd_nixl", "colocated"}

"""Week 15 (LMCache): vLLM + LMCache is an engine variant (catalog data) whose generated configuration
keeps the persistent fs:// tier and stable hashes; on the CPU default LMCache and vLLM's native KV
offloading (the analogue) are typed skipped with the engine's own reasons, never run or faked."""

import json

import pandas as pd
import pytest
from conftest import load_preset

from inferlab import engines, matrix


def test_lmcache_variant_generates_a_restart_safe_configuration(catalog):
    cfg = load_preset(catalog, weeks=["week15"])
    entry = cfg.engine_entry("vllm_lmcache")
    env = entry["env_vars"]
    assert env["LMCACHE_REMOTE_URL"].startswith("fs://")  # local_disk's index does not survive a restart
    assert env["LMCACHE_PRE_CACHING_HASH_ALGORITHM"] == "sha256_cbor" and env["PYTHONHASHSEED"] == "0"
    assert "bench_serving" in entry["tools"] and entry["probe"] == "lmcache"
    eng = engines.from_config(cfg, "vllm_lmcache")
    assert eng.environ(None)["LMCACHE_REMOTE_URL"] == env["LMCACHE_REMOTE_URL"]
    cmd = eng.serve_command("/m", "127.0.0.1", 8000, matrix.expand_week(cfg, "week15")[0].engine_args)
    i = cmd.index("--kv-transfer-config")
    assert json.loads(cmd[i + 1]) == {"kv_connector": "LMCacheConnectorV1", "kv_role": "kv_both"}


def test_cpu_types_lmcache_and_native_offloading_skipped(catalog):
    cfg = load_preset(catalog, weeks=["week15"])
    cells = matrix.expand_week(cfg, "week15")
    restart = [c for c in cells if c.experiment == "restart"]
    assert [c.cell for c in restart] == ["rr1-r1", "rr1-r2"] and restart[0].between_cells["restart"] is True
    assert all(c.skip.startswith("unsupported: lmcache") and "CUDA-only" in c.skip for c in restart)
    native = [c for c in cells if c.experiment == "offload_native"]
    assert all("only supported on CUDA-alike and XPU GPUs" in c.skip for c in native)


def test_gpus_run_both(catalog):
    cfg = load_preset(catalog, "cluster.yaml", weeks=["week15"])
    assert all(c.skip is None for c in matrix.expand_week(cfg, "week15"))


@pytest.mark.engine
def test_week15_records_and_tables_say_skipped(shared_run):
    res = shared_run / "results" / "week15"
    for path in ("restart/vllm_lmcache/cpu/default/rr1-r1", "offload_native/vllm/cpu/default/rr1-r2"):
        rec = json.loads((res / path / "cell.json").read_text())
        assert rec["status"] == "skipped" and rec["reason"] == "unsupported" and rec["measured_by"] == "none"
    t = pd.read_csv(res / "tables" / "cold_vs_warm.csv", dtype=str)
    assert len(t) == 2 and t["Status"].str.startswith("SKIPPED").all()
    assert not (res / "restart/vllm_lmcache/cpu/default/_engine/server.log").exists()  # nothing started

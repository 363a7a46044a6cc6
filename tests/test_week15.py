"""Week 15 (LMCache): vLLM + LMCache is an engine variant (catalog data) whose generated configuration
keeps the persistent fs:// tier and stable hashes; on the CPU default LMCache and vLLM's native KV
offloading (the analogue) are typed skipped with the engine's own reasons, never run or faked."""

import json
from pathlib import Path

import pandas as pd
import pytest
from conftest import load_preset

from inferlab import engines, matrix

DATA = Path(__file__).parent / "data"


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
    sweep = pd.read_csv(res / "tables" / "chunk_sweep.csv", dtype=str)
    assert sweep["chunk_size"].tolist() == [str(n) for n in CHUNKS]
    assert sweep[["rr1-r1", "rr1-r2"]].stack().str.startswith("SKIPPED").all()
    tiers = pd.read_csv(res / "tables" / "tiers.csv", dtype=str)
    assert tiers["tier"].tolist() == ["cpu", "cpu_disk", "cpu_fs"]
    assert tiers["Status r2"].str.startswith("SKIPPED").all()
    for path in ("chunk_sweep/vllm_lmcache/cpu/chunk_size64", "tiers/vllm_lmcache/cpu/cpu_fs"):
        assert json.loads((res / path / "rr1-r2" / "cell.json").read_text())["status"] == "skipped"
        assert not (res / path / "_engine" / "server.log").exists()


# -- env axes: LMCache's chunk_size and tiers as server axes that set the server's environment -------
CHUNKS = [64, 128, 256, 512, 1024]


def _week(catalog, edit):
    """Edit week15.yaml's experiments (a function of the parsed document) and write it back."""
    import yaml

    p = catalog / "weeks" / "week15.yaml"
    doc = yaml.safe_load(p.read_text())
    edit(doc["experiments"])
    p.write_text(yaml.safe_dump(doc, sort_keys=False))


def test_chunk_size_is_a_server_axis_that_sets_lmcache_chunk_size(catalog):
    cfg = load_preset(catalog, weeks=["week15"])
    assert cfg.engine_entry("vllm_lmcache")["env_axes"]["chunk_size"] == "LMCACHE_CHUNK_SIZE"
    cells = [c for c in matrix.expand_week(cfg, "week15") if c.experiment == "chunk_sweep"]
    confs = {c.configuration: c for c in cells}
    assert list(confs) == [f"chunk_size{n}" for n in CHUNKS]  # one engine start per chunk size
    for n in CHUNKS:
        c = confs[f"chunk_size{n}"]
        assert c.server_env == {"LMCACHE_CHUNK_SIZE": str(n)} and c.axes["chunk_size"] == n
        assert "chunk_size" not in c.engine_args  # never a `vllm serve --chunk-size`
        assert c.to_dict()["server_env"] == {"LMCACHE_CHUNK_SIZE": str(n)}
        eng = engines.from_config(cfg, "vllm_lmcache")
        assert "--chunk-size" not in eng.serve_command("/m", "127.0.0.1", 8000, c.engine_args)
    assert [c.cell for c in cells[:2]] == ["rr1-r1", "rr1-r2"]
    # configurations without env axes keep their record (and their rule's params) unchanged
    restart = next(c for c in matrix.expand_week(cfg, "week15") if c.experiment == "restart")
    assert restart.server_env == {} and "server_env" not in restart.to_dict()


def test_tiers_bundle_env_settings_and_unset_the_persistent_tier(catalog):
    cfg = load_preset(catalog, weeks=["week15"])
    tiers = {c.configuration: c for c in matrix.expand_week(cfg, "week15") if c.experiment == "tiers"}
    assert list(tiers) == ["cpu", "cpu_disk", "cpu_fs"]
    assert all(c.between_cells["restart"] and c.cell in ("rr1-r1", "rr1-r2") for c in tiers.values())
    assert tiers["cpu"].server_env["LMCACHE_REMOTE_URL"] is None  # unsets the catalog's fs:// tier
    assert tiers["cpu_disk"].server_env["LMCACHE_LOCAL_DISK"].startswith("file://<session_tmp>/")
    assert tiers["cpu_disk"].server_env["LMCACHE_MAX_LOCAL_DISK_SIZE"] == "8"
    assert tiers["cpu_fs"].server_env["LMCACHE_REMOTE_URL"] == "fs://localhost:0<session_tmp>/fs"
    assert tiers["cpu"].axes["tier"] == "cpu" and tiers["cpu"].server_env["LMCACHE_LOCAL_CPU"] == "true"


def test_the_server_environment_applies_axes_and_a_fresh_session_dir(catalog, tmp_path):
    cfg = load_preset(catalog, weeks=["week15"])
    tiers = {c.configuration: c for c in matrix.expand_week(cfg, "week15") if c.experiment == "tiers"}
    eng = engines.from_config(cfg, "vllm_lmcache")
    env = {**eng.environ(None), "HF_TOKEN": "hf_secret"}
    done = matrix.apply_server_env(env, tiers["cpu"].server_env, session_tmp=tmp_path / "s")
    assert "LMCACHE_REMOTE_URL" not in env and done["LMCACHE_REMOTE_URL"] is None
    assert env["LMCACHE_CHUNK_SIZE"] == "256" and env["PYTHONHASHSEED"] == "0"  # the catalog's, not swept
    env = eng.environ(None)
    matrix.apply_server_env(env, tiers["cpu_disk"].server_env, session_tmp=tmp_path / "s")
    assert env["LMCACHE_LOCAL_DISK"] == f"file://{tmp_path}/s/disk/" and "LMCACHE_REMOTE_URL" not in env
    env = eng.environ(None)
    matrix.apply_server_env(env, {})  # the restart experiment: the catalog's fs:// tier, in a fresh directory
    fs = env["LMCACHE_REMOTE_URL"]
    assert fs.startswith("fs://localhost:0/") and "<session_tmp>" not in fs
    # what lmcache 0.5.6's parse_remote_url (connector/__init__.py L58-68) takes from it: it asserts a
    # host and a port (fs:///path failed on the H100 with "missing host" and LMCache went unhealthy);
    # the FS connector stores under the path
    from urllib.parse import urlparse

    u = urlparse(fs)
    assert u.hostname is not None and u.port is not None and u.path.endswith("/fs")
    again = eng.environ(None)
    matrix.apply_server_env(again, {})
    assert again["LMCACHE_REMOTE_URL"] != fs  # another session: another (empty) directory
    # provenance: what the workflow set or unset against the job's environment; secrets never written
    base = {"HF_TOKEN": "hf_secret", "LMCACHE_REMOTE_URL": "fs:///old", "PATH": "/bin"}
    rec = matrix.env_record({"HF_TOKEN": "hf_other", "PATH": "/bin", "LMCACHE_CHUNK_SIZE": "64"}, base)
    assert rec == {"HF_TOKEN": "<redacted>", "LMCACHE_CHUNK_SIZE": "64", "LMCACHE_REMOTE_URL": None}
    rec = matrix.env_record({"LMCACHE_REMOTE_URL": "redis://lm:hunter2@cache:6379"}, {})
    assert rec == {"LMCACHE_REMOTE_URL": "redis://lm:<redacted>@cache:6379"}


def test_cluster_plans_the_sweep_and_the_tiers_on_every_gpu_partition(catalog):
    cfg = load_preset(catalog, "cluster.yaml", weeks=["week15"])
    cells = matrix.expand_week(cfg, "week15")
    for gpu in ("h200", "h100", "a100", "l40s"):
        sweep = {c.configuration for c in cells if c.experiment == "chunk_sweep" and c.gpu == gpu and c.skip is None}
        assert sweep == {f"chunk_size{n}" for n in CHUNKS}
        tiers = {c.configuration for c in cells if c.experiment == "tiers" and c.gpu == gpu and c.skip is None}
        assert tiers == {"cpu", "cpu_disk", "cpu_fs"}


def test_cpu_types_every_lmcache_configuration_skipped(catalog):
    cfg = load_preset(catalog, weeks=["week15"])
    lm = [c for c in matrix.expand_week(cfg, "week15") if c.engine == "vllm_lmcache"]
    assert len(lm) == 2 * (1 + len(CHUNKS) + 3)
    assert all(c.skip.startswith("unsupported: lmcache") and "CUDA-only" in c.skip for c in lm)


def test_an_env_axis_nobody_consumes_is_an_error_naming_file_and_key(catalog):
    from inferlab.errors import ConfigError

    def on_vllm(exps):  # plain vLLM has no env axis chunk_size: it would be `--chunk-size`
        exps["chunk_sweep"]["engines"] = ["vllm_lmcache", "vllm"]

    _week(catalog, on_vllm)
    with pytest.raises(ConfigError) as e:
        load_preset(catalog, weeks=["week15"])
    assert "week15.yaml" in str(e.value) and "experiments.chunk_sweep.server_sweep.chunk_size" in str(e.value)
    assert "engine 'vllm' has no server argument 'chunk_size'" in str(e.value)


def test_a_bundle_member_nobody_consumes_and_bad_values_are_errors(catalog):
    from inferlab.errors import ConfigError

    _week(catalog, lambda x: x["tiers"]["server_sweep"]["tier"]["cpu"].update(local_dsk="file:///x"))
    with pytest.raises(ConfigError, match=r"experiments\.tiers\.server_sweep\.tier\.cpu\.local_dsk.*env axes"):
        load_preset(catalog, weeks=["week15"])
    _week(catalog, lambda x: x["tiers"]["server_sweep"]["tier"]["cpu"].pop("local_dsk"))
    _week(catalog, lambda x: x["tiers"]["server_sweep"]["tier"]["cpu"].update(remote_url="fs://{tmp}/fs"))
    with pytest.raises(ConfigError, match=r"tier\.cpu\.remote_url: 'fs://\{tmp\}/fs': braces .*<session_tmp>"):
        load_preset(catalog, weeks=["week15"])
    _week(catalog, lambda x: x["tiers"]["server_sweep"]["tier"]["cpu"].update(remote_url=None))
    _week(catalog, lambda x: x["chunk_sweep"]["server_sweep"].update(chunk_size=[64, {"a": 1}]))
    with pytest.raises(ConfigError, match=r"chunk_sweep\.server_sweep\.chunk_size\[1\].*LMCACHE_CHUNK_SIZE"):
        load_preset(catalog, weeks=["week15"])


def test_an_env_axis_that_shadows_an_engine_argument_is_a_catalog_error(catalog):
    import yaml

    from inferlab.errors import ConfigError

    p = catalog / "engines.yaml"
    doc = yaml.safe_load(p.read_text())
    doc["engines"]["vllm_lmcache"]["env_axes"]["max_model_len"] = "LMCACHE_MAX_MODEL_LEN"
    p.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match=r"engines\.vllm_lmcache\.env_axes\.max_model_len.*also a server argument"):
        load_preset(catalog, weeks=["week15"])
    doc["engines"]["vllm_lmcache"]["env_axes"] = {"chunk_size": "lmcache-chunk"}
    p.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match=r"engines\.yaml.*env_axes\.chunk_size"):
        load_preset(catalog, weeks=["week15"])


def test_an_env_axis_on_a_tool_without_a_server_is_an_error(catalog):
    import yaml

    from inferlab.errors import ConfigError

    # vllm_lmcache lists bench_serving alone; a variant that also ran offline tools still could not
    # take an env axis there: no server would read it
    p = catalog / "engines.yaml"
    doc = yaml.safe_load(p.read_text())
    doc["engines"]["vllm_lmcache"]["tools"] = ["bench_serving", "vllm_bench_latency"]
    p.write_text(yaml.safe_dump(doc))

    def offline(exps):
        e = exps["chunk_sweep"]
        e.update(tool="vllm_bench_latency", sweep={"batch_size": [1]}, fixed={"input_len": 128, "output_len": 8})
        e.pop("repeats")

    _week(catalog, offline)
    with pytest.raises(ConfigError, match=r"chunk_sweep\.server_sweep\.chunk_size.*runs no server"):
        load_preset(catalog, weeks=["week15"])


def test_an_unhealthy_lmcache_is_named_from_its_own_log():
    """Real lines of lmcache 0.5.6 on the H100 (2026-11-25, tests/data/lmcache-0.5.6-h100): the fs://
    URL rejected, the health check failed, every store skipped. The cells of that server measured plain
    vLLM; the session types them failed with this reason instead of ok rows with 0 hit tokens."""
    from inferlab import lmcache_log

    text = (DATA / "lmcache-0.5.6-h100" / "unhealthy-fs-url.log").read_text()
    why = lmcache_log.unhealthy(text)
    assert why.startswith("LMCache unhealthy, stores skipped: Failed to initialize/re-establish remote connection")
    assert "missing host" in why and "Health check failed: RemoteBackendHealthCheck" in why
    healthy = [ln for ln in text.splitlines() if "unhealthy" not in ln and "failed" not in ln.lower()]
    assert lmcache_log.unhealthy("\n".join(healthy)) is None
    # its lookups are still parsed (0 hit tokens: nothing was ever stored)
    hits = lmcache_log.parse(text)["hits"]
    assert hits and all(h["hit"] == 0 and h["total"] == 1088 for h in hits)

import pytest
import yaml
from conftest import ROOT, load_preset

from inferlab import config
from inferlab.errors import ConfigError


def edit(path, fn):
    data = yaml.safe_load(path.read_text())
    fn(data)
    path.write_text(yaml.safe_dump(data))


def test_repo_presets_load_and_fill_defaults():
    cfg = config.load("config/config.yaml", base_dir=ROOT)
    assert cfg.preset["gpus"] == ["cpu"]
    assert cfg.preset["inject_fault"] == {}  # default filled in
    assert cfg.models["tiny-llama"]["architecture"]["tie_word_embeddings"] is False
    assert cfg.gpus["h100"]["kind"] == "gpu"  # default
    cluster = config.load("config/cluster.yaml", base_dir=ROOT)
    assert cluster.preset["gpus"] == ["h200", "h100", "a100", "l40s"]


def test_bad_yaml_names_file_and_line(catalog):
    f = catalog / "weeks" / "week03.yaml"
    f.write_text(f.read_text() + "\n  broken: [1, 2\n")
    with pytest.raises(ConfigError) as e:
        load_preset(catalog)
    assert str(f) in str(e.value)
    assert "invalid YAML" in str(e.value) and "line" in str(e.value)


def test_unknown_gpu_in_week_names_file_and_key(catalog):
    f = catalog / "weeks" / "week03.yaml"
    edit(f, lambda d: d["experiments"]["decode"].__setitem__("gpus", ["h100", "h300"]))
    with pytest.raises(ConfigError) as e:
        load_preset(catalog)
    msg = str(e.value)
    assert msg.startswith(f"{f}: experiments.decode.gpus[1]: unknown GPU 'h300'")
    assert "h100" in msg  # lists the known ones


def test_unknown_gpu_in_preset(catalog):
    with pytest.raises(ConfigError, match=r"gpus\[1\]: unknown GPU 'tpu'"):
        load_preset(catalog, gpus=["cpu", "tpu"])


def test_wrong_type_names_key(catalog):
    f = catalog / "gpus.yaml"
    edit(f, lambda d: d["gpus"]["h100"].__setitem__("hbm_gbps", "fast"))
    with pytest.raises(ConfigError) as e:
        load_preset(catalog)
    assert str(e.value).startswith(f"{f}: gpus.h100.hbm_gbps: 'fast' is not of type 'number'")


def test_unknown_key_and_bad_path_segment(catalog):
    f = catalog / "weeks" / "week03.yaml"
    edit(f, lambda d: d["experiments"]["decode"].__setitem__("sweeps", {}))
    with pytest.raises(ConfigError, match=r"experiments.decode: unknown key"):
        load_preset(catalog)
    edit(f, lambda d: d["experiments"]["decode"].pop("sweeps"))
    edit(f, lambda d: d["experiments"].__setitem__("Bad/Name", d["experiments"]["decode"]))
    with pytest.raises(ConfigError, match=r"experiments"):
        load_preset(catalog)


def test_revision_must_be_pinned_commit(catalog):
    f = catalog / "models.yaml"
    edit(f, lambda d: d["models"]["llama-3.1-8b-instruct"].__setitem__("revision", "main"))
    with pytest.raises(ConfigError, match=r"models.llama-3.1-8b-instruct.revision"):
        load_preset(catalog)


def test_swept_and_fixed_conflict(catalog):
    f = catalog / "weeks" / "week03.yaml"
    edit(f, lambda d: d["experiments"]["decode"]["fixed"].__setitem__("batch_size", 1))
    with pytest.raises(ConfigError, match=r"experiments.decode.fixed.*also swept"):
        load_preset(catalog)


def test_missing_file(catalog):
    (catalog / "engines.yaml").unlink()
    with pytest.raises(ConfigError, match=r"engines.yaml: file not found"):
        load_preset(catalog)


def test_weeks_all_picks_every_week_file(catalog):
    """Adding a week is one file: a preset with `weeks: all` (the default) sees it without an edit."""
    before = sorted(f.stem for f in (catalog / "weeks").glob("week*.yaml"))
    (catalog / "weeks" / "week99.yaml").write_text(
        "week: week99\nexperiments:\n  x:\n    tool: vllm_bench_latency\n    engines: [vllm]\n"
        "    sweep: {batch_size: [1]}\n    fixed: {input_len: 8, output_len: 8}\n"
    )
    cfg = load_preset(catalog, weeks="all")
    assert list(cfg.weeks) == [*before, "week99"]
    import yaml

    p = yaml.safe_load((catalog / "config.yaml").read_text())
    p.pop("weeks")
    p["catalog"] = str(catalog)
    from inferlab import config as c

    assert "week99" in c.load(p, base_dir=catalog.parent).weeks  # the default is all


def test_engine_identity_follows_what_is_installed(tmp_path):
    from inferlab import identity

    site = tmp_path / "env" / "lib" / "python3.11" / "site-packages"
    (site / "vllm-0.32.0.dist-info").mkdir(parents=True)
    (site / "torch-2.13.0.dist-info").mkdir()
    a = identity.environment(str(tmp_path / "env"))
    assert a["key_versions"] == {"vllm": "0.32.0", "torch": "2.13.0"} and a["distributions"] == 2
    (site / "vllm-0.32.0.dist-info").rename(site / "vllm-0.33.0.dist-info")  # an upgrade
    identity.environment.cache_clear()
    b = identity.environment(str(tmp_path / "env"))
    assert b["hash"] != a["hash"] and b["key_versions"]["vllm"] == "0.33.0"
    # a GPU node's --target folder on PYTHONPATH counts as the environment too
    extra = identity.engine_identity(None, str(site))["environment"]
    assert extra["hash"] == b["hash"]
    assert identity.environment(str(tmp_path / "absent"))["hash"] is None

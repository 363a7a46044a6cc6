import pytest
from conftest import ROOT, load_preset

from inferlab import config, matrix
from inferlab.errors import ConfigError


def test_week03_full_matrix_on_four_gpus():
    cfg = config.load("config/cluster.yaml", base_dir=ROOT)
    cells = matrix.expand_week(cfg, "week03")
    assert len(cells) == 2 * 4 * 7
    dec = [c for c in cells if c.experiment == "decode" and c.gpu == "h100"]
    assert [c.cell for c in dec] == [f"bs{b}" for b in (1, 4, 16, 64, 128, 256, 512)]
    assert dec[0].params == {
        "batch_size": 1,
        "input_len": 128,
        "output_len": 64,
        "num_iters": 30,
        "num_iters_warmup": 10,
    }
    pre = [c for c in cells if c.experiment == "prefill" and c.gpu == "l40s"]
    assert [c.params["input_len"] for c in pre] == [64, 128, 256, 512, 1024, 2048, 4096]
    assert all(c.params["batch_size"] == 1 and c.params["output_len"] == 1 for c in pre)
    assert pre[-1].path == "week03/prefill/vllm/l40s/in4096"
    assert all(c.engine_args["enable_prefix_caching"] is False for c in cells)


def test_preset_overrides_reduce_sweep(catalog):
    cfg = load_preset(
        catalog, overrides={"week03": {"decode": {"sweep": {"batch_size": [2, 8]}, "fixed": {"num_iters": 3}}}}
    )
    cells = matrix.expand_week(cfg, "week03")
    dec = [c for c in cells if c.experiment == "decode"]
    assert [c.cell for c in dec] == ["bs2", "bs8"]
    assert dec[0].params["num_iters"] == 3 and dec[0].params["input_len"] == 128
    assert len([c for c in cells if c.experiment == "prefill"]) == 7  # untouched experiment


def test_experiment_gpus_limited_to_preset(catalog):
    cfg = load_preset(catalog, gpus=["h100", "cpu"], overrides={"week03": {"decode": {"gpus": ["h100", "a100"]}}})
    dec = [c for c in matrix.expand_week(cfg, "week03") if c.experiment == "decode"]
    assert {c.gpu for c in dec} == {"h100"}


def test_cell_id_multi_param_and_float():
    assert matrix.cell_id({"batch_size": 4, "request_rate": 2.0}) == "bs4-rr2"
    assert matrix.cell_id({"request_rate": "inf", "foo": 1.5}) == "rrinf-foo1.5"
    with pytest.raises(ValueError):
        matrix.cell_id({"x": "a/b"})


def test_unknown_override_experiment(catalog):
    with pytest.raises(ConfigError, match=r"overrides.week03.decod: unknown experiment"):
        load_preset(catalog, overrides={"week03": {"decod": {"sweep": {"batch_size": [1]}}}})

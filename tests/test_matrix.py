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
    assert pre[-1].path == "week03/prefill/vllm/l40s/default/in4096"
    assert {c.configuration for c in cells} == {"default"}  # nothing swept on the server
    assert all(c.engine_args["enable_prefix_caching"] is False for c in cells)


def test_week11_cluster_eagle_heads_are_pinned_hub_models_of_the_target():
    """The cluster's EAGLE labels name catalog heads (config/models.yaml) that stage 1 downloads at a
    pinned commit, with vLLM's method for each, drafting for the served Llama-3.1-8B (same width and
    vocabulary: the head reuses the target's embeddings and hidden states)."""
    cfg = config.load("config/cluster.yaml", base_dir=ROOT)
    spec = [c for c in matrix.expand_week(cfg, "week11") if c.experiment == "spec"]
    labels = {c.server_axes["speculative_config"] for c in spec}
    assert labels == {"ngram", "draft", "eagle", "eagle3"}
    target = cfg.models[cfg.preset["model"]]["architecture"]
    heads = {}
    for c in spec:
        sc = c.engine_args["speculative_config"]
        if sc["method"] in ("eagle", "eagle3"):
            heads[sc["method"]] = tuple(matrix.model_refs(sc))
    assert heads == {"eagle": ("llama-3.1-8b-instruct-eagle",), "eagle3": ("llama-3.1-8b-instruct-eagle3",)}
    for method, (mid,) in heads.items():
        m = cfg.models[mid]
        assert m["source"] == "hub" and len(m["revision"]) == 40 and int(m["revision"], 16) >= 0
        assert m["repo_id"].startswith("yuhuili/EAGLE3-" if method == "eagle3" else "yuhuili/EAGLE-")
        arch = m["architecture"]
        assert arch["num_hidden_layers"] == 1
        for k in ("hidden_size", "vocab_size", "num_attention_heads", "num_key_value_heads"):
            assert arch[k] == target[k], (mid, k)
    # every rate of every k is measured for both heads on every GPU of the preset
    for label in ("eagle", "eagle3"):
        mine = [c for c in spec if c.server_axes["speculative_config"] == label]
        assert len(mine) == len(cfg.preset["gpus"]) * 4 * 3


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


# -- the experiment model: server axes, link, layouts, no silent parameter ------------------------


def _week(catalog, name: str, text: str):
    (catalog / "weeks" / f"{name}.yaml").write_text(text)


APC = """
week: week05
experiments:
  apc:
    tool: bench_serving
    engines: [vllm]
    server_sweep: {enable_prefix_caching: [true, false]}
    sweep: {request_rate: [1, 4, inf]}
    fixed: {dataset: sharegpt-synthetic, num_prompts: 10}
    engine_args: {max_model_len: 2048}
"""


def test_server_sweep_gives_one_configuration_per_server_point(catalog):
    _week(catalog, "week05", APC)
    cfg = load_preset(catalog, weeks=["week05"], overrides={})
    cells = matrix.expand(cfg)
    confs = matrix.configurations(cells)
    # two engine starts, not one per cell
    assert sorted(confs) == [("week05", "apc", "vllm", "cpu", "apc"), ("week05", "apc", "vllm", "cpu", "noapc")]
    on = confs[("week05", "apc", "vllm", "cpu", "apc")]
    assert [c.cell for c in on] == ["rr1", "rr4", "rrinf"]
    assert all(c.engine_args == {"max_model_len": 2048, "enable_prefix_caching": True} for c in on)
    assert on[0].path == "week05/apc/vllm/cpu/apc/rr1"
    assert on[0].axes == {"enable_prefix_caching": True, "request_rate": 1}


def test_link_zips_axes_across_server_and_client(catalog):
    _week(
        catalog,
        "week05",
        APC.replace(
            "sweep: {request_rate: [1, 4, inf]}",
            "sweep: {request_rate: [1, 4]}\n    link: [[enable_prefix_caching, request_rate]]",
        ),
    )
    cells = matrix.expand(load_preset(catalog, weeks=["week05"], overrides={}))
    assert sorted(cells) == ["week05/apc/vllm/cpu/apc/rr1", "week05/apc/vllm/cpu/noapc/rr4"]


def test_link_of_unequal_lengths_is_an_error(catalog):
    _week(catalog, "week05", APC.replace("fixed:", "link: [[enable_prefix_caching, request_rate]]\n    fixed:"))
    with pytest.raises(
        ConfigError, match=r"week05.yaml: experiments.apc.link\[0\]: linked axes have different lengths"
    ):
        matrix.expand(load_preset(catalog, weeks=["week05"], overrides={}))


def test_labelled_server_values_and_repeats(catalog):
    _week(
        catalog,
        "week11",
        """
week: week11
experiments:
  spec:
    tool: vllm_bench_latency
    engines: [vllm]
    server_sweep:
      speculative_config: {none: null, ngram3: {method: ngram, num_speculative_tokens: 3}}
    sweep: {batch_size: [1]}
    fixed: {input_len: 32, output_len: 16}
    repeats: 3
""",
    )
    cells = matrix.expand(load_preset(catalog, weeks=["week11"], overrides={}))
    assert sorted(cells) == [
        f"week11/spec/vllm/cpu/{s}/bs1-r{r}" for s in ("specngram3", "specnone") for r in (1, 2, 3)
    ]
    c = cells["week11/spec/vllm/cpu/specngram3/bs1-r2"]
    assert c.engine_args["speculative_config"] == {"method": "ngram", "num_speculative_tokens": 3}
    assert c.server_axes == {"speculative_config": "ngram3"} and c.repeat == 2


@pytest.mark.parametrize(
    "old, new, key, what",
    [
        ("{request_rate:", "{request_rat:", "experiments.apc.sweep.request_rat", "has no parameter 'request_rat'"),
        ("num_prompts: 10", "num_promptz: 10", "experiments.apc.fixed.num_promptz", "has no parameter 'num_promptz'"),
        ("{max_model_len:", "{max_model_lenn:", "experiments.apc.engine_args.max_model_lenn", "no server argument"),
        (
            "{enable_prefix_caching:",
            "{enable_prefix_cachin:",
            "experiments.apc.server_sweep.enable_prefix_cachin",
            "no server",
        ),
    ],
)
def test_a_key_nobody_consumes_is_rejected_at_load(catalog, old, new, key, what):
    assert old in APC
    _week(catalog, "week05", APC.replace(old, new))
    with pytest.raises(ConfigError, match=rf"week05.yaml: {key}: .*{what}"):
        load_preset(catalog, weeks=["week05"], overrides={})


@pytest.mark.parametrize(
    "sweep, where, what",
    [
        ("{batch_size: [0, -4]}", r"sweep.batch_size\[0\]", "0 is not allowed for batch_size"),
        ("{batch_size: [1, 2.5]}", r"sweep.batch_size\[1\]", "2.5 is not allowed"),
    ],
)
def test_values_out_of_range_are_rejected_at_load(catalog, sweep, where, what):
    f = catalog / "weeks" / "week03.yaml"
    f.write_text(f.read_text().replace("batch_size: [1, 4, 16, 64, 128, 256, 512]", f"batch_size: {sweep[13:-1]}"))
    with pytest.raises(ConfigError, match=rf"week03.yaml: experiments.decode.{where}: {what}"):
        load_preset(catalog, overrides={})


def test_prompt_longer_than_max_model_len_is_rejected_before_any_job(catalog):
    f = catalog / "weeks" / "week03.yaml"
    f.write_text(f.read_text().replace("input_len: [64, 128,", "input_len: [100000, 128,"))
    cfg = load_preset(catalog, overrides={})
    with pytest.raises(
        ConfigError, match=r"week03.yaml: experiments.prefill .*in100000.*exceeds the engine's max_model_len 8192"
    ):
        matrix.expand(cfg)


def test_preset_override_typo_names_the_preset(catalog):
    with pytest.raises(ConfigError, match=r"overrides.week03.decode.fixed.num_iterz: .*has no parameter"):
        load_preset(catalog, overrides={"week03": {"decode": {"fixed": {"num_iterz": 3}}}})


def test_layout_needing_more_gpus_is_typed_skipped_not_run_smaller(catalog):
    _week(
        catalog,
        "week13",
        """
week: week13
experiments:
  tp:
    tool: vllm_bench_latency
    engines: [vllm]
    server_sweep: {tensor_parallel_size: [1, 2]}
    sweep: {batch_size: [1]}
    fixed: {input_len: 32, output_len: 8}
  pd:
    tool: bench_serving
    engines: [vllm]
    layout: {kind: pd, connector: ExampleConnector}
    sweep: {request_rate: [1]}
    fixed: {dataset: sharegpt-synthetic, num_prompts: 4}
  router:
    tool: bench_serving
    engines: [vllm]
    layout: {kind: router, replicas: 2}
    sweep: {request_rate: [1]}
    fixed: {dataset: sharegpt-synthetic, num_prompts: 4}
""",
    )
    cfg = load_preset(catalog, weeks=["week13"], gpus=["cpu", "h100"], overrides={}, gpu_count={"cpu": 1, "h100": 1})
    cells = matrix.expand(cfg)
    assert cells["week13/tp/vllm/cpu/tp1/bs1"].skip is None
    assert cells["week13/tp/vllm/h100/tp2/bs1"].skip == "needs 2 GPUs (h100 has 1 per job in this preset)"
    assert cells["week13/tp/vllm/cpu/tp2/bs1"].skip.startswith("needs 2 devices")
    assert cells["week13/pd/vllm/h100/default/rr1"].skip.startswith("needs 2 GPUs")  # prefill + decode
    assert cells["week13/pd/vllm/cpu/default/rr1"].skip is None  # both servers share the CPU
    cfg = load_preset(catalog, weeks=["week13"], gpus=["h100"], overrides={}, gpu_count=8)
    cells = matrix.expand(cfg)
    assert cells["week13/tp/vllm/h100/tp2/bs1"].skip is None
    assert matrix.gpus_needed(cells["week13/tp/vllm/h100/tp2/bs1"].layout, {"tensor_parallel_size": 2}) == 2
    assert cells["week13/pd/vllm/h100/default/rr1"].skip is None
    assert cells["week13/router/vllm/h100/default/rr1"].skip is None  # the router layout runs (2 GPUs)


def test_a_serving_layout_for_an_offline_tool_is_an_error(catalog):
    _week(
        catalog,
        "week16",
        """
week: week16
experiments:
  pd:
    tool: vllm_bench_latency
    engines: [vllm]
    layout: {kind: pd}
    sweep: {batch_size: [1]}
    fixed: {input_len: 8, output_len: 8}
""",
    )
    with pytest.raises(ConfigError, match=r"week16.yaml: experiments.pd.layout.kind: a 'pd' layout serves requests"):
        load_preset(catalog, weeks=["week16"], overrides={})


def test_engine_variant_inherits_its_base(catalog):
    f = catalog / "engines.yaml"
    f.write_text(
        f.read_text()
        + """
  vllm_lmcache:
    base: vllm
    env_vars: {LMCACHE_CHUNK_SIZE: "256"}
    server_args: [lmcache_chunk_size]
"""
    )
    cfg = load_preset(catalog, weeks=["week01"], overrides={})  # week15's env axes need the real variant
    e = cfg.engine_entry("vllm_lmcache")
    assert e["adapter"] == "vllm" and "bench_serving" in e["tools"]
    assert "max_model_len" in e["server_args"] and "lmcache_chunk_size" in e["server_args"]
    assert e["env_vars"] == {"LMCACHE_CHUNK_SIZE": "256"}


# -- bundle axes, feature skips, does-not-fit ---------------------------------------------------

MODES = """
week: week10
title: t
experiments:
  latency:
    tool: vllm_bench_latency
    engines: [vllm]
    gpus: all
    server_sweep:
      mode:
        eager: {enforce_eager: true}
        compiled: {enforce_eager: false, compilation_config: {cudagraph_mode: NONE}}
        graphs: {enforce_eager: false}
    sweep: {batch_size: [1, 4]}
    fixed: {input_len: 32, output_len: 8, num_iters: 1, num_iters_warmup: 1}
    engine_args: {enable_prefix_caching: false}
"""


def test_bundle_axis_sets_several_engine_arguments_per_configuration(catalog):
    _week(catalog, "week10", MODES)
    cells = matrix.expand(load_preset(catalog, weeks=["week10"], overrides={}, gpus=["cpu", "h100"]))
    by = {(c.gpu, c.configuration, c.cell): c for c in cells.values()}
    assert {k[1] for k in by} == {"eager", "compiled", "graphs"}  # the label alone is the id
    comp = by[("h100", "compiled", "bs1")]
    assert comp.engine_args == {
        "enable_prefix_caching": False,
        "enforce_eager": False,
        "compilation_config": {"cudagraph_mode": "NONE"},
    }
    assert comp.server_axes == {"mode": "compiled"} and comp.axes == {"mode": "compiled", "batch_size": 1}
    # the GPU runs all three; the CPU build has no CUDA graphs: typed skipped, the other two run
    assert all(by[("h100", m, "bs4")].skip is None for m in ("eager", "compiled", "graphs"))
    assert by[("cpu", "eager", "bs1")].skip is None and by[("cpu", "compiled", "bs1")].skip is None
    assert by[("cpu", "graphs", "bs1")].skip.startswith("unsupported: cuda_graphs")
    assert "cudagraph_capture_sizes=[]" in by[("cpu", "graphs", "bs1")].skip


@pytest.mark.parametrize(
    "bundle, where",
    [
        ("{enforce_eagre: true}", "server_sweep.mode.eager.enforce_eagre"),
        ("{enforce_eager: true, nonsense: 1}", "server_sweep.mode.eager.nonsense"),
    ],
)
def test_bundle_with_an_unknown_engine_argument_is_rejected(catalog, bundle, where):
    _week(catalog, "week10", MODES.replace("eager: {enforce_eager: true}", f"eager: {bundle}"))
    with pytest.raises(ConfigError, match=where.replace(".", r"\.")):
        load_preset(catalog, weeks=["week10"], overrides={})


def test_bundle_and_engine_args_setting_the_same_argument_is_rejected(catalog):
    _week(catalog, "week10", MODES.replace("{enable_prefix_caching: false}", "{enforce_eager: true}"))
    with pytest.raises(ConfigError, match=r"engine_args.*enforce_eager.*also set by a bundle"):
        load_preset(catalog, weeks=["week10"], overrides={})


def test_a_server_axis_that_is_neither_argument_nor_bundle_is_rejected(catalog):
    _week(catalog, "week10", MODES.replace("      mode:\n", "      mode:\n        plain: 3\n"))
    with pytest.raises(ConfigError, match=r"no server argument 'mode'.*bundle"):
        load_preset(catalog, weeks=["week10"], overrides={})


@pytest.mark.parametrize(
    "args, feature",
    [
        ({"kv_cache_dtype": "fp8"}, "fp8_kv_cache"),
        ({"kv_cache_dtype": "fp8_e5m2"}, "fp8_kv_cache"),
        ({"quantization": "fp8"}, "fp8_weights"),
        ({"kv_transfer_config": {"kv_connector": "LMCacheConnectorV1", "kv_role": "kv_both"}}, "lmcache"),
        ({"kv_transfer_config": '{"kv_connector": "NixlConnector", "kv_role": "kv_producer"}'}, "nixl"),
        ({"enforce_eager": False}, "cuda_graphs"),
        ({"enforce_eager": False, "compilation_config": '{"cudagraph_mode": "FULL"}'}, "cuda_graphs"),
    ],
)
def test_features_needed_from_engine_arguments(args, feature):
    assert feature in matrix.features_needed("vllm", args)


def test_features_not_needed():
    assert matrix.features_needed("vllm", {"enforce_eager": True, "kv_cache_dtype": "auto"}) == {}
    assert matrix.features_needed("vllm", {"compilation_config": {"cudagraph_mode": "none"}}) == {}
    assert "cuda_graphs" not in matrix.features_needed("sglang", {})


def test_model_that_does_not_fit_is_typed_before_it_starts(catalog):
    cfg = load_preset(catalog, gpus=["h100", "h200"], overrides={})
    arch = dict(cfg.models["llama-3.1-8b-arch"]["architecture"])
    # Mixtral-8x7B's shape: ~46.7 B parameters, ~93 GB in BF16
    arch.update(intermediate_size=14336, num_local_experts=8, num_experts_per_tok=2, vocab_size=32000)
    cfg.models["mixtral-test"] = {"source": "build", "dtype": "bfloat16", "architecture": arch}
    why = matrix.fit_reason(cfg, "h100", "mixtral-test", {})
    assert why is not None and why.startswith("does not fit: mixtral-test weights ~93 GB") and "> 80 GB on h100" in why
    assert matrix.fit_reason(cfg, "h200", "mixtral-test", {}) is None
    assert matrix.fit_reason(cfg, "h100", "mixtral-test", {"tensor_parallel_size": 2}) is None
    assert matrix.fit_reason(cfg, "h100", "llama-3.1-8b-arch", {}) is None
    assert matrix.skip_reason(cfg, "h100", {"kind": "single"}, {}, "vllm", "mixtral-test").startswith("does not fit")

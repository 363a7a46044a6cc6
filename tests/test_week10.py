"""Week 10 (CUDA graphs): three modes as one bundle server axis (eager / compiled without graphs /
graphs), the start-up facts of each mode's one engine start parsed from the offline driver's engine
log (real CPU-engine logs in tests/data/week10/), and, on the shared embedded-default run, eager vs
compiled measured for real with graphs typed skipped at plan time."""

import json

import pandas as pd
import pytest
from conftest import ROOT

from inferlab import config, matrix, startlog

DATA = ROOT / "tests" / "data" / "week10"


# ------------------------------------------------------------------ plan (no engine)


def test_modes_are_one_configuration_each_and_graphs_is_skipped_on_cpu():
    cfg = config.load("config/config.yaml", base_dir=ROOT)
    cells = [c for c in matrix.expand_week(cfg, "week10") if c.experiment == "modes"]
    by_conf = {}
    for c in cells:
        by_conf.setdefault(c.configuration, []).append(c)
    assert list(by_conf) == ["eager", "compiled", "graphs"]
    # one engine start per mode serves the batch sweep and the course's bs1 512/128 point (linked)
    assert [c.cell for c in by_conf["eager"]][-1] == "bs1-in512-out128"
    assert all(c.cell.endswith("-in256-out64") for c in by_conf["eager"][:-1])
    comp = by_conf["compiled"][0]
    assert comp.engine_args["enforce_eager"] is False
    assert comp.engine_args["compilation_config"] == {"cudagraph_mode": "NONE"}
    assert comp.engine_args["enable_prefix_caching"] is False  # the latency bench repeats its prompts
    assert comp.server_axes == {"mode": "compiled"}
    # the CPU build has no CUDA graphs: typed at plan time, never started
    assert all(c.skip and c.skip.startswith("unsupported: cuda_graphs") for c in by_conf["graphs"])
    assert not any(c.skip for c in by_conf["eager"] + by_conf["compiled"])


def test_graphs_mode_runs_on_a_gpu():
    cfg = config.load("config/cluster.yaml", base_dir=ROOT)
    cells = [c for c in matrix.expand_week(cfg, "week10") if c.experiment == "modes"]
    graphs = [c for c in cells if c.configuration == "graphs"]
    assert graphs and not any(c.skip for c in graphs)
    assert [c.cell for c in graphs if c.gpu == graphs[0].gpu] == [
        "bs1-in256-out64",
        "bs4-in256-out64",
        "bs16-in256-out64",
        "bs64-in256-out64",
        "bs1-in512-out128",
    ]


# ------------------------------------------------------------------ start-up log (real CPU-engine logs)


def test_driver_log_compiled_mode():
    rows = {r["metric"]: r for r in startlog.parse_startup_log((DATA / "driver_compiled.log").read_text())}
    v = {k: r["value"] for k, r in rows.items()}
    assert v["engine_init_time"] == 38.40  # "init engine (profile, create kv cache, warmup model) took 38.40 s"
    assert v["compile_warmup_time"] == 34.0  # 12:34:57 "Warming up model ..." -> 12:35:31 "Warming up done."
    assert v["compile_cache_hit"] == 0.0  # "[backbone] saved AOT compiled function to ...": a cold start
    assert v["compile_profiling_run_time"] == 0.34  # "[backbone] Initial profiling/warmup run took 0.34 s"
    assert v["kv_cache_capacity"] == 2097152.0 and v["kv_cache_max_concurrency"] == 256.0
    # the CPU compiles in DYNAMO_TRACE_ONCE mode and captures no graphs: none of those lines
    for absent in ("torch_compile_time", "engine_init_compile_time", "cuda_graph_capture_time", "cuda_graph_memory"):
        assert absent not in v
    assert rows["compile_cache_hit"]["unit"] == "bool"


def test_driver_log_eager_mode_has_no_compile_rows():
    v = startlog.startup_values((DATA / "driver_eager.log").read_text())
    assert v["engine_init_time"] == 1.25
    for absent in ("compile_warmup_time", "compile_cache_hit", "compile_profiling_run_time"):
        assert absent not in v
    assert v["kv_cache_capacity"] == 2097152.0  # the same fixed VLLM_CPU_KVCACHE_SPACE as compiled


def test_compile_cache_hit_on_a_warm_start():
    warm = (
        "(EngineCore pid=1) INFO 11-24 12:40:01 [decorators.py:319] [backbone] Directly load AOT compilation "
        "from path /c/torch_compile_cache/torch_aot_compile/abc/rank_0_0/model\n"
        "(EngineCore pid=1) INFO 11-24 12:40:02 [monitor.py:91] [backbone] Initial profiling/warmup run took 0.05 s\n"
    )
    assert startlog.startup_values(warm) == {"compile_cache_hit": 1.0, "compile_profiling_run_time": 0.05}
    # one module loaded, another compiled: not a warm start
    mixed = warm + "INFO 11-24 12:40:03 [decorators.py:743] [eagle_head] saved AOT compiled function to /c/x\n"
    assert startlog.startup_values(mixed)["compile_cache_hit"] == 0.0


def test_startup_time_rows():
    r = startlog.driver_startup_row(15.95)
    assert r["metric"] == "engine_startup_time" and r["value"] == 15.95 and r["unit"] == "s"
    assert "/health" in startlog.server_ready_row(21.0)["definition"]


# ------------------------------------------------------------------ the shared embedded-default run

W10 = "results/week10"


def _rec(work, conf, cell):
    return json.loads((work / W10 / "modes/vllm/cpu" / conf / cell / "cell.json").read_text())


@pytest.mark.engine
def test_eager_and_compiled_measured_graphs_typed_skipped(shared_run):
    df = pd.read_parquet(shared_run / W10 / "week10.parquet")
    lat = df[df.metric == "latency_avg"]
    by = {(r.param_mode, r.cell): r for r in lat.itertuples()}
    cells = sorted({c for _, c in by})
    assert len(cells) >= 2
    for cell in cells:
        for mode in ("eager", "compiled"):
            r = by[(mode, cell)]
            raw = json.loads((shared_run / W10 / "modes/vllm/cpu" / mode / cell / "raw.json").read_text())
            assert r.status == "ok" and r.measured_by == "driver"
            assert r.value == pytest.approx(raw["avg_latency"] * 1e3)
        g = by[("graphs", cell)]
        assert g.status == "skipped" and g.reason == "unsupported" and pd.isna(g.value)
        assert "cuda_graphs" in g.detail
        rec = _rec(shared_run, "graphs", cell)
        assert rec["status"] == "skipped" and rec["measured_by"] == "none"
    # compiled really compiled (inductor warm-up in its log), eager did not
    comp = _rec(shared_run, "compiled", cells[0])
    eager = _rec(shared_run, "eager", cells[0])
    cv = {r["metric"]: r["value"] for r in comp["engine_startup"]}
    ev = {r["metric"]: r["value"] for r in eager["engine_startup"]}
    assert "compile_warmup_time" in cv and "compile_warmup_time" not in ev
    assert cv["engine_startup_time"] > 0 and ev["engine_startup_time"] > 0
    assert comp["provenance"]["driver"]["effective"]["enforce_eager"] is False
    assert eager["provenance"]["driver"]["effective"]["enforce_eager"] is True


@pytest.mark.engine
def test_week10_tables(shared_run):
    tables = shared_run / W10 / "tables"
    sp = pd.read_csv(tables / "speedup.csv", dtype=str)
    df = pd.read_parquet(shared_run / W10 / "week10.parquet")
    lat = df[(df.metric == "latency_avg") & (df.param_input_len == 256)]
    for row in sp.itertuples(index=False):
        bs = int(row[1])
        e = lat[(lat.param_mode == "eager") & (lat.param_batch_size == bs)].value.iloc[0]
        c = lat[(lat.param_mode == "compiled") & (lat.param_batch_size == bs)].value.iloc[0]
        assert float(sp.loc[sp.batch_size == str(bs), "Eager / compiled"].iloc[0].rstrip("x")) == pytest.approx(
            e / c, abs=0.006
        )
        assert sp.loc[sp.batch_size == str(bs), "Eager / graphs"].iloc[0] == "SKIPPED (unsupported)"
    st = pd.read_csv(tables / "startup.csv", dtype=str).set_index("mode")
    assert st.loc["graphs", "Status"] == "SKIPPED (unsupported)"
    assert st.loc["compiled", "KV tokens vs eager"] == "+0"  # CPU KV cache: a fixed VLLM_CPU_KVCACHE_SPACE
    assert float(st.loc["compiled", "Compile + warm-up, CPU (s)"]) >= 1
    assert st.loc["eager", "Compile + warm-up, CPU (s)"] == "-" and st.loc["compiled", "Graph capture (s)"] == "-"
    cp = pd.read_csv(tables / "course_point.csv", dtype=str).set_index("mode")
    assert cp.loc["eager", "Status"] == "ok" and float(cp.loc["compiled", "Latency (ms)"]) > 0
    claims = pd.read_csv(shared_run / W10 / "claims.csv", dtype=str)
    verdicts = dict(zip(claims.iloc[:, 0].str.split(":").str[0], claims["Verdict"], strict=False))
    assert verdicts["graphs_faster_than_eager"] == "cannot tell"  # graphs skipped on CPU
    assert verdicts["compile_adds_startup"] in ("agrees", "disagrees")  # judged from measured data
    assert (shared_run / W10 / "figures" / "speedup.png").stat().st_size > 0

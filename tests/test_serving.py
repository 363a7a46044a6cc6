"""Serving pieces without the engine: the server lifecycle against a real HTTP server process,
the load clients' parsers on real outputs (vLLM 0.32 CPU; SGLang 0.5.23's client against the CPU
vLLM server), telemetry summaries, session grouping and the cells selection."""

import json
import os
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import DATA, ROOT, load_preset

from inferlab import matrix, server, telemetry
from inferlab.engines import from_setup, serving
from inferlab.engines.sglang import SGLang, parse_bench_serving
from inferlab.engines.vllm import parse_bench_serve
from inferlab.errors import ConfigError

TOY = ROOT / "tests" / "helpers" / "toy_server.py"


def toy(*extra):
    return lambda port: [sys.executable, str(TOY), "--port", str(port), *extra]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


# -- lifecycle ---------------------------------------------------------------------------------
def test_ready_only_when_health_answers_and_teardown_kills_the_whole_group(tmp_path):
    pidfile = tmp_path / "worker.pid"
    t0 = time.monotonic()
    srv = server.Server.start(
        toy("--ready-after", "1.5", "--pidfile", str(pidfile)), tmp_path / "server.log", dict(os.environ), "/health", 30
    )
    assert time.monotonic() - t0 >= 1.5  # /health said 503 until then: not ready
    assert srv.ready_s >= 1.5 and srv.healthy()
    worker = int(pidfile.read_text())
    assert alive(worker)
    drain = srv.stop()
    assert drain["group_gone"] is True
    assert not alive(srv.proc.pid) and not alive(worker)  # the forked worker went with the group
    assert drain["gpu_drain"].startswith("unavailable")  # no GPU here: said, not pretended
    assert "$ " in (tmp_path / "server.log").read_text()  # the log is kept, with the command


def test_server_that_dies_while_loading_is_reported_at_once(tmp_path):
    t0 = time.monotonic()
    with pytest.raises(server.ServerError) as e:
        server.Server.start(
            toy("--ready-after", "60", "--exit-after", "1"), tmp_path / "s.log", dict(os.environ), "/health", 120
        )
    assert time.monotonic() - t0 < 20  # not after the 120 s deadline
    assert e.value.reason == "engine_error" and e.value.returncode == 3


def test_readiness_deadline(tmp_path):
    pidfile = tmp_path / "w.pid"
    with pytest.raises(server.ServerError) as e:
        server.Server.start(
            toy("--ready-after", "600", "--pidfile", str(pidfile)), tmp_path / "s.log", dict(os.environ), "/health", 2
        )
    assert e.value.reason == "timeout"
    assert not alive(int(pidfile.read_text()))  # a server that missed its deadline is torn down


def test_signal_during_start_up_tears_the_server_down(tmp_path):
    """scancel (SIGTERM) or Ctrl-C while the server is still loading: the caller never gets the
    server, so Server.start itself must tear its group down before the interruption goes on."""
    import signal

    class Interrupted(Exception):
        pass

    def on_alarm(signum, frame):
        raise Interrupted

    pidfile = tmp_path / "w.pid"
    prev = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, 1.5)
    try:
        with pytest.raises(Interrupted):
            server.Server.start(
                toy("--ready-after", "600", "--pidfile", str(pidfile)),
                tmp_path / "s.log",
                dict(os.environ),
                "/health",
                600,
            )
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, prev)
    worker = int(pidfile.read_text())
    assert not alive(worker)  # nothing of the half-started server is left
    leader = [ln for ln in (tmp_path / "s.log").read_text().splitlines() if ln.startswith("$ ")]
    assert leader and "toy_server.py" in leader[0]


def test_two_servers_at_once_get_different_ports(tmp_path):
    got = {}

    def start(i):
        got[i] = server.Server.start(toy(), tmp_path / f"s{i}.log", dict(os.environ), "/health", 30)

    ts = [threading.Thread(target=start, args=(i,)) for i in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    try:
        assert got[0].port != got[1].port
        assert got[0].healthy() and got[1].healthy()
    finally:
        for s in got.values():
            s.stop()


# -- parsers on real outputs -----------------------------------------------------------------------
@pytest.mark.parametrize(
    "name", ["serve_sharegpt_rr4_p50_90_99.json", "serve_sharegpt_inf_p50_90_99.json", "serve.json"]
)
def test_vllm_bench_serve_parser(name):
    data = json.loads((DATA / "vllm-0.32-cpu" / name).read_text())
    rows = {r["metric"]: r for r in parse_bench_serve(data)}
    assert set(rows) == {m for m, _ in serving.metric_names()}
    assert rows["ttft_p50"]["value"] == pytest.approx(data["median_ttft_ms"])
    assert rows["itl_p99"]["value"] == pytest.approx(data["p99_itl_ms"])
    assert rows["output_throughput"]["value"] == pytest.approx(data["output_throughput"])
    assert rows["completed"]["value"] == data["completed"] and rows["failed"]["value"] == data["failed"]
    # p90 and e2el exist only when asked for (--metric-percentiles 50,90,99, --percentile-metrics ...e2el)
    assert (rows["e2el_mean"]["value"] is None) == ("mean_e2el_ms" not in data)
    assert (rows["ttft_p90"]["value"] is None) == ("p90_ttft_ms" not in data)
    assert "vllm bench serve" in rows["ttft_p50"]["definition"]


def test_vllm_bench_serve_with_nothing_completed_is_not_a_number():
    data = json.loads((DATA / "vllm-0.32-cpu" / "serve.json").read_text())
    data.update(completed=0, failed=data["num_prompts"])
    with pytest.raises(ValueError, match="no request completed"):
        parse_bench_serve(data)


def test_vllm_bench_serve_with_some_requests_failed_is_a_typed_failure_not_a_number():
    """1 of 10 completed (the CPU engine's EP worker segfaulted after the first request): the cell's
    numbers would describe one request, not the load asked for."""
    data = json.loads((DATA / "vllm-0.32-cpu" / "serve.json").read_text())
    data.update(completed=1, failed=data["num_prompts"] - 1)
    with pytest.raises(
        serving.RequestsFailed, match=f"{data['num_prompts'] - 1} of {data['num_prompts']} requests failed"
    ):
        parse_bench_serve(data)
    data.update(completed=data["num_prompts"], failed=0)
    assert parse_bench_serve(data)  # all completed: rows


def test_engine_death_cause_from_a_real_log():
    """vLLM 0.32 CPU, TP=2 + expert parallelism on the tiny Mixtral: worker 1 segfaults in the first
    step, the engine core dies, the API server stays up answering EngineDeadError (real log)."""
    from inferlab.engines.base import engine_death_cause

    log = (DATA / "vllm-0.32-cpu" / "server-ep-worker-segfault.log").read_text()
    why = engine_death_cause(log)
    assert why.startswith("VllmWorker-1 died (exit code -11, SIGSEGV)")
    assert "engine core: RuntimeError: cancelled" in why  # the core's own exception, not EngineDeadError
    assert engine_death_cause("INFO 11-24 [core.py] init engine took 0.25 s\nINFO Starting vLLM server") is None
    only_core = "\n".join(line for line in log.splitlines() if "died unexpectedly" not in line)
    assert engine_death_cause(only_core) == "engine core: RuntimeError: cancelled"


def test_sglang_client_output_real_jsonl_appends_and_infinity():
    text = (DATA / "sglang-0.5.23-cpu" / "serving_vs_vllm_cpu.jsonl").read_text()
    lines = text.splitlines()
    assert len(lines) == 2 and "Infinity" in lines[0]  # the traps are in the real file
    last = json.loads(lines[-1])
    rows = {r["metric"]: r for r in parse_bench_serving(text, {"num_prompts": 20})}
    assert rows["ttft_p50"]["value"] == pytest.approx(last["median_ttft_ms"])
    assert rows["e2el_p99"]["value"] == pytest.approx(last["p99_e2e_latency_ms"])
    assert rows["total_token_throughput"]["value"] == pytest.approx(last["total_throughput"])
    assert rows["failed"]["value"] == 20 - last["completed"]  # no `failed` field: derived
    # asked for 25, the client's JSON says fewer completed (it has no `failed` field): the derived
    # failures make the cell a typed failure, not numbers over the survivors
    done = json.loads(lines[0])["completed"]
    assert 0 < done < 25
    with pytest.raises(serving.RequestsFailed, match=f"{25 - done} of 25 requests failed"):
        parse_bench_serving(lines[0], {"num_prompts": 25})


def test_sglang_server_flags_translate_engine_neutral_args():
    e = SGLang(None, {"python": "python"})
    cmd = e.serve_command(
        "/m", "127.0.0.1", 1234, {"max_model_len": 4096, "gpu_memory_utilization": 0.9, "enable_prefix_caching": False}
    )
    s = " ".join(cmd)
    assert "-m sglang.launch_server --model-path /m" in s and "--port 1234" in s
    assert "--context-length 4096" in s and "--mem-fraction-static 0.9" in s and "--disable-radix-cache" in s
    assert "max-model-len" not in s and "prefix" not in s


def test_sglang_unavailable_without_sgl_kernel(tmp_path):
    e = from_setup("sglang", {"env": str(tmp_path / "none")}, {"python": "python", "probe": "sgl_kernel"})
    ok, why = e.availability()
    assert not ok and "not found" in why
    e = from_setup("sglang", {}, {"python": sys.executable, "probe": "sgl_kernel"})
    ok, why = e.availability()
    assert not ok and "sgl_kernel" in why


def test_probe_success_is_remembered_until_the_environment_changes(tmp_path, monkeypatch):
    """A successful probe import (and the versions read with it) is kept in the engine's cache dir;
    the next job of the same environment starts no interpreter; a package installed into the
    environment (its site-packages changes) makes it probe again; a failing probe is never kept."""
    import subprocess as sp

    env = tmp_path / "env"
    (env / "bin").mkdir(parents=True)
    (env / "bin" / "python").symlink_to(sys.executable)
    site = env / "lib" / "python3.11" / "site-packages"
    site.mkdir(parents=True)
    runs = []
    real_run = sp.run

    def counting_run(cmd, *a, **kw):
        runs.append(cmd)
        return real_run(cmd, *a, **kw)

    monkeypatch.setattr(sp, "run", counting_run)
    cache = tmp_path / "cache"
    e = from_setup("vllm", {"env": str(env)}, {"python": "python", "probe": "json"}, str(cache))
    assert e.availability() == (True, "") and len(runs) == 1
    f = e.probe_cache_file()
    assert f.parent == cache / "probe" and f.exists()
    versions = e.versions()
    assert "error" not in versions and json.loads(f.read_text())["versions"] == versions
    assert e.availability() == (True, "") and len(runs) == 1  # remembered: no interpreter started
    (site / "newpkg-1.0.dist-info").mkdir()  # an install changes site-packages
    os.utime(site, ns=(time.time_ns(), site.stat().st_mtime_ns + 1_000_000))
    assert e.probe_cache_file() != f
    assert e.availability() == (True, "") and len(runs) == 2 and e.probe_cache_file().exists()
    # another probe in the same environment: a failure, never remembered
    bad = from_setup("vllm", {"env": str(env)}, {"python": "python", "probe": "no_such_module_x"}, str(cache))
    for n in (3, 4):
        ok, why = bad.availability()
        assert not ok and "no_such_module_x" in why and len(runs) == n
    assert not bad.probe_cache_file().exists()
    # no engine cache directory: nothing remembered, the probe runs every time
    plain = from_setup("vllm", {"env": str(env)}, {"python": "python", "probe": "json"})
    assert plain.probe_cache_file() is None and plain.availability() == (True, "") and len(runs) == 5


# -- telemetry --------------------------------------------------------------------------------------
def test_telemetry_summary_energy_from_counter_and_from_power():
    samples = [
        {"t": 0.0, "gpu_util_pct": 50, "mem_used_mib": 1000, "power_w": 100.0, "energy_mj": 0},
        {"t": 1.0, "gpu_util_pct": 90, "mem_used_mib": 2000, "power_w": 300.0, "energy_mj": 250_000},
    ]
    s = telemetry.summarize(samples, "ok", output_tokens=500)
    assert s["gpu_util_mean"] == 70 and s["gpu_util_max"] == 90 and s["mem_used_max_mib"] == 2000
    assert s["energy_j"] == pytest.approx(250.0) and s["j_per_output_token"] == pytest.approx(0.5)
    for x in samples:
        x["energy_mj"] = None  # a GPU without the energy counter: trapezoid over power
    s = telemetry.summarize(samples, "ok", output_tokens=500)
    assert s["energy_j"] == pytest.approx(200.0) and s["energy_source"] == "integrated power samples"


def test_telemetry_of_two_gpus_per_pool():
    """A P/D layout's window: the prefill GPU busy in bursts, the decode GPU steadily; energy is
    each GPU's own counter rise, summed for the cell, per pool beside it."""
    rows = []
    for t in range(5):
        rows.append({"t": float(t), "gpu": 0, "gpu_util_pct": 100 if t % 2 else 0, "mem_used_mib": 500.0,
                     "power_w": 200.0, "energy_mj": 1_000_000 + 200_000 * t})  # fmt: skip
        rows.append({"t": t + 0.01, "gpu": 3, "gpu_util_pct": 80, "mem_used_mib": 900.0 + t,
                     "power_w": 400.0, "energy_mj": 7_000_000 + 400_000 * t})  # fmt: skip
    s = telemetry.summarize(rows, "ok", output_tokens=100, pools={"prefill": [0], "decode": [3], "spare": [5]})
    assert s["gpus_sampled"] == 2 and s["samples"] == 10
    assert s["energy_j"] == pytest.approx(800.0 + 1600.0) and s["j_per_output_token"] == pytest.approx(24.0)
    assert s["gpu_util_mean"] == pytest.approx((40 + 80) / 2) and s["mem_used_max_mib"] == 904.0
    assert s["power_mean_w"] == pytest.approx(600.0)
    p, d = s["pools"]["prefill"], s["pools"]["decode"]
    assert (p["gpu_util_mean"], p["gpu_util_max"], p["energy_j"], p["gpus"]) == (40.0, 100, pytest.approx(800.0), [0])
    assert (d["gpu_util_mean"], d["mem_used_max_mib"], d["energy_j"]) == (80.0, 904.0, pytest.approx(1600.0))
    assert s["pools"]["spare"]["telemetry"].startswith("unavailable: no samples of GPU(s) [5]")
    # one GPU, no pools: the numbers as before, no per-pool entry
    one = telemetry.summarize([r for r in rows if r["gpu"] == 3], "ok", output_tokens=100)
    assert "pools" not in one and "gpus_sampled" not in one and one["energy_j"] == pytest.approx(1600.0)


def test_telemetry_unavailable_without_nvml(tmp_path):
    smp = telemetry.Sampler(tmp_path / "t.csv", telemetry.visible_gpu_index()).start()
    smp.stop()
    assert smp.status.startswith("unavailable")
    assert telemetry.summarize(smp.samples, smp.status, 100) == {"telemetry": smp.status}


# -- sessions and the cells selection -------------------------------------------------------------------
def test_configurations_group_cells_per_engine_start_and_selection_narrows_one(catalog):
    cfg = load_preset(catalog, gpus=["cpu", "h100"])
    cells = matrix.expand(cfg)
    full = matrix.configurations(cells)
    assert {k for k in full if k[0] == "week01"} == {
        ("week01", "serving", e, g, "default") for e in ("vllm", "sglang") for g in ("cpu", "h100")
    }
    assert {k[1] for k in full if k[0] == "week02"} == {"offline", "batch_latency", "profile"}
    assert [c.cell for c in full[("week01", "serving", "vllm", "h100", "default")]] == ["rr1", "rr4", "rr10", "rrinf"]
    cfg2 = load_preset(catalog, gpus=["cpu", "h100"], cells="results/week01/serving/vllm/h100/default/rr4/cell.json")
    sel = matrix.selection(cfg2, cells)
    assert sel == {"week01/serving/vllm/h100/default/rr4"}
    narrowed = matrix.configurations(cells, sel)
    assert [c.cell for c in narrowed[("week01", "serving", "vllm", "h100", "default")]] == ["rr4"]
    assert len(narrowed[("week01", "serving", "vllm", "cpu", "default")]) == 4  # other configurations untouched


def test_selection_of_an_unknown_cell_names_the_key(catalog):
    cfg = load_preset(catalog, cells=["week01/serving/vllm/cpu/default/rr7"])
    with pytest.raises(ConfigError, match=r"cells\[0\].*rr7"):
        matrix.selection(cfg, matrix.expand(cfg))


def test_serving_experiment_needs_a_known_dataset(catalog):
    f = catalog / "weeks" / "week01.yaml"
    f.write_text(f.read_text().replace("dataset: sharegpt\n", "dataset: sharegtp\n"))
    with pytest.raises(ConfigError, match=r"week01.yaml.*experiments.serving.fixed.dataset.*sharegtp"):
        load_preset(catalog)


@pytest.mark.parametrize("text", ["Infinity", "[1, 2]", '"done"', "null"])
def test_output_that_is_json_but_not_an_object_is_a_typed_parse_error(tmp_path, text):
    """A raw output that parses as JSON but is no object (a bare Infinity, a list) is a parse error
    naming what it is, for both engines' parsers, never an AttributeError from deep inside."""
    from inferlab.engines.sglang import parse_bench_serving
    from inferlab.engines.vllm import VLLM

    with pytest.raises(ValueError, match="JSON but not an object"):
        parse_bench_serving(text + "\n", {"num_prompts": 1})
    (tmp_path / "raw.json").write_text(text)
    with pytest.raises(ValueError, match="JSON but not an object"):
        VLLM(None, {}).parse("bench_serving", tmp_path / "raw.json", {})


def test_dict_valued_server_args_reach_the_engine_as_json():
    """A server axis such as speculative_config is a mapping: the server's command line carries it
    as JSON (what vLLM's parser reads), never as Python's repr."""
    from inferlab.engines.vllm import VLLM

    spec = {"method": "ngram", "num_speculative_tokens": 3}
    cmd = VLLM(None, {}).serve_command("/m", "127.0.0.1", 8000, {"speculative_config": spec})
    val = cmd[cmd.index("--speculative-config") + 1]
    assert json.loads(val) == spec and "'" not in val


def test_visible_gpus_from_cuda_visible_devices(monkeypatch):
    """CUDA_VISIBLE_DEVICES by index or UUID -> NVML indices (NVML itself is absent here: a module
    with its four calls stands in for a node with 4 GPUs)."""
    import types

    nv = types.SimpleNamespace(
        nvmlInit=lambda: None,
        nvmlDeviceGetCount=lambda: 4,
        nvmlDeviceGetHandleByIndex=lambda i: i,
        nvmlDeviceGetUUID=lambda h: f"GPU-{h}aaa".encode(),
    )
    monkeypatch.setitem(sys.modules, "pynvml", nv)
    for vis, want in [
        (None, [0, 1, 2, 3]),
        ("2,3", [2, 3]),
        ("GPU-3aaa,GPU-1", [3, 1]),
        ("1,7", [1]),
        ("7", []),
        ("MIG-xyz", [0]),
    ]:
        if vis is None:
            monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
        else:
            monkeypatch.setenv("CUDA_VISIBLE_DEVICES", vis)
        assert telemetry.visible_gpu_indices() == want, vis
        assert telemetry.visible_gpu_index() == (want[0] if want else None), vis


def test_a_variant_names_its_base_and_probe_versions(tmp_path):
    """A catalog variant (vllm_lmcache = vLLM + the LMCache package) names both versions as its own
    engine version; on the H100 Week 15 record its cells had none (only the base's key was read)."""
    site = tmp_path / "site"
    for name, ver in (("vllm", "0.26.0"), ("lmcache", "0.5.6")):
        d = site / f"{name}-{ver}.dist-info"
        d.mkdir(parents=True)
        (d / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {ver}\n")
    (site / "lmcache").mkdir()
    (site / "lmcache" / "__init__.py").write_text("")
    setup = {"env_vars": {"PYTHONPATH": str(site)}}
    variant = {"adapter": "vllm", "base": "vllm", "probe": "lmcache", "python": sys.executable}
    e = from_setup("vllm_lmcache", setup, variant)
    assert e.availability() == (True, "")
    v = e.versions()
    assert v["vllm"] == "0.26.0" and v["lmcache"] == "0.5.6" and v["vllm_lmcache"] == "0.26.0 + lmcache 0.5.6"
    from inferlab import records

    rec = {"week": "w", "experiment": "x", "engine": "vllm_lmcache", "gpu": "h100", "model": "m", "cell": "c"}
    rec |= {"tool": "bench_serving", "status": "failed", "reason": "engine_error", "params": {}}
    rec["provenance"] = {"engine_versions": v}
    assert records.record_to_frame(rec, None)["engine_version"].iloc[0] == "0.26.0 + lmcache 0.5.6"
    # the base engine itself gains no key; a variant whose package is missing names the base's version
    base = from_setup("vllm", setup, {"python": sys.executable, "probe": "json"})
    assert "vllm_lmcache" not in base.versions() and base.versions()["vllm"] == "0.26.0"
    (site / "lmcache-0.5.6.dist-info" / "METADATA").unlink()
    (site / "lmcache-0.5.6.dist-info").rmdir()
    assert e.versions()["vllm_lmcache"] == "0.26.0"

"""The one-engine offline driver (inferlab.drivers.vllm_offline) on the real CPU engine: 2 batch
latency points + 1 throughput point + a deliberately bad cell in ONE engine start; the raw files
read with the project's parsers, the progress file, the bad cell typed failed while the others run,
and the driver's latency against ``vllm bench latency`` on one point."""

import json
import os
import subprocess

import pytest
import yaml
from conftest import ROOT

pytestmark = pytest.mark.engine

ENGINE_ENV = ROOT / ".venv-vllm"
LAT = {"input_len": 128, "output_len": 64, "num_iters": 5, "num_iters_warmup": 2}
# The compared point (batch 16) gets 10 timed iterations on both sides, and the comparison is of the
# fastest iteration: the 2 cores are shared with other jobs, whose bursts make single iterations up
# to 10x slower (seen: 170 ms -> 3.6 s) on either side. Undisturbed, driver/CLI was 0.97-1.03.
COMPARED = {"batch_size": 16, **LAT, "num_iters": 10}
TOLERANCE = 0.30


def engine_env(work):
    setup = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())["engines"]["vllm"]
    env = dict(os.environ)
    env.update({k: str(v) for k, v in setup.get("env_vars", {}).items()})
    env.update(
        VLLM_CACHE_ROOT=str(work / "vllm-cache"),
        TORCHINDUCTOR_CACHE_DIR=str(work / "inductor-cache"),
        PYTHONPATH=str(ROOT / "src"),
        # both sides: spinning OpenMP threads turn other jobs' load on the 2 shared cores into 2-10x
        # slower iterations; waiting passively keeps the comparison about the procedure
        OMP_WAIT_POLICY="PASSIVE",
        GOMP_SPINCOUNT="0",
    )
    return env, dict(setup.get("args", {}))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    if not (ENGINE_ENV / "bin" / "python").exists():
        pytest.skip(f"the vLLM CPU engine is not installed at {ENGINE_ENV} (scripts/setup.sh)")
    from inferlab import download

    work = tmp_path_factory.mktemp("driver")
    env, args = engine_env(work)
    m = yaml.safe_load((ROOT / "config" / "models.yaml").read_text())["models"]["tiny-llama"]
    model = work / "tiny-llama"
    spec = {**m["architecture"], "weights": m.get("weights", "random"), "seed": 0}
    py = str(ENGINE_ENV / "bin" / "python")
    subprocess.run(
        [py, "-m", "inferlab.tinymodel", "--out", str(model), "--spec", json.dumps(spec)],
        check=True,
        env=env,
        capture_output=True,
    )
    data = download.build_sharegpt(work / "sharegpt.json", 200, 0)
    engine_args = {**args, "enable_prefix_caching": False}
    cells = [
        {"id": "bs1", "tool": "vllm_bench_latency", "params": {"batch_size": 1, **LAT}},
        # input + output > max_model_len (8192): the CLI's own assertion fails this cell only
        {"id": "bad", "tool": "vllm_bench_latency", "params": {"batch_size": 2, **LAT, "input_len": 9000}},
        {"id": "bs16", "tool": "vllm_bench_latency", "params": COMPARED},
        {
            "id": "np30",
            "tool": "vllm_bench_throughput",
            "params": {"num_prompts": 30, "seed": 0, "dataset_name": "sharegpt"},
            "dataset_path": str(data),
        },
    ]
    for c in cells:
        c["out"] = str(work / "raw" / f"{c['id']}.json")
    spec = {"model": str(model), "engine_args": engine_args, "cells": cells, "progress": str(work / "progress.jsonl")}
    (work / "spec.json").write_text(json.dumps(spec))
    drv = subprocess.run(
        [py, "-m", "inferlab.drivers.vllm_offline", "--spec", str(work / "spec.json")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    # the CLI on one point, same engine arguments (the command the workflow's adapter builds)
    from inferlab.engines.vllm import VLLM

    adapter = VLLM(env=str(ENGINE_ENV), catalog={"bin": "vllm"}, run_args=args)
    cli_raw = work / "cli-bs16.json"
    cmd = adapter.command("vllm_bench_latency", model, COMPARED, {"enable_prefix_caching": False}, cli_raw)
    cli = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    return {"work": work, "spec": spec, "driver": drv, "cli": cli, "cli_raw": cli_raw, "adapter": adapter}


def events(run):
    return [json.loads(line) for line in (run["work"] / "progress.jsonl").read_text().splitlines()]


def test_one_engine_start_and_a_line_per_cell(run):
    assert run["driver"].returncode == 0, run["driver"].stderr[-3000:]
    ev = events(run)
    assert [e["event"] for e in ev] == ["engine_ready"] + ["cell"] * 4 + ["done"]
    ready = ev[0]
    assert ready["startup_s"] > 0 and ready["vllm"].startswith("0.32") and ready["torch"]
    assert ready["driver"].startswith("inferlab.drivers.vllm_offline (follows vllm bench latency/throughput")
    assert ready["effective"]["enable_prefix_caching"] is False
    status = {e["id"]: e["status"] for e in ev if e["event"] == "cell"}
    assert status == {"bs1": "ok", "bad": "failed", "bs16": "ok", "np30": "ok"}
    for e in ev[1:5]:
        assert e["t_start"] <= e["t_end"]
        assert (e["measure_s"] > 0) if e["status"] == "ok" else e["measure_s"] is None
    assert ev[-1] == {**ev[-1], "ok": 3, "failed": 1, "exit_code": 0}


def test_bad_cell_is_typed_and_isolated(run):
    bad = next(e for e in events(run) if e.get("id") == "bad")
    assert bad["error_type"] == "AssertionError" and "max_model_len" in bad["error"]
    assert not (run["work"] / "raw" / "bad.json").exists()


def test_raw_files_read_with_the_project_parsers(run):
    from inferlab.engines.vllm import parse_bench_throughput

    adapter = run["adapter"]
    for cid, bs, iters in (("bs1", 1, LAT["num_iters"]), ("bs16", 16, COMPARED["num_iters"])):
        raw = run["work"] / "raw" / f"{cid}.json"
        data = json.loads(raw.read_text())
        assert {"model_id", "avg_latency", "latencies", "percentiles"} <= set(data)
        assert len(data["latencies"]) == iters
        assert set(data["percentiles"]) == {"10", "25", "50", "75", "90", "99"}
        want = {"requests": bs, "prompt_tokens": bs * 128, "output_tokens": bs * 64}
        assert data["requested"] == want and data["achieved"] == want and data["achieved_ok"] is True
        assert data["driver"]["engine_args_deviation"] == {}
        rows = {r["metric"]: r["value"] for r in adapter.parse("vllm_bench_latency", raw, {"output_len": 64})}
        assert rows["latency_avg"] == pytest.approx(data["avg_latency"] * 1e3)
    data = json.loads((run["work"] / "raw" / "np30.json").read_text())
    assert data["num_requests"] == 30 and data["achieved_ok"] is True
    assert data["total_num_tokens"] == data["achieved"]["prompt_tokens"] + data["achieved"]["output_tokens"]
    rows = {r["metric"]: r["value"] for r in parse_bench_throughput(data)}
    assert rows["offline_total_token_throughput"] == pytest.approx(data["total_num_tokens"] / data["elapsed_time"])
    # cells after the first share the engine; prefix caching is off, so there is nothing to reset
    assert data["driver"]["fresh_engine"] is False and data["driver"]["prefix_cache_reset"] is None


def test_latency_matches_the_cli(run):
    assert run["cli"].returncode == 0, run["cli"].stderr[-3000:]
    cli = json.loads(run["cli_raw"].read_text())
    drv = json.loads((run["work"] / "raw" / "bs16.json").read_text())
    best = min(drv["latencies"]) / min(cli["latencies"])
    avg = drv["avg_latency"] / cli["avg_latency"]
    print(
        f"bs16 latency: driver min {min(drv['latencies']) * 1e3:.1f} / avg {drv['avg_latency'] * 1e3:.1f} ms, "
        f"CLI min {min(cli['latencies']) * 1e3:.1f} / avg {cli['avg_latency'] * 1e3:.1f} ms; "
        f"driver/CLI min {best:.3f}, avg {avg:.3f}"
    )
    assert abs(best - 1) <= TOLERANCE


def test_engine_death_fails_the_rest(tmp_path):
    """The cell loop alone (no engine): after an engine death the cells not run are typed failed
    with the cell that killed it, and the driver exits 2; an ordinary failure does not stop it."""
    from inferlab.drivers import vllm_offline as vo

    class Stub(vo.Driver):
        def prepare(self, first):
            return {"fresh_engine": first}

        def latency(self, cell, state):
            if cell["id"] == "bad":
                raise ValueError("bad params")
            if cell["id"] == "boom":
                raise vo.EngineDead("EngineCore died")
            return {"model_id": "m", "avg_latency": 0.1, "latencies": [0.1], "percentiles": {}}, 0.1

    cells = [
        {"id": i, "tool": "vllm_bench_latency", "out": str(tmp_path / f"{i}.json")} for i in "a bad boom c".split()
    ]
    drv = Stub({"model": "m", "cells": cells}, vo.Progress(str(tmp_path / "p.jsonl")))
    assert drv.run_cells() == 2
    ev = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    cells_ev = {e["id"]: e for e in ev if e["event"] == "cell"}
    assert [cells_ev[i]["status"] for i in "a bad boom c".split()] == ["ok", "failed", "failed", "failed"]
    assert cells_ev["bad"]["error"] == "ValueError: bad params"
    assert cells_ev["boom"]["error_type"] == "EngineDead"
    assert cells_ev["c"]["error"] == "engine died during boom"
    assert ev[-1]["event"] == "done" and ev[-1]["exit_code"] == 2 and ev[-1]["failed"] == 3
    assert json.loads((tmp_path / "a.json").read_text())["driver"]["shared_engine"] is True

"""Benchmark: does the one-engine offline driver measure what the vLLM CLI measures, and what does
it save? (prints figures)

On the embedded default (the tiny model, vLLM's CPU engine in .venv-vllm) it runs the same points
  - ``vllm bench latency`` batch sizes 1 and 16, input 128, output 64 (10 timed + 2 warm-up iterations)
  - ``vllm bench throughput`` 100 prompts of the synthetic ShareGPT file (seed 0)
once through the CLI (one process, one engine start per point: the commands the workflow's vLLM
adapter builds) and once through ``python -m inferlab.drivers.vllm_offline`` (all points, one
engine start), and prints per point the CLI's number, the driver's, and driver/CLI, then the wall
time of all CLI runs against the driver's single run (the engine-start saving). For latency it also
compares the fastest iteration: on shared cores a neighbour's burst can make single iterations 10x
slower on either side, and the fastest iteration is what such bursts leave alone.

Both sides get the same engine arguments: the preset's (dtype bfloat16, enforce_eager, max_model_len
8192) plus ``enable_prefix_caching: false`` (the week files' setting for batch latency; without it
the throughput CLI would run with vLLM's default while the shared engine is built as the latency
CLI builds it, prefix caching off).

    .venv/bin/python benchmarks/bench_driver_fidelity.py [--work DIR] [--driver-first] [--repeat N] [--omp-passive]

(--repeat alternates the order, CLI first then driver first, so that a neighbour's load on the
shared cores does not always fall on the same side.)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

ENGINE_ENV = ROOT / ".venv-vllm"
LAT = {"input_len": 128, "output_len": 64, "num_iters": 10, "num_iters_warmup": 2}
POINTS = [
    ("bs1", "vllm_bench_latency", {"batch_size": 1, **LAT}, "latency_avg"),
    ("bs16", "vllm_bench_latency", {"batch_size": 16, **LAT}, "latency_avg"),
    ("np100", "vllm_bench_throughput", {"num_prompts": 100, "seed": 0, "dataset_name": "sharegpt"}, None),
]
THROUGHPUT_METRIC = "offline_total_token_throughput"


def preset() -> dict:
    import yaml

    return yaml.safe_load((ROOT / "config" / "config.yaml").read_text())


def engine_env(work: Path, env_vars: dict) -> dict:
    env = dict(os.environ)
    env.update({k: str(v) for k, v in env_vars.items()})
    env["VLLM_CACHE_ROOT"] = str(work / "vllm-cache")
    env["TORCHINDUCTOR_CACHE_DIR"] = str(work / "inductor-cache")
    env["PYTHONPATH"] = str(ROOT / "src")
    return env


def ensure_inputs(work: Path, env: dict) -> tuple[Path, Path]:
    import yaml

    from inferlab import download

    model = work / "tiny-llama"
    if not (model / "config.json").exists():
        m = yaml.safe_load((ROOT / "config" / "models.yaml").read_text())["models"]["tiny-llama"]
        spec = {**m["architecture"], "weights": m.get("weights", "random"), "seed": 0}
        cmd = [
            str(ENGINE_ENV / "bin/python"),
            "-m",
            "inferlab.tinymodel",
            "--out",
            str(model),
            "--spec",
            json.dumps(spec),
        ]
        subprocess.run(cmd, check=True, env=env, capture_output=True)
    ds = yaml.safe_load((ROOT / "config" / "datasets.yaml").read_text())["datasets"]["sharegpt-synthetic"]
    data = work / ds["filename"]
    if not data.exists():
        download.build_sharegpt(data, ds["conversations"], ds.get("seed", 0))
    return model, data


def value(adapter, tool: str, raw: Path, params: dict, metric: str | None) -> float:
    """The number the workflow would table (through the adapter's own parser)."""
    rows = {r["metric"]: r["value"] for r in adapter.parse(tool, raw, params)}
    return rows[metric or THROUGHPUT_METRIC]


def fastest(raw: Path) -> float | None:
    """Latency of the fastest timed iteration (ms): robust to a neighbour's bursts on shared cores."""
    lat = json.loads(raw.read_text()).get("latencies")
    return min(lat) * 1e3 if lat else None


def run_cli(adapter, model: Path, data: Path, out: Path, env: dict, engine_args: dict) -> dict:
    res = {}
    for pid, tool, params, metric in POINTS:
        raw = out / f"cli-{pid}.json"
        cmd = adapter.command(
            tool, model, params, engine_args, raw, dataset_path=data if "throughput" in tool else None
        )
        t0 = time.perf_counter()
        p = subprocess.run(cmd, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        (out / f"cli-{pid}.log").write_text(p.stdout + p.stderr)
        if p.returncode != 0:
            raise SystemExit(f"CLI {pid} failed ({p.returncode}):\n{p.stderr[-3000:]}")
        res[pid] = {"value": value(adapter, tool, raw, params, metric), "min": fastest(raw), "wall_s": wall}
        print(f"  cli {pid}: {res[pid]['value']:.4g} ({wall:.1f} s wall)", flush=True)
    return res


def run_driver(adapter, model: Path, data: Path, out: Path, env: dict, engine_args: dict) -> tuple[dict, dict]:
    cells = []
    for pid, tool, params, _ in POINTS:
        c = {"id": pid, "tool": tool, "params": params, "out": str(out / f"drv-{pid}.json")}
        if "throughput" in tool:
            c["dataset_path"] = str(data)
        cells.append(c)
    spec = {
        "model": str(model),
        "engine_args": {**adapter.run_args, **engine_args},
        "cells": cells,
        "progress": str(out / "progress.jsonl"),
    }
    (out / "spec.json").write_text(json.dumps(spec, indent=1))
    cmd = [str(ENGINE_ENV / "bin/python"), "-m", "inferlab.drivers.vllm_offline", "--spec", str(out / "spec.json")]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    (out / "driver.log").write_text(p.stdout + p.stderr)
    events = [json.loads(line) for line in (out / "progress.jsonl").read_text().splitlines()]
    if p.returncode != 0 or any(e.get("status") == "failed" for e in events):
        raise SystemExit(f"driver failed ({p.returncode}):\n{p.stderr[-3000:]}")
    ready = next(e for e in events if e["event"] == "engine_ready")
    res = {}
    for pid, tool, params, metric in POINTS:
        raw = out / f"drv-{pid}.json"
        res[pid] = {"value": value(adapter, tool, raw, params, metric), "min": fastest(raw)}
        print(f"  driver {pid}: {res[pid]['value']:.4g}", flush=True)
    return res, {"wall_s": wall, "startup_s": ready["startup_s"], "vllm": ready["vllm"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", help="scratch folder (default: a new temporary one)")
    ap.add_argument("--driver-first", action="store_true", help="run the driver before the CLI runs (run 1)")
    ap.add_argument("--repeat", type=int, default=1, help="repeat the whole comparison N times")
    ap.add_argument(
        "--omp-passive",
        action="store_true",
        help="OMP_WAIT_POLICY=PASSIVE, GOMP_SPINCOUNT=0 on both sides: on cores shared with other jobs, "
        "spinning OpenMP threads turn a neighbour's load into 2-10x slower iterations",
    )
    a = ap.parse_args()
    if not (ENGINE_ENV / "bin" / "vllm").exists():
        raise SystemExit(f"the vLLM CPU engine is not installed at {ENGINE_ENV} (scripts/setup.sh)")
    from inferlab.engines.vllm import VLLM

    work = Path(a.work) if a.work else Path(tempfile.mkdtemp(prefix="driver-fidelity-"))
    work.mkdir(parents=True, exist_ok=True)
    setup = preset()["engines"]["vllm"]
    env = engine_env(work, setup.get("env_vars", {}))
    if a.omp_passive:
        env.update(OMP_WAIT_POLICY="PASSIVE", GOMP_SPINCOUNT="0")
    adapter = VLLM(env=str(ENGINE_ENV), catalog={"bin": "vllm"}, run_args=setup.get("args", {}))
    engine_args = {"enable_prefix_caching": False}
    model, data = ensure_inputs(work, env)
    print(f"work folder: {work}\nengine args: {json.dumps({**adapter.run_args, **engine_args})}", flush=True)
    if a.omp_passive:
        print("OpenMP threads wait passively (OMP_WAIT_POLICY=PASSIVE, GOMP_SPINCOUNT=0) on both sides", flush=True)

    runs = []
    for r in range(a.repeat):
        out = work / f"run{r}"
        out.mkdir(exist_ok=True)
        print(f"run {r + 1}/{a.repeat}", flush=True)
        if a.driver_first != (r % 2 == 1):  # repeats alternate the order
            drv, dinfo = run_driver(adapter, model, data, out, env, engine_args)
            cli = run_cli(adapter, model, data, out, env, engine_args)
        else:
            cli = run_cli(adapter, model, data, out, env, engine_args)
            drv, dinfo = run_driver(adapter, model, data, out, env, engine_args)
        runs.append((cli, drv, dinfo))

    print(f"\nvLLM {runs[0][2]['vllm']}, {len(runs)} run(s); latency in ms, throughput in total tokens/s")
    print(f"{'point':<7}{'run':<5}{'metric':<32}{'CLI':>10}{'driver':>10}{'driver/CLI':>12}")
    for pid, _tool, _params, metric in POINTS:
        ratios: dict[str, list[float]] = {}
        for i, (cli, drv, _) in enumerate(runs):
            rows = [(metric or THROUGHPUT_METRIC, "value")]
            if cli[pid]["min"] is not None:
                rows.append(("latency_min (fastest iteration)", "min"))
            for name, key in rows:
                c, d = cli[pid][key], drv[pid][key]
                ratios.setdefault(name, []).append(d / c)
                print(f"{pid:<7}{i + 1:<5}{name:<32}{c:>10.4g}{d:>10.4g}{d / c:>12.3f}")
        for name, r in ratios.items():
            if len(r) > 1:
                print(f"{pid:<7}{'med':<5}{name:<32}{'':>20}{statistics.median(r):>12.3f}")
    # same requests? (throughput: the token totals of the sampled ShareGPT requests must be equal)
    for i in range(len(runs)):
        out = work / f"run{i}"
        for pid, tool, _params, _metric in POINTS:
            if "throughput" in tool:
                c = json.loads((out / f"cli-{pid}.json").read_text())
                d = json.loads((out / f"drv-{pid}.json").read_text())
                same = (c["num_requests"], c["total_num_tokens"]) == (d["num_requests"], d["total_num_tokens"])
                print(
                    f"{pid}: requests/total tokens CLI {c['num_requests']}/{c['total_num_tokens']}, "
                    f"driver {d['num_requests']}/{d['total_num_tokens']}: {'same' if same else 'DIFFERENT'}"
                )
    print()
    for i, (cli, _drv, dinfo) in enumerate(runs):
        cli_wall = sum(v["wall_s"] for v in cli.values())
        per_point = ", ".join(f"{k} {v['wall_s']:.1f}" for k, v in cli.items())
        print(
            f"run {i + 1}: CLI {len(cli)} processes {cli_wall:.1f} s wall "
            f"({per_point}); "
            f"driver 1 process {dinfo['wall_s']:.1f} s wall (engine start {dinfo['startup_s']:.1f} s); "
            f"saved {cli_wall - dinfo['wall_s']:.1f} s ({1 - dinfo['wall_s'] / cli_wall:.0%})"
        )


if __name__ == "__main__":
    main()

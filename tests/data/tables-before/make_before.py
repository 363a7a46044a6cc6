"""How tests/data/tables-before/ was made (once, before the week modules were deleted): the OLD
hand-written week modules of commit df79d0c run on the kept H100 records and on synthetic variants.

    git archive df79d0c | tar -x -C /tmp/ilhead
    cd /tmp/ilhead && /work/main/.venv/bin/python /work/main/tests/data/tables-before/make_before.py

It writes every table (CSV + Markdown; figures dropped) under tests/data/tables-before/<case>/tables
and the synthetic Parquet under tests/data/tables-before/parquet/. Kept for the record; the test
(tests/test_report_before_after.py) only reads what it wrote.
"""

import json
import shutil
import sys
from pathlib import Path

HEAD = Path("/tmp/ilhead")
sys.path.insert(0, str(HEAD / "src"))
import pandas as pd  # noqa: E402
from inferlab.weeks import week01, week02, week03  # noqa: E402

from inferlab import config, guard, records  # noqa: E402

MAIN = Path("/work/main")
OUT = MAIN / "tests/data/tables-before"
PQ = OUT / "parquet"
shutil.rmtree(PQ, ignore_errors=True)
PQ.mkdir(parents=True)
cfg = config.load("config/cluster.yaml", base_dir=HEAD)
ARCH = cfg.models["llama-3.1-8b-arch"]


def guarded(df):
    frames = []
    for g, d in df.groupby("gpu", sort=False):
        frames.append(guard.apply(d, ARCH["architecture"], ARCH["dtype"], cfg.gpu(g)))
    return records.normalize(pd.concat(frames, ignore_index=True))


def fail(rows, status="failed", reason="oom", detail="CUDA out of memory"):
    rows = rows.copy()
    rows["status"] = status
    rows["reason"] = reason
    rows["detail"] = detail
    rows["value"] = None
    rows["raw_value"] = None
    return rows


def copy_gpu(d, gpu, scale):
    d = d.copy()
    d["gpu"] = gpu
    lat = d["unit"].isin(["ms", "ms/token"])
    thr = d["unit"].isin(["tok/s", "req/s"])
    for col in ("value", "raw_value"):
        d.loc[lat, col] = d.loc[lat, col] * scale
        d.loc[thr, col] = d.loc[thr, col] / scale
    return d


def run(mod, df, outdir, **kw):
    outdir = Path(outdir)
    if outdir.exists():
        shutil.rmtree(outdir)
    res = mod.aggregate(df, cfg, outdir, **kw)
    shutil.rmtree(outdir / "figures", ignore_errors=True)
    return res


# --- week03: kept, and mixed (l40s with OOM and a cache-hit INVALID, a100 with a failed and a skipped cell)
w3 = records.normalize(pd.read_parquet(MAIN / "docs/validation/h100-week03/week03.parquet"))
run(week03, w3, OUT / "week03-kept")
l40s = copy_gpu(w3, "l40s", 2.5)
l40s = pd.concat([fail(l40s[l40s.cell == "bs512"]), l40s[l40s.cell != "bs512"]], ignore_index=True)
m = (l40s.cell == "in4096") & (l40s.metric == "latency_avg")
l40s.loc[m, ["value", "raw_value"]] = 30.3
a100 = copy_gpu(w3, "a100", 1.6)
a100 = pd.concat(
    [
        fail(a100[a100.cell == "in64"], reason="engine_error", detail="engine exited with 1"),
        fail(a100[a100.cell == "bs256"], status="skipped", reason="needs 2 GPUs", detail="layout"),
        a100[~a100.cell.isin(["in64", "bs256"])],
    ],
    ignore_index=True,
)
w3m = guarded(pd.concat([w3, l40s, a100], ignore_index=True))
w3m.to_parquet(PQ / "week03-mixed.parquet")
run(week03, w3m, OUT / "week03-mixed")

# --- week01: kept, and mixed (a100: rr10 OOM, rrinf engine_error; slower)
w1 = records.normalize(pd.read_parquet(MAIN / "docs/validation/h100-week01/week01.parquet"))
run(week01, w1, OUT / "week01-kept")
a = copy_gpu(w1[w1.engine == "vllm"], "a100", 1.4)
a = pd.concat(
    [
        fail(a[a.cell == "rr10"]),
        fail(a[a.cell == "rrinf"], reason="engine_error", detail="x"),
        a[~a.cell.isin(["rr10", "rrinf"])],
    ],
    ignore_index=True,
)
s = fail(w1[w1.engine == "sglang"].copy(), status="skipped", reason="engine_unavailable", detail="not installed")
s["gpu"] = "a100"
w1m = guarded(pd.concat([w1, a, s], ignore_index=True))
w1m.to_parquet(PQ / "week01-mixed.parquet")
run(week01, w1m, OUT / "week01-mixed")

# --- week02: synthetic records (tests/data raw outputs with course-like numbers), joined with week01
tmp = Path("/tmp/ilbefore/raw")
tmp.mkdir(parents=True, exist_ok=True)
DATA = MAIN / "tests/data/vllm-0.32-cpu"


def rec(exp, gpu, cell, tool, params, status="ok", reason=None, raw=None, telemetry=None, profile=None):
    r = {
        "week": "week02",
        "experiment": exp,
        "engine": "vllm",
        "gpu": gpu,
        "model": "llama-3.1-8b-arch",
        "cell": cell,
        "tool": tool,
        "status": status,
        "reason": reason,
        "detail": None if status == "ok" else "d",
        "log_tail": "tail",
        "params": params,
        "provenance": {"host": "n1"},
    }
    if telemetry:
        r["telemetry"] = telemetry
    if profile:
        r["profile"] = profile
    p = None
    if raw is not None:
        p = tmp / f"{exp}-{gpu}-{cell}.json"
        p.write_text(json.dumps(raw))
    return records.record_to_frame(r, p)


frames = []
thr = json.loads((DATA / "throughput.json").read_text())
for g, tps, st in (("h100", 12430.0, "ok"), ("l40s", 3469.0, "ok"), ("a100", None, "failed")):
    raw = None if tps is None else {**thr, "tokens_per_second": tps, "requests_per_second": tps / 310}
    tel = (
        {"telemetry": "ok", "gpu_util_mean": 97.4, "gpu_util_max": 100.0, "energy_j": 5200.0}
        if g == "h100"
        else {"telemetry": "unavailable: no NVML"}
    )
    frames.append(
        rec(
            "offline",
            g,
            "np500",
            "vllm_bench_throughput",
            {"dataset": "sharegpt", "num_prompts": 500, "seed": 0},
            st,
            None if st == "ok" else "oom",
            raw,
            tel,
        )
    )
lat = json.loads((DATA / "latency.json").read_text())
course = {
    "h100": [903.4, 933.9, 1016.5, 1176.7],
    "l40s": [2828.3, 2975.5, 3089.4, None],
    "a100": [1533.2, 500.0, 1730.7, 1975.0],
}
for g, vals in course.items():
    for bs, v in zip([1, 4, 16, 32], vals, strict=True):
        params = {"batch_size": bs, "input_len": 512, "output_len": 128, "num_iters": 10, "num_iters_warmup": 3}
        raw = (
            None
            if v is None
            else {
                **lat,
                "avg_latency": v / 1e3,
                "latencies": [v / 1e3],
                "percentiles": {k: v / 1e3 for k in lat["percentiles"]},
            }
        )
        frames.append(
            rec(
                "batch_latency",
                g,
                f"bs{bs}",
                "vllm_bench_latency",
                params,
                "ok" if v else "failed",
                None if v else "oom",
                raw,
            )
        )
srv = json.loads((DATA / "serve_inf.json").read_text())
prof = {
    "h100": {
        "source": "GPU kernels (CUPTI)",
        "share_pct": {"gemm": 61.3, "attention": 17.94, "norm_elementwise": 12.4, "other": 8.36},
    },
    "l40s": {
        "source": "CPU operators (self time)",
        "share_pct": {"gemm": 55.0, "attention": 20.0, "norm_elementwise": 15.05, "other": 9.95},
    },
}
for g in ("h100", "l40s", "a100"):
    params = {"dataset": "sharegpt", "num_prompts": 20, "seed": 0, "request_rate": "inf", "profile": True}
    if g == "a100":
        frames.append(rec("profile", g, "rrinf", "bench_serving", params, "failed", "server_died"))
    else:
        frames.append(rec("profile", g, "rrinf", "bench_serving", params, raw=srv, profile=prof[g]))
w2 = guarded(pd.concat(frames, ignore_index=True))
w2.to_parquet(PQ / "week02.parquet")
run(week02, w2, OUT / "week02-joined", others={"week01": w1m})
run(week02, w2, OUT / "week02-alone")
print("ok")

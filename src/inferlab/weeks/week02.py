"""Week 2 — Offline throughput, batch latency and profiling.

Tables (results/week02/tables/):
- ``offline_throughput``: per GPU, `vllm bench throughput` total tokens/s and the ratio to the
  slowest GPU of the run;
- ``batch_latency``: GPU x batch size, whole-batch latency (ms, input 512 / output 128), plus one
  ratio row per GPU against the slowest (the course's "H100/L40S ratio" row);
- ``per_token_bs1``: per-token latency at bs=1 (latency / output_len) beside the weights floor,
  and the growth from the smallest to the largest batch;
- ``online_vs_offline``: Week 1's rate=inf serving throughput beside this week's offline
  throughput per GPU, from both weeks' Parquet (total tokens/s on both sides: `vllm bench
  throughput` reports no output-token rate);
- ``gpu_utilization``: NVML utilization of the offline cells vs Week 1's serving cells;
- ``kernel_breakdown``: the profiled server's time split into GEMM / attention /
  norm+elementwise / other (inferlab.profile), with the trace file to open in Perfetto.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .. import theory
from ..tables import lookup, save_figure, show, write_table


def _gpus(df, cfg) -> list[str]:
    present = set(df["gpu"])
    return [g for g in cfg.preset["gpus"] if g in present] + sorted(present - set(cfg.preset["gpus"]))


def _ok(r) -> bool:
    return r is not None and r["status"] == "ok" and bool(r["valid"]) and not pd.isna(r["value"])


def offline_table(df, cfg) -> pd.DataFrame:
    d = df[(df.experiment == "offline") & (df.metric == "offline_total_token_throughput")]
    vals = {g: lookup(d, gpu=g) for g in _gpus(d, cfg)}
    good = {g: float(r["value"]) for g, r in vals.items() if _ok(r)}
    slowest = min(good, key=good.get) if good else None
    rows = []
    for g, r in vals.items():
        rows.append(
            {
                "GPU": g,
                "Throughput (tok/s, prompt + generated)": show(r, "{:,.0f}"),
                f"vs {slowest or 'slowest'}": f"{good[g] / good[slowest]:.2f}x" if g in good else "n/a",
                "Requests/s": show(lookup(df[df.experiment == "offline"], gpu=g, metric="offline_request_throughput")),
            }
        )
    return pd.DataFrame(rows)


def batch_table(df, cfg) -> pd.DataFrame:
    d = df[(df.experiment == "batch_latency") & (df.metric == "latency_avg")]
    sizes = sorted(d["param_batch_size"].dropna().astype(int).unique())
    rows, vals = [], {}
    for g in _gpus(d, cfg):
        r = {"GPU / batch": f"{g} (ms)"}
        for bs in sizes:
            x = lookup(d, gpu=g, param_batch_size=bs)
            r[f"bs={bs}"] = show(x, "{:.1f}")
            if _ok(x):
                vals[(g, bs)] = float(x["value"])
        rows.append(r)
    gpus = _gpus(d, cfg)
    if len(gpus) > 1 and vals:
        # ratio rows against the slowest GPU at bs=1 (the course's "H100/L40S ratio")
        base = max((g for g in gpus if (g, sizes[0]) in vals), key=lambda g: vals[(g, sizes[0])], default=None)
        for g in gpus:
            if g == base or base is None:
                continue
            r = {"GPU / batch": f"{g}/{base} ratio"}
            for bs in sizes:
                r[f"bs={bs}"] = (
                    f"{vals[(g, bs)] / vals[(base, bs)]:.2f}x" if (g, bs) in vals and (base, bs) in vals else "n/a"
                )
            rows.append(r)
    return pd.DataFrame(rows)


def per_token_table(df, cfg) -> pd.DataFrame:
    d = df[(df.experiment == "batch_latency") & (df.metric == "latency_per_output_token")]
    sizes = sorted(d["param_batch_size"].dropna().astype(int).unique())
    rows = []
    for g in _gpus(d, cfg):
        r1 = lookup(d, gpu=g, param_batch_size=sizes[0]) if sizes else None
        rn = lookup(d, gpu=g, param_batch_size=sizes[-1]) if sizes else None
        model = cfg.model(d[d.gpu == g]["model"].iloc[0])
        floor = 1e3 * theory.weights_floor_s(model["architecture"], model["dtype"], cfg.gpu(g))
        rows.append(
            {
                "GPU": g,
                f"Per-token latency bs={sizes[0] if sizes else 1} (ms)": show(r1),
                "Weights floor (ms)": f"{floor:.3g}",
                f"Growth bs={sizes[0] if sizes else '?'} -> bs={sizes[-1] if sizes else '?'}": (
                    f"{100 * (float(rn['value']) / float(r1['value']) - 1):+.0f}%" if _ok(r1) and _ok(rn) else "n/a"
                ),
            }
        )
    return pd.DataFrame(rows)


def online_vs_offline(df, others: dict, cfg) -> pd.DataFrame:
    w1 = others.get("week01")
    off = df[(df.experiment == "offline") & (df.metric == "offline_total_token_throughput")]
    rows = []
    for g in _gpus(off, cfg):
        o = lookup(off, gpu=g)
        r = {"GPU": g, "Offline total tok/s (week02)": show(o, "{:,.0f}")}
        if w1 is None:
            r["Online rr=inf total tok/s (week01)"] = "n/a (week01 not in this run)"
            r["Offline / online"] = "n/a"
        else:
            on = w1[(w1.engine == "vllm") & (w1.gpu == g) & (w1.param_request_rate.astype(str) == "inf")]
            tot = lookup(on, metric="total_token_throughput")
            out = lookup(on, metric="output_throughput")
            r["Online rr=inf total tok/s (week01)"] = show(tot, "{:,.0f}")
            r["Online rr=inf output tok/s (week01)"] = show(out, "{:,.0f}")
            r["Offline / online"] = f"{float(o['value']) / float(tot['value']):.2f}x" if _ok(o) and _ok(tot) else "n/a"
        rows.append(r)
    return pd.DataFrame(rows)


def utilization_table(df, others: dict, cfg) -> pd.DataFrame:
    w1 = others.get("week01")
    rows = []
    off = df[df.experiment == "offline"]
    for g in _gpus(off, cfg):
        for label, d, eq in (
            ("offline (vllm bench throughput)", off, {"gpu": g}),
            ("online rr=inf (week01 vllm)", w1, {"gpu": g, "engine": "vllm", "param_request_rate": "inf"}),
            ("online rr=1 (week01 vllm)", w1, {"gpu": g, "engine": "vllm", "param_request_rate": "1"}),
        ):
            if d is None:
                continue
            base = lookup(d, **eq)
            r = {"GPU": g, "Cells": label}
            if base is None:
                r["Telemetry"] = "n/a (not in this run)"
            elif base["status"] != "ok":
                r["Telemetry"] = show(base)
            else:
                r["Telemetry"] = base["telemetry"] or "n/a"
            for col, m in (("GPU util mean (%)", "gpu_util_mean"), ("GPU util max (%)", "gpu_util_max")):
                x = lookup(d, metric=m, **eq)
                r[col] = f"{float(x['value']):.0f}" if _ok(x) else "n/a"
            rows.append(r)
    return pd.DataFrame(rows)


def kernel_table(df, cfg, results_dir: Path | None) -> pd.DataFrame:
    d = df[(df.experiment == "profile") & df.metric.str.startswith("kernel_time_share_")]
    base = df[(df.experiment == "profile")].drop_duplicates(["engine", "gpu", "cell"])
    rows = []
    for _, b in base.iterrows():
        r = {"Engine": b.engine, "GPU": b.gpu, "Cell": b.cell}
        if b.status != "ok":
            r["Status"] = show(b)
        else:
            r["Status"] = "ok"
        for cat in ("gemm", "attention", "norm_elementwise", "other"):
            x = lookup(d, engine=b.engine, gpu=b.gpu, cell=b.cell, metric=f"kernel_time_share_{cat}")
            r[f"{cat} (%)"] = f"{float(x['value']):.1f}" if _ok(x) else "n/a"
        x = lookup(d, engine=b.engine, gpu=b.gpu, cell=b.cell, metric="kernel_time_share_gemm")
        r["Measured over"] = (
            "n/a" if x is None else "GPU kernels" if "GPU kernels" in x["definition"] else "CPU operators (self time)"
        )
        r["Trace (Perfetto)"] = f"{b.week}/{b.experiment}/{b.engine}/{b.gpu}/{b.cell}/trace/"
        rows.append(r)
    return pd.DataFrame(rows)


def figures(df, others, cfg, outdir: Path) -> list[dict]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    outdir.mkdir(parents=True, exist_ok=True)
    sns.set_theme(style="whitegrid")
    made = []
    off = df[(df.experiment == "offline") & (df.metric == "offline_total_token_throughput") & df.value.notna()]
    fig, ax = plt.subplots(figsize=(6, 4))
    if not off.empty:
        sns.barplot(data=off, x="gpu", y="value", ax=ax, color="steelblue")
    ax.set_ylabel("offline throughput (tok/s, prompt + generated)")
    ax.set_title("Week 2: offline throughput per GPU")
    p = outdir / "offline_throughput.png"
    save_figure(fig, p)
    made.append({"path": p, "caption": "Offline throughput (vllm bench throughput) per GPU."})

    bl = df[(df.experiment == "batch_latency") & (df.metric == "latency_avg") & df.value.notna()]
    fig, ax = plt.subplots(figsize=(6, 4))
    if not bl.empty:
        sns.lineplot(data=bl, x="param_batch_size", y="value", hue="gpu", marker="o", ax=ax)
    ax.set_xlabel("batch size (input 512, output 128)")
    ax.set_ylabel("batch latency (ms)")
    ax.set_title("Week 2: batch latency vs batch size")
    p = outdir / "batch_latency.png"
    save_figure(fig, p)
    made.append({"path": p, "caption": "Whole-batch latency vs batch size per GPU (vllm bench latency)."})

    kt = df[(df.experiment == "profile") & df.metric.str.startswith("kernel_time_share_") & df.value.notna()].copy()
    fig, ax = plt.subplots(figsize=(6, 4))
    if not kt.empty:
        kt["category"] = kt["metric"].str.replace("kernel_time_share_", "", regex=False)
        piv = kt.pivot_table(index="gpu", columns="category", values="value", aggfunc="first")
        piv.plot(kind="bar", stacked=True, ax=ax)
    ax.set_ylabel("share of profiled time (%)")
    ax.set_title("Week 2: kernel-time breakdown of the profiled server")
    p = outdir / "kernel_breakdown.png"
    save_figure(fig, p)
    made.append(
        {
            "path": p,
            "caption": "Profiled server time by category (GPU kernels on a GPU; CPU operators' self time on the CPU default).",
        }
    )
    return made


def aggregate(df: pd.DataFrame, cfg, outdir: Path, others: dict | None = None) -> dict:
    others = others or {}
    outdir = Path(outdir)
    tdir = outdir / "tables"
    tables = [
        write_table(offline_table(df, cfg), tdir, "offline_throughput", "Offline throughput per GPU"),
        write_table(batch_table(df, cfg), tdir, "batch_latency", "Batch latency (ms), input 512 / output 128"),
        write_table(per_token_table(df, cfg), tdir, "per_token_bs1", "Per-token latency at bs=1 vs the weights floor"),
        write_table(
            online_vs_offline(df, others, cfg),
            tdir,
            "online_vs_offline",
            "Online (Week 1, rate=inf) vs offline (Week 2) throughput",
            [
                "Total tokens/s (prompt + generated) on both sides: vllm bench throughput reports no "
                "output-token rate, so the course's output-vs-total comparison would overstate the gap."
            ],
        ),
        write_table(
            utilization_table(df, others, cfg), tdir, "gpu_utilization", "GPU utilization, offline vs online (NVML)"
        ),
        write_table(
            kernel_table(df, cfg, None), tdir, "kernel_breakdown", "Kernel-time breakdown of the profiled server"
        ),
    ]
    return {"tables": tables, "figures": figures(df, others, cfg, outdir / "figures")}


CAPTIONS = {
    "offline_throughput": "Week 2: offline throughput (vllm bench throughput, prompt + generated tokens/s) per GPU.",
    "batch_latency": "Week 2: whole-batch latency (input 512, output 128) vs batch size, one line per GPU.",
    "kernel_breakdown": "Week 2: the profiled server's time by category (GEMM, attention, norm+elementwise, other): "
    "GPU kernels on a GPU, CPU operators' self time on the CPU default.",
}

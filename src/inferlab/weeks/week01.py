"""Week 1 — First LLM serving: request-rate sweeps, vLLM vs SGLang, per GPU.

Tables (results/week01/tables/):
- ``rate_sweep_<engine>``: GPU x request rate: TTFT p50/p99, ITL p50/p99, output tok/s, and
  Little's law: requests in flight L = lambda * W, with lambda the achieved request throughput
  (completed / duration; for a finite rate it is ~the configured rate, for rate=inf it is what
  the server sustained) and W the mean end-to-end latency;
- ``saturation``: per engine x GPU, the first rate after which output throughput stops growing
  (the next rate gains less than ``SATURATION_GAIN``), computed from the numbers, with the evidence;
- ``head_to_head``: per GPU and rate, vLLM beside SGLang (TTFT p50, ITL p50, output tok/s);
- ``telemetry``: GPU utilization, energy and joules per output token per cell (NVML), or why
  there is none.
Figures: TTFT p50, ITL p50 and output throughput vs request rate, one line per GPU (and engine).
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from ..tables import save_figure, show, write_table

# throughput "stops growing" when the next rate adds less than this fraction
SATURATION_GAIN = 0.10
METRICS = {
    "TTFT p50 (ms)": "ttft_p50",
    "TTFT p99 (ms)": "ttft_p99",
    "ITL p50 (ms)": "itl_p50",
    "ITL p99 (ms)": "itl_p99",
    "Output tok/s": "output_throughput",
}


def _rate_key(r) -> float:
    try:
        return float(r)
    except (TypeError, ValueError):
        return math.inf


def _rates(d) -> list:
    return sorted(d["param_request_rate"].dropna().astype(str).unique(), key=_rate_key)


def _gpus(df, cfg) -> list[str]:
    present = set(df["gpu"])
    return [g for g in cfg.preset["gpus"] if g in present] + sorted(present - set(cfg.preset["gpus"]))


class _Index:
    """O(1) lookup of a cell's metric row: (engine, gpu, rate, metric) -> row."""

    def __init__(self, d: pd.DataFrame):
        self.rows = {}
        for _, r in d.iterrows():
            self.rows.setdefault((r.engine, r.gpu, str(r.param_request_rate), r.metric), r)

    def get(self, engine, gpu, rate, metric):
        return self.rows.get((engine, gpu, str(rate), metric))

    def value(self, *key):
        r = self.get(*key)
        if r is None or r["status"] != "ok" or not bool(r["valid"]) or pd.isna(r["value"]):
            return None
        return float(r["value"])


def _fmt(metric: str) -> str:
    return "{:.1f}" if metric in ("output_throughput",) or metric.startswith("ttft") else "{:.2f}"


def rate_table(d: pd.DataFrame, ix: _Index, cfg, engine: str) -> pd.DataFrame:
    rows = []
    for g in _gpus(d[d.engine == engine], cfg):
        for rate in _rates(d):
            r = {"GPU": g, "Request rate": rate}
            for label, m in METRICS.items():
                r[label] = show(ix.get(engine, g, rate, m), _fmt(m))
            lam = ix.value(engine, g, rate, "request_throughput")
            w = ix.value(engine, g, rate, "e2el_mean")
            r["lambda achieved (req/s)"] = (
                f"{lam:.2f}" if lam is not None else show(ix.get(engine, g, rate, "request_throughput"))
            )
            r["L = lambda*W in flight"] = f"{lam * w / 1e3:.1f}" if lam is not None and w is not None else "n/a"
            rows.append(r)
    return pd.DataFrame(rows)


def saturation(d: pd.DataFrame, ix: _Index, cfg) -> pd.DataFrame:
    rows = []
    for e in sorted(d["engine"].unique()):
        for g in _gpus(d[d.engine == e], cfg):
            rates = _rates(d)
            tput = [(rate, ix.value(e, g, rate, "output_throughput")) for rate in rates]
            have = [(rate, t) for rate, t in tput if t is not None]
            row = {"Engine": e, "GPU": g}
            if len(have) < 2:
                row["Saturation rate"] = (
                    "n/a (fewer than two measured rates: "
                    + ", ".join(f"rr={rate} {show(ix.get(e, g, rate, 'output_throughput'))}" for rate in rates)
                    + ")"
                )
                row["Evidence"] = ""
                rows.append(row)
                continue
            sat = None
            for (r0, t0), (r1, t1) in zip(have, have[1:], strict=False):
                gain = (t1 - t0) / t0 if t0 else math.inf
                if gain < SATURATION_GAIN:
                    sat = (r0, t0, r1, t1, gain)
                    break
            if sat:
                r0, t0, r1, t1, gain = sat
                row["Saturation rate"] = f"rr={r0}"
                row["Evidence"] = f"output tok/s {t0:.1f} at rr={r0} -> {t1:.1f} at rr={r1} ({100 * gain:+.1f}%)"
            else:
                (r0, t0), (r1, t1) = have[-2], have[-1]
                row["Saturation rate"] = f"not saturated up to rr={have[-1][0]}"
                row["Evidence"] = f"output tok/s still grows {100 * (t1 - t0) / t0:+.1f}% from rr={r0} to rr={r1}"
            rows.append(row)
    return pd.DataFrame(rows)


def head_to_head(d: pd.DataFrame, ix: _Index, cfg, a: str = "vllm", b: str = "sglang") -> pd.DataFrame:
    rows = []
    for g in _gpus(d, cfg):
        for rate in _rates(d):
            r = {"GPU": g, "Rate": rate}
            for label, m in (
                ("TTFT p50 (ms)", "ttft_p50"),
                ("ITL p50 (ms)", "itl_p50"),
                ("tok/s", "output_throughput"),
            ):
                for e in (a, b):
                    r[f"{e} {label}"] = show(ix.get(e, g, rate, m), _fmt(m))
            rows.append(r)
    return pd.DataFrame(rows)


def telemetry_table(d: pd.DataFrame, ix: _Index, cfg) -> pd.DataFrame:
    rows = []
    for e in sorted(d["engine"].unique()):
        for g in _gpus(d[d.engine == e], cfg):
            for rate in _rates(d):
                base = ix.get(e, g, rate, "output_throughput")
                r = {"Engine": e, "GPU": g, "Rate": rate}
                if base is None or base["status"] != "ok":
                    r["Telemetry"] = show(base)
                else:
                    r["Telemetry"] = base["telemetry"] or "n/a"
                for label, m in (
                    ("GPU util mean (%)", "gpu_util_mean"),
                    ("GPU util max (%)", "gpu_util_max"),
                    ("Energy (J)", "energy_j"),
                    ("J / output token", "j_per_output_token"),
                ):
                    v = ix.value(e, g, rate, m)
                    r[label] = f"{v:.3g}" if v is not None else "n/a"
                rows.append(r)
    return pd.DataFrame(rows)


def figures(d: pd.DataFrame, cfg, outdir: Path) -> list[dict]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    outdir.mkdir(parents=True, exist_ok=True)
    sns.set_theme(style="whitegrid")
    rates = _rates(d)
    order = {r: i for i, r in enumerate(rates)}
    made = []
    for metric, ylabel, name, title in (
        ("ttft_p50", "TTFT p50 (ms)", "ttft_vs_rate", "TTFT p50 vs request rate"),
        ("itl_p50", "ITL p50 (ms)", "itl_vs_rate", "ITL p50 vs request rate"),
        ("output_throughput", "output throughput (tok/s)", "throughput_vs_rate", "Output throughput vs request rate"),
    ):
        sub = d[(d.metric == metric) & d.value.notna()].copy()
        sub["x"] = sub["param_request_rate"].astype(str).map(order)
        fig, ax = plt.subplots(figsize=(7, 4.5))
        if not sub.empty:
            sns.lineplot(data=sub, x="x", y="value", hue="gpu", style="engine", markers=True, ax=ax)
        ax.set_xticks(range(len(rates)), [f"rr={r}" for r in rates])
        ax.set_xlabel("request rate (req/s; inf = all at once)")
        ax.set_ylabel(ylabel)
        ax.set_title(f"Week 1: {title}")
        miss = d[(d.metric == metric) & d.value.isna()].drop_duplicates(["engine", "gpu", "cell"])
        missing = ", ".join(f"{r.engine}/{r.gpu}/{r.cell}: {show(r)}" for _, r in miss.iterrows())
        p = outdir / f"{name}.png"
        save_figure(fig, p, missing)
        made.append(
            {
                "path": p,
                "caption": f"{title}, one line per GPU (line style: engine)."
                + (f" Not plotted: {missing}." if missing else ""),
            }
        )
    return made


def aggregate(df: pd.DataFrame, cfg, outdir: Path) -> dict:
    outdir = Path(outdir)
    tdir = outdir / "tables"
    d = df[df.tool == "bench_serving"]
    ix = _Index(d)
    tables = []
    for e in sorted(d["engine"].unique()):
        tables.append(
            write_table(
                rate_table(d, ix, cfg, e),
                tdir,
                f"rate_sweep_{e}",
                f"{e}: request-rate sweep per GPU",
                [
                    "TTFT/ITL as defined by the engine's own client (docs/schema.md). Little's law: "
                    "L = lambda * W, lambda = achieved request throughput, W = mean end-to-end latency."
                ],
            )
        )
    tables.append(
        write_table(
            saturation(d, ix, cfg),
            tdir,
            "saturation",
            "Saturation point per engine and GPU",
            [
                f"Saturated at rate r when the next measured rate raises output throughput by less than "
                f"{100 * SATURATION_GAIN:.0f}%."
            ],
        )
    )
    tables.append(write_table(head_to_head(d, ix, cfg), tdir, "head_to_head", "vLLM vs SGLang, same workload"))
    tables.append(
        write_table(
            telemetry_table(d, ix, cfg),
            tdir,
            "telemetry",
            "GPU telemetry per cell (NVML, sampled beside the cell)",
            ["Energy from NVML's energy counter where the GPU has one, else integrated power samples."],
        )
    )
    return {"tables": tables, "figures": figures(d, cfg, outdir / "figures")}


CAPTIONS = {
    "ttft_vs_rate": "Week 1: median time to first token vs request rate, one line per GPU (line style: engine). "
    "Skipped and failed cells are named under the plot.",
    "itl_vs_rate": "Week 1: median inter-token latency vs request rate, one line per GPU (line style: engine).",
    "throughput_vs_rate": "Week 1: output throughput vs request rate, one line per GPU (line style: engine); "
    "the saturation table says where it stops growing.",
}

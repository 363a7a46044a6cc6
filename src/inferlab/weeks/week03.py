"""Week 3 — Roofline: the course's four tables and two figures.

Tables (results/week03/tables/):
- ``decode_per_token``: GPU x batch size, per-output-token latency (ms/token), plus AI*;
- ``prefill_latency``: GPU x input length, bs=1 latency (ms), plus steady-state us/token (slope
  between the two longest lengths, as the course computes it);
- ``decode_floor``: theoretical decode floor (weights / HBM bandwidth) vs measured bs=1 ms/token,
  with HBM utilization %;
- ``ridge``: AI* = peak FLOP/s / HBM bandwidth per GPU, from config specs.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .. import theory
from ..tables import lookup, save_figure, show, write_table


def _gpus(df: pd.DataFrame, cfg) -> list[str]:
    present = set(df["gpu"])
    return [g for g in cfg.preset["gpus"] if g in present] + sorted(present - set(cfg.preset["gpus"]))


def decode_table(df, cfg):
    d = df[(df.experiment == "decode") & (df.metric == "latency_per_output_token")]
    sizes = sorted(d["param_batch_size"].dropna().astype(int).unique())
    rows = []
    for g in _gpus(d, cfg):
        r = {"GPU": g}
        for bs in sizes:
            r[f"bs={bs}"] = show(lookup(d, gpu=g, param_batch_size=bs))
        r["Theoretical AI*"] = f"{theory.ridge_ai(cfg.gpu(g)):.0f}"
        rows.append(r)
    return pd.DataFrame(rows)


def prefill_table(df, cfg):
    d = df[(df.experiment == "prefill") & (df.metric == "latency_avg")]
    lens = sorted(d["param_input_len"].dropna().astype(int).unique())
    rows = []
    for g in _gpus(d, cfg):
        r = {"GPU": g}
        for L in lens:
            r[f"L={L}"] = show(lookup(d, gpu=g, param_input_len=L))
        r["Steady-state us/tok"] = _steady_state(d[d.gpu == g], lens)
        rows.append(r)
    return pd.DataFrame(rows)


def _steady_state(d, lens) -> str:
    if len(lens) < 2:
        return "n/a (needs two lengths)"
    a, b = lens[-2], lens[-1]
    ra, rb = lookup(d, param_input_len=a), lookup(d, param_input_len=b)
    for r in (ra, rb):
        if r is None or r["status"] != "ok" or not bool(r["valid"]) or pd.isna(r["value"]):
            return f"n/a ({show(r)} at L={a if r is ra else b})"
    return f"{(rb['value'] - ra['value']) * 1e3 / (b - a):.2f}"


def floor_table(df, cfg):
    d = df[(df.experiment == "decode") & (df.metric == "latency_per_output_token")]
    rows = []
    for g in _gpus(d, cfg):
        gpu = cfg.gpu(g)
        model = cfg.model(d[d.gpu == g]["model"].iloc[0])
        floor_ms = 1e3 * theory.weights_floor_s(model["architecture"], model["dtype"], gpu)
        r1 = lookup(d, gpu=g, param_batch_size=1)
        measured = show(r1)
        if r1 is not None and r1["status"] == "ok" and bool(r1["valid"]) and not pd.isna(r1["value"]):
            util = f"{100 * floor_ms / r1['value']:.0f}%"
        else:
            util = "n/a"
        rows.append(
            {
                "GPU": g,
                "HBM bandwidth (GB/s)": f"{gpu['hbm_gbps']:g}",
                "Theoretical floor (ms)": f"{floor_ms:.3g}",
                "Measured bs=1 (ms/tok)": measured,
                "HBM utilization": util,
            }
        )
    return pd.DataFrame(rows)


def ridge_table(cfg, gpus):
    rows = []
    for g in gpus:
        gpu = cfg.gpu(g)
        ai = theory.ridge_ai(gpu)
        rows.append(
            {
                "GPU": g,
                "Peak BF16 (TFLOP/s)": f"{gpu['peak_bf16_tflops']:g}",
                "HBM bandwidth (GB/s)": f"{gpu['hbm_gbps']:g}",
                "Ridge AI* (FLOP/byte)": f"{ai:.0f}",
                "Compute-bound at": f"prefill L >= {ai:.0f} or decode bs >= {ai:.0f}",
            }
        )
    return pd.DataFrame(rows)


def figures(df, cfg, outdir: Path) -> list[dict]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker
    import seaborn as sns

    outdir.mkdir(parents=True, exist_ok=True)
    sns.set_theme(style="whitegrid")
    made = []
    gpus = _gpus(df, cfg)
    palette = dict(zip(gpus, sns.color_palette("tab10", len(gpus)), strict=False))

    dec = df[(df.experiment == "decode") & (df.metric == "latency_per_output_token") & df.value.notna()]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    if not dec.empty:
        sns.lineplot(data=dec, x="param_batch_size", y="value", hue="gpu", palette=palette, marker="o", ax=ax)
    for g in gpus:
        ax.axvline(theory.ridge_ai(cfg.gpu(g)), color=palette[g], ls="--", lw=1, label=f"AI* {g}")
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.set_xlabel("decode batch size (AI ~ batch)")
    ax.set_ylabel("per-output-token latency (ms/token)")
    ax.set_title("Week 3: decode batch sweep (dashed: theoretical ridge AI*)")
    ax.legend(fontsize=8)
    missing = _missing(df, "decode", "latency_per_output_token", "param_batch_size", "bs")
    p = outdir / "decode_batch_sweep.png"
    save_figure(fig, p, missing)
    made.append(
        {
            "path": p,
            "caption": "Per-token latency vs decode batch size per GPU; dashed lines mark "
            "AI* = peak FLOP/s / HBM bandwidth." + (f" Not plotted: {missing}." if missing else ""),
        }
    )

    pre = df[(df.experiment == "prefill") & (df.metric == "latency_avg") & df.value.notna()]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    if not pre.empty:
        sns.lineplot(data=pre, x="param_input_len", y="value", hue="gpu", palette=palette, marker="o", ax=ax)
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.set_xlabel("prefill input length L (tokens, bs=1, output 1)")
    ax.set_ylabel("latency (ms)")
    ax.set_title("Week 3: prefill length sweep")
    missing = _missing(df, "prefill", "latency_avg", "param_input_len", "L=")
    p = outdir / "prefill_length_sweep.png"
    save_figure(fig, p, missing)
    made.append(
        {
            "path": p,
            "caption": "Prefill latency vs input length per GPU (bs=1, one output token)."
            + (f" Not plotted: {missing}." if missing else ""),
        }
    )
    return made


def _missing(df, exp, metric, col, label) -> str:
    d = df[(df.experiment == exp) & (df.metric == metric) & df.value.isna()]
    return ", ".join(f"{r.gpu} {label}{int(r[col])}: {show(r)}" for _, r in d.iterrows())


def aggregate(df: pd.DataFrame, cfg, outdir: Path) -> dict:
    outdir = Path(outdir)
    tdir = outdir / "tables"
    tables = [
        write_table(
            decode_table(df, cfg),
            tdir,
            "decode_per_token",
            "Decode batch sweep: per-output-token latency (ms/token)",
            ["Per-token latency = latency_avg / output_len (includes the prefill), as in the course."],
        ),
        write_table(
            prefill_table(df, cfg),
            tdir,
            "prefill_latency",
            "Prefill length sweep: latency (ms), bs=1",
            ["Steady-state us/tok = slope between the two longest input lengths."],
        ),
        write_table(
            floor_table(df, cfg),
            tdir,
            "decode_floor",
            "Theoretical decode floor (weights / HBM bandwidth) vs measured (bs=1)",
            ["HBM utilization = theoretical floor / measured per-token latency."],
        ),
        write_table(ridge_table(cfg, _gpus(df, cfg)), tdir, "ridge", "Ridge point AI* per GPU (from config specs)"),
    ]
    ref_path = Path(cfg.files.get("catalog_dir", "config")) / "reference" / "week03.yaml"
    if ref_path.exists():
        import yaml

        refs, why = reference_tables(yaml.safe_load(ref_path.read_text()), cfg)
        notes = [
            "Published values marked INVALID are faster than physics allows on that GPU (inferlab.guard: "
            "all FLOPs at peak, or the weights read once per step at full HBM bandwidth); they cannot be "
            "executions of the stated work. `vllm bench latency` repeats the same prompts every iteration, "
            "so with prefix caching on (vLLM's default) later iterations hit the cache instead of computing.",
            *why,
        ]
        ref = yaml.safe_load(ref_path.read_text())
        for g in _gpus(df, cfg):
            if g in ref["decode"]["values"] or g in ref["prefill"]["values"]:
                tables.append(
                    write_table(
                        comparison_table(df, cfg, ref, g),
                        tdir,
                        f"comparison_{g}",
                        f"{g}: this pipeline vs the course's published numbers vs the theoretical floor",
                        [
                            "Floor: the strict roofline bound of the same work (inferlab.theory.latency_floor_s: "
                            "all FLOPs at peak BF16, and output_len weight reads plus the KV cache at full HBM "
                            "bandwidth), per output token for decode. HBM utilization = memory floor / measured; "
                            "achieved TFLOP/s = 2 * params * tokens / measured (prefill). Course values under the "
                            "guard: INVALID = faster than physics allows (cache hits).",
                        ],
                    )
                )
        for exp, title in (("decode", "decode ms/token"), ("prefill", "prefill ms")):
            tables.append(
                write_table(
                    refs[exp],
                    tdir,
                    f"course_reference_{exp}",
                    f"Course's published {title} under the roofline guard",
                    notes,
                )
            )
    figs = figures(df, cfg, outdir / "figures")
    return {"tables": tables, "figures": figs}


def comparison_table(df: pd.DataFrame, cfg, ref: dict, g: str) -> pd.DataFrame:
    """One GPU: each decode batch size / prefill length measured here, beside the course's value
    for it and the floor, with HBM utilization (decode) and achieved TFLOP/s (prefill)."""
    from ..guard import check_value

    gpu = cfg.gpu(g)
    rows = []
    for exp, metric, key, label, unit in (
        ("decode", "latency_per_output_token", "param_batch_size", "bs", "ms/token"),
        ("prefill", "latency_avg", "param_input_len", "L", "ms"),
    ):
        d = df[(df.experiment == exp) & (df.metric == metric) & (df.gpu == g)]
        spec = ref.get(exp, {})
        course = {int(k): v for k, v in spec.get("values", {}).get(g, {}).items()}
        ref_model = cfg.models[ref["model"]]
        for x in sorted(set(d[key].dropna().astype(int)) | set(course)):
            r = lookup(d, **{key: x})
            if r is not None:
                model = cfg.model(r["model"])
                params = {k[len("param_") :]: r[k] for k in r.index if k.startswith("param_") and not pd.isna(r[k])}
            else:
                model = ref_model
                params = {
                    "batch_size": spec.get("batch_size"),
                    "input_len": spec.get("input_len"),
                    "output_len": spec["output_len"],
                    key[len("param_") :]: x,
                }
            arch, dtype = model["architecture"], model["dtype"]
            bs, L, out = int(params["batch_size"]), int(params["input_len"]), int(params["output_len"])
            floor_s = theory.latency_floor_s(arch, dtype, gpu, bs, L, out)
            tokens = bs * (L + out - 1)
            mem_s = (
                out * theory.weights_bytes(arch, dtype)
                + bs * ((out - 1) * L + (out - 1) * out // 2) * theory.kv_bytes_per_token(arch, dtype)
            ) / (gpu["hbm_gbps"] * 1e9)
            per = out if exp == "decode" else 1
            measured = show(r)
            ok = r is not None and r["status"] == "ok" and bool(r["valid"]) and not pd.isna(r["value"])
            ms = float(r["value"]) * per if ok else None  # whole-iteration ms
            if x in course:
                cv = course[x]
                valid, _ = check_value(metric, cv, unit, arch, dtype, gpu, params)
                course_s = f"{cv:.2f}" if valid else f"INVALID ({cv:.2f})"
                diff = f"{100 * (float(r['value']) - cv) / cv:+.1f}%" if ok and valid else "n/a"
            else:
                course_s, diff = "n/a (not published)", "n/a"
            rows.append(
                {
                    "Experiment": exp,
                    "Point": f"{label}={x}",
                    "Unit": unit,
                    "This pipeline": measured,
                    "Course": course_s,
                    "Difference": diff,
                    "Floor": f"{1e3 * floor_s / per:.3g}",
                    "HBM utilization": (f"{100 * mem_s * 1e3 / ms:.0f}%" if ok else "n/a") if exp == "decode" else "",
                    "Achieved TFLOP/s": f"{theory.forward_flops(arch, tokens) / (ms / 1e3) / 1e12:.0f}"
                    if ok and exp == "prefill"
                    else ("n/a" if exp == "prefill" else ""),
                }
            )
    return pd.DataFrame(rows)


def reference_tables(ref: dict, cfg) -> tuple[dict, list[str]]:
    """The course's published numbers, checked by the roofline guard like any measurement:
    {"decode": DataFrame, "prefill": DataFrame}, plus one line per rejected value saying why."""
    from ..guard import check_value

    model = cfg.models[ref["model"]]
    arch, dtype = model["architecture"], model["dtype"]
    out, why = {}, []
    for exp, metric, key, unit, label in (
        ("decode", "latency_per_output_token", "batch_size", "ms/token", "bs"),
        ("prefill", "latency_avg", "input_len", "ms", "L"),
    ):
        spec = ref[exp]
        rows = []
        for g, vals in spec["values"].items():
            if g not in cfg.gpus:
                continue
            r = {"GPU": g}
            for x, v in vals.items():
                params = {
                    "batch_size": spec.get("batch_size"),
                    "input_len": spec.get("input_len"),
                    "output_len": spec["output_len"],
                    key: int(x),
                }
                ok, reason = check_value(metric, v, unit, arch, dtype, cfg.gpu(g), params)
                r[f"{label}={x}"] = f"{v:.2f}" if ok else f"INVALID ({v:.2f})"
                if not ok:
                    why.append(f"- {exp} {g} {label}={x}: {reason}")
            rows.append(r)
        out[exp] = pd.DataFrame(rows)
    return out, why


CAPTIONS = {
    "decode_batch_sweep": "Week 3: per-output-token latency vs decode batch size per GPU; dashed lines mark the "
    "ridge AI* = peak FLOP/s / HBM bandwidth.",
    "prefill_length_sweep": "Week 3: prefill latency vs input length per GPU (bs=1, one output token).",
}

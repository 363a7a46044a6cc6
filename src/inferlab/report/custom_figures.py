"""Named custom figures: what no figure kind can say, one small function each.

A week file names one with ``kind: custom, function: <name>`` (``options``: its settings); the
function gets the week's :class:`~inferlab.report.kinds.Context`, the figure's declaration, its
rows (``where`` applied), matplotlib's pyplot and seaborn, and returns ``(figure, missing)`` like
the figure kinds: the cells it could not draw, each with why, are named under the plot.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from .figures import NOTE_FONT, _figure, wrap_note

DETAIL = "raw.json"  # vllm bench serve --save-result --save-detailed
BACKGROUND = "background.json"  # the concurrent background client's result (session.py)


def itl_series(detail: dict) -> tuple[list[tuple[float, float, int]], float | None]:
    """Per-token inter-token latencies of a ``vllm bench serve --save-detailed`` result over time:
    ``([(t_s, itl_ms, request_index)], t0)``. A token's time is its request's start + TTFT +
    the cumulative ITLs up to it (``start_times`` are ``time.perf_counter()`` values, seconds;
    ``ttfts`` and ``itls`` seconds); ``t_s`` is relative to ``t0``, the earliest start. Requests
    that failed (an error, or no TTFT) are left out."""
    starts = detail.get("start_times") or []
    ttfts = detail.get("ttfts") or []
    itls = detail.get("itls") or []
    errors = detail.get("errors") or [""] * len(starts)
    if not starts:
        return [], None
    if not (len(starts) == len(ttfts) == len(itls)):
        raise ValueError(f"start_times/ttfts/itls lengths differ: {len(starts)}/{len(ttfts)}/{len(itls)}")
    t0 = min(starts)
    out = []
    for i, (s, ttft, gaps) in enumerate(zip(starts, ttfts, itls, strict=True)):
        if (i < len(errors) and errors[i]) or not ttft or ttft <= 0:
            continue
        t = s + ttft
        for g in gaps:
            t += g
            out.append((t - t0, g * 1e3, i))
    out.sort()
    return out, t0


def arrivals(detail: dict, t0: float) -> list[float]:
    """Request send times of a detailed result relative to ``t0`` (seconds; same clock: the
    clients' perf_counter is CLOCK_MONOTONIC, shared by processes of one host)."""
    return sorted(s - t0 for s in detail.get("start_times") or [])


def itl_over_time(ctx, spec: dict, frame, plt, sns):
    """Week 8: ITL of every token of the cell's own requests vs time since its first request, one
    panel per configuration (``options.panel``, default ``configuration``), one row of panels per
    GPU; the background client's long-prefill arrivals as dashed red lines. The data are each cell's
    ``raw.json`` (and ``background.json``) in the run's results folder. Options: panel (axis),
    ylog (bool, default true), max_panels_per_row (default 6)."""
    o = spec.get("options") or {}
    panel_axis = o.get("panel", "configuration")
    col = panel_axis if panel_axis in ("configuration", "cell", "gpu", "engine") else f"param_{panel_axis}"
    df = frame.df
    missing: list[str] = []
    root = Path(ctx.cfg.preset.get("results", "results"))
    keys = ["experiment", "engine", "gpu", "configuration", "cell"]
    cells = df.drop_duplicates(keys)[[*keys, "status", "reason", "detail", col]] if len(df) else df
    panels = ctx.order.sort(panel_axis, list(dict.fromkeys(cells[col].astype(str)))) if len(df) else []
    gpus = list(dict.fromkeys(cells["gpu"].astype(str))) if len(df) else []
    data = {}
    for _, c in cells.iterrows() if len(df) else []:
        label = f"{c['gpu']}/{c[col]}/{c['cell']}"
        if c["status"] != "ok":
            missing.append(f"{label}: {c['status']} ({c['reason'] or c['detail'] or ''})")
            continue
        d = root / ctx.week / c["experiment"] / c["engine"] / c["gpu"] / c["configuration"] / c["cell"]
        try:
            detail = json.loads((d / DETAIL).read_text())
            pts, t0 = itl_series(detail)
        except (OSError, ValueError) as e:
            missing.append(f"{label}: no per-request detail ({e.__class__.__name__})")
            continue
        if not pts:
            missing.append(f"{label}: no per-token detail in {DETAIL} (save_detailed off?)")
            continue
        bg = []
        try:
            bg = arrivals(json.loads((d / BACKGROUND).read_text()), t0)
        except (OSError, ValueError):
            pass
        data.setdefault((str(c["gpu"]), str(c[col])), []).append((c["cell"], pts, bg))
    w, h = spec.get("size", [3.6, 3.0])
    ncol = max(1, min(len(panels), int(o.get("max_panels_per_row", 6)))) if panels else 1
    nrow_per_gpu = max(1, math.ceil(len(panels) / ncol)) if panels else 1
    nrows = max(1, len(gpus)) * nrow_per_gpu
    note = wrap_note(missing, w * ncol)
    fig, top, bottom = _figure(plt, w * ncol, h * nrows, note)
    if note:
        bottom.text(0.01, 0.98, note, ha="left", va="top", fontsize=NOTE_FONT, color="firebrick")
    axes = top.subplots(nrows, ncol, squeeze=False, sharey=True)
    ylog = o.get("ylog", True)
    for gi, g in enumerate(gpus or [""]):
        for pi, p in enumerate(panels or [""]):
            ax = axes[gi * nrow_per_gpu + pi // ncol][pi % ncol]
            ax.set_title(f"{g}: {p}" if len(gpus) > 1 else str(p), fontsize=9)
            series = data.get((g, p), [])
            for cell, pts, bg in series:
                ax.scatter([t for t, _, _ in pts], [v for _, v, _ in pts], s=3, alpha=0.5, label=cell, lw=0)
                for t in bg:
                    ax.axvline(t, color="firebrick", ls="--", lw=0.6, alpha=0.6)
            if not series:
                ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="gray")
            if ylog and series:
                ax.set_yscale("log")
            ax.set_xlabel(spec.get("xlabel", "time since the first request (s)"), fontsize=8)
            if pi % ncol == 0:
                ax.set_ylabel(spec.get("ylabel", "inter-token latency (ms)"), fontsize=8)
            ax.tick_params(labelsize=7)
        for pi in range(len(panels), nrow_per_gpu * ncol):
            axes[gi * nrow_per_gpu + pi // ncol][pi % ncol].set_visible(False)
    if spec.get("title"):
        top.suptitle(spec["title"], fontsize=10)
    return fig, missing


GAUGES_CSV = "gauges.csv"  # the serving session's /metrics gauge samples (session.py), in _engine/


def gauge_series(path: Path, name: str = "vllm:num_requests_running") -> list[tuple[float, float]]:
    """``(t_s, value)`` of one gauge from a session's gauges.csv, t relative to the first sample in
    which it is above zero (the load's start); samples before that are left out."""
    import csv

    pts = [(float(r["t"]), float(r["value"])) for r in csv.DictReader(Path(path).open()) if r["name"] == name]
    start = next((t for t, v in pts if v > 0), None)
    return [] if start is None else [(t - start, v) for t, v in pts if t >= start]


def occupancy_over_time(ctx, spec: dict, frame, plt, sns):
    """Week 7: batch occupancy vs time, static vs continuous, one panel per GPU. Static: the rows of
    the HF static batches still producing requested tokens at each decode step (``occupancy`` of the
    hf_static_batch raw.json, the cell ``options.static`` selects); continuous: the server's
    ``vllm:num_requests_running`` sampled from /metrics during the load (``_engine/gauges.csv`` of
    the configuration ``options.continuous`` selects). Options: static, continuous (where-mappings)."""
    o = spec.get("options") or {}
    df = frame.df
    missing: list[str] = []
    root = Path(ctx.cfg.preset.get("results", "results"))
    keys = ["experiment", "engine", "gpu", "configuration", "cell"]
    data: dict = {}
    for kind in ("static", "continuous"):
        sub = frame.select(o.get(kind)).df if len(df) else df
        cells = sub.drop_duplicates(keys) if len(sub) else sub
        for _, c in cells.iterrows() if len(cells) else []:
            label = f"{kind} {c['gpu']}/{c['configuration']}/{c['cell']}"
            if c["status"] != "ok":
                missing.append(f"{label}: {c['status']} ({c['reason'] or c['detail'] or ''})")
                continue
            conf = root / ctx.week / c["experiment"] / c["engine"] / c["gpu"] / c["configuration"]
            try:
                if kind == "static":
                    occ = json.loads((conf / c["cell"] / "raw.json").read_text())["occupancy"]
                    pts = [(float(x["t"]), float(x["running"])) for x in occ]
                else:
                    pts = gauge_series(conf / "_engine" / GAUGES_CSV)
            except (OSError, ValueError, KeyError) as e:
                missing.append(f"{label}: no occupancy series ({e.__class__.__name__})")
                continue
            if not pts:
                missing.append(f"{label}: empty occupancy series")
                continue
            data.setdefault(str(c["gpu"]), []).append((kind, pts))
    gpus = list(data) or [""]
    w, h = spec.get("size", [5.0, 3.2])
    note = wrap_note(missing, w * len(gpus))
    fig, top, bottom = _figure(plt, w * len(gpus), h, note)
    if note:
        bottom.text(0.01, 0.98, note, ha="left", va="top", fontsize=NOTE_FONT, color="firebrick")
    axes = top.subplots(1, len(gpus), squeeze=False)[0]
    for ax, g in zip(axes, gpus, strict=True):
        for kind, pts in data.get(g, []):
            ax.step([t for t, _ in pts], [v for _, v in pts], where="post", lw=1, label=kind)
        if data.get(g):
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="gray")
        ax.set_title(g, fontsize=9)
        ax.set_xlabel(spec.get("xlabel", "time (s)"), fontsize=8)
        ax.set_ylabel(spec.get("ylabel", "requests running (batch occupancy)"), fontsize=8)
        ax.tick_params(labelsize=7)
    if spec.get("title"):
        top.suptitle(spec["title"], fontsize=10)
    return fig, missing


FUNCTIONS = {"itl_over_time": itl_over_time, "occupancy_over_time": occupancy_over_time}


def get(name: str):
    try:
        return FUNCTIONS[name]
    except KeyError:
        raise KeyError(f"unknown custom figure {name!r} (known: {', '.join(sorted(FUNCTIONS))})") from None

"""Stage 2: measure the cells of one engine configuration with one engine start.

``run_configuration`` is what a configuration's job runs (rules/measure.smk). It dispatches on the
tool (``inferlab.tools``):

- a configuration typed at plan time (``skip``: needs more GPUs than the preset's, a layout with no
  runner) gets a ``skipped`` record per cell, naming why, and starts nothing;
- a tool that needs a server runs a serving session (``inferlab.session``): one server, its cells one
  at a time, the prefix cache reset between them;
- an offline tool with a driver (``vllm_bench_latency``, ``vllm_bench_throughput``) runs every cell
  through one in-process engine (``inferlab.drivers.vllm_offline``, which follows the CLI's
  procedure); each record says ``measured_by: driver``;
- otherwise (no driver, or a fault injected through the CLI for tests) each cell runs the tool's CLI,
  one engine start per cell, ``measured_by: cli``.

Every path writes every cell's typed record, and ``<configuration>/_engine/configuration.json`` with
the job's timings (engine start-up, measuring, wall): the GPU-job efficiency is measuring / wall.
"""

from __future__ import annotations

import json
import re
import signal
import threading
import time
from pathlib import Path

from . import io, provenance, session, startlog, telemetry, tools
from .engines.base import Engine
from .runner import (
    ENGINE_LOG,
    INTERRUPTED,
    RAW,
    RECORD,
    _slurm_state,
    _Terminated,
    kill_group,
    lengths_from_raw,
    log_tail,
    new_record,
    run_cell,
    spawn,
)
from .tables import RESOURCE_NEEDS

CONFIGURATION = "configuration.json"
PROGRESS = "progress.jsonl"
DRIVER_SPEC = "driver-spec.json"
SRC = Path(__file__).resolve().parents[1]


def run_configuration(
    spec: dict,
    cells: list[dict],
    cell_dirs: list[Path],
    engine: Engine,
    model_path: str,
    workflow_dir: Path | str = ".",
) -> dict:
    edir = Path(spec["engine_dir"]).absolute()
    edir.mkdir(parents=True, exist_ok=True)
    datasets = {k: str(Path(v).absolute()) for k, v in spec.get("datasets", {}).items()}
    tool = tools.get(cells[0]["tool"])
    faults = spec.get("faults", {})
    t0 = time.monotonic()
    summary = {
        "engine": engine.name,
        "configuration": cells[0].get("configuration"),
        "cells": [c["cell"] for c in cells],
        "server_args": spec["server_args"],
        "layout": spec.get("layout"),
        "engine_identity": spec.get("engine_identity"),
        "started_at": provenance.now(),
    }
    if hasattr(engine, "parallel_env"):
        # what the configuration's ranks need in their environment (vLLM CPU: one core range per
        # tensor-parallel rank); the preset's own env vars win
        engine.env_vars = {**engine.parallel_env(spec["server_args"]), **engine.env_vars}
    if spec.get("skip"):
        skip_all(cells, cell_dirs, spec["skip"], workflow_dir)
        summary.update(measured_by="none", status="skipped", detail=spec["skip"])
    elif tool.NEEDS_SERVER:
        ds = cells[0]["params"].get("dataset")
        res = session.run_session(
            cells,
            cell_dirs,
            engine,
            model_path,
            datasets.get(ds, ""),
            edir,
            spec["server_args"],
            workflow_dir=workflow_dir,
            ready_timeout_s=spec["ready_timeout_s"],
            cell_timeout_s=cells[0].get("timeout_s"),
            faults=faults,
            reset_cache=cells[0].get("between_cells", {}).get("reset_cache", True),
            warmup_requests=cells[0].get("between_cells", {}).get("warmup_requests", 0),
            layout=spec.get("layout"),
            restart=cells[0].get("between_cells", {}).get("restart", False),
        )
        summary.update(measured_by="server", status=res["status"], detail=res.get("detail"))
        summary.update({k: res.get(k) for k in ("server_ready_s", "cells_s", "teardown_s")})
    elif tool.DRIVER and engine.driver_module(tool.DRIVER) and not faults:
        res = run_driver(tool.DRIVER, cells, cell_dirs, engine, model_path, datasets, edir, spec, workflow_dir)
        summary.update(measured_by="driver", **res)
    else:
        cells_s = {}
        for c, d in zip(cells, cell_dirs, strict=True):
            ds = c["params"].get("dataset")
            rec = run_cell(
                {**c, "engine_args": spec["server_args"]},
                engine,
                model_path,
                d,
                workflow_dir=workflow_dir,
                timeout_s=c.get("timeout_s"),
                fault=faults.get(c["cell"]),
                dataset_path=datasets.get(ds) if ds else None,
            )
            cells_s[c["cell"]] = rec.get("wall_s")
        summary.update(measured_by="cli", status="done", cells_s=cells_s)
    return _write_summary(edir, summary, t0, cell_dirs)


def skip_all(cells, cell_dirs, why: str, workflow_dir) -> None:
    reason = "resources" if why.startswith(RESOURCE_NEEDS) else "unsupported"
    for c, d in zip(cells, cell_dirs, strict=True):
        d = Path(d)
        d.mkdir(parents=True, exist_ok=True)
        rec = new_record(c, started_at=provenance.now(), finished_at=provenance.now())
        rec.update(status="skipped", reason=reason, detail=why, measured_by="none")
        rec["provenance"] = provenance.collect(workflow_dir, {}, None)
        io.write_json(d / RECORD, rec)


def _write_summary(edir: Path, summary: dict, t0: float, cell_dirs) -> dict:
    wall = round(time.monotonic() - t0, 3)
    measuring = 0.0
    for d in cell_dirs:
        try:
            r = json.loads((Path(d) / RECORD).read_text())
        except (OSError, ValueError):
            continue
        measuring += work_s(r, Path(d) / RAW)
    summary.update(
        finished_at=provenance.now(),
        wall_s=wall,
        measuring_s=round(measuring, 3),
        measuring_fraction=round(measuring / wall, 4) if wall > 0 else None,
    )
    io.write_json(edir / CONFIGURATION, summary)
    return summary


def work_s(rec: dict, raw: Path) -> float:
    """Seconds a cell kept the engine busy with its own work (warm-up included): its wall time
    when measured against a running engine (driver, server); for a CLI cell, whose wall time
    includes its own engine start, the benchmark's reported time (iterations x average latency, or
    the offline batch's elapsed time)."""
    if rec.get("status") != "ok":
        return 0.0
    if rec.get("measured_by") != "cli":
        return float(rec.get("wall_s") or 0.0)
    try:
        data = json.loads(raw.read_text())
    except (OSError, ValueError):
        return 0.0
    if "avg_latency" in data:
        p = rec["params"]
        return float(data["avg_latency"]) * (p.get("num_iters", 30) + p.get("num_iters_warmup", 10))
    return float(data.get("elapsed_time") or 0.0)


def run_driver(driver, cells, cell_dirs, engine, model_path, datasets, edir: Path, spec, workflow_dir) -> dict:
    """All offline cells of the configuration through one engine start (``inferlab.drivers``)."""
    session._archive(edir, (ENGINE_LOG, PROGRESS, DRIVER_SPEC))
    dirs = [Path(d).absolute() for d in cell_dirs]
    recs = []
    for c, d in zip(cells, dirs, strict=True):
        d.mkdir(parents=True, exist_ok=True)
        session._archive(d, (RAW, RECORD, INTERRUPTED, ENGINE_LOG))
        recs.append(new_record(c, engine_log=str(Path("..") / "_engine" / ENGINE_LOG), measured_by="driver"))
    engine_args = {**engine.run_args, **spec["server_args"]}
    dspec = {
        "model": model_path,
        "engine_args": engine_args,
        "progress": str(edir / PROGRESS),
        "cells": [
            {
                "id": c["cell"],
                "tool": c["tool"],
                "params": c["params"],
                "out": str(d / RAW),
                **({"dataset_path": datasets[c["params"]["dataset"]]} if c["params"].get("dataset") else {}),
            }
            for c, d in zip(cells, dirs, strict=True)
        ],
    }
    io.write_json(edir / DRIVER_SPEC, dspec)
    cmd = [engine.python, "-m", engine.driver_module(driver), "--spec", str(edir / DRIVER_SPEC)]
    # no separate probe or version subprocess (each imports the engine: seconds per job): the driver
    # reports the engine's versions when it is ready, and an engine that cannot import is typed below
    ok, why = True, ""
    if engine.env is not None and not Path(engine.python).exists():
        ok, why = False, f"engine environment not found: {engine.python} does not exist"
    prov = provenance.collect(
        workflow_dir,
        {},
        cmd,
        {
            "prefix_caching": {True: "enabled", False: "disabled"}.get(
                engine_args.get("enable_prefix_caching"), "engine default"
            ),
            "measured_by": "driver",
        },
    )
    by_id = {}
    for c, d, r in zip(cells, dirs, recs, strict=True):
        r["provenance"] = prov
        by_id[c["cell"]] = (c, d, r)

    def finish(cid, status, reason=None, detail=None, extra=None):
        c, d, r = by_id[cid]
        r.pop("_sampler", None)
        r.update(status=status, reason=reason, detail=detail, finished_at=provenance.now(), **(extra or {}))
        if status != "ok":
            r["log_tail"] = log_tail(edir / ENGINE_LOG)
        io.write_json(d / RECORD, r)
        return r

    if not ok:
        for cid in by_id:
            finish(cid, "skipped", "engine_unavailable", why)
        return {"status": "skipped", "detail": why}

    env = engine.environ(edir)
    env["PYTHONPATH"] = str(SRC) + (":" + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    deadline_s = spec["ready_timeout_s"] + sum(c.get("timeout_s") or 0 for c in cells)
    main = threading.current_thread() is threading.main_thread()
    prev = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)} if main else {}

    def on_signal(signum, frame):
        raise _Terminated(signum)

    for s in prev:
        signal.signal(s, on_signal)
    proc = None
    done: set[str] = set()
    startup_s = None
    t_start = time.monotonic()
    progress = edir / PROGRESS

    def read_progress(pos):
        nonlocal startup_s
        try:
            with open(progress) as f:
                f.seek(pos)
                chunk = f.read()
        except FileNotFoundError:
            return pos
        lines = chunk.split("\n")
        if not chunk.endswith("\n"):
            lines, rest = lines[:-1], lines[-1]
        else:
            rest = ""
        for line in lines:
            if not line.strip():
                continue
            ev = json.loads(line)
            if ev.get("event") == "engine_ready":
                startup_s = ev.get("startup_s")
                versions = {k: ev[k] for k in ("vllm", "torch", "transformers") if ev.get(k)}
                startup = startlog.parse_startup_log(
                    (edir / ENGINE_LOG).read_text(errors="replace"), engine.metrics_dialect
                )
                if isinstance(startup_s, (int, float)):
                    startup.append(startlog.driver_startup_row(startup_s))
                for _c, _d, r in by_id.values():
                    r["provenance"]["driver"] = {k: v for k, v in ev.items() if k not in ("event", "t")}
                    r["provenance"]["engine_versions"] = versions
                    r["engine_startup"] = startup
            elif ev.get("event") == "cell" and ev.get("id") in by_id and ev["id"] not in done:
                done.add(ev["id"])
                _finish_cell(ev, finish, by_id, engine)
        return pos + len(chunk) - len(rest)

    status, detail = "done", None
    sampler = telemetry.Sampler(edir / "telemetry.csv", telemetry.visible_gpu_indices() or None).start()
    for _c, _d, r in by_id.values():
        r["_sampler"] = sampler
    try:
        proc = spawn(cmd, edir / ENGINE_LOG, env, edir)
        pos = 0
        while True:
            pos = read_progress(pos)
            rc = proc.poll()
            if rc is not None:
                pos = read_progress(pos)
                break
            if time.monotonic() - t_start > deadline_s:
                kill_group(proc)
                rc = None
                break
            time.sleep(0.5)
        if len(done) < len(by_id):
            tail = log_tail(edir / ENGINE_LOG, 400)
            if rc is None:
                reason, why = "timeout", f"the driver did not finish within {deadline_s:g} s; its group was killed"
            elif startup_s is None and re.search(r"No module named '?(vllm|torch)", tail):
                for cid in by_id:
                    finish(
                        cid,
                        "skipped",
                        "engine_unavailable",
                        "the engine does not import here: " + tail.splitlines()[-1],
                    )
                done.update(by_id)
                return {"status": "skipped", "detail": "engine_unavailable", "startup_s": None}
            elif startup_s is None:
                reason = engine.classify_failure(rc, tail)
                why = f"the engine did not start: driver exited with {rc}"
            else:
                reason = engine.classify_failure(rc, tail)
                why = f"not measured: the engine exited with {rc} before this cell finished"
            for cid in by_id:
                if cid not in done:
                    finish(cid, "failed", reason, why, {"returncode": rc})
            status, detail = "failed", why
    except _Terminated as t:
        state = _slurm_state()
        reason = {"TIMEOUT": "timeout", "OUT_OF_MEMORY": "oom"}.get(state or "", "cancelled")
        if proc is not None:
            kill_group(proc, grace_s=5.0)
        for cid, (_c, d, _r) in by_id.items():
            if cid not in done:
                rec = finish(
                    cid, "failed", reason, f"configuration job got signal {t.signum}; Slurm state {state or 'n/a'}"
                )
                io.write_json(d / INTERRUPTED, rec)
        raise SystemExit(128 + t.signum) from None
    finally:
        sampler.stop()
        for s, h in prev.items():
            signal.signal(s, h)
        if proc is not None:
            # the driver exited or was stopped: nothing of its group may outlive the job
            kill_group(proc, grace_s=5.0)
    return {"status": status, "detail": detail, "startup_s": startup_s}


def _finish_cell(ev: dict, finish, by_id, engine) -> None:
    c, d, r = by_id[ev["id"]]
    r["started_at"] = _iso(ev.get("t_start"))
    r["wall_s"] = round(ev["t_end"] - ev["t_start"], 3) if ev.get("t_end") and ev.get("t_start") else None
    r["measure_s"] = ev.get("measure_s")
    if ev.get("status") != "ok":
        err = str(ev.get("error") or "")
        reason = engine.classify_failure(1, err)
        finish(ev["id"], "failed", reason, f"driver: {err}"[:2000])
        return
    raw = d / RAW
    if not raw.exists():
        finish(ev["id"], "failed", "client_error", "the driver reported ok but wrote no output file")
        return
    try:
        rows = engine.parse(c["tool"], raw, c["params"])
    except Exception as e:
        finish(ev["id"], "failed", "parse_error", f"{e.__class__.__name__}: {e}")
        return
    sampler = r.get("_sampler")
    extra = {}
    lengths = lengths_from_raw(raw)
    if lengths is not None:
        extra["lengths"] = lengths
    if sampler is not None and ev.get("t_start") and ev.get("t_end"):
        tokens = next((x["value"] for x in rows if x["metric"] == "offline_total_tokens"), None)
        extra["telemetry"] = telemetry.summarize(sampler.window(ev["t_start"], ev["t_end"]), sampler.status, tokens)
    finish(ev["id"], "ok", extra=extra)


def _iso(t):
    if t is None:
        return None
    import datetime as dt

    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec="seconds")

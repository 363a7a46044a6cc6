"""A serving session: one server start serves every cell of one server configuration.

Why a session job and not Snakemake ``service()`` outputs: Snakemake runs a service job and ALL
its consumers at the same time (they form one pipe/service group whose resources are summed),
so the four request rates of a configuration would load one server concurrently and measure each
other; the course's protocol is one rate at a time against an idle server. A session job owns the
server for its whole life (start, readiness, teardown in one process, so nothing outlives the
job), runs its cells one after another, and writes one typed record per cell. The course harness
restarted the server per rate and slept 30 s; here the server starts once per configuration.

Rerunning one cell: a session job's outputs are the records of the cells it is asked to measure.
``--config cells=<cell path>[,<cell path>...]`` (what ``python -m inferlab.cells failed`` prints)
narrows the sessions of those cells' configurations to exactly those cells: one server start,
one measurement, the siblings' records untouched (see rules/serving.smk).

Failure is data, per cell: a server that does not come up types every cell of the session
(engine_error / oom / timeout, with the server log's tail); a server that dies during a cell
types that cell ``server_died`` and every later cell of the session too (not measured), each
with the server's exit code; a client that fails against a live server is ``client_error``.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import threading
import time
from pathlib import Path

from . import io, layouts, lmcache_log, matrix, provenance, scrape, startlog, telemetry, tools
from .engines import base as engine_base
from .engines import serving as serving_parse
from .engines.base import Engine
from .runner import INTERRUPTED, RECORD, _slurm_state, _Terminated, kill_group, log_tail, new_record, spawn
from .server import HOST, Server, ServerError, needs_api_key

SESSION = "session.json"
SERVER_LOG = "server.log"
CLIENT_LOG = "client.log"
TELEMETRY = "telemetry.csv"
GAUGES = "gauges.csv"
RAW = "raw.json"
PROFILE_DIR = "profile"


def _archive(d: Path, names) -> None:
    """Nothing a user ran is lost: a previous attempt's files move to attempts/<timestamp>/."""
    old = [d / n for n in names if (d / n).exists()]
    if old:
        dest = d / "attempts" / time.strftime("%Y%m%dT%H%M%S")
        dest.mkdir(parents=True, exist_ok=True)
        for p in old:
            p.rename(dest / p.name)


class _Cell:
    """One cell's record under construction."""

    def __init__(self, cell: dict, outdir: Path, sdir: Path):
        self.cell = cell
        self.dir = Path(outdir).absolute()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.record = new_record(
            cell, client_log=CLIENT_LOG, engine_log=str(Path("..") / sdir.name / SERVER_LOG), measured_by="server"
        )
        if (self.dir / CLIENT_LOG).exists() and not any((self.dir / n).exists() for n in (RECORD, INTERRUPTED)):
            # a previous attempt was measuring this cell and nothing typed it: a node failure (then Slurm
            # requeues the job) or KillWait's SIGKILL leave the session no handler to run. Typed now,
            # before it is archived, so the attempt is a record and not a hole
            restarts = os.environ.get("SLURM_RESTART_COUNT")
            io.write_json(
                self.dir / INTERRUPTED,
                {
                    **self.record,
                    "status": "failed",
                    "reason": "cancelled",
                    "detail": "the attempt ended before the session kept a record"
                    + (f" (Slurm requeued the job: restart {restarts})" if restarts else ""),
                    "log_tail": log_tail(self.dir / CLIENT_LOG),
                    "typed_by": "next_attempt",
                },
            )
        _archive(self.dir, (RAW, CLIENT_LOG, RECORD, INTERRUPTED, BACKGROUND_RAW, BACKGROUND_LOG))
        self.t0 = None
        self.t_wall = None  # unix times around the client run (gauge window)

    def begin(self):
        self.t0 = time.monotonic()
        self.record["started_at"] = provenance.now()

    def finish(self, status, reason=None, detail=None, returncode=None, tail="", extra=None):
        self.record.update(
            status=status,
            reason=reason,
            detail=detail,
            returncode=returncode,
            log_tail=tail,
            finished_at=provenance.now(),
            wall_s=None if self.t0 is None else round(time.monotonic() - self.t0, 3),
        )
        if extra:
            self.record.update(extra)
        io.write_json(self.dir / RECORD, self.record)
        return self.record

    @property
    def done(self) -> bool:
        return self.record["status"] is not None


def run_session(
    cells: list[dict],
    cell_dirs: list[Path | str],
    engine: Engine,
    model_path: str,
    dataset_path: str,
    session_dir: Path | str,
    server_args: dict,
    workflow_dir: Path | str = ".",
    ready_timeout_s: float = 900,
    cell_timeout_s: float | None = None,
    faults: dict | None = None,
    reset_cache: bool = True,
    warmup_requests: int = 0,
    layout: dict | None = None,
    restart: bool = False,
) -> dict:
    """Start the server once, run ``cells`` in order against it, tear it down; write every
    cell's ``cell.json`` and ``session_dir/session.json`` (timings: start-up, measuring, teardown).

    Between cells the server's prefix cache is emptied (``reset_cache``; the engine catalog's
    ``reset_cache_path``, e.g. vLLM's ``/reset_prefix_cache``, served only with
    ``VLLM_SERVER_DEV_MODE=1``, which the session then sets), so no cell measures the previous
    one's cache hits; a failed reset is recorded in the cell's record, never ignored. The client
    sends ``warmup_requests`` requests before measuring (``--num-warmups`` / ``--warmup-requests``),
    excluded from its numbers. ``restart``: the server is stopped (drained) and started again
    between cells, its time kept in each record (``restart``) and in ``session.json``."""
    sdir = Path(session_dir).absolute()
    sdir.mkdir(parents=True, exist_ok=True)
    _archive(sdir, (SESSION, SERVER_LOG, TELEMETRY))
    faults = faults or {}
    t_start = time.monotonic()
    todo = [_Cell(c, d, sdir) for c, d in zip(cells, cell_dirs, strict=True)]
    session = {
        "engine": engine.name,
        "cells": [c["cell"] for c in cells],
        "server_args": server_args,
        "started_at": provenance.now(),
        "server_log": SERVER_LOG,
        "telemetry_file": TELEMETRY,
        "cells_s": {},
    }

    ok, why = engine.availability()
    prov = provenance.collect(
        workflow_dir,
        engine.versions() if ok else {},
        None,
        {
            "prefix_caching": {True: "enabled", False: "disabled"}.get(
                server_args.get("enable_prefix_caching"), "engine default"
            ),
            "client": engine.serving_client,
        },
    )
    if not ok:
        for c in todo:
            c.record["provenance"] = prov
            c.finish("skipped", "engine_unavailable", why)
        return _write_session(sdir, session, t_start, status="skipped", detail=why)

    # servers stay private: loopback, unless the preset binds beyond it (a layout spanning nodes);
    # then a key for this job alone, handed to the server and the clients in their environment only
    kind = (layout or {}).get("kind", "single")
    bind = engine.server_bind if kind == "single" else HOST
    api_key = None
    if engine.server_bind != HOST:
        session["server_bind"] = {"requested": engine.server_bind, "bind": bind}
        if bind != engine.server_bind:
            session["server_bind"]["why"] = f"the members of a {kind} layout bind loopback (inferlab.layouts)"
    if needs_api_key(bind):
        if not engine.api_key_env:
            why = (
                f"server_bind {bind} reaches beyond loopback, so the server needs a per-job API key, but "
                f"{engine.name}'s server takes one only on its command line, which is recorded and logged"
            )
            for c in todo:
                c.record["provenance"] = prov
                c.finish("skipped", "unsupported", why)
            return _write_session(sdir, session, t_start, status="skipped", detail=why)
        api_key = secrets.token_urlsafe(32)
        session["server_bind"]["api_key"] = (
            f"generated for this job; in the server's {engine.api_key_env} and the clients' "
            f"{engine.client_api_key_env}, never written"
        )

    gpu_index = telemetry.visible_gpu_index()
    # every GPU of the job (a layout's members hold different ones: P/D, replicas, TP)
    sampler = telemetry.Sampler(sdir / TELEMETRY, telemetry.visible_gpu_indices() or None).start()
    session["telemetry"] = sampler.status
    # a scheduler's SIGTERM types the unfinished cells (only the main thread may take signals)
    main = threading.current_thread() is threading.main_thread()
    prev = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)} if main else {}

    def on_signal(signum, frame):
        raise _Terminated(signum)

    for s in prev:
        signal.signal(s, on_signal)
    server = None
    server_cmd = None
    gauges = None
    owned: list = []  # every server started, from the moment its process exists (teardown sees it)
    try:
        profiling = any(c.cell["params"].get("profile") for c in todo)
        prof_dir = sdir / PROFILE_DIR
        env = engine.environ(sdir)
        # the configuration's env axes (config/engines.yaml env_axes, e.g. LMCACHE_CHUNK_SIZE) over the
        # catalog's env_vars; <session_tmp> -> a fresh directory for this session
        matrix.apply_server_env(env, (cells[0].get("server_env") if cells else None) or {})
        reset_path = engine.catalog.get("reset_cache_path") if reset_cache else None
        if reset_path:
            env.update(engine.catalog.get("reset_cache_env", {}))
        args = dict(server_args)
        if profiling:
            # the server writes a PyTorch profiler trace between the client's start/stop calls
            _archive(sdir, (PROFILE_DIR,))
            prof_dir.mkdir(parents=True, exist_ok=True)
            args.update(engine.profile_server_args(prof_dir))
            env.update(engine.profile_env(prof_dir))

        # the effective server environment (what the workflow set or unset; secrets redacted)
        prov["server_env"] = session["server_env"] = matrix.env_record(env, os.environ)
        if api_key:  # after the record: it says a key was set, never which
            env[engine.api_key_env] = api_key
            prov["server_env"][engine.api_key_env] = "<redacted: per-job key>"

        def make_cmd(port):
            nonlocal server_cmd
            server_cmd = engine.serve_command(model_path, bind, port, args)
            return server_cmd

        def start_server():
            nonlocal server_cmd
            if kind == "single":
                return Server.start(
                    make_cmd,
                    sdir / SERVER_LOG,
                    env,
                    engine.health_path,
                    ready_timeout_s,
                    cwd=sdir,
                    classify=engine.classify_failure,
                    gpu_index=gpu_index,
                    owned=owned,
                    bind=bind,
                )
            # several processes (prefill + decode + proxy): ready when all are; the client
            # talks to the layout's front (the proxy); a member that dies is named
            lay = layouts.start(
                kind,
                engine,
                model_path,
                args,
                sdir,
                env,
                ready_timeout_s,
                layout_spec=layout,
                gpu_index=gpu_index,
                cwd=sdir,
                classify=engine.classify_failure,
            )
            server_cmd = lay.commands
            session["layout"] = lay.describe()
            return lay

        try:
            server = start_server()
        except ServerError as e:
            member = getattr(e, "member", None)
            tail = log_tail(sdir / (f"{member}.log" if member and kind != "single" else SERVER_LOG))
            if member and kind != "single":
                e.detail = f"{member}: {e.detail}"
            for c in todo:
                c.record["provenance"] = {**prov, "server_command": server_cmd}
                c.finish("failed", e.reason, f"server did not start: {e.detail}", e.returncode, tail)
            return _write_session(sdir, session, t_start, status="failed", detail=e.detail)
        session.update(port=server.port, server_ready_s=server.ready_s, server_command=server_cmd)
        # server-side numbers: the start-up log (KV capacity, load/compile/graph times) and the
        # cache configuration once; /metrics counters before and after every cell; gauges sampled
        startup = startlog.parse_startup_log(Path(server.log).read_text(errors="replace"), engine.metrics_dialect)
        if isinstance(server.ready_s, (int, float)):
            startup.append(startlog.server_ready_row(server.ready_s))
        try:
            first = scrape.scrape(_control(server), engine.metrics_path)
            startup += scrape.cache_config_rows(first)
            session["cache_config"] = {k: v for k, v in scrape.cache_config(first).items() if k != "labels"}
        except (scrape.ScrapeError, scrape.ParseError) as e:
            session["metrics_error"] = str(e)
        session["startup"] = {r["metric"]: r["value"] for r in startup}
        gauges = scrape.GaugeSampler(_control(server), sdir / GAUGES, path=engine.metrics_path).start()
        died_in = None
        session["restarts"] = []
        for i, c in enumerate(todo):
            if restart and i > 0 and server.alive():
                # a declared restart step: the server is stopped and started again between cells
                # (e.g. what survives a restart: LMCache's persistent tier in Week 15)
                t0 = time.monotonic()
                gauges.stop()
                session["restarts"].append({"before": c.cell["cell"], "teardown": server.stop()})
                try:
                    server = start_server()
                except ServerError as e:
                    for rest in todo[i:]:
                        rest.record["provenance"] = {**prov, "server_command": server_cmd}
                        rest.finish(
                            "failed",
                            e.reason,
                            f"server did not restart before {c.cell['cell']}: {e.detail}",
                            e.returncode,
                        )
                    server = None
                    break
                gauges = scrape.GaugeSampler(_control(server), sdir / GAUGES, path=engine.metrics_path).start()
                c.record["restart"] = {
                    "s": round(time.monotonic() - t0, 3),
                    "ready_s": server.ready_s,
                    "port": server.port,
                }
                session["restarts"][-1].update(c.record["restart"])
            c.record["provenance"] = {**prov, "server_command": server_cmd, "server_port": server.port}
            if not server.alive():
                rc = _returncode(server)
                c.finish(
                    "failed",
                    "server_died",
                    f"not measured: the server exited with {rc} during {died_in or 'the previous cell'}",
                    rc,
                    server.log_tail() if hasattr(server, "log_tail") else log_tail(server.log),
                )
                continue
            if reset_path:
                c.record["cache_reset"] = reset_cache_of(_control(server), reset_path)
            c.record["engine_startup"] = startup
            before = _scrape_or_none(_control(server), engine.metrics_path)
            _run_one(
                c,
                engine,
                server,
                model_path,
                dataset_path,
                cell_timeout_s,
                sampler,
                faults.get(c.cell["cell"]),
                warmup_requests,
                api_key,
            )
            if c.record["status"] == "ok":
                _server_metrics(c, engine, server, before, gauges)
            if c.cell["params"].get("profile") and c.record["status"] == "ok":
                _profile(c, prof_dir)
            session["cells_s"][c.cell["cell"]] = c.record["wall_s"]
            # kept now, not only from a signal handler: on a real cluster Slurm's SIGTERM reaches only
            # the step's task (proctrack/cgroup), so the session may get nothing but KillWait's SIGKILL,
            # and a node failure gives it nothing at all. Snakemake deletes a failed job's outputs, and
            # a requeued job's own outputs before it runs: reconcile restores this copy, a requeue archives it
            io.write_json(c.dir / INTERRUPTED, {**c.record, "finished_before_signal": True})
            if c.record["reason"] == "server_died":
                died_in = c.cell["cell"]
    except _Terminated as t:
        state = _slurm_state()
        reason = {"TIMEOUT": "timeout", "OUT_OF_MEMORY": "oom"}.get(state or "", "cancelled")
        for c in todo:
            if not c.done:
                c.record.setdefault("provenance", prov)
                rec = c.finish("failed", reason, f"session got signal {t.signum}; Slurm state {state or 'n/a'}")
                io.write_json(c.dir / INTERRUPTED, rec)
            else:
                # measured before the signal: Snakemake deletes a failed job's outputs (every cell.json
                # of the session), so a copy lets `inferlab.cells reconcile` restore it as measured
                io.write_json(c.dir / INTERRUPTED, {**c.record, "finished_before_signal": True})
        for srv in {id(s): s for s in [*owned, *([server] if server is not None else [])]}.values():
            if srv.stopped_s is None:
                srv.stop(grace_s=5.0, drain_timeout_s=10.0)
        sampler.stop()
        _write_session(sdir, session, t_start, status="interrupted", detail=f"signal {t.signum}")
        raise SystemExit(128 + t.signum) from None
    finally:
        for s, h in prev.items():
            signal.signal(s, h)
        if gauges is not None:
            session["gauges"] = {
                k: v for k, v in gauges.stop().items() if k in ("scrapes", "scrape_failures", "last_error")
            }
        if server is not None and server.stopped_s is None:
            session["teardown"] = server.stop()
            session["teardown_s"] = server.stopped_s
        for srv in owned:  # started but never handed over (interrupted between start and use)
            if srv.stopped_s is None:
                srv.stop(grace_s=5.0, drain_timeout_s=10.0)
        sampler.stop()
    for c in todo:  # the session ended on its own: every record is in its cell.json
        (c.dir / INTERRUPTED).unlink(missing_ok=True)
    return _write_session(sdir, session, t_start, status="done")


def _engine_dead(server) -> str | None:
    """The cause, when the server process is alive but its engine is not (health not 200 and the
    log shows the engine's death: vLLM keeps its API server up after EngineDeadError); else None."""
    healthy = getattr(server, "healthy", None)
    if healthy is None or healthy():
        return None
    try:
        text = Path(server.log).read_text(errors="replace")
    except OSError:
        return None
    return engine_base.engine_death_cause(text) or None


def _server_tail(server, tail: str) -> str:
    return (
        tail
        + f"\n--- {Path(server.log).name} ---\n"
        + (server.log_tail() if hasattr(server, "log_tail") else log_tail(server.log))
    )


def _control(server) -> str:
    """Where /metrics are scraped and the prefix cache is reset: a layout's ``control_url`` (the
    router layout's fan-out to every replica), else the server's own URL."""
    return getattr(server, "control_url", None) or server.base_url


def _records_transfers(server) -> bool:
    """Whether the layout's KV connector exports transfer metrics on /metrics (vLLM's NIXL; SGLang's P/D)."""
    return getattr(server, "kind", None) == "pd" and getattr(server, "connector", None) in (
        "NixlConnector",
        *layouts.SGLANG_BACKENDS,
    )


def _returncode(server):
    """Exit code of a dead server, or of the dead member of a layout."""
    if hasattr(server, "dead_member"):
        dead = server.dead_member()
        return dead[1] if dead else server.returncode
    return server.proc.returncode


def _scrape_or_none(base_url: str, path: str):
    try:
        return scrape.scrape(base_url, path)
    except (scrape.ScrapeError, scrape.ParseError):
        return None


def _server_metrics(c: _Cell, engine, server: Server, before, gauges) -> None:
    """The cell's server-side rows: /metrics counter deltas over the cell (prefix-cache hits,
    speculative acceptance, preemptions...; a counter that went down is flagged, never a negative
    delta) and the gauges sampled during it. A failed scrape is recorded, never fatal."""
    rows: list[dict] = []
    after = _scrape_or_none(_control(server), engine.metrics_path)
    if before is None or after is None:
        c.record["server_metrics_error"] = (
            f"/metrics could not be scraped {'before' if before is None else 'after'} the cell"
        )
    else:
        scope = getattr(server, "counter_scrape", lambda m: m)  # SGLang P/D: the decode server's counters
        rows += scrape.cell_rows(scope(before), scope(after), engine.metrics_dialect, on_reset="flag")
        # a P/D pair's KV hand-off (NIXL's histograms; rows with the reason when they should be there)
        rows += scrape.kv_transfer_rows(before, after, engine.metrics_dialect, expected=_records_transfers(server))
        if hasattr(server, "member_rows"):  # per replica behind a router (summed in the rows above)
            rows += server.member_rows(before, after, engine.metrics_dialect)
        lengths = scrape.length_deltas(before, after, engine.metrics_dialect)
        if lengths is not None:
            # a tool whose requests stop at stop strings (lm_eval) asks for a cap, not a length: its
            # lengths are kept for the record but not checked (tools' EXACT_LENGTHS)
            tool = tools.TOOLS.get(c.cell.get("tool"))
            c.record["lengths" if getattr(tool, "EXACT_LENGTHS", True) else "lengths_observed"] = lengths
    if c.t_wall:
        rows += gauges.rows(*c.t_wall)
    if c.t_wall and engine.catalog.get("probe") == "lmcache":  # LMCache's own retrieve/store lines
        text = Path(server.log).read_text(errors="replace")
        rows += lmcache_log.cell_rows(text, *c.t_wall)
        sick = lmcache_log.unhealthy(text)
        if sick and c.record["status"] == "ok":  # it measured plain vLLM, not LMCache: typed, not a 0-hit row
            c.record.update(status="failed", reason="engine_error", detail=sick)
    c.record["server_metrics"] = rows
    io.write_json(c.dir / RECORD, c.record)


def reset_cache_of(base_url: str, path: str, timeout_s: float = 30.0) -> dict:
    """POST the engine's prefix-cache reset; returns what happened (kept in the cell's record)."""
    import urllib.error
    import urllib.request

    req = urllib.request.Request(base_url + path, data=b"", method="POST")
    t0 = time.monotonic()
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as r:
            status = r.status
    except urllib.error.HTTPError as e:
        status = e.code
    except (urllib.error.URLError, OSError) as e:
        return {"path": path, "ok": False, "detail": f"{e.__class__.__name__}: {e}"}
    return {"path": path, "ok": 200 <= status < 300, "http_status": status, "s": round(time.monotonic() - t0, 3)}


def _client_environ(engine, api_key: str | None) -> dict:
    """The load client's environment: the engine's, plus the server's per-job key where it has one
    (sent as ``Authorization: Bearer``; never on the client's recorded command line)."""
    env = engine.client_environ()
    if api_key:
        env[engine.client_api_key_env] = api_key
    return env


def _run_one(
    c: _Cell,
    engine,
    server: Server,
    model_path,
    dataset_path,
    timeout_s,
    sampler,
    fault,
    warmups: int = 0,
    api_key: str | None = None,
) -> None:
    raw = c.dir / RAW
    clog = c.dir / CLIENT_LOG
    tool = tools.get(c.cell["tool"]) if c.cell["tool"] in tools.TOOLS else None
    try:
        if getattr(tool, "CLIENT", False):  # a client of its own (lm_eval), not the engine's load client
            cmd = tool.client_command(engine, server.base_url, model_path, c.cell["params"], raw, warmups)
        else:
            cmd = engine.client_command(
                server.base_url, model_path, c.cell["params"], dataset_path, raw, warmups=warmups
            )
    except (OSError, ValueError) as e:
        c.finish("failed", "client_error", f"no client command: {e.__class__.__name__}: {e}")
        return
    c.record["provenance"]["command"] = cmd
    c.record["injected_fault"] = fault
    c.begin()
    t_wall0 = time.time()
    # a concurrent second load (Week 8), or None
    bg = _start_background(c, engine, server, model_path, api_key)
    proc = spawn(cmd, clog, _client_environ(engine, api_key), c.dir)
    try:
        if fault == "kill_server":
            # a real failure for tests: the server's whole group is killed while the client loads it
            time.sleep(3.0)
            if hasattr(server, "kill"):
                server.kill("decode" if "decode" in server.members else next(iter(server.members)))
            else:
                kill_group(server.proc, grace_s=0.0)
        rc = proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        rc = None
    except BaseException:
        if bg is not None:  # interrupted: the background client goes with the cell's
            kill_group(bg, grace_s=0.0)
        raise
    finally:
        if proc.poll() is None:
            kill_group(proc, grace_s=5.0)
    bg_failed = _finish_background(c, bg, timeout_s, t_wall0) if bg is not None else None
    t_wall1 = time.time()
    c.t_wall = (t_wall0, t_wall1)
    tail = log_tail(clog)
    if not server.alive():
        dead = server.dead_member() if hasattr(server, "dead_member") else None
        who = f"the layout's {dead[0]} server" if dead else "the server"
        c.finish(
            "failed",
            "server_died",
            f"{who} exited with {_returncode(server)} during this cell",
            _returncode(server),
            tail
            + f"\n--- {Path(server.log).name} ---\n"
            + (server.log_tail() if hasattr(server, "log_tail") else log_tail(server.log)),
        )
        return
    dead = _engine_dead(server)
    if dead:
        # the HTTP front end lives on but the engine behind it died: what the client saw (failed
        # requests, errors) follows from that, so the cell says so, with the engine's own cause
        c.finish("failed", "engine_error", f"the engine died during this cell: {dead}", rc, _server_tail(server, tail))
        return
    if rc is None:
        c.finish("failed", "timeout", f"client did not finish within {timeout_s:g} s; its group was killed", None, tail)
        return
    if rc != 0 or not raw.exists():
        detail = f"client exited with {rc}" + ("" if raw.exists() else " and wrote no output file")
        c.finish("failed", "client_error", detail, rc, tail)
        return
    if bg_failed:
        # the cell's numbers exist but not under the declared mixed load: not the measurement asked for
        c.finish("failed", "client_error", bg_failed, rc, log_tail(c.dir / BACKGROUND_LOG))
        return
    try:
        rows = engine.parse(c.cell["tool"], raw, c.cell["params"])
    except serving_parse.RequestsFailed as e:
        # numbers over the surviving requests would be a different load than the one asked for
        c.finish("failed", "client_error", f"{e} (the raw output is kept)", rc, _server_tail(server, tail))
        return
    except Exception as e:
        c.finish("failed", "parse_error", f"{e.__class__.__name__}: {e}", rc, tail)
        return
    out_tokens = next((r["value"] for r in rows if r["metric"] == "total_output_tokens"), None)
    pools = server.gpu_pools() if hasattr(server, "gpu_pools") else None
    telem = telemetry.summarize(sampler.window(t_wall0, t_wall1), sampler.status, out_tokens, pools)
    c.finish("ok", None, None, rc, "", {"telemetry": telem})


BACKGROUND_RAW = "background.json"
BACKGROUND_LOG = "background.log"


def _start_background(c: _Cell, engine, server, model_path, api_key: str | None = None):
    """A cell's background load (tools/bench_serving.py ``background_*``): a second client of the engine's own,
    started with the cell's client, its own random prompts, lengths and rate, no warm-up; its
    result (with per-request detail) goes to ``background.json`` beside raw.json."""
    from .tools import bench_serving

    bg = bench_serving.background(c.cell["params"])
    if not bg:
        return None
    p = {
        "dataset_name": "random",
        "seed": int(c.cell["params"].get("seed", 0)) + 1,
        **bg,
        "ignore_eos": True,
        "save_detailed": True,
    }
    out = c.dir / BACKGROUND_RAW
    cmd = engine.client_command(server.base_url, model_path, p, "", out, warmups=0)
    c.record["background"] = {"params": p, "command": cmd}
    return spawn(cmd, c.dir / BACKGROUND_LOG, _client_environ(engine, api_key), c.dir)


def _finish_background(c: _Cell, proc, timeout_s, t0: float) -> str | None:
    """Wait for the background client (within the cell's timeout); record its outcome. Returns why
    it failed, or None."""
    left = None if timeout_s is None else max(1.0, timeout_s - (time.time() - t0))
    try:
        rc = proc.wait(timeout=left)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        rc = None
    if proc.poll() is None:
        kill_group(proc, grace_s=5.0)
    info = c.record["background"]
    info["returncode"] = rc
    out = c.dir / BACKGROUND_RAW
    try:
        data = json.loads(out.read_text())
        info.update({k: data.get(k) for k in ("completed", "failed", "duration", "mean_ttft_ms", "p99_ttft_ms")})
    except (OSError, ValueError):
        data = None
    if rc is None:
        return f"background client did not finish within {timeout_s:g} s; its group was killed"
    if rc != 0 or data is None:
        return f"background client exited with {rc}" + ("" if data is not None else " and wrote no output file")
    if data.get("failed"):
        return f"background client: {data.get('failed')} of its requests failed"
    return None


def _profile(c: _Cell, prof_dir: Path) -> None:
    """Keep the trace(s) the server wrote during this cell in the cell's folder and derive the
    kernel-time breakdown. No trace is a typed failure of this cell: a profile cell exists for it."""
    from . import profile

    time.sleep(2.0)  # the trace is written after stop_profile returns
    traces = profile.find_traces(prof_dir)
    if not traces:
        c.finish(
            "failed",
            "client_error",
            f"profiling asked for, but no trace appeared in {prof_dir}",
            None,
            c.record["log_tail"],
        )
        return
    dest = c.dir / "trace"
    dest.mkdir(exist_ok=True)
    kept = []
    for t in traces:
        target = dest / t.name
        t.rename(target)
        kept.append(str(target.relative_to(c.dir)))
    try:
        summary = profile.breakdown(profile.load_trace(c.dir / kept[0]))
    except Exception as e:
        c.finish("failed", "parse_error", f"trace {kept[0]}: {e.__class__.__name__}: {e}", None, "")
        return
    c.record["profile"] = {"traces": kept, **summary}
    io.write_json(c.dir / RECORD, c.record)


def _write_session(sdir: Path, session: dict, t_start: float, status: str, detail: str | None = None) -> dict:
    wall = round(time.monotonic() - t_start, 3)
    measuring = sum(v for v in session.get("cells_s", {}).values() if v)
    session.update(
        status=status,
        detail=detail,
        finished_at=provenance.now(),
        wall_s=wall,
        measuring_s=round(measuring, 3),
        measuring_fraction=round(measuring / wall, 4) if wall > 0 else None,
    )
    io.write_json(sdir / SESSION, session)
    return session


def read_session(sdir) -> dict:
    return json.loads((Path(sdir) / SESSION).read_text())

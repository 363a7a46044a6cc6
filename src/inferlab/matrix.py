"""Expand a week's experiments into engine configurations and cells.

An experiment has two kinds of axes:

- ``server_sweep``: engine arguments (vLLM's names), or ``model`` (a model variant): every
  combination is one **engine configuration**, i.e. one engine start; its id is a path segment
  (``apc``/``noapc`` for booleans, ``mnbt512``, ``default`` when nothing is swept on the server);
- ``sweep``: the tool's parameters: every combination is one **cell** (one measurement) of each
  configuration; its id is the familiar ``bs16``, ``in512``, ``rr4`` (``-r2`` appended per repeat
  when ``repeats`` > 1).

``link`` zips axes instead of crossing them (``[[request_rate, max_concurrency]]``: the i-th values
go together), as ``vllm bench sweep --link-vars`` does; a link may join a server and a client axis.
An axis may be given as a list of values or as a mapping label -> value (for values that are not
scalars, e.g. ``speculative_config: {none: null, ngram3: {...}}``); the label names it in ids.

A cell's full address is ``<week>/<experiment>/<engine>/<gpu>/<configuration>/<cell>``, which is
also its results folder. A configuration's **layout** says how many GPUs and processes it takes:
``single`` (one server on tensor x pipeline x data parallel GPUs), ``pd`` (prefill + decode servers),
``router`` (replicas behind a router); where the preset's GPU has fewer, its cells are typed
``skipped (needs N GPUs)`` at plan time, never run smaller.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
from dataclasses import dataclass, field

from . import tools
from .config import Config
from .errors import ConfigError

SHORT = {
    "batch_size": "bs",
    "input_len": "in",
    "output_len": "out",
    "request_rate": "rr",
    "num_prompts": "np",
    "max_concurrency": "mc",
    "prefix_len": "prefix",
    "dataset_name": "ds",
    "schedule_policy": "policy",
    # server axes
    "enable_prefix_caching": "apc",
    "enable_chunked_prefill": "chunk",
    "enforce_eager": "eager",
    "max_num_batched_tokens": "mnbt",
    "max_num_seqs": "mns",
    "block_size": "blk",
    "tensor_parallel_size": "tp",
    "pipeline_parallel_size": "pp",
    "data_parallel_size": "dp",
    "enable_expert_parallel": "ep",
    "kv_cache_dtype": "kv",
    "quantization": "q",
    "speculative_config": "spec",
    "spec_tokens": "k",
    "scheduling_policy": "sched",
    "model": "m",
}
SEGMENT = re.compile(r"^[A-Za-z0-9._+-]+$")
DEFAULT_CONFIGURATION = "default"
# server axes that are not engine arguments
SERVER_META = ("model",)


def _fmt(v) -> str:
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    return str(v)


def _part(k: str, label, value, bare: bool = False) -> str:
    if bare:
        return str(label)
    s = SHORT.get(k, k)
    if label is None and isinstance(value, bool):
        return s if value else f"no{s}"
    return f"{s}{_fmt(value if label is None else label)}"


def cell_id(sweep: dict, labels: dict | None = None, bare: frozenset = frozenset()) -> str:
    """``bare``: axes whose id part is the label alone (bundle axes: ``eager``, not ``modeeager``)."""
    labels = labels or {}
    cid = "-".join(_part(k, labels.get(k), v, k in bare) for k, v in sweep.items())
    if not SEGMENT.match(cid):
        raise ValueError(f"id {cid!r} is not a safe path segment")
    return cid


def configuration_id(server_point: dict, labels: dict | None = None, bare: frozenset = frozenset()) -> str:
    return cell_id(server_point, labels, bare) if server_point else DEFAULT_CONFIGURATION


def bundle_axes(cfg: Config, engine: str, server_sweep: dict) -> frozenset:
    """Server axes that are bundles for this engine: not one of its engine arguments (nor ``model``),
    a mapping label -> {engine argument: value, ...} applied together (config.check_parts checks)."""
    known = set(cfg.engine_entry(engine).get("server_args", [])) if engine in cfg.engines else set()
    return frozenset(
        a
        for a, vals in server_sweep.items()
        if a not in known
        and a not in SERVER_META
        and isinstance(vals, dict)
        and vals
        and all(isinstance(v, dict) for v in vals.values())
    )


@dataclass(frozen=True)
class Cell:
    week: str
    experiment: str
    engine: str
    gpu: str
    configuration: str
    cell: str
    tool: str
    model: str
    params: dict = field(hash=False, compare=False)  # swept + fixed client parameters, in order
    swept: tuple = ()  # names of the swept client parameters
    engine_args: dict = field(default_factory=dict, hash=False, compare=False)  # the server's arguments
    server_axes: dict = field(default_factory=dict, hash=False, compare=False)  # swept server values
    # the server's environment set by env axes (config/engines.yaml env_axes): variable -> value, None unsets
    server_env: dict = field(default_factory=dict, hash=False, compare=False)
    layout: dict = field(default_factory=dict, hash=False, compare=False)
    # what a serving session does before each cell: reset_cache (bool), warmup_requests (int)
    between_cells: dict = field(default_factory=dict, hash=False, compare=False)
    timeout_s: float | None = None
    repeat: int = 0
    skip: str | None = None  # set at plan time: why this cell cannot run here

    @property
    def path(self) -> str:
        return f"{self.config_path}/{self.cell}"

    @property
    def config_path(self) -> str:
        return f"{self.week}/{self.experiment}/{self.engine}/{self.gpu}/{self.configuration}"

    @property
    def axes(self) -> dict:
        """Every swept value (server and client) by axis name: one Parquet column each."""
        return {**self.server_axes, **{k: self.params[k] for k in self.swept}}

    def to_dict(self) -> dict:
        return {
            "week": self.week,
            "experiment": self.experiment,
            "engine": self.engine,
            "gpu": self.gpu,
            "configuration": self.configuration,
            "cell": self.cell,
            "tool": self.tool,
            "model": self.model,
            "params": dict(self.params),
            "swept": list(self.swept),
            "engine_args": dict(self.engine_args),
            "server_axes": dict(self.server_axes),
            "layout": dict(self.layout),
            "between_cells": dict(self.between_cells),
            "timeout_s": self.timeout_s,
            "repeat": self.repeat,
            "skip": self.skip,
        } | ({"server_env": dict(self.server_env)} if self.server_env else {})  # only where used: params


def effective_experiment(cfg: Config, week: str, name: str) -> dict:
    """The experiment as this run sees it: the week file's entry with the preset's overrides."""
    exp = copy.deepcopy(cfg.weeks[week]["experiments"][name])
    ov = cfg.preset["overrides"].get(week, {}).get(name, {})
    for key in ("sweep", "fixed", "server_sweep", "engine_args"):
        if key in ov:
            exp[key] = {**exp.get(key, {}), **ov[key]}
    for key in ("gpus", "engines", "repeats", "model"):
        if key in ov:
            exp[key] = ov[key]
    return exp


def _values(axis_values) -> list[tuple]:
    """[(label or None, value)] of one axis (a list, or a mapping label -> value)."""
    if isinstance(axis_values, dict):
        return [(str(k), v) for k, v in axis_values.items()]
    return [(None, v) for v in axis_values]


def points(axes: dict, link: list[list[str]], file=None, key: str = "") -> list[list[tuple]]:
    """Every point of the axes: linked groups zipped, the rest crossed, in declaration order.
    A point is [(axis, label, value)] in the axes' order."""
    names = list(axes)
    linked = {}
    for gi, group in enumerate(link or []):
        for a in group:
            if a not in axes:
                raise ConfigError(file, f"{key}.link[{gi}]", f"axis {a!r} is not swept (axes: {names})")
            if a in linked:
                raise ConfigError(file, f"{key}.link[{gi}]", f"axis {a!r} is linked twice")
            linked[a] = gi
        lens = {a: len(axes[a]) for a in group}
        if len(set(lens.values())) > 1:
            raise ConfigError(file, f"{key}.link[{gi}]", f"linked axes have different lengths: {lens}")
    # factors: one per unlinked axis, one per link group (at the position of its first axis)
    factors, seen_groups = [], set()
    for a in names:
        if a in linked:
            gi = linked[a]
            if gi in seen_groups:
                continue
            seen_groups.add(gi)
            group = link[gi]
            n = len(axes[group[0]])
            factors.append([[(g, *_values(axes[g])[i]) for g in group] for i in range(n)])
        else:
            factors.append([[(a, lab, v)] for lab, v in _values(axes[a])])
    out = []
    for combo in itertools.product(*factors):
        flat = [t for part in combo for t in part]
        flat.sort(key=lambda t: names.index(t[0]))
        out.append(flat)
    return out


def gpus_needed(layout: dict, engine_args: dict, shared_device: bool = False) -> int:
    """GPUs one engine configuration takes: tensor x pipeline x data parallel per server, times the
    servers of the layout (``shared_device``: the servers share one device, as on the CPU, so the
    largest server's count; a router's replicas never share: each takes its own devices or cores)."""

    def per_server(args):
        n = 1
        for k in ("tensor_parallel_size", "pipeline_parallel_size", "data_parallel_size"):
            v = args.get(k)
            if isinstance(v, int) and not isinstance(v, bool) and v > 1:
                n *= v
        return n

    kind = layout.get("kind", "single")
    if kind == "pd":
        p = per_server({**engine_args, **layout.get("prefill", {})})
        d = per_server({**engine_args, **layout.get("decode", {})})
        return max(p, d) if shared_device else p + d
    if kind == "router":
        # each replica its own devices, on the CPU too (its own cores: inferlab.layouts.router_plan)
        return int(layout.get("replicas", 2)) * per_server(engine_args)
    return per_server(engine_args)


LAYOUT_RUNNERS = {"single", "pd", "router"}  # layouts this version can start; others are typed skipped


FEATURES = ("cuda_graphs", "fp8_kv_cache", "fp8_weights", "lmcache", "nixl", "kv_offloading")


def _json_arg(v):
    if isinstance(v, str):
        try:
            return json.loads(v)
        except ValueError:
            return v
    return v


MODEL_REF = "catalog:"


def model_refs(value) -> list[str]:
    """Catalog model ids that engine arguments name as ``catalog:<model id>`` strings, in order, e.g.
    a speculative draft: ``speculative_config: {method: draft_model, model: "catalog:tiny-llama-draft"}``.
    The workflow builds or downloads them like the served model and, at measure time, replaces each
    reference with that model's local folder (:func:`resolve_model_refs`)."""
    out = []
    if isinstance(value, str) and value.startswith(MODEL_REF):
        out.append(value[len(MODEL_REF) :])
    elif isinstance(value, dict):
        for v in value.values():
            out += [m for m in model_refs(v) if m not in out]
    elif isinstance(value, (list, tuple)):
        for v in value:
            out += [m for m in model_refs(v) if m not in out]
    return out


def resolve_model_refs(value, paths: dict):
    """``value`` with every ``catalog:<model id>`` string replaced by ``paths[model id]``."""
    if isinstance(value, str) and value.startswith(MODEL_REF):
        return paths[value[len(MODEL_REF) :]]
    if isinstance(value, dict):
        return {k: resolve_model_refs(v, paths) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_model_refs(v, paths) for v in value]
    return value


def _unknown_model(ref: str, known) -> str:
    return f"engine argument {MODEL_REF}{ref} names an unknown model (known: {', '.join(sorted(known))})"


def engine_family(cfg: Config, engine: str) -> str:
    """The engine an engine variant is built on (``vllm-lmcache`` -> ``vllm``)."""
    seen = engine
    while engine in cfg.engines and cfg.engines[engine].get("base"):
        engine = cfg.engines[engine]["base"]
    return engine if engine in cfg.engines else seen


def check_pd_connector(cfg: Config, engine: str, layout: dict, file, key: str) -> None:
    """A pd layout's ``connector`` must be one its engine's layout runs: vLLM's KV connector class
    (inferlab.layouts.CONNECTORS) or SGLang's transfer backend (SGLANG_BACKENDS)."""
    if layout.get("kind") != "pd":
        return
    from .layouts import CONNECTORS, SGLANG_BACKENDS

    family = engine_family(cfg, engine)
    known = {"vllm": CONNECTORS, "sglang": tuple(SGLANG_BACKENDS)}.get(family)
    conn = layout.get("connector", "nixl" if family == "sglang" else "ExampleConnector")
    if known is not None and conn not in known:
        raise ConfigError(file, key, f"{conn!r} is not a {family} P/D connector this layout runs ({', '.join(known)})")


def features_needed(family: str, args: dict, env_vars: dict | None = None, model: dict | None = None) -> dict[str, str]:
    """Features (``FEATURES``) an engine configuration uses, each with what in it uses the feature.
    Derived from the engine arguments and the served model's catalog entry (``model``: a checkpoint
    quantized to FP8 needs FP8 weight kernels whatever the arguments say), so a week file never has
    to say it twice."""
    out = {}
    cc = _json_arg(args.get("compilation_config")) or {}
    mode = str(cc.get("cudagraph_mode", "")).upper() if isinstance(cc, dict) else ""
    if family == "vllm" and not args.get("enforce_eager") and mode != "NONE":
        out["cuda_graphs"] = "enforce_eager is false and cudagraph_mode is not NONE (vLLM's default captures graphs)"
    kv = str(args.get("kv_cache_dtype") or "")
    if kv.startswith("fp8"):
        out["fp8_kv_cache"] = f"kv_cache_dtype={kv}"
    q = str(args.get("quantization") or "")
    if "fp8" in q:
        out["fp8_weights"] = f"quantization={q}"
    mq = str((model or {}).get("quantization") or "")
    if "fp8_weights" not in out and "fp8" in mq:
        out["fp8_weights"] = f"the checkpoint's weights are {mq} (catalog quantization)"
    ktc = _json_arg(args.get("kv_transfer_config")) or {}
    conn = str(ktc.get("kv_connector", "")) if isinstance(ktc, dict) else ""
    if conn.startswith("LMCache"):
        out["lmcache"] = f"kv_connector={conn}"
    if conn.lower().startswith("nixl"):  # vLLM's NixlConnector, SGLang's nixl transfer backend
        out["nixl"] = f"kv_connector={conn}"
    if conn.startswith("Offloading") or args.get("kv_offloading_backend") or args.get("kv_offloading_size"):
        out["kv_offloading"] = "KV offloading to host memory"
    return out


def fit_reason(cfg: Config, gpu: str, model_id: str, args: dict) -> str | None:
    """``does not fit: ...`` when the model's weights alone, split over tensor x pipeline parallel
    ranks, exceed one device's memory (catalog ``memory_gb``); None when they fit or the catalog
    cannot tell (an unknown quantization)."""
    from . import theory

    m = cfg.models.get(model_id) or {}
    arch = m.get("architecture")
    if not arch:
        return None
    dtype = str(args.get("quantization") or args.get("dtype") or m.get("dtype", "bfloat16"))
    if dtype == "auto":
        dtype = m.get("dtype", "bfloat16")
    try:
        total = theory.weights_bytes(arch, dtype)
    except theory.UnknownAssumption:
        return None
    ranks = 1
    for k in ("tensor_parallel_size", "pipeline_parallel_size"):
        v = args.get(k)
        if isinstance(v, int) and not isinstance(v, bool) and v > 1:
            ranks *= v
    per_rank = total / ranks / 1e9
    have = float(cfg.gpu(gpu)["memory_gb"])
    if per_rank > have:
        split = f" / {ranks} ranks" if ranks > 1 else ""
        return (
            f"does not fit: {model_id} weights ~{total / 1e9:.0f} GB ({dtype}){split} = {per_rank:.0f} GB "
            f"> {have:g} GB on {gpu}"
        )
    return None


def skip_reason(
    cfg: Config, gpu: str, layout: dict, engine_args: dict, engine: str | None = None, model: str | None = None
) -> str | None:
    if engine is not None:
        lacks = cfg.gpu(gpu).get("lacks") or {}
        fargs = dict(engine_args)
        if layout.get("connector"):  # a pd layout's KV connector is a feature of its servers too
            fargs.setdefault("kv_transfer_config", {"kv_connector": layout["connector"]})
        served = cfg.models.get(model) if model is not None else None
        for feat, why in features_needed(engine_family(cfg, engine), fargs, model=served).items():
            if feat in lacks:
                return f"unsupported: {feat} ({why}) on {gpu}: {lacks[feat]}"
    if model is not None:
        r = fit_reason(cfg, gpu, model, engine_args)
        if r:
            return r
    cpu = cfg.gpu(gpu).get("kind") == "cpu"
    # on the CPU the servers of a layout share the machine's cores; tensor parallel ranks do not
    need = gpus_needed(layout, engine_args, shared_device=cpu)
    have = cfg.gpu_count(gpu)
    kind = layout.get("kind", "single")
    if need > have:
        unit = "devices" if cfg.gpu(gpu).get("kind") == "cpu" else "GPUs"
        return f"needs {need} {unit} ({gpu} has {have} per job in this preset)"
    if kind not in LAYOUT_RUNNERS:
        return f"layout {kind!r} has no runner in this version (runs: {', '.join(sorted(LAYOUT_RUNNERS))})"
    return None


# -- knob studies (the tuning harness's isolation and stacked runs) ------------------------------
DESIGNS = ("grid", "isolation", "stacked")
MAX_STACKED_KNOBS = 4  # a stacked study plans every subset of its knobs: 2^n engine configurations


def _baseline(exp: dict, server_sweep: dict, file, key: str) -> dict:
    """Each server axis's baseline label (or value): ``baseline:`` where given, else its first."""
    base = dict(exp.get("baseline") or {})
    for a in base:
        if a not in server_sweep:
            raise ConfigError(file, f"{key}.baseline.{a}", f"not a server_sweep axis (axes: {list(server_sweep)})")
    out = {}
    for a, vals in server_sweep.items():
        opts = _values(vals)
        if a in base:
            hit = [i for i, (lab, v) in enumerate(opts) if (lab if lab is not None else v) == base[a]]
            if not hit:
                raise ConfigError(file, f"{key}.baseline.{a}", f"{base[a]!r} is not one of the axis' values")
            out[a] = hit[0]
        else:
            out[a] = 0
    return out


def knob_points(exp: dict, server_sweep: dict, file=None, key: str = "") -> list[tuple[str, list[tuple]]]:
    """The server points of a knob study, each with its knob label, in plan order.

    ``isolation``: the baseline (every axis at its baseline value), then each knob alone: one axis
    at one other value, the rest at baseline (``<axis>=<label>``). ``stacked``: knobs (one other
    value per axis, the axes' order) added one at a time, keeping each that helps; which help is
    only known once measured, so every subset of the knobs is planned (``+a+b``) and the report
    walks the path (inferlab.report.knobs). ``grid``: the product (no knob label)."""
    design = exp.get("design", "grid")
    if design not in DESIGNS:
        raise ConfigError(file, f"{key}.design", f"unknown design {design!r} (known: {', '.join(DESIGNS)})")
    if design != "grid" and not server_sweep:
        raise ConfigError(file, f"{key}.design", f"a {design} study needs knobs: server_sweep axes")
    if design != "grid" and any(set(g) & set(server_sweep) for g in exp.get("link", [])):
        raise ConfigError(file, f"{key}.link", f"a {design} study's knobs cannot be linked")
    base = _baseline(exp, server_sweep, file, key)
    opts = {a: _values(v) for a, v in server_sweep.items()}

    def point(choice: dict) -> list[tuple]:
        return [(a, *opts[a][choice.get(a, base[a])]) for a in server_sweep]

    def name(a, i):
        lab, v = opts[a][i]
        return f"{a}={lab if lab is not None else _fmt(v)}"

    if design == "isolation":
        out = [("baseline", point({}))]
        for a in server_sweep:
            out += [(name(a, i), point({a: i})) for i in range(len(opts[a])) if i != base[a]]
        return out
    if design == "stacked":
        for a in server_sweep:
            if len(opts[a]) != 2:
                raise ConfigError(
                    file, f"{key}.server_sweep.{a}", "a stacked study's knob has two values: baseline and the change"
                )
        knobs = list(server_sweep)
        if len(knobs) > MAX_STACKED_KNOBS:
            raise ConfigError(
                file, f"{key}.server_sweep", f"{len(knobs)} knobs > {MAX_STACKED_KNOBS} (2^n configurations)"
            )
        out = []
        for n in range(len(knobs) + 1):
            for subset in itertools.combinations(knobs, n):
                ch = {a: 1 - base[a] for a in subset}
                out.append(("baseline" if not subset else "+" + "+".join(name(a, ch[a]) for a in subset), point(ch)))
        return out
    return [(None, p) for p in points(server_sweep, [], file, key)] if server_sweep else [(None, [])]


def design_points(exp: dict, server_sweep: dict, sweep: dict, file=None, key: str = "") -> list[list[tuple]]:
    """Every point (server + client axes) of an experiment under its ``design``."""
    if exp.get("design", "grid") == "grid":
        return points({**server_sweep, **sweep}, exp.get("link", []), file, key)
    client = points(sweep, exp.get("link", []), file, key)
    return [s + c for _, s in knob_points(exp, server_sweep, file, key) for c in client]


def design_axes(exp: dict, server_point: dict, server_labels: dict) -> dict:
    """``{"knob": label}`` (Parquet ``param_knob``) for a knob study's configuration; {} for a grid."""
    if exp.get("design", "grid") == "grid":
        return {}
    for label, pt in knob_points(exp, exp.get("server_sweep", {})):
        if {a: v for a, _, v in pt} == server_point:
            return {"knob": label}
    return {}


def expand_week(cfg: Config, week: str) -> list[Cell]:
    cells = []
    file = cfg.files.get(week)
    for name in cfg.weeks[week]["experiments"]:
        exp = effective_experiment(cfg, week, name)
        key = f"experiments.{name}"
        gpus = cfg.preset["gpus"] if exp.get("gpus", "all") == "all" else exp["gpus"]
        # an experiment names GPUs; the run covers only the preset's (a cluster run may lack some)
        gpus = [g for g in gpus if g in cfg.preset["gpus"]]
        sweep = exp["sweep"]
        server_sweep = exp.get("server_sweep", {})
        fixed = exp.get("fixed", {})
        layout = dict(exp.get("layout") or {"kind": "single"})
        repeats = int(exp.get("repeats", 1))
        pts = design_points(exp, server_sweep, sweep, file, key)
        for e in exp["engines"]:
            check_pd_connector(cfg, e, layout, file, f"{key}.layout.connector")
            for g in gpus:
                for pt in pts:
                    server_point = {a: v for a, _, v in pt if a in server_sweep}
                    server_labels = {a: lab for a, lab, _ in pt if a in server_sweep and lab is not None}
                    client_point = {a: v for a, _, v in pt if a in sweep}
                    client_labels = {a: lab for a, lab, _ in pt if a in sweep and lab is not None}
                    bundles = bundle_axes(cfg, e, server_sweep)
                    args = {**exp.get("engine_args", {})}
                    arg_point, server_env = split_server_point(cfg, e, server_point, bundles)
                    args.update(arg_point)
                    model = server_point.get("model", exp.get("model", cfg.model_id))
                    # the catalog variant's serving arguments (e.g. online FP8), under the experiment's
                    args = {**(cfg.models.get(model) or {}).get("engine_args", {}), **args}
                    conf = configuration_id(server_point, server_labels, bundles)
                    base_id = cell_id(client_point, client_labels)
                    # a variant without its own preset setup runs with its base's (rules: configuration_spec)
                    setup = cfg.preset["engines"].get(e) or cfg.preset["engines"].get(engine_family(cfg, e), {})
                    full_args = {**setup.get("args", {}), **args}
                    for ref in model_refs(full_args):
                        if ref not in cfg.models:
                            raise ConfigError(file, f"{key}.server_sweep", _unknown_model(ref, cfg.models))
                    tool = tools.get(exp["tool"])
                    where = f"{key} (cell {conf}/{base_id} on {g})"
                    tool.check({**client_point, **fixed}, _with_context(full_args, cfg.models.get(model)), file, where)
                    if hasattr(tool, "check_engine"):  # what the tool's client supports against this engine
                        tool.check_engine({**client_point, **fixed}, engine_family(cfg, e), file, where)
                    # what the tool cannot measure on this configuration (typed skipped, never run)
                    tool_skip = tool.skip(full_args) if hasattr(tool, "skip") else None
                    for r in range(repeats):
                        c = Cell(
                            week=week,
                            experiment=name,
                            engine=e,
                            gpu=g,
                            configuration=conf,
                            cell=base_id if repeats == 1 else f"{base_id}-r{r + 1}",
                            tool=exp["tool"],
                            model=model,
                            params={**client_point, **fixed},
                            swept=tuple(client_point),
                            engine_args=args,
                            server_axes={
                                k: (server_labels.get(k, v) if not _scalar(v) else v) for k, v in server_point.items()
                            }
                            | design_axes(exp, server_point, server_labels),
                            layout=layout,
                            server_env=server_env,
                            between_cells={
                                "reset_cache": exp.get("reset_cache_between_cells", True),
                                "warmup_requests": exp.get("warmup_requests", 0),
                                "restart": exp.get("restart_between_cells", False),
                            },
                            timeout_s=exp.get("timeout_s", cfg.preset["cell_timeout_s"]),
                            repeat=r + 1 if repeats > 1 else 0,
                            skip=skip_reason(cfg, g, layout, full_args, e, model) or tool_skip,
                        )
                        cells.append(c)
    seen = {}
    for c in cells:
        if c.path in seen:
            raise ConfigError(file, f"experiments.{c.experiment}", f"duplicate cell {c.path}")
        seen[c.path] = c
    return cells


def _scalar(v) -> bool:
    return v is None or isinstance(v, (bool, int, float, str))


def expand(cfg: Config) -> dict[str, Cell]:
    """All cells of the run, keyed by their path."""
    out = {}
    for week in cfg.weeks:
        for c in expand_week(cfg, week):
            out[c.path] = c
    return out


def selection(cfg: Config, cells: dict[str, Cell]) -> set[str]:
    """The cell paths named by the preset's ``cells`` key (``--config cells=...``), checked."""
    sel = cfg.preset.get("cells") or []
    if isinstance(sel, str):
        sel = [s for s in sel.split(",") if s.strip()]
    out = set()
    for i, path in enumerate(sel):
        path = path.strip().strip("/")
        for prefix in (cfg.preset["results"].rstrip("/") + "/",):
            if path.startswith(prefix):
                path = path[len(prefix) :]
        for suffix in ("/cell.json", "/metrics.parquet"):
            if path.endswith(suffix):
                path = path[: -len(suffix)]
        if path not in cells:
            raise ConfigError(
                cfg.files["preset"],
                f"cells[{i}]",
                f"{path!r} is not a cell of this run (week/experiment/engine/gpu/configuration/cell)",
            )
        out.add(path)
    return out


def configurations(cells: dict[str, Cell], selected: set[str] = frozenset()) -> dict[tuple, list[Cell]]:
    """Cells grouped by engine configuration (week, experiment, engine, gpu, configuration), in sweep
    order: each group is one job with one engine start. Where ``selected`` names cells of a
    configuration, its job holds only those."""
    out: dict[tuple, list[Cell]] = {}
    for c in cells.values():
        out.setdefault((c.week, c.experiment, c.engine, c.gpu, c.configuration), []).append(c)
    for key, cs in out.items():
        picked = [c for c in cs if c.path in selected]
        if picked:
            out[key] = picked
    return out


def job_name(key: tuple) -> str:
    """The rule (and Slurm job) name of an engine configuration's job:
    ``measure_<week>_<experiment>_<engine>_<gpu>_<configuration>``."""
    return "measure_" + "_".join(re.sub(r"[^A-Za-z0-9_]", "_", k) for k in key)


def _with_context(args: dict, model: dict | None) -> dict:
    """``args`` with ``max_model_len`` = the model's context (``max_position_embeddings``, what the
    engine defaults to) where the configuration does not set it: a tool's check then rejects an
    input + output beyond the model's context at load, not on a GPU job."""
    if args.get("max_model_len") is not None or not model:
        return args
    ctx = (model.get("architecture") or {}).get("max_position_embeddings")
    return {**args, "max_model_len": ctx} if isinstance(ctx, int) and not isinstance(ctx, bool) else args


# -- env axes: server axes that set the server's environment, not an engine argument ---------------
SESSION_TMP = "<session_tmp>"  # in an env value: a fresh directory per serving session (apply_server_env)
_URL_PASSWORD = re.compile(r"(://[^/:@\s]+:)[^/@\s]+@")  # redis://user:password@host -> user:<redacted>@
SECRET = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|API_KEY|ACCESS_KEY|PRIVATE", re.IGNORECASE)


def env_axes(cfg: Config, engine: str) -> dict:
    """Axis name -> environment variable, from the engine's catalog entry (``env_axes``)."""
    return dict(cfg.engine_entry(engine).get("env_axes", {})) if engine in cfg.engines else {}


def env_value(v) -> str | None:
    """An env axis's value as the variable's text: booleans as LMCache and vLLM parse them
    (``true``/``false``), integral floats without ``.0``; None stays None (the variable is unset)."""
    if v is None:
        return None
    if isinstance(v, bool):
        return "true" if v else "false"
    return _fmt(v)


def split_server_point(cfg: Config, engine: str, server_point: dict, bundles: frozenset) -> tuple[dict, dict]:
    """A configuration's server point split into (engine arguments, server environment): an env axis
    (alone or inside a bundle) sets ``env_axes[axis]``; ``model`` is neither (SERVER_META)."""
    axes = env_axes(cfg, engine)
    args, env = {}, {}

    def put(k, v):
        if k in axes:
            env[axes[k]] = env_value(v)
        else:
            args[k] = v

    for k, v in server_point.items():
        if k in bundles:
            for a, x in v.items():
                put(a, x)
        elif k not in SERVER_META:
            put(k, v)
    return args, env


def apply_server_env(env: dict, server_env: dict, session_tmp=None) -> dict:
    """Apply a configuration's env axes to the server's environment ``env`` in place (None unsets)
    and replace ``<session_tmp>`` in every value with a fresh directory made for this session (a
    persistent cache tier starts empty: a cold run is cold; it survives the session's restarts).
    Returns what was set or unset here (variable -> value or None)."""
    import atexit
    import shutil
    import tempfile

    done = {}
    for k, v in server_env.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
        done[k] = v
    if any(SESSION_TMP in str(v) for v in env.values()):
        if session_tmp is None:
            session_tmp = tempfile.mkdtemp(prefix="inferlab-session-")
            atexit.register(shutil.rmtree, session_tmp, True)
        for k, v in env.items():
            if SESSION_TMP in v:
                env[k] = v.replace(SESSION_TMP, str(session_tmp))
                done[k] = env[k]
    return done


def env_record(env: dict, base: dict) -> dict:
    """The server environment as the workflow changed it (what differs from ``base``, the job's own
    environment; unset variables as None), for provenance; secrets by name are never written."""
    out = {k: v for k, v in sorted(env.items()) if base.get(k) != v}
    out |= {k: None for k in sorted(base) if k not in env}
    return {
        k: ("<redacted>" if SECRET.search(k) else _URL_PASSWORD.sub(r"\1<redacted>@", v)) if v else v
        for k, v in out.items()
    }

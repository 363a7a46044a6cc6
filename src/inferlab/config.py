"""Load and validate the workflow's configuration: the run preset plus the catalogs it points at.

Every file is validated against a JSON Schema (``inferlab/schemas``) with its defaults filled in;
then cross-references are checked (a week naming an unknown GPU, a preset naming an unknown
model...). Every error is a :class:`ConfigError` whose message names the file and the key.
"""

from __future__ import annotations

import copy
import ipaddress
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from . import tools as tools_mod
from .errors import ConfigError
from .server import HOST as LOOPBACK  # the preset's default server_bind

CATALOGS = ("gpus", "models", "datasets", "engines")


def _schema(name: str) -> dict:
    text = resources.files("inferlab.schemas").joinpath(f"{name}.schema.yaml").read_text()
    return yaml.safe_load(text)


def _key_path(path) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(top level)"


def _extend_with_default(validator_class):
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for prop, sub in properties.items():
                if "default" in sub and prop not in instance:
                    instance[prop] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


_Validator = _extend_with_default(jsonschema.Draft202012Validator)


def best_error(errors: list) -> jsonschema.ValidationError:
    """The error to report: jsonschema's ``best_match``, except inside a ``oneOf``/``anyOf``,
    where the branch the value came closest to is followed (fewest errors, then the deepest): a
    list of column objects with one bad key is reported at that key, not as "columns[0] is not of
    type 'string'" from the branch that takes a list of axis names."""
    top = max(errors, key=jsonschema.exceptions.relevance)

    def pick(err):
        if err.validator in ("oneOf", "anyOf") and err.context:
            branches: dict = {}
            for e in err.context:
                branches.setdefault(e.relative_schema_path[0], []).append(e)
            closest = min(branches.values(), key=lambda es: (len(es), -max(len(e.absolute_path) for e in es)))
            return pick(jsonschema.exceptions.best_match(closest))
        return err

    return pick(top) if top.validator in ("oneOf", "anyOf") else jsonschema.exceptions.best_match(errors)


def validate(data: Any, schema_name: str, file) -> dict:
    """Validate ``data`` (defaults filled in place) or raise ConfigError naming file and key."""
    validator = _Validator(_schema(schema_name))
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        best = best_error(errors)
        key = _key_path(best.absolute_path)
        msg = best.message
        if best.validator == "additionalProperties":
            msg = f"unknown key: {msg}"
        raise ConfigError(file, key, msg)
    return data


def load_yaml(path) -> Any:
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(path, None, "file not found") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else None
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(path, where, f"invalid YAML: {problem}") from None
    if data is None:
        raise ConfigError(path, None, "file is empty")
    return data


@dataclass
class Config:
    """The validated run configuration: preset + catalogs + weeks."""

    preset: dict
    gpus: dict
    models: dict
    datasets: dict
    engines: dict
    weeks: dict  # week id -> week document
    files: dict = field(default_factory=dict)  # what was loaded from where (for messages)

    @property
    def model_id(self) -> str:
        return self.preset["model"]

    def model(self, model_id: str | None = None) -> dict:
        return self.models[model_id or self.model_id]

    def gpu(self, gpu_id: str) -> dict:
        return self.gpus[gpu_id]

    def gpu_count(self, gpu_id: str) -> int:
        """GPUs (devices) of this kind one job may take in this run: the preset's ``gpu_count``
        (a number, or GPU id -> number), else the catalog's ``per_job``, else 1."""
        n = self.preset.get("gpu_count")
        if isinstance(n, dict):
            n = n.get(gpu_id)
        return int(n if n is not None else self.gpus[gpu_id].get("per_job", 1))

    def engine_entry(self, engine: str) -> dict:
        """The catalog entry of an engine or engine variant, with its base's fields inherited
        (a variant says ``base: vllm`` and adds args, env vars, server args), and the preset's
        ``server_bind`` where it is not the default (the adapter binds its server there; the entry
        is in every configuration's rule params, so the default leaves them unchanged)."""
        entry = self._catalog_entry(engine)
        bind = self.preset.get("server_bind", LOOPBACK)
        return entry if bind == LOOPBACK else {**entry, "server_bind": bind}

    def _catalog_entry(self, engine: str) -> dict:
        e = self.engines[engine]
        base = e.get("base")
        if not base:
            return e
        b = self._catalog_entry(base)
        merged = {**b, **{k: v for k, v in e.items() if v not in ([], {}, None)}}
        merged["args"] = {**b.get("args", {}), **e.get("args", {})}
        merged["env_vars"] = {**b.get("env_vars", {}), **e.get("env_vars", {})}
        env_axes = {**b.get("env_axes", {}), **e.get("env_axes", {})}
        if env_axes:  # only where declared: the entry is in every configuration's rule params
            merged["env_axes"] = env_axes
        merged["server_args"] = list(dict.fromkeys(b.get("server_args", []) + e.get("server_args", [])))
        merged["adapter"] = b.get("adapter") or base
        return merged


def load(preset: dict | str | Path, base_dir: Path | str = ".") -> Config:
    """Load a preset (a path, or the already parsed dict Snakemake holds) and its catalogs."""
    base_dir = Path(base_dir)
    if isinstance(preset, (str, Path)):
        preset_file = Path(preset)
        preset = load_yaml(base_dir / preset_file)
    else:
        preset_file = Path("config (--configfile/--config)")
        preset = copy.deepcopy(preset)
    if not isinstance(preset, dict):
        raise ConfigError(preset_file, None, "expected a mapping at the top level")
    validate(preset, "config", preset_file)
    preset.setdefault("compile_cache", f"{preset['cache']}/compile")

    catalog_dir = base_dir / preset["catalog"]
    docs = {}
    files = {"preset": str(preset_file), "catalog_dir": str(catalog_dir)}
    for name in CATALOGS:
        f = catalog_dir / f"{name}.yaml"
        docs[name] = validate(load_yaml(f), name, f)[name]
        files[name] = str(f)

    if preset["weeks"] == "all":
        found = sorted(f.stem for f in (catalog_dir / "weeks").glob("week[0-9][0-9].yaml"))
        if not found:
            raise ConfigError(preset_file, "weeks", f"all: no week files in {catalog_dir / 'weeks'}")
        preset["weeks"] = found
    weeks = {}
    for week in preset["weeks"]:
        f = catalog_dir / "weeks" / f"{week}.yaml"
        doc = validate(load_yaml(f), "week", f)
        if doc["week"] != week:
            raise ConfigError(f, "week", f"says {doc['week']!r} but the file is for {week!r}")
        weeks[week] = doc
        files[week] = str(f)

    cfg = Config(preset, docs["gpus"], docs["models"], docs["datasets"], docs["engines"], weeks, files)
    _check_references(cfg, preset_file)
    return cfg


def _unknown(kind: str, value, known) -> str:
    return f"unknown {kind} {value!r} (known: {', '.join(sorted(known))})"


def _check_references(cfg: Config, preset_file) -> None:
    p = cfg.preset
    for i, g in enumerate(p["gpus"]):
        if g not in cfg.gpus:
            raise ConfigError(preset_file, f"gpus[{i}]", _unknown("GPU", g, cfg.gpus))
    if p["model"] not in cfg.models:
        raise ConfigError(preset_file, "model", _unknown("model", p["model"], cfg.models))
    for e in p["engines"]:
        if e not in cfg.engines:
            raise ConfigError(preset_file, f"engines.{e}", _unknown("engine", e, cfg.engines))
    try:
        ipaddress.IPv4Address(p.get("server_bind", LOOPBACK))
    except ValueError:
        raise ConfigError(
            preset_file, "server_bind", f"{p['server_bind']!r} is not an IPv4 address (e.g. 127.0.0.1, 0.0.0.0)"
        ) from None
    for e in cfg.engines:
        _check_env_axes(cfg, e)
    for mid, m in cfg.models.items():  # a trained model reuses a built model's tokenizer
        tok = (m.get("train") or {}).get("tokenizer")
        if tok is not None and cfg.models.get(tok, {}).get("source") != "build":
            raise ConfigError(
                cfg.files["models"], f"models.{mid}.train.tokenizer", f"{tok!r} is not a built catalog model"
            )
    for week, ov in p["overrides"].items():
        if week not in cfg.weeks:
            continue  # overrides for weeks this run does not include are inert
        for exp in ov:
            if exp not in cfg.weeks[week]["experiments"]:
                known = cfg.weeks[week]["experiments"]
                raise ConfigError(preset_file, f"overrides.{week}.{exp}", _unknown("experiment", exp, known))
            ds = ov[exp].get("fixed", {}).get("dataset")
            if ds is not None and ds not in cfg.datasets:
                raise ConfigError(
                    preset_file, f"overrides.{week}.{exp}.fixed.dataset", _unknown("dataset", ds, cfg.datasets)
                )
            m = ov[exp].get("model")
            if m is not None and m not in cfg.models:
                raise ConfigError(preset_file, f"overrides.{week}.{exp}.model", _unknown("model", m, cfg.models))
            wexp = cfg.weeks[week]["experiments"][exp]
            if wexp.get("tool") in tools_mod.TOOLS:
                engines = ov[exp].get("engines", wexp["engines"])
                check_parts(cfg, wexp["tool"], engines, ov[exp], preset_file, f"overrides.{week}.{exp}")
    for week, doc in cfg.weeks.items():
        f = cfg.files[week]
        for name, exp in doc["experiments"].items():
            key = f"experiments.{name}"
            if exp["tool"] not in tools_mod.TOOLS:
                raise ConfigError(f, f"{key}.tool", _unknown("tool", exp["tool"], tools_mod.TOOLS))
            for i, e in enumerate(exp["engines"]):
                if e not in cfg.engines:
                    raise ConfigError(f, f"{key}.engines[{i}]", _unknown("engine", e, cfg.engines))
                if exp["tool"] not in cfg.engine_entry(e)["tools"]:
                    raise ConfigError(
                        f,
                        f"{key}.tool",
                        f"engine {e!r} has no tool {exp['tool']!r} (config/engines.yaml lists {cfg.engines[e]['tools']})",
                    )
            check_experiment(cfg, exp, f, key)
            if exp["gpus"] != "all":
                for i, g in enumerate(exp["gpus"]):
                    if g not in cfg.gpus:
                        raise ConfigError(f, f"{key}.gpus[{i}]", _unknown("GPU", g, cfg.gpus))
            if "model" in exp and exp["model"] not in cfg.models:
                raise ConfigError(f, f"{key}.model", _unknown("model", exp["model"], cfg.models))
            both = set(exp["sweep"]) & set(exp.get("fixed", {}))
            if both:
                raise ConfigError(f, f"{key}.fixed", f"{sorted(both)} also swept in {key}.sweep")
            both = set(exp.get("server_sweep", {})) & set(exp.get("engine_args", {}))
            if both:
                raise ConfigError(f, f"{key}.engine_args", f"{sorted(both)} also swept in {key}.server_sweep")
            bundled = {
                a
                for name, vals in exp.get("server_sweep", {}).items()
                if _is_bundle(vals) and not _engine_arg(cfg, exp, name)
                for b in vals.values()
                for a in b
            }
            both = bundled & set(exp.get("engine_args", {}))
            if both:
                raise ConfigError(f, f"{key}.engine_args", f"{sorted(both)} also set by a bundle in {key}.server_sweep")
            both = set(exp.get("server_sweep", {})) & set(exp["sweep"])
            if both:
                raise ConfigError(f, f"{key}.server_sweep", f"{sorted(both)} also swept in {key}.sweep")


def check_experiment(cfg: Config, exp: dict, f, key: str) -> None:
    """Nothing silent: every parameter (swept or fixed) of ``exp`` must be one its tool consumes,
    with a value the tool's schema allows; every engine argument (fixed or swept on the server) one
    the engine knows (config/engines.yaml ``server_args``). Required parameters and the dataset are
    checked on the experiment as the run sees it (``cfg`` overrides applied by the caller)."""
    check_parts(cfg, exp["tool"], exp["engines"], exp, f, key)
    tool = tools_mod.get(exp["tool"])
    kind = (exp.get("layout") or {}).get("kind", "single")
    if not tool.NEEDS_SERVER and kind != "single":
        raise ConfigError(
            f, f"{key}.layout.kind", f"a {kind!r} layout serves requests: tool {exp['tool']!r} runs no server"
        )
    if not tool.NEEDS_SERVER and exp.get("restart_between_cells"):
        raise ConfigError(
            f, f"{key}.restart_between_cells", f"tool {exp['tool']!r} runs no server: there is nothing to restart"
        )
    if not tool.NEEDS_SERVER:
        for name in env_axes_used(cfg, exp):
            raise ConfigError(
                f,
                f"{key}.server_sweep.{name}",
                f"{name!r} sets the server's environment (config/engines.yaml env_axes) but tool "
                f"{exp['tool']!r} runs no server: nothing would read it",
            )
    if not tool.NEEDS_SERVER and exp.get("warmup_requests"):
        raise ConfigError(
            f, f"{key}.warmup_requests", f"tool {exp['tool']!r} runs no server: warm-up requests would be ignored"
        )
    present = set(exp["sweep"]) | set(exp.get("fixed", {}))
    missing = [p for p in tool.REQUIRED if p not in present]
    if missing:
        raise ConfigError(f, key, f"tool {exp['tool']!r} needs {missing} in sweep or fixed")
    if tool.DATASET:
        ds = exp.get("fixed", {}).get("dataset")
        # a tool may generate its prompts for some workloads (bench_serving's prefix_repetition...)
        generated = getattr(tool, "generates_prompts", lambda exp: False)(exp)
        if ds is None and not generated:
            raise ConfigError(f, f"{key}.fixed.dataset", f"a {exp['tool']} experiment names its dataset")
        if ds is not None and ds not in cfg.datasets:
            raise ConfigError(f, f"{key}.fixed.dataset", _unknown("dataset", ds, cfg.datasets))


def _check_env_axes(cfg: Config, engine: str) -> None:
    """An env axis (config/engines.yaml ``env_axes``) may not shadow an engine argument: a swept
    value must have exactly one consumer."""
    entry = cfg.engine_entry(engine)
    for axis, var in entry.get("env_axes", {}).items():
        if axis in entry.get("server_args", []) or axis == "model":
            raise ConfigError(
                cfg.files["engines"],
                f"engines.{engine}.env_axes.{axis}",
                f"{axis!r} is also a server argument of {engine!r}: an axis sets one thing (here {var})",
            )
    for var, value in cfg.engines[engine].get("env_vars", {}).items():
        if "{" in value or "}" in value:
            raise ConfigError(cfg.files["engines"], f"engines.{engine}.env_vars.{var}", _BRACES.format(value=value))


def env_axes_used(cfg: Config, exp: dict) -> list[str]:
    """Names of ``exp``'s server axes (or bundle members) that are env axes of one of its engines."""
    env = set()
    for e in exp.get("engines", []):
        if e in cfg.engines:
            env |= set(cfg.engine_entry(e).get("env_axes", {}))
    out = []
    for name, values in (exp.get("server_sweep") or {}).items():
        members = [a for b in values.values() for a in b] if _is_bundle(values) else [name]
        out += [a for a in members if a in env and a not in out]
    return out


# a rule's params are Snakemake strings: braces would be read as wildcards
_BRACES = "{value!r}: braces are Snakemake wildcards in a rule's params; a session directory is <session_tmp>"
ENV_VALUE = {"type": ["string", "integer", "number", "boolean", "null"]}


def _check_env_value(file, where: str, axis: str, var: str, value) -> None:
    errs = list(jsonschema.Draft202012Validator(ENV_VALUE).iter_errors(value))
    if errs:
        raise ConfigError(
            file, where, f"{value!r} is not allowed for {axis} (sets {var}: a scalar, or null to unset it)"
        )
    if isinstance(value, str) and ("{" in value or "}" in value):
        raise ConfigError(file, where, _BRACES.format(value=value))


def _engine_arg(cfg: Config, exp: dict, name: str) -> bool:
    return any(name in cfg.engine_entry(e).get("server_args", []) for e in exp.get("engines", []) if e in cfg.engines)


def _is_bundle(values) -> bool:
    """A bundle server axis: a non-empty mapping label -> mapping of engine arguments."""
    return isinstance(values, dict) and bool(values) and all(isinstance(v, dict) for v in values.values())


def check_parts(cfg: Config, tool_name: str, engines: list, doc: dict, file, key: str) -> None:
    """The keys and values of ``doc``'s sweep / fixed / engine_args / server_sweep (a week file's
    experiment, or a preset's override of one)."""
    allowed = tools_mod.get(tool_name).PARAMS
    for part in ("sweep", "fixed"):
        for name, values in (doc.get(part) or {}).items():
            where = f"{key}.{part}.{name}"
            if name not in allowed:
                raise ConfigError(
                    file,
                    where,
                    f"tool {tool_name!r} has no parameter {name!r} (it consumes: {', '.join(allowed)}); "
                    "a parameter nothing reads would silently measure the default",
                )
            if part == "fixed":
                vals = [(where, values)]
            elif isinstance(values, dict):
                vals = [(f"{where}.{lab}", v) for lab, v in values.items()]
            else:
                vals = [(f"{where}[{i}]", v) for i, v in enumerate(values)]
            for at, v in vals:
                errs = list(jsonschema.Draft202012Validator(allowed[name]).iter_errors(v))
                if errs:
                    what = allowed[name].get("description", "")
                    raise ConfigError(file, at, f"{v!r} is not allowed for {name} ({what}): {errs[0].message}")
    for e in engines:
        if e not in cfg.engines:
            continue
        known = cfg.engine_entry(e).get("server_args", [])
        env_axes = cfg.engine_entry(e).get("env_axes", {})
        hint_env = f"; env axes (env_axes): {', '.join(env_axes)}" if env_axes else ""
        for part in ("engine_args", "server_sweep"):
            for name, values in (doc.get(part) or {}).items():
                if part == "server_sweep" and name == "model":
                    for i, m in enumerate(values.values() if isinstance(values, dict) else values):
                        if m not in cfg.models:
                            raise ConfigError(file, f"{key}.{part}.model[{i}]", _unknown("model", m, cfg.models))
                    continue
                if part == "server_sweep" and name in env_axes:
                    # an env axis: each value sets the server's environment variable env_axes[name]
                    pairs = values.items() if isinstance(values, dict) else enumerate(values)
                    for i, v in pairs:
                        at = f"{key}.{part}.{name}" + (f".{i}" if isinstance(values, dict) else f"[{i}]")
                        _check_env_value(file, at, name, env_axes[name], v)
                    continue
                if part == "server_sweep" and name not in known and _is_bundle(values):
                    # a bundle axis: label -> several engine arguments (or env axes) set together
                    # (one configuration)
                    for lab, bundle in values.items():
                        for arg in bundle:
                            if arg in env_axes:
                                where = f"{key}.{part}.{name}.{lab}.{arg}"
                                _check_env_value(file, where, arg, env_axes[arg], bundle[arg])
                                continue
                            if arg not in known:
                                raise ConfigError(
                                    file,
                                    f"{key}.{part}.{name}.{lab}.{arg}",
                                    f"engine {e!r} has no server argument {arg!r} (known, config/engines.yaml "
                                    f"server_args: {', '.join(known)}{hint_env})",
                                )
                    continue
                if name not in known:
                    bundle_hint = (
                        "; a server axis that is not an engine argument is a bundle: a mapping label -> "
                        "{engine argument: value, ...}"
                        if part == "server_sweep"
                        else ""
                    )
                    raise ConfigError(
                        file,
                        f"{key}.{part}.{name}",
                        f"engine {e!r} has no server argument {name!r} (known, config/engines.yaml "
                        f"server_args: {', '.join(known)}{hint_env}){bundle_hint}",
                    )

"""Expand a week's experiments into cells: engine x GPU x the product of the sweep values.

A cell is one benchmark run. Its id is a path segment built from its swept parameters in the
order the week file lists them, with short prefixes (``bs16``, ``in512``, ``rr4``); its full
address is ``<week>/<experiment>/<engine>/<gpu>/<cell>``, which is also its results folder.
"""

from __future__ import annotations

import copy
import itertools
import re
from dataclasses import dataclass, field

from .config import Config
from .errors import ConfigError

SHORT = {
    "batch_size": "bs",
    "input_len": "in",
    "output_len": "out",
    "request_rate": "rr",
    "num_prompts": "np",
    "max_concurrency": "mc",
}
SEGMENT = re.compile(r"^[A-Za-z0-9._+-]+$")


def _fmt(v) -> str:
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    return str(v)


def cell_id(sweep: dict) -> str:
    cid = "-".join(f"{SHORT.get(k, k)}{_fmt(v)}" for k, v in sweep.items())
    if not SEGMENT.match(cid):
        raise ValueError(f"cell id {cid!r} is not a safe path segment")
    return cid


@dataclass(frozen=True)
class Cell:
    week: str
    experiment: str
    engine: str
    gpu: str
    cell: str
    tool: str
    model: str
    params: dict = field(hash=False, compare=False)  # swept + fixed, in order
    swept: tuple = ()  # names of the swept parameters
    engine_args: dict = field(default_factory=dict, hash=False, compare=False)
    timeout_s: float | None = None

    @property
    def path(self) -> str:
        return f"{self.week}/{self.experiment}/{self.engine}/{self.gpu}/{self.cell}"

    def to_dict(self) -> dict:
        return {
            "week": self.week,
            "experiment": self.experiment,
            "engine": self.engine,
            "gpu": self.gpu,
            "cell": self.cell,
            "tool": self.tool,
            "model": self.model,
            "params": dict(self.params),
            "swept": list(self.swept),
            "engine_args": dict(self.engine_args),
            "timeout_s": self.timeout_s,
        }


def effective_experiment(cfg: Config, week: str, name: str) -> dict:
    """The experiment as this run sees it: the week file's entry with the preset's overrides."""
    exp = copy.deepcopy(cfg.weeks[week]["experiments"][name])
    ov = cfg.preset["overrides"].get(week, {}).get(name, {})
    for key in ("sweep", "fixed"):
        if key in ov:
            exp[key] = {**exp.get(key, {}), **ov[key]}
    for key in ("gpus", "engines"):
        if key in ov:
            exp[key] = ov[key]
    return exp


def expand_week(cfg: Config, week: str) -> list[Cell]:
    cells = []
    for name in cfg.weeks[week]["experiments"]:
        exp = effective_experiment(cfg, week, name)
        gpus = cfg.preset["gpus"] if exp.get("gpus", "all") == "all" else exp["gpus"]
        # an experiment names GPUs; the run covers only the preset's (a cluster run may lack some)
        gpus = [g for g in gpus if g in cfg.preset["gpus"]]
        sweep = exp["sweep"]
        fixed = exp.get("fixed", {})
        names = list(sweep)
        for e in exp["engines"]:
            for g in gpus:
                for values in itertools.product(*(sweep[k] for k in names)):
                    point = dict(zip(names, values, strict=False))
                    cells.append(
                        Cell(
                            week=week,
                            experiment=name,
                            engine=e,
                            gpu=g,
                            cell=cell_id(point),
                            tool=exp["tool"],
                            model=exp.get("model", cfg.model_id),
                            params={**point, **fixed},
                            swept=tuple(names),
                            engine_args=dict(exp.get("engine_args", {})),
                            timeout_s=exp.get("timeout_s", cfg.preset["cell_timeout_s"]),
                        )
                    )
    seen = {}
    for c in cells:
        if c.path in seen:
            raise ConfigError(cfg.files[week], f"experiments.{c.experiment}", f"duplicate cell {c.path}")
        seen[c.path] = c
    return cells


def expand(cfg: Config) -> dict[str, Cell]:
    """All cells of the run, keyed by their path."""
    out = {}
    for week in cfg.weeks:
        for c in expand_week(cfg, week):
            out[c.path] = c
    return out


SERVING_TOOLS = ("bench_serving",)


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
                f"{path!r} is not a cell of this run (week/experiment/engine/gpu/cell)",
            )
        out.add(path)
    return out


def sessions(cells: dict[str, Cell], selected: set[str] = frozenset()) -> dict[tuple, list[Cell]]:
    """Serving cells grouped by server configuration (week, experiment, engine, gpu), in sweep
    order. Where ``selected`` names cells of a configuration, its session holds only those."""
    out: dict[tuple, list[Cell]] = {}
    for c in cells.values():
        if c.tool in SERVING_TOOLS:
            out.setdefault((c.week, c.experiment, c.engine, c.gpu), []).append(c)
    for key, cs in out.items():
        picked = [c for c in cs if c.path in selected]
        if picked:
            out[key] = picked
    return out

# Helpers shared by the rules. The logic lives in the inferlab package (src/inferlab).
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from inferlab import config as il_config  # noqa: E402
from inferlab import matrix as il_matrix  # noqa: E402

CFG = il_config.load(config, base_dir=workflow.basedir)
CELLS = il_matrix.expand(CFG)
# serving cells run in one session job per server configuration (rules/serving.smk)
SESSIONS = il_matrix.sessions(CELLS, il_matrix.selection(CFG, CELLS))
FULL_SESSIONS = il_matrix.sessions(CELLS)
# offline cells (one engine process each) run in bench_cell; its experiment wildcard is limited
# to their experiments so it never competes with a session rule for a record
OFFLINE_EXPERIMENTS = sorted(
    {c.experiment for c in CELLS.values() if c.tool not in il_matrix.SERVING_TOOLS}
)
_SERVING_EXPERIMENTS = {k[1] for k in FULL_SESSIONS}
if set(OFFLINE_EXPERIMENTS) & _SERVING_EXPERIMENTS:
    raise ValueError(
        f"experiment ids {sorted(set(OFFLINE_EXPERIMENTS) & _SERVING_EXPERIMENTS)} name both an "
        "offline and a serving experiment (in different weeks); give them distinct ids"
    )
WEEKS = list(CFG.weeks)
RESULTS = CFG.preset["results"]
LOGS = CFG.preset["logs"]
CACHE = CFG.preset["cache"]
PKG = Path(workflow.basedir) / "src" / "inferlab"
# The library code each stage's result depends on: edit it and that stage reruns (cheap, local
# stages only; a benchmark cell reruns when its parameters change, not when Python is edited).
EXTRACT_CODE = [
    str(PKG / f)
    for f in (
        "records.py",
        "guard.py",
        "theory.py",
        "engines/vllm.py",
        "engines/sglang.py",
        "engines/serving.py",
    )
]
AGGREGATE_CODE = [
    str(PKG / f) for f in ("aggregate.py", "tables.py", "theory.py", "guard.py")
] + [str(p) for p in sorted((PKG / "weeks").glob("*.py"))]
CELL_DIR = f"{RESULTS}/{{week}}/{{experiment}}/{{engine}}/{{gpu}}/{{cell}}"
CELL_LOG = f"{LOGS}/{{week}}/{{experiment}}/{{engine}}/{{gpu}}/{{cell}}"


wildcard_constraints:
    week=r"week[0-9]{2}",
    experiment=r"[a-z0-9_]+",
    engine=r"[a-z0-9_]+",
    gpu=r"[a-z0-9_]+",
    cell=r"[A-Za-z0-9._+-]+",
    model=r"[A-Za-z0-9._-]+",
    dataset=r"[A-Za-z0-9._-]+",
    filename=r"[A-Za-z0-9._-]+",


def cell_of(wildcards):
    """The matrix cell a path names; a path outside the matrix is a clear error."""
    key = f"{wildcards.week}/{wildcards.experiment}/{wildcards.engine}/{wildcards.gpu}/{wildcards.cell}"
    try:
        return CELLS[key]
    except KeyError:
        known = ", ".join(k for k in CELLS if k.startswith(f"{wildcards.week}/"))
        raise ValueError(
            f"{key} is not a cell of this run's matrix (config/weeks/{wildcards.week}.yaml with the "
            f"preset's overrides); known cells of {wildcards.week}: {known}"
        ) from None


def model_dir(model_id):
    source = CFG.model(model_id)["source"]
    return f"{CACHE}/models/{'built' if source == 'build' else 'hub'}/{model_id}"


def cell_model_dir(wildcards):
    return model_dir(cell_of(wildcards).model)


def cell_dataset(wildcards):
    ds = cell_of(wildcards).params.get("dataset")
    return [dataset_path(ds)] if ds else []


def cell_spec(wildcards):
    """Everything that defines a cell's measurement: a change here reruns that cell only.
    Canonical JSON (sorted keys), so that reordering keys in a YAML file changes nothing.
    """
    c = cell_of(wildcards)
    spec = {
        "cell": c.to_dict(),
        "engine_setup": CFG.preset["engines"].get(c.engine, {}),
        "engine_catalog": CFG.engines[c.engine],
        "fault": CFG.preset["inject_fault"].get(c.path),
        "compile_cache": CFG.preset["compile_cache"],
    }
    return json.dumps(spec, sort_keys=True)


def gpu_count(gpu):
    return 0 if CFG.gpu(gpu).get("kind", "gpu") == "cpu" else 1


def gpu_model(gpu):
    # the gres type of the GPU (--gpus=<type>:1); site data in config/gpus.yaml
    g = CFG.gpu(gpu)
    return g.get("gres_type", "") if g.get("kind", "gpu") == "gpu" else ""


def cell_gpus(wildcards):
    return gpu_count(wildcards.gpu)


def cell_partition(wildcards):
    return CFG.gpu(wildcards.gpu)["partition"]


def cell_gpu_model(wildcards):
    return gpu_model(wildcards.gpu)


def dataset_path(dataset_id):
    d = CFG.datasets[dataset_id]
    kind = "built/" if d["source"] == "build" else ""
    return f"{CACHE}/datasets/{kind}{dataset_id}/{d['filename']}"


def session_name(key):
    return "serve_engine_" + "_".join(key)


def session_dir(key):
    week, exp, engine, gpu = key
    return f"{RESULTS}/{week}/{exp}/{engine}/{gpu}/_server"


def session_spec(key):
    """Everything that defines a session's measurements, for ALL cells of its configuration (not
    only those this run measures): a rerun of one cell leaves the params unchanged, so the next
    full run does not re-measure its siblings; any change to a cell reruns the session.
    """
    cells = FULL_SESSIONS[key]
    first = cells[0]
    spec = {
        "cells": {c.cell: c.to_dict() for c in cells},
        "server_args": first.engine_args,
        "engine_setup": CFG.preset["engines"].get(first.engine, {}),
        "engine_catalog": CFG.engines[first.engine],
        "faults": {
            c.cell: CFG.preset["inject_fault"][c.path]
            for c in cells
            if c.path in CFG.preset["inject_fault"]
        },
        "compile_cache": CFG.preset["compile_cache"],
        "ready_timeout_s": CFG.preset["server_ready_timeout_s"],
        "session_dir": session_dir(key),
    }
    return json.dumps(spec, sort_keys=True)


def session_runtime_min(cells):
    # Slurm limit: server start + every cell's own deadline + teardown
    return (
        int(
            (CFG.preset["server_ready_timeout_s"] + sum(c.timeout_s for c in cells))
            // 60
        )
        + 5
    )


def cell_runtime_min(wildcards):
    # Slurm limit: the cell's own deadline plus time for the record and teardown
    return int(cell_of(wildcards).timeout_s // 60) + 5


def week_cells(week):
    return [c for c in CELLS.values() if c.week == week]


def week_metrics(wildcards):
    return [f"{RESULTS}/{c.path}/metrics.parquet" for c in week_cells(wildcards.week)]


def week_joins(week):
    """Parquet of the weeks whose numbers this week's tables join (e.g. Week 2's online vs offline)."""
    from inferlab.weeks import JOINS

    return {w: f"{RESULTS}/{w}/{w}.parquet" for w in JOINS.get(week, []) if w in WEEKS}


def week_captions(week):
    """Figure name -> caption, for `snakemake --report` (report/figure.rst)."""
    from inferlab.weeks import WEEKS as _W

    return getattr(_W.get(week), "CAPTIONS", {})


def week_outputs(week):
    return [f"{RESULTS}/{week}/report.md", f"{RESULTS}/{week}/{week}.parquet"]


def done_message():
    lines = ["", "inferlab: done. Outputs per week:"]
    for w in WEEKS:
        root = Path(RESULTS) / w
        if (root / "report.md").exists():
            lines.append(f"  {w}: report   {root / 'report.md'}")
            lines.append(f"  {w}: tables   {root / 'tables'}/*.md|csv")
            lines.append(f"  {w}: figures  {root / 'figures'}/*.png")
            lines.append(f"  {w}: metrics  {root / f'{w}.parquet'}")
    return "\n".join(lines)


def type_killed_cells():
    """After a failed run: give cells whose Slurm job was killed (TIMEOUT, OOM, CANCELLED...)
    before Snakemake kept a record a typed record, so the next run tabulates them."""
    from inferlab import cells as il_cells

    slurm_logs = Path(f"{LOGS}/slurm")
    if not slurm_logs.exists():
        return
    for rec in il_cells.reconcile(Path(RESULTS), slurm_logs, CELLS):
        cell = f"{rec['week']}/{rec['experiment']}/{rec['engine']}/{rec['gpu']}/{rec['cell']}"
        print(
            f"inferlab: {cell} typed {rec['reason']} from Slurm; run again to tabulate it"
        )

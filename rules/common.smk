# Helpers shared by the rules. The logic lives in the inferlab package (src/inferlab).
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from inferlab import config as il_config  # noqa: E402
from inferlab import eagle as il_eagle  # noqa: E402
from inferlab import identity as il_identity  # noqa: E402
from inferlab import matrix as il_matrix  # noqa: E402
from inferlab import train as il_train  # noqa: E402

CFG = il_config.load(config, base_dir=workflow.basedir)
CELLS = il_matrix.expand(CFG)
# every engine configuration (one engine start) is one job measuring its cells (rules/measure.smk);
# with --config cells=... a configuration's job holds only the named cells
CONFIGURATIONS = il_matrix.configurations(CELLS, il_matrix.selection(CFG, CELLS))
FULL_CONFIGURATIONS = il_matrix.configurations(CELLS)
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
        "extract.py",
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
]
CELL_DIR = (
    f"{RESULTS}/{{week}}/{{experiment}}/{{engine}}/{{gpu}}/{{configuration}}/{{cell}}"
)
CELL_LOG = (
    f"{LOGS}/{{week}}/{{experiment}}/{{engine}}/{{gpu}}/{{configuration}}/{{cell}}"
)


wildcard_constraints:
    week=r"week[0-9]{2}",
    experiment=r"[a-z0-9_]+",
    engine=r"[a-z0-9_]+",
    gpu=r"[a-z0-9_]+",
    configuration=r"[A-Za-z0-9._+-]+",
    cell=r"[A-Za-z0-9._+-]+",
    model=r"[A-Za-z0-9._-]+",
    dataset=r"[A-Za-z0-9._-]+",
    filename=r"[A-Za-z0-9._-]+",


def cell_of(wildcards):
    """The matrix cell a path names; a path outside the matrix is a clear error."""
    key = (
        f"{wildcards.week}/{wildcards.experiment}/{wildcards.engine}/{wildcards.gpu}/"
        f"{wildcards.configuration}/{wildcards.cell}"
    )
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
    if source == "quantize":  # Week 12's variants (rule quantize_model)
        d = f"{CACHE}/models/quantized/{model_id}"
        check_trained_cache(d, CFG.model(model_id)["quantize"]["base"])
        return d
    if source == "eagle":  # an EAGLE head trained on its target (rule eagle_model)
        d = f"{CACHE}/models/eagle/{model_id}"
        why = il_eagle.stale_cache(d, eagle_spec(model_id))
        if why:
            raise ValueError(f"config/models.yaml models.{model_id}: {why}")
        return d
    if source == "train":  # trained locally (rule train_model)
        d = f"{CACHE}/models/trained/{model_id}"
        check_trained_cache(d, model_id)
        return d
    return f"{CACHE}/models/{'built' if source == 'build' else 'hub'}/{model_id}"


def eagle_spec(model_id):
    """What inferlab.eagle builds the head from: the catalog's ``eagle`` block (less the target)
    and the head's own sizes from its ``architecture``."""
    m = CFG.model(model_id)
    if m["eagle"]["target"] not in CFG.models:
        raise ValueError(
            f"config/models.yaml models.{model_id}.eagle.target: unknown model {m['eagle']['target']!r}"
        )
    arch = m["architecture"]
    keys = ("hidden_size", "vocab_size", "num_hidden_layers", "intermediate_size")
    keys += ("num_attention_heads", "num_key_value_heads")
    return {
        **{k: arch[k] for k in keys},
        **{k: v for k, v in m["eagle"].items() if k != "target"},
    }


def check_trained_cache(path, trained_id):
    """A cached trained model (or a variant of one) trained with other settings than the catalog's
    is an error naming the folder and the keys, never a stale model measured silently.
    """
    m = CFG.model(trained_id)
    why = il_train.stale_cache(path, {**m["architecture"], **m["train"]})
    if why:
        raise ValueError(f"config/models.yaml models.{trained_id}: {why}")


def configuration_model_refs(cells):
    """Local folders of the catalog models the engine arguments name (``catalog:<id>``, e.g. a
    speculative draft): made before the configuration's job, which passes their paths.
    """
    return {m: model_dir(m) for m in il_matrix.model_refs(cells[0].engine_args)}


def dataset_path(dataset_id):
    d = CFG.datasets[dataset_id]
    kind = "built/" if d["source"] == "build" else ""
    return f"{CACHE}/datasets/{kind}{dataset_id}/{d['filename']}"


def gpu_model(gpu):
    # the gres type of the GPU (--gpus=<type>:N); site data in config/gpus.yaml
    g = CFG.gpu(gpu)
    return g.get("gres_type", "") if g.get("kind", "gpu") == "gpu" else ""


def configuration_name(key):
    """Rule name of an engine configuration's job: measure_<week>_<experiment>_<engine>_<gpu>_<id>."""
    return il_matrix.job_name(key)


def configuration_dir(key):
    return f"{RESULTS}/{'/'.join(key)}/_engine"


def configuration_gpus(cells):
    """GPUs the job asks Slurm for: the layout's, 0 on the CPU or where the cells are skipped."""
    c = cells[0]
    if c.skip or CFG.gpu(c.gpu).get("kind", "gpu") == "cpu":
        return 0
    return il_matrix.gpus_needed(c.layout, c.engine_args)


def configuration_datasets(cells):
    return sorted(
        {dataset_path(c.params["dataset"]) for c in cells if c.params.get("dataset")}
    )


def engine_identity(engine):
    """What is installed in the engine's environment (probed once per run): part of every
    configuration's params, so an upgraded engine re-measures and an unchanged one does not.
    """
    if not CFG.preset.get("engine_identity", True):
        return None
    entry = CFG.engine_entry(engine)
    setup = CFG.preset["engines"].get(engine) or CFG.preset["engines"].get(
        entry.get("adapter", engine), {}
    )
    env = setup.get("env")
    if env and not Path(env).is_absolute():
        env = str(Path(workflow.basedir) / env)
    return il_identity.engine_identity(env, setup.get("env_vars", {}).get("PYTHONPATH"))


def configuration_spec(key):
    """Everything that defines a configuration's measurements, for ALL its cells (not only those
    this run measures): a rerun of one cell leaves the params unchanged, so the next full run does
    not re-measure its siblings; any change to a cell, the server arguments or the engine's
    installed packages reruns the configuration. Canonical JSON (sorted keys).
    """
    cells = FULL_CONFIGURATIONS[key]
    first = cells[0]
    entry = CFG.engine_entry(first.engine)
    spec = {
        "cells": {c.cell: c.to_dict() for c in cells},
        "server_args": first.engine_args,
        "layout": first.layout,
        "skip": first.skip,
        "engine_setup": CFG.preset["engines"].get(first.engine)
        or CFG.preset["engines"].get(entry.get("adapter", first.engine), {}),
        "engine_catalog": entry,
        "engine_identity": engine_identity(first.engine),
        "faults": {
            c.cell: CFG.preset["inject_fault"][c.path]
            for c in cells
            if c.path in CFG.preset["inject_fault"]
        },
        "compile_cache": CFG.preset["compile_cache"],
        "ready_timeout_s": CFG.preset["server_ready_timeout_s"],
        "engine_dir": configuration_dir(key),
        "datasets": {
            c.params["dataset"]: dataset_path(c.params["dataset"])
            for c in cells
            if c.params.get("dataset")
        },
    }
    refs = configuration_model_refs(cells)
    if refs:  # only where used: other configurations' params (and jobs) stay unchanged
        spec["model_refs"] = refs
    # another engine's load client (bench_serving `client:`, e.g. SGLang's against vLLM): its setup
    clients = sorted(
        {c.params["client"] for c in cells if c.params.get("client")}
        - {il_matrix.engine_family(CFG, first.engine)}
    )
    if clients:
        spec["client_engines"] = {
            e: {
                "setup": CFG.preset["engines"].get(e, {}),
                "catalog": CFG.engine_entry(e),
            }
            for e in clients
        }
    return json.dumps(spec, sort_keys=True)


def configuration_runtime_min(cells):
    # Slurm limit: engine start + every cell's own deadline + teardown
    return (
        int(
            (CFG.preset["server_ready_timeout_s"] + sum(c.timeout_s for c in cells))
            // 60
        )
        + 5
    )


def week_cells(week):
    return [c for c in CELLS.values() if c.week == week]


def week_records(wildcards):
    return [f"{RESULTS}/{c.path}/cell.json" for c in week_cells(wildcards.week)]


def week_metrics(wildcards):
    """The week's normalized rows (rule extract_week) that stage 4 tabulates."""
    return [f"{RESULTS}/{wildcards.week}/_extract/metrics.parquet"]


def week_joins(week):
    """Parquet of the weeks whose numbers this week's tables join (the week file's `joins:`, e.g.
    Week 2's online vs offline), where those weeks are in the run."""
    return {
        w: f"{RESULTS}/{w}/{w}.parquet"
        for w in CFG.weeks[week].get("joins", [])
        if w in WEEKS
    }


def week_captions(week):
    """Figure name -> caption, for `snakemake --report` (report/figure.rst): written once, in the
    week file's `figures:`, as literal reStructuredText; its tables, figures and claims are checked
    here, before any job runs.
    """
    from inferlab import report as il_report

    doc = il_report.check(CFG.weeks[week], CFG.files[week])
    return {k: il_report.rst_text(v) for k, v in il_report.captions(doc).items()}


def week_table_captions(week):
    """Table file name -> caption (its title and notes in the week file's `tables:`), for
    `snakemake --report` (report/table.rst); a `for_each` table's names from this run's matrix.
    """
    from inferlab import report as il_report
    from inferlab.report.values import text

    levels = {}
    for c in week_cells(week):
        axes = {"gpu": c.gpu, "engine": c.engine, "experiment": c.experiment}
        for axis, v in {**axes, **c.params, **c.server_axes}.items():
            levels.setdefault(axis, {})[text(v)] = None
    caps = il_report.table_captions(CFG.weeks[week], levels)
    return {k: il_report.rst_text(v) for k, v in caps.items()}


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
        print(f"inferlab: {il_cells.describe(rec)}")


def preset_for_tables():
    """The preset as stage 4 sees it: without the run-scope `cells` selection, so rerunning one
    cell alone does not make the next full run rebuild the tables for a changed parameter.
    """
    return {k: v for k, v in config.items() if k != "cells"}

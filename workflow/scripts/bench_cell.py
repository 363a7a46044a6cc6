# Thin adapter: rule bench_cell -> inferlab.runner.run_cell (always writes a typed cell record).
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # noqa: F821
from inferlab import engines, runner  # noqa: E402
from inferlab.smk import logged  # noqa: E402

sm = snakemake  # noqa: F821
with logged(sm.log[0]):
    spec = json.loads(sm.params.spec)
    datasets = list(sm.input.get("dataset", []))
    root = Path(sm.scriptdir).resolve().parents[1]
    engine = engines.from_setup(
        spec["cell"]["engine"], spec["engine_setup"], spec["engine_catalog"], spec.get("compile_cache"), root
    )
    record = runner.run_cell(
        spec["cell"],
        engine,
        str(Path(sm.input.model).absolute()),
        Path(sm.output.record).parent,
        workflow_dir=root,
        timeout_s=spec["cell"].get("timeout_s"),
        fault=spec.get("fault"),
        dataset_path=str(Path(datasets[0]).absolute()) if datasets else None,
    )
    print(
        f"{spec['cell']['week']}/{spec['cell']['experiment']}/{spec['cell']['cell']}: "
        f"{record['status']} {record['reason'] or ''} {record['detail'] or ''}"
    )

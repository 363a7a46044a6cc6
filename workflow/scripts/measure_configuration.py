# Thin adapter: a configuration's rule -> inferlab.measure.run_configuration (one engine start).
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # noqa: F821
from inferlab import engines, matrix, measure  # noqa: E402
from inferlab.smk import logged  # noqa: E402

sm = snakemake  # noqa: F821
with logged(sm.log[0]):
    spec = json.loads(sm.params.spec)
    refs = {m: str(Path(p).absolute()) for m, p in spec.get("model_refs", {}).items()}
    if refs:  # engine arguments naming catalog models (catalog:<id>) get their local folders
        spec["server_args"] = matrix.resolve_model_refs(spec["server_args"], refs)
        for c in spec["cells"].values():
            c["engine_args"] = matrix.resolve_model_refs(c["engine_args"], refs)
    root = Path(sm.scriptdir).resolve().parents[1]
    dirs = [Path(r).parent for r in sm.output.records]
    cells = [spec["cells"][d.name] for d in dirs]  # the cells this run measures, in sweep order
    engine = engines.from_setup(
        cells[0]["engine"], spec["engine_setup"], spec["engine_catalog"], spec.get("compile_cache"), root
    )
    engine.client_engines = {  # another engine's load client for some cells (bench_serving `client:`)
        e: engines.from_setup(e, c["setup"], c["catalog"], None, root)
        for e, c in spec.get("client_engines", {}).items()
    }
    result = measure.run_configuration(spec, cells, dirs, engine, str(Path(sm.input.model).absolute()), root)
    for d in dirs:
        r = json.loads((d / "cell.json").read_text())
        print(f"{d}: {r['status']} {r['reason'] or ''} {r['detail'] or ''}")
    print(
        f"configuration {result['status']} (measured by {result['measured_by']}): "
        f"{result['measuring_s']} s of {result['wall_s']} s measuring ({result['measuring_fraction']})"
    )

# Thin adapter: a serving session rule -> inferlab.session.run_session (one server, its cells).
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # noqa: F821
from inferlab import engines, session  # noqa: E402
from inferlab.smk import logged  # noqa: E402

sm = snakemake  # noqa: F821
with logged(sm.log[0]):
    spec = json.loads(sm.params.spec)
    root = Path(sm.scriptdir).resolve().parents[1]
    dirs = [Path(r).parent for r in sm.output.records]
    cells = [spec["cells"][d.name] for d in dirs]  # the cells this run measures, in sweep order
    engine = engines.from_setup(
        cells[0]["engine"], spec["engine_setup"], spec["engine_catalog"], spec.get("compile_cache"), root
    )
    result = session.run_session(
        cells,
        dirs,
        engine,
        str(Path(sm.input.model).absolute()),
        str(Path(sm.input.dataset).absolute()),
        spec["session_dir"],
        spec["server_args"],
        workflow_dir=root,
        ready_timeout_s=spec["ready_timeout_s"],
        cell_timeout_s=cells[0].get("timeout_s"),
        faults=spec["faults"],
    )
    for d in dirs:
        r = json.loads((d / "cell.json").read_text())
        print(f"{d}: {r['status']} {r['reason'] or ''} {r['detail'] or ''}")
    print(
        f"session {result['status']}: server ready in {result.get('server_ready_s')} s, "
        f"{result['measuring_s']} s of {result['wall_s']} s measuring ({result['measuring_fraction']})"
    )

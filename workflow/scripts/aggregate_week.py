# Thin adapter: rule aggregate_week -> inferlab.aggregate.run (tables, figures, report).
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # noqa: F821
from inferlab import aggregate  # noqa: E402
from inferlab.smk import load_config, logged  # noqa: E402

sm = snakemake  # noqa: F821
with logged(sm.log[0]):
    cfg = load_config(sm)
    out = Path(sm.output.report).parent
    res = aggregate.run(sm.wildcards.week, sm.input.metrics, cfg, out, others=sm.params.joins)
    for t in res["tables"]:
        print(t["markdown"])
    print(f"tables in {out / 'tables'}, figures in {out / 'figures'}")

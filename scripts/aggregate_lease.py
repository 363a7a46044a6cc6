"""Stages 3 + 4 of one week on the results a lease brought back, when the lease ended before the
week's `<week>_all` aggregated (run it in the directory holding `results/`, e.g. an extracted
snapshot). Every cell the preset plans is either a record or named: a planned cell without one is
listed, and with `--type-missing DETAIL` gets a typed record (failed, cancelled, DETAIL; `typed_by`
says it was typed after the lease) so the tables show it instead of a hole. No engine is started.
  .venv/bin/python scripts/aggregate_lease.py WEEK PRESET [--type-missing DETAIL]
then `scripts/device-week03.sh collect` copies the record (tables, figures, report.md, Parquet).
`scripts/regen_record.py` redoes stage 4 of a kept record from its Parquet instead."""

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
from inferlab import aggregate, config, extract, io, matrix, provenance, runner  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("week")
    ap.add_argument("preset")
    ap.add_argument("--type-missing", metavar="DETAIL", help="type each planned cell without a record cancelled")
    a = ap.parse_args()
    cfg = config.load(str(ROOT / a.preset), base_dir=ROOT)
    results = Path("results").absolute()
    cfg.preset["results"] = str(results)
    planned = {results / c.path / "cell.json": c for c in matrix.expand(cfg).values() if c.week == a.week}
    missing = [p for p in planned if not p.exists()]
    print(f"{len(planned)} cells planned, {len(planned) - len(missing)} with a record")
    for p in missing:
        print("no record:", p.relative_to(results.parent))
        if a.type_missing:
            rec = runner.new_record(planned[p].to_dict())
            rec.update(status="failed", reason="cancelled", detail=a.type_missing, finished_at=provenance.now())
            rec["typed_by"] = "scripts/aggregate_lease.py after the lease (no record: the session got no signal)"
            io.write_json(p, rec)
    have = [p for p in planned if p.exists()]
    cells = [planned[p] for p in have]
    out = results / a.week / "_extract" / "metrics.parquet"
    models = {c.model: cfg.model(c.model) for c in cells}
    print(extract.extract_week(have, models, {c.gpu: cfg.gpu(c.gpu) for c in cells}, out, use_cache=False))
    joins = {j: str(results / j / f"{j}.parquet") for j in cfg.weeks[a.week].get("joins", [])}
    joins = {j: f for j, f in joins.items() if Path(f).exists()}
    res = aggregate.run(a.week, [str(out)], cfg, results / a.week, others=joins)
    print(f"{len(res['tables'])} tables, {len(res['figures'])} figures in {results / a.week}")


if __name__ == "__main__":
    main()

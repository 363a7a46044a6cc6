"""Redo stage 4 (tables, figures, claims, report.md) of a validation record from its kept Parquet,
with today's report code; no engine is started and no cell is re-measured.
  .venv/bin/python scripts/regen_record.py PRESET WEEK RECORD_DIR
e.g. scripts/regen_record.py config/h200-validation.yaml week14 docs/validation/h200-week14"""

import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
from inferlab import aggregate, config, records, report  # noqa: E402


def main(preset: str, week: str, record: str) -> None:
    cfg = config.load(preset, base_dir=ROOT)
    out = Path(record)
    df = records.normalize(pd.read_parquet(out / f"{week}.parquet"))
    res = report.build(df, cfg, week, out)
    aggregate.write_report(week, cfg, df, res, out / "report.md")
    print(f"{out}/report.md: {len(res['tables'])} tables, {len(res['figures'])} figures")


if __name__ == "__main__":
    main(*sys.argv[1:4])

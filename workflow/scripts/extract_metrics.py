# Thin adapter: rule extract_metrics -> inferlab.records + inferlab.guard -> one Parquet file.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # noqa: F821
from inferlab import guard, io, records  # noqa: E402
from inferlab.smk import logged  # noqa: E402

sm = snakemake  # noqa: F821
with logged(sm.log[0]):
    rec_path = Path(sm.input.record)
    rec = records.read_record(rec_path)
    df = records.record_to_frame(rec, rec_path.parent / rec["raw"])
    model = sm.params.model
    df = guard.apply(df, model["architecture"], model["dtype"], sm.params.gpu)
    io.write_parquet(sm.output[0], df)
    print(f"{rec_path}: {len(df)} rows, status {rec['status']}, invalid {int((~df['valid']).sum())}")

# Thin adapter: rule extract_week -> inferlab.extract.extract_week (one process for the week).
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # noqa: F821
from inferlab import extract  # noqa: E402
from inferlab.smk import logged  # noqa: E402

sm = snakemake  # noqa: F821
with logged(sm.log[0]):
    res = extract.extract_week(
        sm.input.records, sm.params.models, sm.params.gpus, Path(sm.output[0]), code_files=sm.input.code
    )
    print(f"{sm.wildcards.week}: {res}")

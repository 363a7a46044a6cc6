# Thin adapter: rule download_dataset -> inferlab.download.fetch_dataset (sha256, atomic rename).
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # noqa: F821
from inferlab import download  # noqa: E402
from inferlab.smk import logged  # noqa: E402

sm = snakemake  # noqa: F821
with logged(sm.log[0]):
    print(f"fetching {sm.params.url}")
    download.fetch_dataset(sm.params.url, sm.params.sha256, sm.output[0])

# Thin adapter: rule download_model -> inferlab.download.fetch_model (token from HF_TOKEN, never logged).
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # noqa: F821
from inferlab import download  # noqa: E402
from inferlab.smk import logged  # noqa: E402

sm = snakemake  # noqa: F821
with logged(sm.log[0]):
    print(f"fetching {sm.params.repo_id}@{sm.params.revision}")
    download.fetch_model(sm.params.repo_id, sm.params.revision, sm.output[0])

"""Stage 3 + 4 only (extract + aggregate) from the leases' raw results; no engine is started.

REGEN_DIR=<dir holding results/<week>/... as collected> .venv/bin/python docs/validation/h100-week09/regen.py week06 week09
(docs/validation/h100-sglang/regen.py with the preset config/h100-validation-weeks3.yaml).
"""

import glob
import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "src"))

from inferlab import aggregate, config, extract  # noqa: E402

CODE = (
    "extract.py",
    "records.py",
    "guard.py",
    "theory.py",
    "engines/vllm.py",
    "engines/sglang.py",
    "engines/serving.py",
)


def main(weeks: list[str]) -> None:
    w = Path(os.environ["REGEN_DIR"])
    cfg = config.load("config/h100-validation-weeks3.yaml", base_dir=REPO)
    cfg.preset["results"] = str(w / "results")
    code = [str(REPO / "src/inferlab" / f) for f in CODE]
    for week in weeks:
        recs = sorted(glob.glob(str(w / "results" / week / "**/cell.json"), recursive=True))
        recs = [r for r in recs if "/attempts/" not in r]
        models, gpus = {}, {}
        for r in recs:
            d = json.loads(Path(r).read_text())
            models[d["model"]] = cfg.model(d["model"])
            gpus[d["gpu"]] = cfg.gpu(d["gpu"])
        m = w / "results" / week / "_extract" / "metrics.parquet"
        print(week, extract.extract_week(recs, models, gpus, m, code_files=code))
        weeks_run = cfg.preset["weeks"]
        joins = {j: str(w / "results" / j / f"{j}.parquet") for j in cfg.weeks[week].get("joins", []) if j in weeks_run}
        res = aggregate.run(week, [str(m)], cfg, w / "results" / week, others=joins)
        for t in res["tables"]:
            print(t["markdown"])


if __name__ == "__main__":
    main(sys.argv[1:])

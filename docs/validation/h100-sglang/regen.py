# Stage 3 + 4 only (extract + aggregate) from the lease's raw results; no engine is started.
import sys, glob, json, os
from pathlib import Path
REPO = Path("/work/main")
sys.path.insert(0, str(REPO / "src"))
from inferlab import config, extract, aggregate
W = Path(os.environ.get("REGEN_DIR", "/tmp/rec-w"))  # holds results/<week>/... as collected
cfg = config.load("config/h100-validation-weeks.yaml", base_dir=REPO)
cfg.preset["results"] = str(W / "results")
code = [str(REPO / "src/inferlab" / f) for f in ("extract.py","records.py","guard.py","theory.py","engines/vllm.py","engines/sglang.py","engines/serving.py")]
for week in sys.argv[1:]:
    recs = sorted(glob.glob(str(W / "results" / week / "**/cell.json"), recursive=True))
    recs = [r for r in recs if "/attempts/" not in r]
    models, gpus = {}, {}
    for r in recs:
        d = json.loads(Path(r).read_text()); models[d["model"]] = cfg.model(d["model"]); gpus[d["gpu"]] = cfg.gpu(d["gpu"])
    m = W / "results" / week / "_extract" / "metrics.parquet"
    print(week, extract.extract_week(recs, models, gpus, m, code_files=code))
    out = W / "results" / week
    joins = {w: str(W / "results" / w / f"{w}.parquet") for w in cfg.weeks[week].get("joins", []) if w in cfg.preset["weeks"]}
    res = aggregate.run(week, [str(m)], cfg, out, others=joins)
    for t in res["tables"]:
        print(t["markdown"])

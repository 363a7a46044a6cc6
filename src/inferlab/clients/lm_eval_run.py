"""Run ``lm_eval`` (its CLI in the same environment) and copy its results JSON to ``--out``.

lm-eval names its output ``<output_path>/<model_name_sanitized>/results_<timestamp>.json``; the
session wants one file per cell (``raw.json``), so this wrapper runs the CLI, takes the newest
results file it wrote and copies it. Exit status: lm-eval's, or 3 when it wrote no results.
Stdlib only (runs with lm-eval's interpreter)::

    python lm_eval_run.py --out raw.json --results-dir DIR -- --model local-completions ...
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--results-dir", required=True)
    ap.add_argument("rest", nargs=argparse.REMAINDER)
    a = ap.parse_args(argv)
    rest = a.rest[1:] if a.rest[:1] == ["--"] else a.rest
    results = Path(a.results_dir)
    t0 = time.time()
    env = dict(os.environ)
    # no hub on a compute node: datasets come from files or the local cache
    env.setdefault("HF_DATASETS_OFFLINE", "1")
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    lm_eval = Path(sys.executable).parent / "lm_eval"
    print("+", lm_eval, *rest, flush=True)
    rc = subprocess.call([str(lm_eval), *rest], env=env)
    if rc != 0:
        return rc
    found = sorted(
        (p for p in results.rglob("results_*.json") if p.stat().st_mtime >= t0 - 1), key=lambda p: p.stat().st_mtime
    )
    if not found:
        print(f"lm_eval exited 0 but wrote no results_*.json under {results}", file=sys.stderr)
        return 3
    shutil.copyfile(found[-1], a.out)
    print(f"results: {found[-1]} -> {a.out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""One embedded-default workflow run shared by every week's tests from Week 4 on.

CI must stay well under 50 minutes, so weeks 4-16 are not each a workflow run: the session-scoped
``shared_run`` fixture runs Snakemake once, on the real CPU engine, for every week file from
``week04`` on, with the embedded default's own reductions (config/config.yaml ``overrides``) further
reduced by ``tests/data/shared_run/weekNN.yaml`` (one week's overrides block:
``{experiment: {sweep: ..., fixed: ..., server_sweep: ...}}``). Each ``tests/test_weekNN.py``
asserts on its week's results under ``<work>/results/weekNN/``.

Built and trained models go to one cache (``INFERLAB_TEST_CACHE``, default ``.cache/inferlab-test``
in the checkout), so a second local run does not rebuild them. The run uses ``--keep-going``: a cell
that fails is a typed record, and a week whose job fails outright fails only its own tests (they
find its record or table missing), not every week's.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, snakemake_command

SHARED = Path(__file__).parent / "data" / "shared_run"
# The run's HF_TOKEN: a canary no log, record, Parquet or report may contain afterwards
# (tests/faults/test_secrets_and_binds.py scans the whole work dir for it).
sys.path.insert(0, str(Path(__file__).parent / "faults"))
from canary import CANARY as HF_TOKEN_CANARY  # noqa: E402

ENGINE_ENV = Path(os.environ.get("INFERLAB_VLLM_ENV", ROOT / ".venv-vllm"))
FIRST_WEEK = 4


def shared_weeks() -> list[str]:
    out = []
    for f in sorted((ROOT / "config" / "weeks").glob("week*.yaml")):
        n = int(f.stem[4:])
        if n >= FIRST_WEEK:
            out.append(f.stem)
    return out


def merge(base: dict, extra: dict) -> dict:
    """One week's overrides: the test's reductions replace the preset's key by key (per experiment,
    ``sweep``/``fixed``/``server_sweep``/``engine_args`` merged axis by axis, other keys replaced)."""
    out = {k: dict(v) for k, v in base.items()}
    for exp, ov in (extra or {}).items():
        cur = out.setdefault(exp, {})
        for key, val in ov.items():
            if key in ("sweep", "fixed", "server_sweep", "engine_args") and isinstance(val, dict):
                cur[key] = {**cur.get(key, {}), **val}
            else:
                cur[key] = val
    return out


def shared_preset(work: Path, env: dict | None = None) -> Path:
    p = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    p["catalog"] = str(ROOT / "config")
    weeks = shared_weeks()
    p["weeks"] = weeks
    p["engines"]["vllm"]["env"] = str(ENGINE_ENV)
    p["cache"] = os.environ.get("INFERLAB_TEST_CACHE", str(ROOT / ".cache" / "inferlab-test"))
    overrides = {}
    for w in weeks:
        extra = SHARED / f"{w}.yaml"
        overrides[w] = merge(
            p.get("overrides", {}).get(w, {}), yaml.safe_load(extra.read_text()) if extra.exists() else {}
        )
    p["overrides"] = overrides
    p["cell_timeout_s"] = 600
    f = work / "test-preset.yaml"
    f.write_text(yaml.safe_dump(p, sort_keys=False))
    return f


# Two jobs at a time, one thread each (OMP_NUM_THREADS=1: two 2-thread jobs on the CI's 2 cores
# spin-wait on each other, 4-14x slower): a configuration job's wall time is mostly single-threaded
# Python start-up (the server's API process and engine core, each cell's `vllm bench serve` client:
# ~7 s of imports each, against well under a second of measuring on the tiny models), so a second
# job overlaps it instead of waiting. Model training (inferlab.train/eagle set 2 torch threads
# themselves) takes both slots and runs alone. The assertions are on records, tables and typed
# statuses, not on one configuration being faster than another. INFERLAB_SHARED_RUN_PARALLEL=0: one
# job at a time, as the rules declare.
PARALLEL = os.environ.get("INFERLAB_SHARED_RUN_PARALLEL", "1") != "0"
PARALLEL_ARGS = (
    "--max-threads",
    "1",
    "--resources",
    "slots=2",
    "--default-resources",
    "slots=1",
    "--set-resources",
    "train_model:slots=2",
    "eagle_model:slots=2",
)


def run_shared(work: Path, targets=("all",), env: dict | None = None, timeout: int = 3600):
    shared_preset(work)
    cmd = snakemake_command(work, "--keep-going", *targets, *(PARALLEL_ARGS if PARALLEL else ()))
    t0 = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})
    wall = time.monotonic() - t0
    (work / "shared-run.log").write_text(r.stdout + r.stderr)
    return r.returncode, r.stdout + r.stderr, wall


def shared_run_work(tmp_path_factory):
    """The work dir of the one shared embedded-default run of weeks 4-16 (see the module doc). The
    session-scoped fixture ``shared_run`` lives in tests/conftest.py: a fixture imported into each
    test module would be instantiated once per module, i.e. one workflow run per week."""
    reuse = os.environ.get("INFERLAB_SHARED_RUN_DIR")
    if reuse:  # a developer's earlier run (its work dir), asserted on again without re-running
        return Path(reuse)
    if not (ENGINE_ENV / "bin" / "vllm").exists():
        pytest.fail(f"the vLLM CPU engine is not installed at {ENGINE_ENV} (run scripts/setup.sh)")
    if not shared_weeks():
        pytest.skip("no week from week04 on in config/weeks/")
    work = tmp_path_factory.mktemp("shared")
    rc, out, wall = run_shared(work, env={"HF_TOKEN": HF_TOKEN_CANARY})
    (work / "shared-run.rc").write_text(str(rc))
    print(f"[shared_run] weeks {shared_weeks()} in {wall:.0f} s (rc {rc}); log: {work / 'shared-run.log'}")
    return work

"""Integration against a real Slurm (scripts/slurm-up.sh: munge + slurmctld + slurmd, four GPU
partitions with typed fake GPUs): week03_all through profiles/slurm with the embedded default's
engine; each cell must have run as a Slurm job on its GPU's partition, seen with Slurm's own tools.
Then an injected failure is typed, listed by the helper, and its printed command reruns that cell
alone on its partition."""

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import ROOT

pytestmark = pytest.mark.slurm

SNAKEMAKE = Path(sys.executable).parent / "snakemake"
ENGINE_ENV = Path(os.environ.get("INFERLAB_VLLM_ENV", ROOT / ".venv-vllm"))
GPUS = ["h200", "h100", "a100", "l40s"]
# The plugin's first status check waits 40 s after a submission and each check that finds nothing
# finished waits 10 s longer (up to 180 s): right for hour-long GPU jobs, minutes lost per run on the
# test Slurm's 30-second jobs. The profile keeps the plugin's default.
CI_RESOURCES = ["--slurm-no-account", "--slurm-init-seconds-before-status-checks", "3"]


def slurm_up() -> bool:
    return shutil.which("sinfo") is not None and subprocess.run(["sinfo", "-h"], capture_output=True).returncode == 0


@pytest.fixture(scope="module")
def cluster():
    if not slurm_up():
        if os.environ.get("INFERLAB_REQUIRE_SLURM") == "1":
            pytest.fail("Slurm is not up (scripts/slurm-up.sh failed?)")
        pytest.skip("no test Slurm here: run scripts/slurm-up.sh as root")
    parts = subprocess.run(["sinfo", "-h", "-o", "%P"], capture_output=True, text=True).stdout.split()
    assert {p.rstrip("*") for p in parts} >= set(GPUS)


def write_preset(work: Path, fault=None):
    p = yaml.safe_load((ROOT / "config" / "slurm-ci.yaml").read_text())
    p["catalog"] = str(ROOT / "config")
    p["engines"]["vllm"]["env"] = str(ENGINE_ENV)
    p["serving_job"] = {"cpus": 2, "mem_mb": 3000}  # host resources of each configuration job
    if fault:
        p["inject_fault"] = fault
    (work / "preset.yaml").write_text(yaml.safe_dump(p))


def smk(work: Path, *targets, timeout=900, extra=()):
    cmd = [
        str(SNAKEMAKE),
        *targets,
        "-s",
        str(ROOT / "Snakefile"),
        "-d",
        str(work),
        "--profile",
        str(ROOT / "profiles" / "slurm"),
        "--configfile",
        str(work / "preset.yaml"),
        *extra,
        *CI_RESOURCES,
    ]
    t0 = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    return r, time.monotonic() - t0


def job_info(job_id: str) -> dict:
    out = subprocess.run(
        ["squeue", "-h", "-t", "all", "-j", job_id, "-o", "%P|%T|%k"], capture_output=True, text=True
    ).stdout.strip()
    part, state, comment = out.split("|")
    return {"partition": part, "state": state, "comment": comment}


@pytest.fixture(scope="module")
def run(cluster, tmp_path_factory):
    work = tmp_path_factory.mktemp("slurm")
    write_preset(work)
    r, secs = smk(work, "week03_all")
    print(f"\nweek03_all through profiles/slurm: {secs:.0f} s")
    assert r.returncode == 0, (r.stdout + r.stderr)[-5000:]
    return work, secs


def test_every_cell_ran_as_a_slurm_job_on_its_partition(run):
    work, secs = run
    res = work / "results" / "week03"
    cells = sorted(res.glob("*/vllm/*/*/*/cell.json"))
    assert len(cells) == 2 * len(GPUS)
    for path in cells:
        rec = json.loads(path.read_text())
        assert rec["status"] == "ok", rec["log_tail"]
        slurm = rec["provenance"]["slurm"]
        info = job_info(slurm["SLURM_JOB_ID"])
        assert info["partition"] == rec["gpu"] == slurm["SLURM_JOB_PARTITION"]
        assert info["state"] == "COMPLETED"
        # one job per engine configuration, named after it
        name = f"measure_week03_{rec['experiment']}_vllm_{rec['gpu']}_default"
        assert name in info["comment"]
        # the plugin's per-job Slurm log is kept under the profile's slurm-logdir
        logs = list((work / "logs" / "slurm" / f"rule_{name}").rglob(f"{slurm['SLURM_JOB_ID']}*.log"))
        assert logs, sorted((work / "logs" / "slurm").rglob("*.log"))
    table = pd.read_csv(res / "tables" / "decode_per_token.csv")
    assert table["GPU"].tolist() == GPUS
    assert all(float(v) > 0 for v in table["bs=1"])


def test_injected_failure_is_typed_and_rerun_alone(run):
    work, _ = run
    target = "week03/decode/vllm/h100/default/bs1"
    write_preset(work, fault={target: "crash"})
    r, _ = smk(work, "week03_all")
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    rec = json.loads((work / "results" / target / "cell.json").read_text())
    assert rec["status"] == "failed" and rec["reason"] == "engine_error"
    failed_job = rec["provenance"]["slurm"]["SLURM_JOB_ID"]
    assert job_info(failed_job)["partition"] == "h100"
    table = pd.read_csv(work / "results" / "week03" / "tables" / "decode_per_token.csv").set_index("GPU")
    assert table.loc["h100", "bs=1"] == "FAILED (engine_error)"
    assert float(table.loc["a100", "bs=1"]) > 0

    # the helper lists it with the exact command that reruns it
    h = subprocess.run(
        [
            sys.executable,
            "-m",
            "inferlab.cells",
            "failed",
            "--results",
            "results",
            "--profile",
            str(ROOT / "profiles" / "slurm"),
        ],
        cwd=work,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    assert h.returncode == 0, h.stderr
    lines = h.stdout.splitlines()
    assert lines[0].startswith(f"results/{target}: failed (engine_error), Slurm job {failed_job}")
    cmd = shlex.split(lines[1].split("rerun: ", 1)[1])
    assert "--forcerun" in cmd

    # the cause is fixed (fault removed); the printed command reruns that cell only, on h100
    write_preset(work)
    before = {p: p.stat().st_mtime for p in (work / "results" / "week03").glob("*/vllm/*/*/*/cell.json")}
    cmd[0] = str(SNAKEMAKE)
    # as a user would, from the repository (the profile's paths are relative to it), on this workdir
    r = subprocess.run(
        cmd + ["-d", str(work), "--configfile", str(work / "preset.yaml"), *CI_RESOURCES],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    changed = [p for p, m in before.items() if p.stat().st_mtime != m]
    assert changed == [work / "results" / target / "cell.json"]
    rec = json.loads(changed[0].read_text())
    assert rec["status"] == "ok"
    new_job = rec["provenance"]["slurm"]["SLURM_JOB_ID"]
    assert new_job != failed_job and job_info(new_job)["partition"] == "h100"
    table = pd.read_csv(work / "results" / "week03" / "tables" / "decode_per_token.csv").set_index("GPU")
    assert float(table.loc["h100", "bs=1"]) > 0


def test_job_killed_by_slurm_is_typed_from_slurm(run):
    """A cell whose Slurm job is cancelled (as a time limit or an admin would) before a record is kept:
    the run ends in error with the other cells done, the cell is typed from Slurm's own state, and the
    next run tabulates it as CANCELLED without re-measuring anything."""
    work, _ = run
    target = "week03/prefill/vllm/l40s/default/in64"
    write_preset(work, fault={target: "hang"})
    cmd = [
        str(SNAKEMAKE),
        "week03_all",
        "-s",
        str(ROOT / "Snakefile"),
        "-d",
        str(work),
        "--profile",
        str(ROOT / "profiles" / "slurm"),
        "--configfile",
        str(work / "preset.yaml"),
        "--retries",
        "0",
        *CI_RESOURCES,
    ]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    job = None
    for _ in range(120):
        out = subprocess.run(["squeue", "-h", "-t", "R", "-o", "%i %k"], capture_output=True, text=True).stdout
        hits = [line.split()[0] for line in out.splitlines() if "measure_week03_prefill_vllm_l40s_default" in line]
        if hits:
            job = hits[0]
            break
        time.sleep(1)
    assert job, "the hanging cell never started"
    time.sleep(5)  # let the runner start the (hanging) engine command
    subprocess.run(["scancel", job], check=True)
    out, _ = p.communicate(timeout=600)
    assert p.returncode != 0
    assert f"inferlab: {target} typed cancelled from Slurm" in out, out[-3000:]
    assert job_info(job)["state"] == "CANCELLED"
    rec = json.loads((work / "results" / target / "cell.json").read_text())
    assert rec["status"] == "failed" and rec["reason"] == "cancelled" and rec["typed_by"] == "reconcile"
    assert f"Slurm job {job} ended CANCELLED" in rec["detail"]
    r, _ = smk(work, "week03_all", extra=["--retries", "0"])
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    assert "rule measure_" not in r.stdout + r.stderr  # nothing re-measured
    table = pd.read_csv(work / "results" / "week03" / "tables" / "prefill_latency.csv").set_index("GPU")
    assert table.loc["l40s", "L=64"] == "CANCELLED"
    assert float(table.loc["h100", "L=64"]) > 0


def test_serving_session_runs_as_one_slurm_job_on_its_partition(cluster, tmp_path):
    """Week 1 through profiles/slurm: one session job per engine x GPU on that GPU's partition; the
    vLLM session serves its cells from one server start, SGLang's is typed skipped."""
    p = yaml.safe_load((ROOT / "config" / "slurm-ci.yaml").read_text())
    p["catalog"] = str(ROOT / "config")
    p["engines"]["vllm"]["env"] = str(ENGINE_ENV)
    p["weeks"] = ["week01"]
    p["serving_job"] = {"cpus": 2, "mem_mb": 3000}
    p["overrides"] = {
        "week01": {
            "serving": {
                "gpus": ["h100"],
                "sweep": {"request_rate": [4, "inf"]},
                "fixed": {"dataset": "sharegpt-synthetic", "num_prompts": 10},
            }
        }
    }
    (tmp_path / "preset.yaml").write_text(yaml.safe_dump(p))
    r, secs = smk(tmp_path, "week01_all")
    print(f"\nweek01_all (2 sessions) through profiles/slurm: {secs:.0f} s")
    assert r.returncode == 0, (r.stdout + r.stderr)[-5000:]
    res = tmp_path / "results" / "week01" / "serving"
    jobs = set()
    for c in ("rr4", "rrinf"):
        rec = json.loads((res / "vllm" / "h100" / "default" / c / "cell.json").read_text())
        assert rec["status"] == "ok", rec["log_tail"]
        slurm = rec["provenance"]["slurm"]
        assert job_info(slurm["SLURM_JOB_ID"])["partition"] == "h100" == slurm["SLURM_JOB_PARTITION"]
        jobs.add(slurm["SLURM_JOB_ID"])
        skipped = json.loads((res / "sglang" / "h100" / "default" / c / "cell.json").read_text())
        assert (skipped["status"], skipped["reason"]) == ("skipped", "engine_unavailable")
    assert len(jobs) == 1  # both rates in one job, one server start
    sess = json.loads((res / "vllm" / "h100" / "default" / "_engine" / "session.json").read_text())
    assert sess["cells"] == ["rr4", "rrinf"] and sess["teardown"]["group_gone"] is True

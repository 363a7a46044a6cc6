"""Integration: the real workflow (Snakemake, the vLLM CPU engine, a locally built model) runs
week03_all on the embedded default with a reduced sweep, one engine start per configuration (the
offline driver), then the caching and rerun promises are checked: nothing reruns when nothing
changed; one changed point reruns its configuration only; a changed engine environment re-measures;
one cell named in `cells=` reruns alone; an injected engine crash becomes a typed cell."""

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import ROOT, SNAKEMAKE, snakemake_command

pytestmark = pytest.mark.engine

ENGINE_ENV = Path(os.environ.get("INFERLAB_VLLM_ENV", ROOT / ".venv-vllm"))


def preset(work: Path, decode=(1, 4), fault=None) -> Path:
    p = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    p["catalog"] = str(ROOT / "config")
    p["weeks"] = ["week03"]
    p["engines"]["vllm"]["env"] = str(ENGINE_ENV)
    p["overrides"] = {
        "week03": {
            "decode": {"sweep": {"batch_size": list(decode)}, "fixed": {"num_iters": 2, "num_iters_warmup": 1}},
            "prefill": {"sweep": {"input_len": [64, 256]}, "fixed": {"num_iters": 2, "num_iters_warmup": 1}},
        }
    }
    p["cell_timeout_s"] = 600
    if fault:
        p["inject_fault"] = fault
    f = work / "test-preset.yaml"
    f.write_text(yaml.safe_dump(p))
    return f


def smk(work: Path, *args, dry=False, timeout=1200):
    cmd = snakemake_command(work, *args)
    if dry:
        cmd.append("-n")
    t0 = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-4000:]
    return out, time.monotonic() - t0


def job_counts(out: str) -> dict:
    """Snakemake's 'Job stats' table -> {rule: count}."""
    m = re.search(r"Job stats:\n(.*?)\n\n", out + "\n\n", re.S)
    if not m:
        return {}
    counts = {}
    for line in m.group(1).splitlines()[2:]:
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit() and parts[0] != "total":
            counts[parts[0]] = int(parts[1])
    return counts


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    if not (ENGINE_ENV / "bin" / "vllm").exists():
        pytest.fail(f"the vLLM CPU engine is not installed at {ENGINE_ENV} (run scripts/setup.sh)")
    w = tmp_path_factory.mktemp("wf")
    preset(w)
    smk(w, "week03_all")
    return w


CELLS = [
    "decode/vllm/cpu/default/bs1",
    "decode/vllm/cpu/default/bs4",
    "prefill/vllm/cpu/default/in64",
    "prefill/vllm/cpu/default/in256",
]
DECODE = "measure_week03_decode_vllm_cpu_default"
PREFILL = "measure_week03_prefill_vllm_cpu_default"


def test_week03_all_end_to_end(work):
    res = work / "results" / "week03"
    for c in CELLS:
        rec = json.loads((res / c / "cell.json").read_text())
        assert rec["status"] == "ok", rec.get("log_tail")
        assert rec["provenance"]["engine_versions"]["vllm"].startswith("0.32.0")
        # one engine start per configuration: the driver measured every point of it
        assert rec["measured_by"] == "driver" and "inferlab.drivers.vllm_offline" in rec["provenance"]["command"]
        assert rec["engine_args"]["enable_prefix_caching"] is False
        assert json.loads((res / c / "raw.json").read_text())["avg_latency"] > 0
    for exp in ("decode", "prefill"):
        conf = json.loads((res / exp / "vllm/cpu/default/_engine/configuration.json").read_text())
        assert conf["measured_by"] == "driver" and len(conf["cells"]) == 2 and conf["status"] == "done"
        assert 0 < conf["measuring_s"] < conf["wall_s"]
        spec = json.loads((res / exp / "vllm/cpu/default/_engine/driver-spec.json").read_text())
        assert spec["engine_args"]["enable_prefix_caching"] is False and len(spec["cells"]) == 2
        progress = (res / exp / "vllm/cpu/default/_engine/progress.jsonl").read_text().splitlines()
        assert sum('"engine_ready"' in ln for ln in progress) == 1  # one engine start for both cells
        assert (work / "logs" / "week03" / exp / "vllm/cpu/default/measure_configuration.log").exists()
    df = pd.read_parquet(res / "week03.parquet")
    assert set(df["cell"]) == {"bs1", "bs4", "in64", "in256"}
    assert set(df["configuration"]) == {"default"} and set(df["measured_by"]) == {"driver"}
    ok = df[df.metric == "latency_per_output_token"]
    assert (ok["status"] == "ok").all() and (ok["value"] > 0).all() and ok["valid"].all()
    # the table holds the same numbers the Parquet does
    table = pd.read_csv(res / "tables" / "decode_per_token.csv")
    assert table.columns.tolist() == ["GPU", "bs=1", "bs=4", "Theoretical AI*"]
    bs4 = ok[ok.cell == "bs4"]["value"].iloc[0]
    assert table.loc[0, "bs=4"] == pytest.approx(round(bs4, 2))
    pre = pd.read_csv(res / "tables" / "prefill_latency.csv")
    assert pre.columns.tolist()[:3] == ["GPU", "L=64", "L=256"]
    for f in ("decode_batch_sweep.png", "prefill_length_sweep.png"):
        assert (res / "figures" / f).read_bytes()[:4] == b"\x89PNG"
    assert (
        "decode_per_token" in (res / "report.md").read_text() or "Decode batch sweep" in (res / "report.md").read_text()
    )


def test_second_run_does_nothing(work):
    out, secs = smk(work, "week03_all")
    assert "Nothing to be done" in out, out[-2000:]


def test_changed_point_reruns_only_its_configuration(work):
    preset(work, decode=(1, 8))
    out, _ = smk(work, "week03_all", dry=True)
    # one engine start for the changed configuration; prefill's is untouched
    assert job_counts(out) == {DECODE: 1, "extract_week": 1, "aggregate_week": 1, "week03_all": 1}, out
    preset(work)  # back to the original matrix for the next tests


def test_a_changed_engine_environment_re_measures(work):
    """The engine's identity (what is installed in its environment) is part of each configuration's
    key: a new distribution in .venv-vllm re-measures every configuration; removing it, none."""
    site = next(ENGINE_ENV.glob("lib/python3*/site-packages"))
    fake = site / "inferlab_identity_probe-1.0.dist-info"
    fake.mkdir()
    try:
        out, _ = smk(work, "week03_all", dry=True)
        assert job_counts(out).get(DECODE) == 1 and job_counts(out).get(PREFILL) == 1, out
    finally:
        fake.rmdir()
    out, _ = smk(work, "week03_all", dry=True)
    assert "Nothing to be done" in out, out[-2000:]


def test_one_cell_reruns_alone_by_name(work):
    res = work / "results" / "week03"
    target = res / "prefill/vllm/cpu/default/in64"
    others = {c: (res / c / "cell.json").stat().st_mtime for c in CELLS if "in64" not in c}
    out, _ = smk(
        work,
        "week03_all",
        "--config",
        "cells=week03/prefill/vllm/cpu/default/in64",
        "--forcerun",
        str(target.relative_to(work) / "cell.json"),
    )
    assert job_counts(out) == {PREFILL: 1, "extract_week": 1, "aggregate_week": 1, "week03_all": 1}, out
    assert json.loads((target / "cell.json").read_text())["status"] == "ok"
    assert list((target / "attempts").iterdir()), "the previous attempt's raw output is kept"
    assert {c: (res / c / "cell.json").stat().st_mtime for c in others} == others
    out, _ = smk(work, "week03_all")  # the configuration's params did not change: nothing reruns
    assert "Nothing to be done" in out, out[-2000:]


def test_injected_crash_is_a_typed_cell(work):
    res = work / "results" / "week03"
    preset(work, fault={"week03/decode/vllm/cpu/default/bs4": "crash"})
    out, _ = smk(work, "week03_all")
    assert job_counts(out)[DECODE] == 1
    rec = json.loads((res / "decode/vllm/cpu/default/bs4/cell.json").read_text())
    assert rec["status"] == "failed" and rec["reason"] == "engine_error" and rec["injected_fault"] == "crash"
    assert rec["log_tail"]
    table = pd.read_csv(res / "tables" / "decode_per_token.csv")
    assert table.loc[0, "bs=4"] == "FAILED (engine_error)"
    assert float(table.loc[0, "bs=1"]) > 0
    df = pd.read_parquet(res / "week03.parquet")
    bad = df[df.cell == "bs4"]
    assert bad["value"].isna().all() and (bad["reason"] == "engine_error").all()
    preset(work)  # fault removed: that configuration's parameters changed back, so it alone reruns
    out, _ = smk(work, "week03_all", dry=True)
    assert job_counts(out).get(DECODE) == 1 and PREFILL not in job_counts(out)


def test_lint_is_clean(work):
    r = subprocess.run(
        [
            str(SNAKEMAKE),
            "-s",
            str(ROOT / "Snakefile"),
            "-d",
            str(work),
            "--lint",
            "--configfile",
            str(work / "test-preset.yaml"),
            "--replace-workflow-config",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Congratulations" in r.stdout + r.stderr or "no issues" in (r.stdout + r.stderr).lower()

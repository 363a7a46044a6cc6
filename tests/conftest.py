import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
DATA = Path(__file__).parent / "data"
SNAKEMAKE = Path(sys.executable).parent / "snakemake"


def snakemake_command(work: Path, *args, preset: str = "test-preset.yaml", cores: int = 2) -> list[str]:
    """The workflow run on the embedded default as the tests start it: this checkout's Snakefile, the
    work dir ``work``, the preset ``work/<preset>`` replacing the embedded default's config."""
    return [
        str(SNAKEMAKE),
        "-s",
        str(ROOT / "Snakefile"),
        "-d",
        str(work),
        "--cores",
        str(cores),
        "--configfile",
        str(work / preset),
        "--replace-workflow-config",
        *args,
    ]


@pytest.fixture
def catalog(tmp_path):
    """A writable copy of config/ (catalogs + weeks + presets) to break in a test."""
    dst = tmp_path / "config"
    shutil.copytree(ROOT / "config", dst)
    return dst


def load_preset(catalog, name="config.yaml", **overrides):
    import yaml

    from inferlab import config

    p = yaml.safe_load((catalog / name).read_text())
    p["catalog"] = str(catalog)
    p.update(overrides)
    return config.load(p, base_dir=catalog.parent)


@pytest.fixture(scope="session")
def shared_run(tmp_path_factory):
    """One embedded-default workflow run of weeks 4-16 for the whole test session (tests/shared_run.py)."""
    import shared_run as shared

    return shared.shared_run_work(tmp_path_factory)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """The tiny model and a ShareGPT-format file (50 conversations), built once per test session, for
    tests that drive the session library directly against the vLLM CPU engine."""
    import os
    import subprocess

    from inferlab import download

    engine_env = Path(os.environ.get("INFERLAB_VLLM_ENV", ROOT / ".venv-vllm"))
    if not (engine_env / "bin" / "vllm").exists():
        pytest.fail(f"the vLLM CPU engine is not installed at {engine_env} (run scripts/setup.sh)")
    d = tmp_path_factory.mktemp("tiny")
    subprocess.run(
        [str(engine_env / "bin" / "python"), "-m", "inferlab.tinymodel", "--out", str(d / "tiny")],
        check=True,
        capture_output=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    return d / "tiny", download.build_sharegpt(d / "sharegpt.json", 50)

"""SGLang for the air-gapped H100: the wheelhouse list, the completeness checker, the device preset.

No network and no GPU: the list is checked against the node's package list and vLLM's list (what
it leaves out, and why), scripts/wheelcheck.py is run on real (small) installed distributions made
here, and the preset is loaded by the real config code and turned into SGLang's command line.
"""

import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

from inferlab import config, engines
from inferlab.matrix import effective_experiment

LIST = ROOT / "envs" / "wheelhouse-sglang-0.5.17-cu130-py312.txt"
VLLM_LIST = ROOT / "envs" / "wheelhouse-vllm-0.26.0-cu130-py312.txt"
NODE = ROOT / "envs" / "device-cuda-image-py312.txt"


def norm(n: str) -> str:
    return re.sub(r"[-_.]+", "-", n).lower()


def pins(path: Path) -> dict:
    out = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            n, _, v = line.partition("==")
            assert norm(n) not in out, f"{path.name}: {n} listed twice"
            out[norm(n)] = v or None
    return out


def test_list_pins_sglang_for_the_nodes_torch():
    p = pins(LIST)
    assert all(v for v in p.values()), "every line pins NAME==VERSION"
    assert p["sglang"] == "0.5.17" and p["sglang-router"] == "0.3.2"
    assert p["sglang-kernel"] == "0.4.5" and p["flashinfer-python"] == "0.6.15.post1"
    # the node's torch stack is never relayed (a second torch would break its CUDA build)
    for n in ("torch", "torchaudio", "torchvision", "triton", "nvidia-cublas", "nvidia-cudnn-cu13", "nvidia-nccl-cu13"):
        assert n not in p, n
    # CUDA compiler wheels match the node's CUDA 13.0 driver
    assert p.get("nvidia-cuda-nvcc", "13.0").startswith("13.0")


def test_list_leaves_out_what_node_or_vllm_list_has_at_that_version():
    p, node, vllm = pins(LIST), pins(NODE), pins(VLLM_LIST)
    for n, v in p.items():
        assert node.get(n) != v, f"{n}=={v} is on the node already"
        assert vllm.get(n) != v, f"{n}=={v} is relayed by vLLM's list already"
    # relayed although the node has one: SGLang pins a different version
    assert p["transformers"] == "5.12.1" and node["transformers"] == "5.17.0"
    header = "\n".join(ln for ln in LIST.read_text().splitlines() if ln.startswith("#"))
    assert "Taken from envs/wheelhouse-vllm-0.26.0-cu130-py312.txt" in header


def write_dist(site: Path, name: str, version: str, requires=()):
    d = site / f"{name.replace('-', '_')}-{version}.dist-info"
    d.mkdir(parents=True)
    meta = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    meta += [f"Requires-Dist: {r}" for r in requires]
    (d / "METADATA").write_text("\n".join(meta) + "\n")


def wheelcheck(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "wheelcheck.py"), *args], capture_output=True, text=True
    )


def test_wheelcheck_finds_missing_and_conflicting_requirements(tmp_path):
    site, node = tmp_path / "site", tmp_path / "node.txt"
    node.write_text("torch==2.11.0\nrequests\n")
    write_dist(
        site, "eng", "1.0", ["dep>=2", "torch==2.11.0", "requests>=2", "numba==0.65.1", 'extra-only; extra == "x"']
    )
    write_dist(site, "dep", "2.1", ["leaf<1"])
    write_dist(site, "leaf", "1.5")
    r = wheelcheck("--site", str(site), "--node", str(node), "eng")
    assert r.returncode == 1, r.stdout
    assert "leaf 1.5" in r.stdout and "dep needs leaf<1" in r.stdout  # a conflict two levels down
    assert "numba==0.65.1: not installed" in r.stdout  # missing everywhere
    assert "assumed: eng needs requests>=2" in r.stdout  # the node's version is unknown here
    assert "extra-only" not in r.stdout  # an extra nobody asked for is not required
    # complete once the missing one is there and the conflict is gone
    write_dist(site, "numba", "0.65.1")
    (site / "leaf-1.5.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: leaf\nVersion: 0.9\n")
    r = wheelcheck("--site", str(site), "--node", str(node), "eng")
    assert r.returncode == 0, r.stdout
    assert "0 problems" in r.stdout


def test_wheelcheck_caps_on_unknown_node_versions_are_problems(tmp_path):
    site, node = tmp_path / "site", tmp_path / "node.txt"
    node.write_text("numpy\n")
    write_dist(site, "eng", "1.0", ["numpy<2.5"])
    r = wheelcheck("--site", str(site), "--node", str(node), "eng")
    assert r.returncode == 1 and "version unknown here" in r.stdout


def test_first_site_wins_like_pythonpath(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    write_dist(a, "eng", "1.0", ["dep==2"])
    write_dist(a, "dep", "2")
    write_dist(b, "dep", "1")  # shadowed, as /tmp/site's versions are behind /tmp/site-sglang's
    assert wheelcheck("eng", "--site", str(a), str(b)).returncode == 0
    assert wheelcheck("eng", "--site", str(b), str(a)).returncode == 1


def test_h100_sglang_preset_builds_sglangs_server_command():
    cfg = config.load(ROOT / "config" / "h100-validation-sglang.yaml", base_dir=ROOT)
    exp = effective_experiment(cfg, "week01", "serving")
    assert exp["engines"] == ["vllm", "sglang"] and exp["fixed"]["dataset"] == "sharegpt-synthetic"
    eng = engines.from_config(cfg, "sglang", base_dir=ROOT)
    cmd = eng.serve_command("/m", "127.0.0.1", 30001, exp["engine_args"])
    assert cmd[:3] == ["/tmp/sglangenv/bin/python", "-m", "sglang.launch_server"]
    s = " ".join(cmd)
    for flag in ("--load-format dummy", "--dtype bfloat16", "--enable-metrics", "--context-length 4096",
                 "--mem-fraction-static 0.9", "--disable-radix-cache"):  # fmt: skip
        assert flag in s, flag
    assert eng.env_vars["PYTHONPATH"].split(":")[:2] == ["/tmp/site-sglang", "/tmp/site"]


@pytest.mark.parametrize("script", ["wheelhouse.sh", "device-h100.sh", "device-sglang.sh"])
def test_scripts_parse(script):
    assert subprocess.run(["bash", "-n", str(ROOT / "scripts" / script)]).returncode == 0

"""Week 7's fixed output-length workload: the catalog's ``format: custom`` datasets (vLLM's custom
JSONL, built by inferlab.download.build_lengths), their validation (file and key named), and the
tools that read them (dataset_name custom). The shared run's cells are asserted in test_week07.py."""

import argparse
import copy
import json
import subprocess
import sys

import pytest
import yaml
from conftest import ROOT
from shared_run import ENGINE_ENV

from inferlab import config, download, theory
from inferlab.errors import ConfigError
from inferlab.tools import bench_serving, hf_static_batch, vllm_bench_throughput

sys.path.insert(0, str(ROOT / "src" / "inferlab" / "drivers"))
import hf_static  # noqa: E402  (the engine environment's script: standard library at import)

CATALOG = ROOT / "config" / "datasets.yaml"
COURSE = [16, 32, 64, 256, 512]


def _lines(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_build_lengths_cycles_the_declared_list_deterministically(tmp_path):
    a = download.build_lengths(tmp_path / "a.jsonl", 12, 256, COURSE, seed=3)
    b = download.build_lengths(tmp_path / "b.jsonl", 12, 256, COURSE, seed=3)
    c = download.build_lengths(tmp_path / "c.jsonl", 12, 256, COURSE, seed=4)
    assert a.read_bytes() == b.read_bytes()  # deterministic with a seed
    la, lc = _lines(a), _lines(c)
    assert [x["output_tokens"] for x in la] == [COURSE[i % 5] for i in range(12)]
    assert [x["output_tokens"] for x in lc] == [x["output_tokens"] for x in la]
    assert [x["prompt"] for x in lc] != [x["prompt"] for x in la]  # the seed draws the words
    for x in la:
        words = x["prompt"].split(" ")
        assert len(words) == 256 and set(words) <= set(download.LENGTH_WORDS)
        assert set(x) == {"prompt", "output_tokens"}  # what vLLM's CustomDataset reads


def test_prompt_words_are_one_token_each_for_the_tiny_tokenizer(tmp_path):
    """About 256 input tokens: exactly 256 with the tiny models' tokenizer (counted in the engine's
    environment, whose ``tokenizers`` trained it)."""
    tok_file = ROOT / ".cache" / "inferlab-test" / "models" / "built" / "tiny-llama" / "tokenizer.json"
    py = ENGINE_ENV / "bin" / "python"
    if not tok_file.exists() or not py.exists():
        pytest.skip(f"the tiny model ({tok_file}) or the engine environment ({py}) is not there yet")
    f = download.build_lengths(tmp_path / "l.jsonl", 20, 256, COURSE, seed=0)
    code = (
        "import json, sys; from tokenizers import Tokenizer; t = Tokenizer.from_file(sys.argv[1]); "
        "print(json.dumps(sorted({len(t.encode(json.loads(x)['prompt']).ids) for x in open(sys.argv[2])})))"
    )
    out = subprocess.run([str(py), "-c", code, str(tok_file), str(f)], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == [256]


def test_build_lengths_rejects_invalid_lists(tmp_path):
    for bad, key in (([], "output_lens"), ([16, 0], "output_lens[1]"), ([16, "32"], "output_lens[1]")):
        with pytest.raises(ValueError, match=key.replace("[", r"\[")):
            download.build_lengths(tmp_path / "x.jsonl", 10, 256, bad)
    with pytest.raises(ValueError, match="prompts"):
        download.build_lengths(tmp_path / "x.jsonl", 3, 256, COURSE)  # 256 and 512 would never run
    assert not (tmp_path / "x.jsonl").exists()


def _catalog_with(**entry):
    doc = yaml.safe_load(CATALOG.read_text())
    base = copy.deepcopy(doc["datasets"]["course-lengths"])
    doc["datasets"]["course-lengths"] = {**base, **entry}
    return doc


def test_catalog_declares_the_course_list_and_validates():
    doc = yaml.safe_load(CATALOG.read_text())
    config.validate(doc, "datasets", "config/datasets.yaml")
    d = doc["datasets"]["course-lengths"]
    assert d["format"] == "custom" and d["output_lens"] == COURSE and d["input_len"] == 256
    assert not download.lengths_spec_errors(d)
    small = doc["datasets"]["course-lengths-cpu"]
    # the CPU list is the course's scaled down: a sample's padding waste is the same
    k = COURSE[0] // small["output_lens"][0]
    assert [o * k for o in small["output_lens"]] == COURSE
    sample = [0, 3, 4, 1, 4, 2, 2]
    assert theory.padding_waste([small["output_lens"][i] for i in sample], 16) == pytest.approx(
        theory.padding_waste([COURSE[i] for i in sample], 16)
    )


@pytest.mark.parametrize(
    "entry,key",
    [
        ({"output_lens": [16, -32]}, "datasets.course-lengths.output_lens[1]"),
        ({"output_lens": []}, "datasets.course-lengths.output_lens"),
        ({"output_lens": "16,32"}, "datasets.course-lengths.output_lens"),
        ({"filename": "course-lengths.json"}, "datasets.course-lengths.filename"),
        ({"format": "burst"}, "datasets.course-lengths.format"),
        ({"lengths": [16]}, "datasets.course-lengths"),
    ],
)
def test_invalid_list_is_an_error_naming_file_and_key(entry, key):
    with pytest.raises(ConfigError) as e:
        config.validate(_catalog_with(**entry), "datasets", "config/datasets.yaml")
    assert str(e.value).startswith(f"config/datasets.yaml: {key}"), str(e.value)


def test_custom_dataset_needs_its_list():
    doc = _catalog_with()
    del doc["datasets"]["course-lengths"]["output_lens"]
    with pytest.raises(ConfigError, match="output_lens"):
        config.validate(doc, "datasets", "config/datasets.yaml")


def test_tools_read_the_custom_workload_and_name_what_is_missing(tmp_path):
    for tool in (hf_static_batch, vllm_bench_throughput):
        tool.check({"num_prompts": 3, "dataset_name": "custom", "dataset": "course-lengths"}, {}, "f.yaml", "k")
        with pytest.raises(ConfigError, match="custom needs a dataset"):
            tool.check({"num_prompts": 3, "dataset_name": "custom"}, {}, "f.yaml", "k")
        with pytest.raises(ConfigError, match="skip_chat_template"):
            tool.check({"num_prompts": 3, "dataset": "sg", "skip_chat_template": True}, {}, "f.yaml", "k")
        # a custom experiment names its dataset (it is read, not generated)
        assert not tool.generates_prompts({"sweep": {"dataset_name": ["custom", "random"]}})
        assert tool.generates_prompts({"sweep": {"dataset_name": ["random"]}})
    p = {"num_prompts": 3, "dataset_name": "custom", "dataset": "course-lengths", "skip_chat_template": True}
    cmd = hf_static_batch.command("py", "/m", p, tmp_path / "o", "/d/course-lengths.jsonl")
    assert cmd[cmd.index("--dataset") + 1] == "/d/course-lengths.jsonl"
    assert json.loads(cmd[cmd.index("--params") + 1])["skip_chat_template"] is True


def test_bench_serving_custom_workload_is_checked():
    p = {"request_rate": "inf", "dataset_name": "custom", "dataset": "course-lengths", "num_prompts": 10}
    bench_serving.check({**p, "skip_chat_template": True}, {}, "f.yaml", "k")
    bench_serving.check_engine(p, "vllm", "f.yaml", "k")
    with pytest.raises(ConfigError, match=r"custom needs \['dataset'\]"):
        bench_serving.check({k: v for k, v in p.items() if k != "dataset"}, {}, "f.yaml", "k")
    with pytest.raises(ConfigError, match="does not read"):
        bench_serving.check({**p, "output_len": 16}, {}, "f.yaml", "k")  # the lengths are the file's
    with pytest.raises(ConfigError, match="custom JSONL"):
        bench_serving.check_engine({**p, "client": "sglang"}, "vllm", "f.yaml", "k")
    assert not bench_serving.generates_prompts({"fixed": {"dataset_name": "custom"}})


def test_hf_sampler_reads_custom_as_vllm_bench_serve_does():
    ns = argparse.Namespace(dataset_path="/d/course-lengths.jsonl", dataset_name="sharegpt", custom_output_len=None)
    hf_static.custom_args(ns, {"skip_chat_template": True})
    assert (ns.dataset_name, ns.custom_output_len, ns.skip_chat_template) == ("custom", -1, True)
    with pytest.raises(ValueError, match="jsonl"):
        hf_static.custom_args(argparse.Namespace(dataset_path="/d/sharegpt.json"), {})

"""Both offline drivers sample ``dataset_name custom`` (Week 7's course lengths) through
inferlab.drivers.sampling, on every vLLM: vLLM 0.32's own ``get_requests`` (whose sampler has a
``custom`` branch) and the fallback built with vLLM's ``CustomDataset`` as that branch does (for
vLLM 0.26, whose ``get_requests`` raises ``Unknown dataset name: custom``) give the very same
requests, for the HF baseline and the vLLM driver alike. Runs vLLM's sampler in the engine
environment (.venv-vllm, no engine start); and the runner's detail of a tool that exits non-zero."""

import json
import os
import subprocess

import pytest
from conftest import ROOT
from shared_run import ENGINE_ENV

from inferlab import download, runner

TINY = ROOT / ".cache" / "inferlab-test" / "models" / "built" / "tiny-llama"

# in the engine environment: argv = model, dataset; prints {case: {path: [[prompt, prompt_len, output_len, id]]}}
SCRIPT = r"""
import json, random, sys
sys.path.insert(0, sys.argv[3])  # the drivers folder: hf_static as the tool runs it (a script)
import hf_static
import vllm
from vllm.benchmarks.throughput import get_requests as vllm_get_requests, validate_args
from vllm.tokenizers import get_tokenizer
from inferlab.drivers import sampling, vllm_offline as vo

model, ds = sys.argv[1], sys.argv[2]
out = {"vllm": vllm.__version__, "cases": {}}
for seed in (0, 3):
    for skip in (True, False):
        params = {"dataset_name": "custom", "num_prompts": 120, "seed": seed, "skip_chat_template": skip}
        case = out["cases"][f"seed{seed}-skip{skip}"] = {}
        for fb in (None, False, True):
            case[f"hf-{fb}"] = [list(r) for r in hf_static.sample_requests(model, ds, params, fallback=fb)]
        # the offline vLLM driver's namespace, built as its throughput() builds it (no engine)
        drv = vo.Driver({"model": model, "cells": []}, vo.Progress(None))
        args = drv.parse(vo.THROUGHPUT, {"num_prompts": 120, "seed": seed}, ["--dataset-path", ds])
        vo.custom_dataset_args(args, skip)
        validate_args(args)
        tok = get_tokenizer(args.tokenizer, tokenizer_mode=args.tokenizer_mode, trust_remote_code=args.trust_remote_code)
        for name, fn in (
            ("vllm-get_requests", lambda: vllm_get_requests(args, tok)),
            ("driver-auto", lambda: sampling.get_requests(args, tok)),
            ("driver-fallback", lambda: sampling.custom_requests(args, tok)),
        ):
            random.seed(args.seed)
            case[name] = [[r.prompt, r.prompt_len, r.expected_output_len, r.request_id] for r in fn()]
print("RESULT " + json.dumps(out))
"""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny model's folder (its tokenizer is what the sampler needs): the shared test cache's, or,
    on a fresh clone where no workflow run has built it yet (this file runs before any), built here as
    stage 1 builds it (rules/download.smk build_model), so the test never skips in CI."""
    py = ENGINE_ENV / "bin" / "python"
    if not py.exists():
        pytest.skip(f"the engine environment ({py}) is not installed (scripts/setup.sh)")
    if (TINY / "tokenizer.json").exists():
        return TINY
    import yaml

    m = yaml.safe_load((ROOT / "config" / "models.yaml").read_text())["models"]["tiny-llama"]
    out = tmp_path_factory.mktemp("sampling") / "tiny-llama"
    spec = {**m["architecture"], "weights": m.get("weights", "random"), "seed": 0}
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    subprocess.run(
        [str(py), "-m", "inferlab.tinymodel", "--out", str(out), "--spec", json.dumps(spec)],
        check=True,
        env=env,
        capture_output=True,
        timeout=600,
    )
    return out


def _engine_py():
    return ENGINE_ENV / "bin" / "python"


def test_custom_fallback_gives_vllm_get_requests_requests(tmp_path, tiny):
    py = _engine_py()
    ds = download.build_lengths(tmp_path / "course-lengths.jsonl", 150, 256, [16, 32, 64, 256, 512], seed=0)
    declared = [json.loads(x) for x in ds.read_text().splitlines()]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    r = subprocess.run(
        [str(py), "-c", SCRIPT, str(tiny), str(ds), str(ROOT / "src" / "inferlab" / "drivers")],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(next(x for x in r.stdout.splitlines() if x.startswith("RESULT "))[7:])
    assert out["vllm"] == "0.32.0"  # get_requests samples custom itself here (get_samples' branch)
    by_prompt = {d["prompt"]: d["output_tokens"] for d in declared}
    orders = {}
    for name, case in out["cases"].items():
        ref = case["vllm-get_requests"]
        assert len(ref) == 120, name
        # the driver's helper, automatic and forced fallback, equals vLLM's get_requests (ids included)
        assert case["driver-auto"] == ref, name
        assert case["driver-fallback"] == ref, name
        # the HF baseline: same (prompt, prompt_len, output_len) on every path
        triples = [x[:3] for x in ref]
        for fb in ("None", "False", "True"):
            assert case[f"hf-{fb}"] == triples, (name, fb)
        # every output length is the file's declared one; prompts of 256 one-token words
        skip = name.endswith("True")
        for prompt, plen, olen, _ in ref:
            if skip:
                assert by_prompt[prompt] == olen and plen == 256
            else:  # the tiny model's chat template wraps the prompt
                assert prompt not in by_prompt and plen > 256
        orders[name] = [x[0] for x in ref] if skip else None
    # the seed shuffles the file (CustomDataset.load_data: random.seed(seed); random.shuffle)
    assert orders["seed0-skipTrue"] != orders["seed3-skipTrue"]
    assert set(orders["seed0-skipTrue"]) <= set(by_prompt)


def test_fallback_dispatch_on_vllm_026_error(tmp_path, tiny):
    """vLLM 0.26.0's get_requests for custom ends in its ladder's ``raise ValueError(f"Unknown dataset
    name: {args.dataset_name}")``: that error (and only that one) sends sampling.get_requests to
    the fallback; any other ValueError, or fallback=False, passes vLLM's error through."""
    py = _engine_py()
    ds = download.build_lengths(tmp_path / "l.jsonl", 20, 256, [16, 32], seed=0)
    code = r"""
import json, sys
import vllm.benchmarks.throughput as tp
from vllm.tokenizers import get_tokenizer
from inferlab.drivers import sampling

def v026_get_requests(args, tokenizer):  # the branch vLLM 0.26.0 reaches for custom (throughput.py:710)
    raise ValueError(f"Unknown dataset name: {args.dataset_name}")

tok = get_tokenizer(sys.argv[1])
ns = lambda **k: tp.argparse.Namespace(**{**dict(dataset_name="custom", dataset_path=sys.argv[2], seed=0,
    num_prompts=10, custom_output_len=-1, skip_chat_template=True, data_parallel_size=1), **k})
ref = [(r.prompt, r.prompt_len, r.expected_output_len) for r in tp.get_requests(ns(), tok)]
tp.get_requests = v026_get_requests
got = [(r.prompt, r.prompt_len, r.expected_output_len) for r in sampling.get_requests(ns(), tok)]
errs = {}
for name, kw, fb in (("no-fallback", {}, False), ("other-dataset", {"dataset_name": "sonnet"}, None)):
    try:
        sampling.get_requests(ns(**kw), tok, fallback=fb)
    except ValueError as e:
        errs[name] = str(e)
print("RESULT " + json.dumps({"same": ref == got, "n": len(got), "errs": errs}))
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    r = subprocess.run([str(py), "-c", code, str(tiny), str(ds)], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(next(x for x in r.stdout.splitlines() if x.startswith("RESULT "))[7:])
    assert out["same"] and out["n"] == 10
    assert out["errs"] == {
        "no-fallback": "Unknown dataset name: custom",
        "other-dataset": "Unknown dataset name: sonnet",
    }


# the log of week07/static_lengths on the H200 (vLLM 0.26.0): the tool exited 1
H200_LOG = """\
INFO 11-24 10:02:11 [__init__.py:216] Automatically detected platform cuda.
/tmp/site/vllm/benchmarks/throughput.py:822: UserWarning: --random-range-ratio will be ignored since \
--dataset-name is not 'random', 'random-mm', or 'random-rerank'.
  validate_args(args)
Traceback (most recent call last):
  File "/work/inferlab/src/inferlab/drivers/hf_static.py", line 216, in <module>
    sys.exit(main())
  File "/work/inferlab/src/inferlab/drivers/hf_static.py", line 203, in main
    reqs = sample_requests(a.model, a.dataset, params)
  File "/work/inferlab/src/inferlab/drivers/hf_static.py", line 60, in sample_requests
    for r in get_requests(args, tok):
  File "/tmp/site/vllm/benchmarks/throughput.py", line 710, in get_requests
    raise ValueError(f"Unknown dataset name: {args.dataset_name}")
ValueError: Unknown dataset name: custom
"""


def test_runner_detail_has_the_last_exception_line(tmp_path):
    assert runner.last_exception_line(H200_LOG) == "ValueError: Unknown dataset name: custom"
    assert runner.exit_detail(1, H200_LOG) == "engine exited with 1: ValueError: Unknown dataset name: custom"
    # chained: the last one raised; a logger's prefix is dropped
    chained = (
        H200_LOG
        + "\nDuring handling of the above exception, another exception occurred:\n\n"
        + ("ERROR 11-24 10:02:12 [core.py:708] RuntimeError: Engine core initialization failed\n")
    )
    assert runner.exit_detail(1, chained) == "engine exited with 1: RuntimeError: Engine core initialization failed"
    assert runner.exit_detail(-9, "killed\n") == "engine exited with -9"
    long = "Traceback (most recent call last):\nValueError: " + "x" * 5000
    assert len(runner.exit_detail(1, long)) == runner.DETAIL_MAX
    # as the runner reads it: the tail of the real log file
    (tmp_path / "engine.log").write_text(H200_LOG)
    tail = runner.log_tail(tmp_path / "engine.log", 400)
    assert runner.exit_detail(1, tail) == "engine exited with 1: ValueError: Unknown dataset name: custom"

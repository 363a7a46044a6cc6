"""Bad input is rejected at load, naming the file and the key (issue 18, 3): a table of bad week
files -> the error each must get, when the workflow is read (config load + matrix expansion),
before any job. Input + output beyond the model's context: the model's max_position_embeddings
where the configuration sets no max_model_len."""

from __future__ import annotations

import pytest
import yaml
from conftest import load_preset

from inferlab import matrix
from inferlab.errors import ConfigError


def _decode(d):
    return d["experiments"]["decode"]


BAD = [
    # (what, edit of week03.yaml, key the error names, words the error must hold)
    (
        "typo in a sweep key",
        lambda d: _decode(d)["sweep"].__setitem__("batch_sise", [1, 4]),
        "batch_sise",
        "has no parameter",
    ),
    (
        "typo in a fixed key",
        lambda d: _decode(d)["fixed"].__setitem__("num_iterz", 30),
        "num_iterz",
        "has no parameter",
    ),
    ("non-positive batch sizes", lambda d: _decode(d)["sweep"].__setitem__("batch_size", [0, -4]), "batch_size", ""),
    (
        "input beyond the context",
        lambda d: _decode(d)["fixed"].__setitem__("input_len", 100000),
        "input_len + output_len = 100064 exceeds",
        "max_model_len",
    ),
    ("wrong type", lambda d: _decode(d)["fixed"].__setitem__("output_len", "many"), "output_len", ""),
    ("unknown experiment key", lambda d: _decode(d).__setitem__("sweeps", {}), "sweeps", "unknown"),
    ("unknown engine argument", lambda d: _decode(d)["engine_args"].__setitem__("max_num_seqz", 4), "max_num_seqz", ""),
    ("unknown tool", lambda d: _decode(d).__setitem__("tool", "vllm_bench_latencyy"), "tool", ""),
    ("empty sweep axis", lambda d: _decode(d)["sweep"].__setitem__("batch_size", []), "batch_size", ""),
]


@pytest.mark.parametrize("what,edit,key,words", BAD, ids=[b[0] for b in BAD])
def test_bad_week_file_is_rejected_naming_file_and_key(catalog, what, edit, key, words):
    f = catalog / "weeks" / "week03.yaml"
    data = yaml.safe_load(f.read_text())
    edit(data)
    f.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as e:
        # what the Snakefile does when it is read: load the config, expand the matrix (no job yet)
        matrix.expand(load_preset(catalog, weeks=["week03"]))
    msg = str(e.value)
    assert msg.startswith(str(f)), msg  # the file
    assert key in msg, msg  # the key
    assert words in msg, msg

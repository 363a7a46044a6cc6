"""tools/lm_eval.py: lm-eval 0.4.13's own results JSON (a real run: lm_eval local-completions against
vLLM's CPU server on the random-weight tiny model, 20 held-out arithmetic questions), the local task
YAML, and the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from inferlab.tools import lm_eval

DATA = Path(__file__).parent / "data" / "lm-eval-0.4.13"


def test_parse_real_results():
    raw = json.loads((DATA / "tiny_arith_random_results.json").read_text())
    rows = {r["metric"]: r for r in lm_eval.parse(raw)}
    assert rows["accuracy_strict_match"]["value"] == 0.0  # random weights answer nothing right
    assert rows["accuracy_strict_match_stderr"]["value"] == 0.0
    assert rows["eval_samples"]["value"] == 20
    assert rows["eval_time"]["value"] > 0
    assert set(rows) == {m for m, _ in lm_eval.metric_names()}


def test_parse_gsm8k_two_filters_and_na_stderr():
    raw = {
        "results": {
            "gsm8k": {
                "exact_match,strict-match": 0.75,
                "exact_match_stderr,strict-match": 0.0119,
                "exact_match,flexible-extract": 0.77,
                "exact_match_stderr,flexible-extract": "N/A",
            }
        },
        "n-samples": {"gsm8k": {"original": 1319, "effective": 1319}},
    }
    rows = {r["metric"]: r["value"] for r in lm_eval.parse(raw)}
    assert rows["accuracy_strict_match"] == 0.75 and rows["accuracy_strict_match_stderr"] == 0.0119
    assert rows["accuracy_flexible_extract"] == 0.77 and rows["accuracy_flexible_extract_stderr"] is None
    assert rows["eval_time"] is None


@pytest.mark.parametrize(
    "bad",
    [{}, {"results": {}}, {"results": {"a": {}, "b": {}}}, {"results": {"t": {"exact_match,x": "nan?"}}}],
)
def test_parse_rejects_what_is_not_a_result(bad):
    with pytest.raises(ValueError):
        lm_eval.parse(bad)


def test_task_yaml_is_the_notes_task(tmp_path):
    doc = yaml.safe_load(lm_eval.task_yaml(tmp_path / "eval.jsonl", 24))
    assert doc["task"] == "tiny_arith" and doc["output_type"] == "generate_until"
    assert doc["dataset_kwargs"]["data_files"]["test"] == str((tmp_path / "eval.jsonl").absolute())
    assert doc["doc_to_text"] == "Question: {{question}}\nAnswer:"
    assert doc["generation_kwargs"]["max_gen_toks"] == 24 and doc["generation_kwargs"]["do_sample"] is False
    import re

    pat = doc["filter_list"][0]["filter"][0]["regex_pattern"]
    assert re.search(pat, "23+41=64 #### 64").group(1) == "64"


def test_command(tmp_path, monkeypatch):
    env = tmp_path / "env"
    (env / "bin").mkdir(parents=True)
    (env / "bin" / "lm_eval").write_text("")
    monkeypatch.setenv("INFERLAB_LM_EVAL_ENV", str(env))
    model = tmp_path / "m"
    model.mkdir()
    with pytest.raises(FileNotFoundError, match="eval split"):
        lm_eval.client_command(None, "http://h:1", model, {"task": "tiny_arith"}, tmp_path / "c" / "raw.json")
    (model / "eval.jsonl").write_text('{"question": "1+2=?", "answer": "1+2=3 #### 3"}\n')
    cmd = lm_eval.client_command(
        None, "http://h:1", model, {"task": "tiny_arith", "limit": 5}, tmp_path / "c" / "raw.json"
    )
    assert "local-completions" in cmd and "--include_path" in cmd and cmd[cmd.index("--limit") + 1] == "5"
    assert "base_url=http://h:1/v1/completions" in cmd[cmd.index("--model_args") + 1]
    assert (tmp_path / "c" / "lm_eval" / "tasks" / "tiny_arith.yaml").exists()
    monkeypatch.setenv("INFERLAB_LM_EVAL_ENV", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="not installed"):
        lm_eval.client_command(None, "http://h:1", model, {"task": "gsm8k"}, tmp_path / "raw.json")

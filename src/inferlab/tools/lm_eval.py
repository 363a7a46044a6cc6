"""``lm_eval --model local-completions`` against the serving session's server: task accuracy of the
configuration's model (Week 12, and the accuracy gate of knob studies).

The client is EleutherAI's lm-evaluation-harness (``lm-eval[api]``, pinned in envs/lm-eval.lock.txt,
installed by scripts/setup.sh into ``.venv-lm-eval``, layered on the engine environment for
transformers' tokenizer). It sends the task's prompts to the server's ``/v1/completions`` and scores
them itself; its own results JSON (``results_<ts>.json``) is the cell's ``raw.json``.

Tasks:

- ``tiny_arith`` (the embedded default): the synthetic arithmetic split the trained tiny model was
  evaluated on (``eval.jsonl`` beside its weights, inferlab.train), as a local lm-eval task
  (notes §T): ``generate_until``, greedy, strict match of the number after ``####``; the task YAML
  is written into the cell's folder and loaded with ``--include_path``;
- ``gsm8k`` (the cluster): lm-eval's own task, 5-shot, strict and flexible match (the
  ``openai/gsm8k`` dataset must be in the node's Hugging Face cache).

Rows: ``accuracy_<filter>`` (exact match, 0-1) and ``accuracy_<filter>_stderr`` for each filter the
task reports, plus ``eval_samples`` and ``eval_time``; the stderr travels beside its accuracy.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from ..errors import ConfigError

NAME = "lm_eval"
NEEDS_SERVER = True
# generation stops at the task's stop strings: max_gen_toks is a cap, not a requested length
EXACT_LENGTHS = False
DRIVER = None
DATASET = False
#: a client of its own (not the engine's load client): the session asks this module for the command
CLIENT = True
TASKS = ("tiny_arith", "gsm8k")
PARAMS = {
    "task": {"enum": list(TASKS), "description": "tiny_arith: the trained tiny model's eval split; gsm8k: lm-eval's"},
    "num_fewshot": {"type": "integer", "minimum": 0, "description": "few-shot examples per prompt (gsm8k: 5)"},
    "limit": {"type": "integer", "minimum": 1, "description": "evaluate the first N documents only"},
    "num_concurrent": {"type": "integer", "minimum": 1, "default": 2, "description": "requests in flight"},
    "max_gen_toks": {"type": "integer", "minimum": 1, "default": 32, "description": "generated tokens per answer"},
    "seed": {"type": "integer", "minimum": 0, "default": 0, "description": "lm-eval's seeds"},
}
REQUIRED = ("task",)
RESULTS_GLOB = "results_*.json"
# the task's data file beside the model's weights (written by inferlab.train; copied by inferlab.quantize)
EVAL_SPLIT = "eval.jsonl"
TASK_YAML = """\
task: tiny_arith
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_target: "{{{{answer}}}}"
generation_kwargs:
  until: ["Question:", "\\n"]
  do_sample: false
  temperature: 0.0
  max_gen_toks: {max_gen_toks}
filter_list:
  - name: strict-match
    filter:
      - function: regex
        regex_pattern: "#### (\\\\-?[0-9\\\\.\\\\,]+)"
      - function: take_first
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
    # as lm-eval's own gsm8k task: the target "a+b=s #### s" and the filtered answer compare on s
    ignore_case: true
    ignore_punctuation: false
    regexes_to_ignore: [",", '\\$', "(?s).*#### ", '\\.$']
num_fewshot: 0
"""


def check(params: dict, server_args: dict, file, key: str) -> None:
    if params.get("task") == "tiny_arith" and params.get("num_fewshot", 0) not in (0, None):
        raise ConfigError(file, key, "tiny_arith is zero-shot (the trained model answers the bare prompt)")


def skip(server_args: dict) -> str | None:
    """An accuracy needs the checkpoint's weights: a model served with ``load_format: dummy`` (the
    air-gapped GPU's engine-made random weights) would score chance, so its cells are typed skipped."""
    if server_args.get("load_format") == "dummy":
        return (
            "no weights: load_format dummy serves engine-made random weights (no checkpoint on this node); "
            "an accuracy would be chance, not the model's"
        )
    return None


def env_dir() -> Path:
    """Where lm-eval is installed: ``INFERLAB_LM_EVAL_ENV`` or the checkout's ``.venv-lm-eval``."""
    d = os.environ.get("INFERLAB_LM_EVAL_ENV")
    return Path(d) if d else Path(__file__).resolve().parents[3] / ".venv-lm-eval"


def task_yaml(data: Path, max_gen_toks: int = 32) -> str:
    return TASK_YAML.format(data=json.dumps(str(Path(data).absolute())), max_gen_toks=int(max_gen_toks))


def client_command(engine, base_url: str, model_path, params: dict, out_file: Path, warmups: int = 0) -> list[str]:
    """The cell's command: inferlab/clients/lm_eval_run.py (in lm-eval's environment) runs ``lm_eval``
    and copies its results JSON to ``out_file``. Raises FileNotFoundError (a client_error) when
    lm-eval or the task's data is missing."""
    env = env_dir()
    py = env / "bin" / "python"
    if not (env / "bin" / "lm_eval").exists():
        raise FileNotFoundError(f"lm-eval is not installed at {env} (scripts/setup.sh installs envs/lm-eval.lock.txt)")
    out_file = Path(out_file)
    work = out_file.parent / "lm_eval"
    task = params["task"]
    args = [
        "--model",
        "local-completions",
        "--model_args",
        ",".join(
            [
                f"model={model_path}",
                f"base_url={base_url}/v1/completions",
                f"tokenizer={model_path}",
                f"num_concurrent={int(params.get('num_concurrent', 2))}",
                "max_retries=3",
                "tokenized_requests=False",
            ]
        ),
        "--tasks",
        task,
        "--output_path",
        str(work / "out"),
        "--log_samples",
        "--seed",
        str(int(params.get("seed", 0))),
    ]
    if task == "tiny_arith":
        data = Path(model_path) / EVAL_SPLIT
        if not data.exists():
            raise FileNotFoundError(f"{data} does not exist: the model has no eval split (inferlab.train writes it)")
        tasks = work / "tasks"
        tasks.mkdir(parents=True, exist_ok=True)
        (tasks / "tiny_arith.yaml").write_text(task_yaml(data, params.get("max_gen_toks", 32)))
        args += ["--include_path", str(tasks)]
    else:
        args += ["--num_fewshot", str(int(params.get("num_fewshot", 5)))]
        args += ["--gen_kwargs", f"max_gen_toks={int(params.get('max_gen_toks', 256))}"]
    if params.get("limit"):
        args += ["--limit", str(int(params["limit"]))]
    runner = Path(__file__).resolve().parents[1] / "clients" / "lm_eval_run.py"
    return [str(py), str(runner), "--out", str(out_file), "--results-dir", str(work / "out"), "--", *args]


def metric_names() -> list[tuple[str, str]]:
    return [
        ("accuracy_strict_match", "fraction"),
        ("accuracy_strict_match_stderr", "fraction"),
        ("eval_samples", "documents"),
        ("eval_time", "s"),
    ]


def _slug(s: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in s).strip("_").lower()


def parse(data: dict) -> list[dict]:
    """lm-eval's own results JSON (``results_<ts>.json``) -> rows. Every ``<metric>,<filter>`` of
    the one task becomes ``accuracy_<filter>`` (exact_match) or ``<metric>_<filter>`` (others), with
    ``..._stderr`` from ``<metric>_stderr,<filter>``; a stderr of "N/A" (one document) is None."""
    if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
        raise ValueError("not an lm-eval results JSON (no 'results' object)")
    results = data["results"]
    if len(results) != 1:
        raise ValueError(f"expected one task's results, got {sorted(results)}")
    ((task, res),) = results.items()
    rows = []
    for key, value in res.items():
        if "," not in key or "_stderr," in key:
            continue
        metric, filt = key.split(",", 1)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            raise ValueError(f"{task} {key} is not a number: {value!r}")
        name = ("accuracy" if metric == "exact_match" else _slug(metric)) + (
            "" if filt == "none" else f"_{_slug(filt)}"
        )
        se = res.get(f"{metric}_stderr,{filt}")
        se = float(se) if isinstance(se, (int, float)) and not isinstance(se, bool) and math.isfinite(se) else None
        d = f"lm-eval {task}: {metric} under filter {filt!r}"
        rows.append({"metric": name, "value": float(value), "unit": "fraction", "definition": d})
        rows.append(
            {
                "metric": f"{name}_stderr",
                "value": se,
                "unit": "fraction",
                "definition": f"standard error of {name} ({d})",
            }
        )
    if not rows:
        raise ValueError(f"{task}: no '<metric>,<filter>' values in the results")
    n = (data.get("n-samples") or {}).get(task, {})
    eff = n.get("effective") if isinstance(n, dict) else None
    rows.append(
        {
            "metric": "eval_samples",
            "value": float(eff) if isinstance(eff, (int, float)) else None,
            "unit": "documents",
            "definition": f"documents lm-eval scored ({task}, n-samples.effective)",
        }
    )
    t = data.get("total_evaluation_time_seconds")
    try:
        t = float(t)
    except (TypeError, ValueError):
        t = None
    rows.append(
        {"metric": "eval_time", "value": t, "unit": "s", "definition": "lm-eval's total_evaluation_time_seconds"}
    )
    return rows

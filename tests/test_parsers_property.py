"""Every parser of a tool's or a server's output, fed random, truncated and wrong-type outputs
(Hypothesis), returns rows or raises the typed parse error (a ``ValueError``: what the session and
runner type ``parse_error`` with its reason), never anything else (no KeyError, TypeError,
AttributeError from a wrong shape). Real outputs of vLLM 0.32 and SGLang 0.5.23 (tests/data) are
the seeds that get truncated and mutated."""

from __future__ import annotations

import json
import math

from conftest import DATA
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inferlab import profile, scrape, startlog
from inferlab.engines.sglang import SGLang
from inferlab.engines.vllm import VLLM

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

REAL = {
    "vllm_bench_latency": (DATA / "vllm-0.32-cpu" / "latency.json").read_text(),
    "vllm_bench_throughput": (DATA / "vllm-0.32-cpu" / "throughput.json").read_text(),
    "bench_serving": (DATA / "vllm-0.32-cpu" / "serve.json").read_text(),
}
SGLANG_REAL = (DATA / "sglang-0.5.23-cpu" / "serving_vs_vllm_cpu.jsonl").read_text()
PARAMS = {"output_len": 16, "input_len": 32, "batch_size": 1, "num_prompts": 8, "request_rate": 4}

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
)
json_values = st.recursive(
    scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=12), c, max_size=5), max_leaves=12
)


def _mutated(real: str):
    """A real output with one key's value replaced by anything, or a key dropped."""
    data = json.loads(real)
    keys = sorted(data)
    return st.tuples(st.sampled_from(keys), json_values, st.booleans()).map(
        lambda t: json.dumps({**{k: v for k, v in data.items() if k != t[0]}, **({} if t[2] else {t[0]: t[1]})})
    )


def _outputs(real: str):
    return st.one_of(
        st.text(max_size=200),  # garbage
        st.integers(0, len(real)).map(lambda n: real[:n]),  # truncated
        json_values.map(json.dumps),  # valid JSON of any type
        _mutated(real),  # right shape, one wrong value or missing key
    )


def _check_rows(rows):
    assert isinstance(rows, list)
    for r in rows:
        assert isinstance(r["metric"], str) and isinstance(r["unit"], str)
        v = r["value"]
        assert v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)), r


def _typed(parse, *args):
    try:
        rows = parse(*args)
    except ValueError:  # includes json.JSONDecodeError and scrape.ParseError
        return
    _check_rows(rows)


def _engine(cls):
    return cls(None, {"python": "python"})


@SETTINGS
@given(st.data())
def test_vllm_parsers(tmp_path_factory, data):
    tool = data.draw(st.sampled_from(sorted(REAL)))
    text = data.draw(_outputs(REAL[tool]))
    f = tmp_path_factory.mktemp("raw") / "raw.json"
    f.write_text(text)
    _typed(_engine(VLLM).parse, tool, f, PARAMS)


@SETTINGS
@given(st.data())
def test_sglang_parser(tmp_path_factory, data):
    last = SGLANG_REAL.strip().splitlines()[-1]
    text = data.draw(st.one_of(_outputs(last), _outputs(last).map(lambda t: SGLANG_REAL + "\n" + t)))
    f = tmp_path_factory.mktemp("raw") / "raw.jsonl"
    f.write_text(text)
    params = data.draw(st.sampled_from([PARAMS, {**PARAMS, "cache_report": True}, {}]))
    _typed(_engine(SGLang).parse, "bench_serving", f, params)


@SETTINGS
@given(st.data())
def test_expert_load_and_lm_eval_parsers(tmp_path_factory, data):
    tool = data.draw(st.sampled_from(["expert_load", "lm_eval"]))
    seed = {
        "expert_load": {"counts": [[3, 1], [2, 2]], "experts": 2, "tokens": 4},
        "lm_eval": {"results": {"gsm8k": {"exact_match,strict-match": 0.5, "exact_match_stderr,strict-match": 0.1}}},
    }[tool]
    text = data.draw(_outputs(json.dumps(seed)))
    f = tmp_path_factory.mktemp("raw") / "raw.json"
    f.write_text(text)
    _typed(_engine(VLLM).parse, tool, f, PARAMS)


PROM = """# HELP vllm:prefix_cache_queries_total q
# TYPE vllm:prefix_cache_queries_total counter
vllm:prefix_cache_queries_total{engine="0",model_name="m"} 128.0
vllm:prefix_cache_hits_total{engine="0",model_name="m"} 64.0
vllm:cache_config_info{block_size="16",engine="0",num_gpu_blocks="100"} 1.0
vllm:num_requests_running{engine="0",model_name="m"} 0.0
"""


@SETTINGS
@given(st.one_of(st.text(max_size=300), st.integers(0, len(PROM)).map(lambda n: PROM[:n])))
def test_prometheus_parser(text):
    try:
        m = scrape.parse_prometheus(text)
    except ValueError:
        return
    try:
        scrape.cell_rows(m, m, "vllm", on_reset="flag")
        scrape.cache_config_rows(m)
    except ValueError:
        return


@SETTINGS
@given(st.text(max_size=400), st.sampled_from(["vllm", "sglang"]))
def test_startup_log_parser(text, dialect):
    _typed(startlog.parse_startup_log, text, dialect)


@SETTINGS
@given(json_values)
def test_profile_trace_parser(trace):
    if not isinstance(trace, dict):
        trace = {"traceEvents": trace}
    try:
        profile.breakdown(trace)
    except ValueError:
        return

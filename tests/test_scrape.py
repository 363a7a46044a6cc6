"""Server-side metrics (inferlab.scrape) and start-up log facts (inferlab.startlog), tested on
real /metrics scrapes and server logs of the vLLM CPU engine (tests/data/serverside/README.md),
plus GPU/SGLang log lines built from the engines' own format strings. No engine needed."""

import csv
import http.server
import math
import re
import socket
import threading
import time

import pytest
from conftest import DATA

from inferlab import scrape, startlog

SS = DATA / "serverside"
LABELS = frozenset({"engine": "0", "model_name": "/tmp/h1/tiny-llama"}.items())


def load(name):
    return scrape.parse_prometheus((SS / name).read_text())


def by_metric(rows):
    assert all(set(r) == {"metric", "value", "unit", "definition"} for r in rows)
    names = [r["metric"] for r in rows]
    assert len(names) == len(set(names)), "a metric appears twice"
    return {r["metric"]: r for r in rows}


def grep_value(name, text):
    """The sample value of an unlabelled-engine-0 counter, read with a plain regex (not the parser)."""
    m = re.search(rf"^{re.escape(name)}\{{[^}}]*\}} (\S+)$", text, re.M)
    return float(m.group(1))


# ------------------------------------------------------------------ parsing


def test_parse_real_scrape():
    m = load("apc_after.prom")
    assert m[("vllm:prefix_cache_hits_total", LABELS)] == 9728.0
    assert m[("vllm:prefix_cache_queries_total", LABELS)] == 12800.0
    assert m.types["vllm:prefix_cache_hits_total"] == "counter"
    assert m.types["vllm:num_requests_running"] == "gauge"
    assert m.types["vllm:time_to_first_token_seconds"] == "histogram"
    assert m.help["vllm:prefix_cache_hits_total"].startswith("Prefix cache hits")
    assert m.family("vllm:time_to_first_token_seconds_bucket") == "vllm:time_to_first_token_seconds"
    inf_key = ("vllm:time_to_first_token_seconds_bucket", LABELS | {("le", "+Inf")})
    assert m[inf_key] == 40.0
    h = scrape.histogram(m, "vllm:time_to_first_token_seconds")
    assert h["buckets"][-1] == (math.inf, 40.0) and h["count"] == 40.0
    assert [c for _, c in h["buckets"]] == sorted(c for _, c in h["buckets"])  # cumulative
    p50 = scrape.histogram_quantile(h["buckets"], 0.5)
    lo = max(le for le, c in h["buckets"] if c < 20)
    hi = min(le for le, c in h["buckets"] if c >= 20)
    assert lo <= p50 <= hi
    # request_success_total has one series per finished_reason: summed over labels
    assert m.total("vllm:request_success_total") == 40.0
    assert len(m.series("vllm:request_success_total")) == 5


def test_parse_format_details():
    text = "\n".join(
        [
            "# HELP x_total A \\\\ help\\nline",
            "# TYPE x_total counter",
            'x_total{path="/a\\"b\\\\c\\nd",code="200",} 3 1700000000000',
            'x_total{ path = "/e" } 4',
            "# a free comment",
            "up 1",
            "g_pos +Inf",
            "g_neg -Inf",
            "g_nan NaN",
            "g_exp 1.5e+03",
            "# TYPE h histogram",
            'h_bucket{le="0.5"} 1',
            'h_bucket{le="+Inf"} 2',
            "h_sum 1.25",
            "h_count 2",
            "# EOF",
            "",
        ]
    )
    m = scrape.parse_prometheus(text)
    assert m[("x_total", frozenset({"path": '/a"b\\c\nd', "code": "200"}.items()))] == 3.0
    assert m[("x_total", frozenset({"path": "/e"}.items()))] == 4.0
    assert m.help["x_total"] == "A \\ help\nline"
    assert m[("up", frozenset())] == 1.0
    assert m[("g_pos", frozenset())] == math.inf and m[("g_neg", frozenset())] == -math.inf
    assert math.isnan(m[("g_nan", frozenset())])
    assert m[("g_exp", frozenset())] == 1500.0
    assert m.total("x_total") == 7.0
    assert scrape.histogram(m, "h") == {"buckets": [(0.5, 1.0), (math.inf, 2.0)], "sum": 1.25, "count": 2.0}
    assert scrape.histogram(m, "absent") is None


@pytest.mark.parametrize(
    "text",
    [
        "x_total",  # no value
        "x_total abc",  # not a number
        "x_total 1_000",  # Python float() would take it
        "x_total 1 2 3",  # value, timestamp, junk
        'x_total{a="1} 2',  # unterminated label value
        "x_total{a=1} 2",  # unquoted label value
        'x_total{a="1" b="2"} 2',  # no comma
        'x_total{a="1",a="2"} 2',  # repeated label
        '{a="1"} 2',  # no name
        'x_total{a="1"}2 3 4',
        "# TYPE x_total countr",
        "# TYPE",
        "x 1\nx 2",  # repeated sample
    ],
)
def test_parse_malformed(text):
    with pytest.raises(scrape.ParseError, match=r"line \d+"):
        scrape.parse_prometheus(text)


def test_parse_error_names_the_line():
    good = (SS / "apc_before.prom").read_text().splitlines()
    bad = good[:10] + ['vllm:prefix_cache_hits_total{engine="0" 12'] + good[10:]
    with pytest.raises(scrape.ParseError, match="line 11"):
        scrape.parse_prometheus("\n".join(bad))


# ------------------------------------------------------------------ counters and cell rows


def test_prefix_cache_hit_rate_equals_hand_computation():
    texts = {k: (SS / f"apc_{k}.prom").read_text() for k in ("before", "mid", "after")}
    hits = {k: grep_value("vllm:prefix_cache_hits_total", t) for k, t in texts.items()}
    queries = {k: grep_value("vllm:prefix_cache_queries_total", t) for k, t in texts.items()}
    before, mid, after = (scrape.parse_prometheus(texts[k]) for k in ("before", "mid", "after"))

    cell1 = by_metric(scrape.cell_rows(before, mid))
    expected1 = (hits["mid"] - hits["before"]) / (queries["mid"] - queries["before"])
    assert expected1 == 4608 / 6400 == 0.72  # 18 requests x 256 cached tokens of 20 x 320
    assert cell1["prefix_cache_hit_rate"]["value"] == expected1
    assert cell1["prefix_cache_hit_rate"]["unit"] == "fraction"
    assert cell1["prefix_cache_queries"]["value"] == 6400 and cell1["prefix_cache_hits"]["value"] == 4608

    # second, identical bench on the warm server: the deltas start from non-zero counters
    cell2 = by_metric(scrape.cell_rows(mid, after))
    expected2 = (hits["after"] - hits["mid"]) / (queries["after"] - queries["mid"])
    assert expected2 == 5120 / 6400 == 0.8
    assert cell2["prefix_cache_hit_rate"]["value"] == expected2
    # the server's own log prints the *cumulative* rate (76.0% = 9728/12800), not the cell's
    log = (SS / "vllm_cpu_eager.log").read_text()
    logged = [float(x) for x in re.findall(r"Prefix cache hit rate: ([\d.]+)%", log)]
    assert logged[0] == round(100 * expected1, 1) and logged[-1] == round(100 * hits["after"] / queries["after"], 1)

    for cell in (cell1, cell2):
        assert cell["server_prompt_tokens"]["value"] == 6400
        assert cell["server_generation_tokens"]["value"] == 20 * 16
        assert cell["server_requests"]["value"] == 20  # summed over finished_reason labels
        assert cell["preemptions"]["value"] == 0
        assert cell["counter_resets"]["value"] == 0
        assert cell["server_cached_prompt_tokens"]["value"] == cell["prefix_cache_hits"]["value"]
        # no KV connector: no external lookups -> None with the reason, never 0
        assert cell["external_cache_hit_rate"]["value"] is None
        assert "= 0" in cell["external_cache_hit_rate"]["definition"]
        assert cell["external_prefix_cache_queries"]["value"] == 0
        # no spec decode on this server: the families are absent
        assert cell["spec_acceptance_rate"]["value"] is None
        assert "absent" in cell["spec_acceptance_rate"]["definition"]
        assert cell["spec_drafts"]["value"] is None


def test_spec_decode_rows_match_the_engine():
    before, after = load("spec_before.prom"), load("spec_after.prom")
    text = (SS / "spec_after.prom").read_text()
    drafts = grep_value("vllm:spec_decode_num_drafts_total", text)
    draft_tokens = grep_value("vllm:spec_decode_num_draft_tokens_total", text)
    accepted = grep_value("vllm:spec_decode_num_accepted_tokens_total", text)
    assert (drafts, draft_tokens, accepted) == (136, 381, 275)  # the bench printed the same

    rows = by_metric(scrape.cell_rows(before, after))
    assert rows["spec_acceptance_rate"]["value"] == accepted / draft_tokens
    assert rows["spec_mean_acceptance_length"]["value"] == 1 + accepted / drafts
    assert (rows["spec_drafts"]["value"], rows["spec_draft_tokens"]["value"]) == (136, 381)
    assert rows["spec_accepted_tokens"]["value"] == 275
    per_pos = [rows[f"spec_acceptance_rate_pos{i}"]["value"] for i in range(3)]
    assert per_pos == [113 / 136, 88 / 136, 74 / 136]
    assert sum(per_pos) * drafts == pytest.approx(accepted)

    # vLLM's own SpecDecoding log line for the same run agrees
    log = (SS / "vllm_cpu_spec.log").read_text()
    m = re.search(
        r"Mean acceptance length: ([\d.]+).*Per-position acceptance rate: ([\d., ]+), Avg Draft acceptance "
        r"rate: ([\d.]+)%",
        log,
    )
    assert float(m.group(1)) == round(rows["spec_mean_acceptance_length"]["value"], 2)
    assert [float(x) for x in m.group(2).split(",")] == [round(p, 3) for p in per_pos]
    assert float(m.group(3)) == round(100 * rows["spec_acceptance_rate"]["value"], 1)
    # random prompts: nothing to reuse, so hits 0 of 1280 queried tokens -> a real 0, not None
    assert rows["prefix_cache_hit_rate"]["value"] == 0.0


def test_counter_deltas_and_absent_families():
    before, mid = load("apc_before.prom"), load("apc_mid.prom")
    d = scrape.counter_deltas(before, mid, ["vllm:prefix_cache_hits_total", "vllm:request_success_total", "nope_total"])
    assert d == {"vllm:prefix_cache_hits_total": 4608.0, "vllm:request_success_total": 20.0, "nope_total": None}
    # same scrape twice: every delta 0, the rates None with the reason
    rows = by_metric(scrape.cell_rows(mid, mid))
    assert rows["prefix_cache_queries"]["value"] == 0
    assert rows["prefix_cache_hit_rate"]["value"] is None
    assert "Δvllm:prefix_cache_queries_total = 0" in rows["prefix_cache_hit_rate"]["definition"]
    # a label set that appears only after the first scrape counts from 0
    a = scrape.parse_prometheus('c_total{engine="0"} 5\nc_total{engine="1"} 7\n')
    b = scrape.parse_prometheus('c_total{engine="0"} 2\n')
    assert scrape.counter_deltas(b, a, ["c_total"]) == {"c_total": 10.0}


def test_counter_reset_is_an_error_never_a_negative_delta():
    # the counters of a fresh server (spec_before) after those of an older one (apc_after)
    old, fresh = load("apc_after.prom"), load("spec_before.prom")
    with pytest.raises(scrape.CounterResetError) as e:
        scrape.counter_deltas(old, fresh, ["vllm:prefix_cache_queries_total"])
    assert e.value.families == ["vllm:prefix_cache_queries_total"]
    with pytest.raises(scrape.CounterResetError, match="server restarted"):
        scrape.cell_rows(old, fresh)
    d = scrape.counter_deltas(old, fresh, ["vllm:prefix_cache_queries_total"], on_reset="flag")
    assert d == {"vllm:prefix_cache_queries_total": None}
    rows = by_metric(scrape.cell_rows(old, fresh, on_reset="flag"))
    assert rows["counter_resets"]["value"] >= 5
    assert rows["prefix_cache_hit_rate"]["value"] is None
    assert "restarted" in rows["prefix_cache_hit_rate"]["definition"]
    assert all(r["value"] is None or r["value"] >= 0 for r in rows.values())
    with pytest.raises(ValueError):
        scrape.counter_deltas(old, fresh, on_reset="ignore")


def test_reset_seen_through_created_even_when_the_value_grew():
    before_text = (SS / "apc_mid.prom").read_text()
    after_text = (SS / "apc_after.prom").read_text()
    # a restarted server that has already served more than the old one: only _created tells
    line = re.search(r"^vllm:prefix_cache_hits_created\{[^}]*\} \S+$", after_text, re.M).group(0)
    restarted = after_text.replace(line, line.rsplit(" ", 1)[0] + " 1.9e+09")
    before, after = scrape.parse_prometheus(before_text), scrape.parse_prometheus(restarted)
    names = ["vllm:prefix_cache_hits_total", "vllm:prefix_cache_queries_total"]
    assert scrape.find_resets(before, after, names) == ["vllm:prefix_cache_hits_total"]
    assert scrape.find_resets(before, scrape.parse_prometheus(after_text), names) == []
    # a vanished label set is a reset too
    gone = scrape.parse_prometheus("")
    assert scrape.find_resets(before, gone, ["vllm:prefix_cache_hits_total"]) == ["vllm:prefix_cache_hits_total"]


SGLANG_BEFORE = """# HELP sglang:prompt_tokens_total Number of prefill tokens processed.
# TYPE sglang:prompt_tokens_total counter
sglang:prompt_tokens_total{model_name="meta-llama/Llama-3.1-8B-Instruct"} 1000.0
# TYPE sglang:cached_tokens_total counter
sglang:cached_tokens_total{cache_source="device",model_name="meta-llama/Llama-3.1-8B-Instruct"} 100.0
sglang:cached_tokens_total{cache_source="host",model_name="meta-llama/Llama-3.1-8B-Instruct"} 0.0
# TYPE sglang:generation_tokens_total counter
sglang:generation_tokens_total{model_name="meta-llama/Llama-3.1-8B-Instruct"} 50.0
# TYPE sglang:num_requests_total counter
sglang:num_requests_total{model_name="meta-llama/Llama-3.1-8B-Instruct"} 2.0
# TYPE sglang:cache_hit_rate gauge
sglang:cache_hit_rate{model_name="meta-llama/Llama-3.1-8B-Instruct"} 0.9
"""


def test_sglang_rows():
    before = scrape.parse_prometheus(SGLANG_BEFORE)
    after_text = SGLANG_BEFORE
    for old, new in (
        ("} 1000.0", "} 9000.0"),  # prompt tokens
        ("} 100.0", "} 5100.0"),  # cached, cache_source=device
        (
            'host",model_name="meta-llama/Llama-3.1-8B-Instruct"} 0.0',
            'host",model_name="meta-llama/Llama-3.1-8B-Instruct"} 1000.0',
        ),
        ("} 50.0", "} 850.0"),  # generated
        ("} 2.0", "} 12.0"),  # requests
    ):
        assert old in after_text
        after_text = after_text.replace(old, new)
    after = scrape.parse_prometheus(after_text)
    rows = by_metric(scrape.cell_rows(before, after, engine="sglang"))
    assert rows["prefix_cache_hit_rate"]["value"] == (5000 + 1000) / 8000  # summed over cache_source
    assert rows["prefix_cache_queries"]["value"] == 8000
    assert rows["server_generation_tokens"]["value"] == 800 and rows["server_requests"]["value"] == 10
    assert (
        rows["spec_acceptance_rate"]["value"] is None
        and "per-batch gauges" in rows["spec_acceptance_rate"]["definition"]
    )
    assert rows["preemptions"]["value"] is None  # sglang:num_retracted_requests_total absent here
    # the same metric names as vLLM's rows, so a week's table has no holes
    vllm_names = set(by_metric(scrape.cell_rows(load("apc_before.prom"), load("apc_mid.prom"))))
    assert set(rows) == vllm_names
    with pytest.raises(ValueError):
        scrape.cell_rows(before, after, engine="tgi")


def test_cache_config_from_real_scrape():
    cc = scrape.cache_config(load("apc_after.prom"))
    assert cc["block_size"] == 128
    assert cc["num_gpu_blocks"] == 16384
    assert cc["kv_cache_size_tokens"] == 2097152 == cc["num_gpu_blocks"] * cc["block_size"]
    assert cc["kv_cache_memory_bytes"] == 1 << 30  # VLLM_CPU_KVCACHE_SPACE=1
    assert cc["kv_cache_max_concurrency"] == 2048.0
    assert cc["cache_dtype"] == "auto"
    assert cc["enable_prefix_caching"] is True
    assert cc["labels"]["kv_offloading_size"] == "None"
    # the start-up log says the same capacity
    log = startlog.startup_values((SS / "vllm_cpu_eager.log").read_text())
    assert log["kv_cache_capacity"] == cc["kv_cache_size_tokens"]
    assert log["kv_cache_max_concurrency"] == cc["kv_cache_max_concurrency"]
    rows = by_metric(scrape.cache_config_rows(load("apc_after.prom")))
    assert rows["kv_cache_blocks"]["value"] == 16384 and rows["kv_cache_block_size"]["value"] == 128
    assert scrape.cache_config(scrape.parse_prometheus(SGLANG_BEFORE)) == {}
    assert scrape.cache_config_rows(scrape.parse_prometheus(SGLANG_BEFORE)) == []


# ------------------------------------------------------------------ start-up logs


def test_startup_rows_cpu_eager_log():
    rows = by_metric(startlog.parse_startup_log((SS / "vllm_cpu_eager.log").read_text()))
    values = {k: r["value"] for k, r in rows.items()}
    assert values == {
        "kv_cache_capacity": 2097152.0,  # "CPU KV cache size: 2,097,152 tokens"
        "kv_cache_max_concurrency": 2048.0,  # "... for 1,024 tokens per request: 2048.00x"
        "kv_cache_memory": 1.0,  # "Explicitly set (1.0/9.34) GiB for KV cache on node 0."
        "node_memory": 9.34,
        "model_init_time": 0.099324,  # "Initializing model took 0.099324 seconds"
        "weights_load_time": 0.01,  # "Loading weights took 0.01 seconds"
        "engine_init_time": 0.26,  # "init engine (profile, create kv cache, warmup model) took 0.26 s"
    }
    assert (
        rows["kv_cache_capacity"]["unit"] == "tokens" and "CPU KV cache size" in rows["kv_cache_capacity"]["definition"]
    )
    assert (
        rows["kv_cache_max_concurrency"]["unit"] == "requests"
        and "1,024" in rows["kv_cache_max_concurrency"]["definition"]
    )
    assert rows["engine_init_time"]["unit"] == "s" and rows["kv_cache_memory"]["unit"] == "GiB"


def test_startup_rows_cpu_compile_log():
    values = startlog.startup_values((SS / "vllm_cpu_compile.log").read_text())
    assert values["engine_init_time"] == 26.01
    assert values["compile_warmup_time"] == 25.0  # 08:20:40 "Warming up model ..." -> 08:21:05 "Warming up done."
    assert values["model_init_time"] == 0.090848 and values["weights_load_time"] == 0.0
    # the CPU compiles in DYNAMO_TRACE_ONCE mode: none of the VLLM_COMPILE (GPU) lines
    for gpu_only in ("torch_compile_time", "engine_init_compile_time", "dynamo_transform_time", "graph_compile_time"):
        assert gpu_only not in values
    assert "compile_warmup_time" not in startlog.startup_values((SS / "vllm_cpu_eager.log").read_text())


PFX = "(EngineCore_DP0 pid=2211) INFO 11-24 09:00:{:02d} [x.py:1] "
# the format strings exactly as in vLLM 0.32's source (GPU code paths), with example arguments
VLLM_GPU_LINES = [
    ("Initializing model took %.6f seconds", (0.421337,)),  # model_loader/base_loader.py
    ("Loading weights took %.2f seconds", (3.98,)),  # model_loader/default_loader.py
    ("Model loading took %s GiB memory and %.6f seconds", ("14.99", 4.512345)),  # v1/worker/gpu_model_runner.py
    ("%sDynamo bytecode transform time: %.2f s", ("[backbone] ", 6.12)),  # compilation/backends.py
    ("%sCompiling a graph for compile range %s takes %.2f s", ("[backbone] ", "(1, 8192)", 12.5)),
    ("%sCompiling a graph for compile range %s takes %.2f s", ("[backbone] ", "(8193, 16384)", 2.5)),
    ("%storch.compile took %.2f s in total", ("[backbone] ", 21.37)),  # compilation/monitor.py
    ("%storch.compile took %.2f s in total", ("[eagle_head] ", 1.63)),
    ("Estimated CUDA graph memory: %.2f GiB total", (0.61,)),  # v1/worker/gpu_model_runner.py
    ("Available KV cache memory: %s GiB", ("52.31",)),  # v1/worker/gpu_worker.py
    (
        "%s KV cache size: %s tokens, Maximum concurrency for %s tokens per request: %.2fx",  # v1/core/kv_cache_utils.py
        ("GPU", f"{428448:,}", f"{8192:,}", 52.3),
    ),
    ("Graph capturing finished in %.0f secs, took %.2f GiB", (9.4, 0.55)),  # v1/worker/gpu_model_runner.py
    (
        "CUDA graph pool memory: %s GiB (actual), %s GiB (estimated), difference: %s GiB (%.1f%%).",  # gpu_worker.py
        (0.55, 0.61, 0.06, 10.9),
    ),
    (
        "init engine (profile, create kv cache, warmup model) took %.2f s (compilation: %.2f s)",  # v1/engine/core.py
        (45.67, 23.0),
    ),
]


def test_startup_rows_gpu_lines_from_vllm_format_strings():
    lines = [PFX.format(i) + fmt % args for i, (fmt, args) in enumerate(VLLM_GPU_LINES)]
    # a second tensor-parallel worker repeats its lines: the first one counts, no double sums
    lines.insert(
        3, "(Worker_TP1 pid=2212) INFO 11-24 09:00:03 [x.py:1] Model loading took 15.5 GiB memory and 9.0 seconds"
    )
    lines.insert(9, "(Worker_TP1 pid=2212) INFO 11-24 09:00:09 [x.py:1] [backbone] torch.compile took 30.00 s in total")
    values = startlog.startup_values("\n".join(lines))
    assert values == {
        "kv_cache_capacity": 428448.0,
        "kv_cache_max_concurrency": 52.3,
        "kv_cache_memory": 52.31,
        "model_init_time": 0.421337,
        "weights_load_time": 3.98,
        "model_load_memory": 14.99,
        "model_load_time": 4.512345,
        "dynamo_transform_time": 6.12,
        "cuda_graph_capture_time": 9.0,  # %.0f
        "cuda_graph_memory": 0.55,
        "cuda_graph_memory_estimate": 0.61,
        "cuda_graph_pool_memory": 0.55,
        "engine_init_time": 45.67,
        "engine_init_compile_time": 23.0,
        "torch_compile_time": pytest.approx(21.37 + 1.63),  # summed over compiled modules
        "graph_compile_time": 15.0,  # summed over compile ranges
    }
    # vLLM 0.26 logs the capacity as two lines
    v26 = "GPU KV cache size: 428,448 tokens\nMaximum concurrency for 8,192 tokens per request: 52.30x\n"
    assert startlog.startup_values(v26) == {"kv_cache_capacity": 428448.0, "kv_cache_max_concurrency": 52.3}
    # older releases: "torch.compile takes X s in total"; warm cache: graphs loaded, not compiled
    old = (
        "torch.compile takes 17.25 s in total\n"
        "[backbone] Directly load the compiled graph(s) for compile range (1, 8192) from the cache, took 1.234 s\n"
    )
    assert startlog.startup_values(old) == {"torch_compile_time": 17.25, "compiled_graph_load_time": 1.234}


# SGLang lines from its source's f-strings (model_runner.py, memory_pool.py, scheduler.py) and
# its test file of real capture lines
SGLANG_LOG = """[2026-07-21 13:35:01 TP0] Load weight end. elapsed=12.34 s, type=LlamaForCausalLM, dtype=torch.bfloat16, avail mem=63.50 GB, mem usage=14.99 GB.
[2026-07-21 13:35:01 TP1] Load weight end. elapsed=13.90 s, type=LlamaForCausalLM, dtype=torch.bfloat16, avail mem=63.40 GB, mem usage=14.99 GB.
[2026-07-21 13:35:02 TP0] KV Cache is allocated. #tokens: 413696, K size: 25.25 GB, V size: 25.25 GB
[2026-07-21 13:35:20 TP0] Capture target prefill CUDA graph end. elapsed=3.83 s, mem usage=0.45 GB, avail mem=7.52 GB.
[2026-07-21 13:35:33 TP1] Capture target decode CUDA graph end. elapsed=4.82 s, mem usage=0.27 GB, avail mem=5.47 GB.
[2026-07-21 13:35:33 TP0] Capture target decode CUDA graph end. elapsed=4.83 s, mem usage=0.24 GB, avail mem=7.28 GB.
[2026-07-21 13:35:34 TP0] max_total_num_tokens=413696, chunked_prefill_size=8192, max_prefill_tokens=16384, max_running_requests=4096, context_len=131072, available_gpu_mem=7.28 GB
[2026-07-21 13:35:40] The server is fired up and ready to roll!
"""


def test_startup_rows_sglang():
    rows = by_metric(startlog.parse_startup_log(SGLANG_LOG, engine="sglang"))
    values = {k: r["value"] for k, r in rows.items()}
    assert values == {
        "kv_cache_capacity": 413696.0,
        "max_running_requests": 4096.0,
        "context_len": 131072.0,
        "available_memory_after_init": 7.28,
        "model_load_time": 12.34,  # TP0's, not TP1's
        "model_load_memory": 14.99,
        "kv_cache_memory": 50.5,  # K + V
        "cuda_graph_capture_time": pytest.approx(3.83 + 4.83),  # prefill + decode, TP0 only
        "cuda_graph_memory": pytest.approx(0.45 + 0.24),
    }
    assert rows["kv_cache_memory"]["unit"] == "GiB" and "2**30" in rows["kv_cache_memory"]["definition"]
    # older SGLang: "Capture cuda graph end. Time elapsed: ..." and MLA's single "KV size"
    tic, mem, after = 7.2345, 0.93, 0.53
    old = (
        f"Capture cuda graph end. Time elapsed: {tic:.2f} s. mem usage={mem:.2f} GB. avail mem={after:.2f} GB.\n"
        "[2025-03-08 12:29:28 TP0] Capture cuda graph end. Time elapsed: 7.23 s. avail mem=0.53 GB. mem usage=0.93 GB.\n"
        "[2025-11-04 05:27:13 DP0 TP0 EP0] KV Cache is allocated. #tokens: 524288, KV size: 17.16 GB\n"
        "Load weight end. type=DeepseekV3ForCausalLM, dtype=torch.bfloat16, avail mem=75.11 GB, mem usage=107.07 GB.\n"
    )
    values = startlog.startup_values(old, engine="sglang")
    assert values == {
        "kv_cache_capacity": 524288.0,
        "kv_cache_memory": 17.16,
        "model_load_memory": 107.07,
        "cuda_graph_capture_time": 7.23,
        "cuda_graph_memory": 0.93,
    }


def test_startup_log_edge_cases():
    assert startlog.parse_startup_log("") == []
    assert startlog.parse_startup_log("garbage\nINFO nothing here\n", engine="sglang") == []
    with pytest.raises(ValueError):
        startlog.parse_startup_log("", engine="tgi")
    # a server that died after loading weights gives the rows it got to
    text = (SS / "vllm_cpu_eager.log").read_text().split("Explicitly set")[0]
    assert set(startlog.startup_values(text)) == {"model_init_time", "weights_load_time"}


# ------------------------------------------------------------------ fetch and the gauge sampler


@pytest.fixture
def metrics_server():
    state = {"body": (SS / "during.prom").read_bytes(), "status": 200}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path != "/metrics":
                self.send_response(404)
                self.end_headers()
                return
            self.send_response(state["status"])
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.end_headers()
            self.wfile.write(state["body"])

        def log_message(self, *args):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", state
    srv.shutdown()
    srv.server_close()


def dead_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def wait_for(cond, timeout=10.0):
    deadline = time.time() + timeout
    while not cond():
        assert time.time() < deadline, "timed out"
        time.sleep(0.02)


def test_fetch(metrics_server):
    url, state = metrics_server
    assert scrape.fetch(url) == (SS / "during.prom").read_text()
    assert scrape.scrape(url + "/")[("vllm:num_requests_running", LABELS)] == 1.0
    with pytest.raises(scrape.ScrapeError, match="HTTP 404"):
        scrape.fetch(url, "/nope")
    state["status"] = 500
    with pytest.raises(scrape.ScrapeError, match="HTTP 500"):
        scrape.fetch(url)
    with pytest.raises(scrape.ScrapeError, match="refused"):
        scrape.fetch(dead_url(), timeout=2)


def test_gauge_sampler(metrics_server, tmp_path):
    url, state = metrics_server
    out = tmp_path / "cell" / "gauges.csv"
    s = scrape.GaugeSampler(url, out, interval_s=0.05).start()
    wait_for(lambda: s.scrapes >= 3)
    t_ok = time.time()
    state["status"] = 503  # the server hiccups: counted, not raised
    wait_for(lambda: s.failures >= 2)
    state["status"], state["body"] = 200, b'vllm:num_requests_running{engine="0" 1\n'  # and serves garbage
    wait_for(lambda: s.failures >= 3 and "ParseError" in (s.last_error or ""))
    summary = s.stop()
    assert not s._thread.is_alive()

    assert summary["vllm:num_requests_running"]["mean"] == 1.0 == summary["vllm:num_requests_running"]["max"]
    assert summary["vllm:num_requests_waiting"]["max"] == 0.0
    assert summary["vllm:kv_cache_usage_perc"]["mean"] == 6.103888176767214e-05
    assert summary["scrape_failures"] >= 3 and summary["scrapes"] >= summary["scrape_failures"] + 3
    assert "ParseError" in summary["last_error"]

    with open(out) as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["t", "name", "value"]
    assert {r[1] for r in rows[1:]} == {
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        "vllm:kv_cache_usage_perc",
    }
    assert all(float(r[0]) > 1.7e9 for r in rows[1:])
    assert [float(r[2]) for r in rows[1:] if r[1] == "vllm:kv_cache_usage_perc"][0] == 6.103888176767214e-05

    # a cell's window: only its samples, only its failures
    early = s.window(0, t_ok)
    assert early and all(t <= t_ok for t, _, _ in early)
    w = s.summary(0, t_ok)
    assert w["scrape_failures"] == 0 and w["vllm:num_requests_running"]["n"] == len(early) // 3
    cell = by_metric(s.rows(0, t_ok))
    assert cell["running_requests_mean"]["value"] == 1.0 and cell["running_requests_max"]["unit"] == "requests"
    assert cell["waiting_requests_max"]["value"] == 0.0
    assert (
        cell["kv_cache_usage_max"]["value"] == 6.103888176767214e-05
        and cell["kv_cache_usage_max"]["unit"] == "fraction"
    )
    assert cell["gauge_scrape_failures"]["value"] == 0
    assert by_metric(s.rows())["gauge_scrape_failures"]["value"] >= 3
    # a window with no samples: None with the reason, not 0
    empty = by_metric(s.rows(0, 1))
    assert (
        empty["running_requests_mean"]["value"] is None and "no sample" in empty["running_requests_mean"]["definition"]
    )


def test_gauge_sampler_dead_server_never_raises(tmp_path):
    s = scrape.GaugeSampler(dead_url(), tmp_path / "g.csv", interval_s=0.05, timeout=1).start()
    wait_for(lambda: s.failures >= 2)
    summary = s.stop()
    assert summary["scrape_failures"] == summary["scrapes"] >= 2
    assert "ScrapeError" in summary["last_error"]
    assert (tmp_path / "g.csv").read_text().splitlines() == ["t,name,value"]
    rows = by_metric(s.rows())
    assert rows["running_requests_mean"]["value"] is None
    assert rows["gauge_scrape_failures"]["value"] == summary["scrape_failures"]
    with pytest.raises(RuntimeError):
        s.start()


# -- KV transfer of a P/D pair (NIXL histograms) ----------------------------------------------------
def _nixl_text(xfers: list[float], nbytes: list[int], failed: int = 0) -> str:
    """The decode server's NIXL series as vLLM's NixlPromMetrics exposes them (stats.py: the xfer
    histogram's buckets drop 0.001; bytes buckets 2**11 .. 2**33 every other power)."""
    lab = 'model_name="m",engine="0"'
    out = []

    def hist(name, values, bounds):
        out.append(f"# HELP {name} h\n# TYPE {name} histogram")
        for le in [*bounds, math.inf]:
            c = sum(1 for v in values if v <= le)
            out.append(f'{name}_bucket{{{lab},le="{"+Inf" if math.isinf(le) else le}"}} {c}.0')
        out.append(f"{name}_count{{{lab}}} {len(values)}.0")
        out.append(f"{name}_sum{{{lab}}} {sum(values)}")

    hist("vllm:nixl_xfer_time_seconds", xfers, [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 5.0])
    hist("vllm:nixl_post_time_seconds", [x / 10 for x in xfers], [0.001, 0.005, 0.01, 0.025, 0.05, 0.1])
    hist("vllm:nixl_bytes_transferred", nbytes, [2 ** (10 + i) for i in range(1, 25, 2)])
    out.append("# HELP vllm:nixl_num_failed_transfers c\n# TYPE vllm:nixl_num_failed_transfers counter")
    out.append(f"vllm:nixl_num_failed_transfers_total{{{lab}}} {failed}.0")
    return "\n".join(out) + "\n"


def test_kv_transfer_rows_from_nixl_histograms():
    before = scrape.parse_prometheus(_nixl_text([0.02], [4 * 2**20]))  # a transfer before the cell
    xf = [0.02, 0.03, 0.04, 0.06]  # the cell's four transfers: 8 MiB each
    after = scrape.parse_prometheus(_nixl_text([0.02, *xf], [4 * 2**20] + [8 * 2**20] * 4, failed=1))
    m = {r["metric"]: r for r in scrape.kv_transfer_rows(before, after, "vllm")}
    assert m["kv_transfers"]["value"] == 4 and m["kv_transfer_failed"]["value"] == 1
    assert m["kv_transfer_time_mean"]["value"] == pytest.approx(37.5) and m["kv_transfer_time_mean"]["unit"] == "ms"
    assert 25 <= m["kv_transfer_time_p50"]["value"] <= 50 and 50 <= m["kv_transfer_time_p90"]["value"] <= 75
    assert m["kv_post_time_mean"]["value"] == pytest.approx(3.75)
    assert m["kv_transfer_mib_mean"]["value"] == pytest.approx(8.0)
    assert m["kv_transfer_throughput"]["value"] == pytest.approx(32 / 0.15)  # MiB over seconds of transfer
    assert "decode server" in m["kv_transfers"]["definition"]
    # no transfer in the cell: counts 0, times None with the reason
    idle = {r["metric"]: r for r in scrape.kv_transfer_rows(after, after, "vllm")}
    assert idle["kv_transfers"]["value"] == 0 and idle["kv_transfer_time_mean"]["value"] is None
    assert "no transfer in the cell" in idle["kv_transfer_time_mean"]["definition"]
    # a server without NIXL: no rows, unless the layout's connector should have given them
    plain = scrape.parse_prometheus("# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running 0\n")
    assert scrape.kv_transfer_rows(plain, plain, "vllm") == []
    want = scrape.kv_transfer_rows(plain, plain, "vllm", expected=True)
    assert len(want) == 8 and all(r["value"] is None and "absent from /metrics" in r["definition"] for r in want)
    # a restart between the scrapes (the count went down): no delta
    assert all(r["value"] is None for r in scrape.kv_transfer_rows(after, before, "vllm", expected=True))

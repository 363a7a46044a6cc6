"""Week 6 (RadixAttention): SGLang's generated-shared-prefix workload (the request count is groups x
prompts per group; --num-prompts is ignored by that client), --cache-report, the vLLM analogue (SGLang's
client against vLLM) wired through the workflow, and on the shared embedded-default run: SGLang typed
skipped, the analogue measured for real with APC on/off."""

import json

import pandas as pd
import pytest
import yaml
from conftest import DATA, ROOT, load_preset

from inferlab import engines, matrix
from inferlab.engines import serving
from inferlab.engines.sglang import parse_bench_serving

W = "week06"
GSP = {
    "request_rate": 4,
    "dataset_name": "generated-shared-prefix",
    "gsp_num_groups": 2,
    "gsp_prompts_per_group": 5,
    "gsp_system_prompt_len": 512,
    "gsp_question_len": 64,
    "gsp_output_len": 16,
}


def _engines():
    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())["engines"]
    vllm = engines.from_setup("vllm", cfg["vllm"], {"bin": "vllm"}, base_dir=ROOT)
    sgl = engines.from_setup("sglang", cfg["sglang"], {"python": "python", "client_backend": "sglang"}, base_dir=ROOT)
    return vllm, sgl


def test_gsp_command_sends_groups_x_prompts_and_asks_for_the_cache_report(tmp_path):
    _, sgl = _engines()
    cmd = sgl.client_command("http://h:1", "/m", {**GSP, "cache_report": True}, "", tmp_path / "r.jsonl")
    assert cmd[cmd.index("--num-prompts") + 1] == "10"  # 2 groups x 5 prompts, what the client really sends
    assert cmd[cmd.index("--gsp-system-prompt-len") + 1] == "512" and "--cache-report" in cmd
    assert "--dataset-path" not in cmd and cmd[cmd.index("--backend") + 1] == "sglang"


def test_vllm_server_with_sglang_client_is_sglangs_command_with_the_vllm_backend(tmp_path):
    vllm, sgl = _engines()
    with pytest.raises(ValueError, match="no sglang client"):
        vllm.client_command("http://h:1", "/m", {**GSP, "client": "sglang"}, "", tmp_path / "r.jsonl")
    vllm.client_engines = {"sglang": sgl}
    cmd = vllm.client_command("http://h:1", "/m", {**GSP, "client": "sglang"}, "", tmp_path / "r.jsonl")
    assert "sglang_bench.py" in cmd[1] and cmd[cmd.index("--backend") + 1] == "vllm"
    assert cmd[0].endswith(".venv-sglang-client/bin/python")


def test_parse_counts_failures_against_the_real_request_count_and_demands_the_cache_report():
    # real output of SGLang's client against the CPU vLLM server (10 sharegpt prompts, Week 1's test)
    text = (DATA / "sglang-0.5.23-cpu" / "serving_vs_vllm_cpu.jsonl").read_text()
    last = json.loads(text.splitlines()[-1])
    rows = {r["metric"]: r["value"] for r in parse_bench_serving(text, {"num_prompts": last["completed"]})}
    assert rows["failed"] == 0
    # as if it had been a gsp cell of 5 x 5 = 25 requests (groups x prompts, not num_prompts): the
    # missing ones are failures, a typed failed cell, not ignored
    n = last["completed"]
    assert n < 25
    with pytest.raises(serving.RequestsFailed, match=f"{25 - n} of 25 requests failed"):
        parse_bench_serving(text, {**GSP, "gsp_prompts_per_group": 5, "gsp_num_groups": 5})
    # and more completed than the cell sent (3 x 5 = 15) is an inconsistency, never a negative count
    with pytest.raises(ValueError, match=f"completed {n} requests, more than the 15"):
        parse_bench_serving(text, {**GSP, "gsp_prompts_per_group": 5, "gsp_num_groups": 3})
    with pytest.raises(ValueError, match="no cache_report"):
        parse_bench_serving(text, {"num_prompts": last["completed"], "cache_report": True})
    line = {
        **last,
        "cache_report": {"total_prompt_tokens": 400, "total_cached_tokens": 100, "cache_hit_rate_pct": 25.0},
    }
    rows = {
        r["metric"]: r["value"]
        for r in parse_bench_serving(json.dumps(line), {"num_prompts": last["completed"], "cache_report": True})
    }
    assert rows["client_cache_hit_rate"] == 0.25 and rows["client_cached_tokens"] == 100


def test_week_plan(catalog):
    cfg = load_preset(catalog, weeks=[W])
    cells = [c for c in matrix.expand(cfg).values() if c.week == W]
    sgl = [c for c in cells if c.engine == "sglang"]
    assert {c.experiment for c in sgl} == {"radix", "schedule"} and all(c.skip is None for c in sgl)
    ana = [c for c in cells if c.experiment == "radix_vllm_analogue"]
    assert {c.configuration for c in ana} == {"apc", "noapc"}
    assert all(c.params["client"] == "sglang" and "num_prompts" not in c.params for c in ana)
    assert {c.configuration for c in cells if c.experiment == "schedule"} == {
        "policyfcfs",
        "policylpm",
    }


@pytest.mark.engine
def test_sglang_typed_skipped_and_the_vllm_analogue_measured(shared_run):
    res = shared_run / "results" / W
    for path in (
        "radix/sglang/cpu/apc/rr4",
        "radix/sglang/cpu/noapc/rr4",
        "schedule/sglang/cpu/policylpm/rr8",
    ):
        rec = json.loads((res / path / "cell.json").read_text())
        assert rec["status"] == "skipped" and rec["reason"] == "engine_unavailable", path
    recs = {
        a: json.loads((res / f"radix_vllm_analogue/vllm/cpu/{a}/rr4/cell.json").read_text()) for a in ("apc", "noapc")
    }
    for a, rec in recs.items():
        assert rec["status"] == "ok", (a, rec.get("detail"), rec.get("log_tail"))
        assert "sglang_bench.py" in " ".join(rec["provenance"]["command"])
    srv = {a: {r["metric"]: r["value"] for r in rec["server_metrics"]} for a, rec in recs.items()}
    # 2 groups x 3 questions behind a 256-token system prompt: the later questions of a group hit
    assert srv["apc"]["prefix_cache_hits"] > 0 and srv["noapc"]["prefix_cache_hits"] == 0
    df = pd.read_parquet(res / f"{W}.parquet")
    done = df[(df.metric == "completed") & (df.experiment == "radix_vllm_analogue")]
    assert done["value"].tolist() == [6.0, 6.0]  # groups x prompts per group, what was sent
    t = (res / "tables" / "radix_on_off.md").read_text()
    assert "SKIPPED" in t and "NOT SGLang" in t
    # only the run's (experiment, engine) pairs: no all-n/a rows for radix on vLLM or the analogue on SGLang
    assert "| radix | vllm |" not in t and "| radix_vllm_analogue | sglang |" not in t
    assert "default --schedule-policy is fcfs" in (res / "report.md").read_text()

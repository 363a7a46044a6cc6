"""Parsing real engine outputs into the normalized schema (samples made by the CPU engine)."""

import json
from pathlib import Path

import pandas as pd
import pytest
from conftest import DATA, ROOT

from inferlab import records
from inferlab.engines.vllm import VLLM

SAMPLE = DATA / "vllm-0.32-cpu" / "latency.json"


def rec(status="ok", **kw):
    base = {
        "week": "week03",
        "experiment": "decode",
        "engine": "vllm",
        "gpu": "cpu",
        "model": "tiny-llama",
        "cell": "bs4",
        "tool": "vllm_bench_latency",
        "status": status,
        "reason": None,
        "detail": None,
        "log_tail": "last lines",
        "raw": "raw.json",
        "params": {"batch_size": 4, "input_len": 128, "output_len": 64},
        "provenance": {
            "engine_versions": {"vllm": "0.32.0+cpu", "torch": "2.13.0+cpu"},
            "host": "h",
            "command": ["vllm", "bench", "latency"],
            "prefix_caching": "disabled",
            "workflow_git": {"commit": "abc"},
            "slurm": {"SLURM_JOB_ID": "42"},
        },
    }
    base.update(kw)
    return base


def test_real_latency_sample_to_rows():
    raw = json.loads(SAMPLE.read_text())
    df = records.record_to_frame(rec(), SAMPLE)
    by = df.set_index("metric")["value"]
    assert by["latency_avg"] == pytest.approx(raw["avg_latency"] * 1e3)
    assert by["latency_p99"] == pytest.approx(raw["percentiles"]["99"] * 1e3)
    assert by["latency_per_output_token"] == pytest.approx(raw["avg_latency"] * 1e3 / 64)
    assert set(df["unit"]) == {"ms", "ms/token"}
    assert (df["status"] == "ok").all() and df["log_tail"].isna().all()
    assert df["param_batch_size"].tolist() == [4] * len(df)
    assert df["engine_version"].iloc[0] == "0.32.0+cpu" and df["slurm_job_id"].iloc[0] == "42"
    assert list(df.columns[: len(records.COLUMNS)]) == list(records.COLUMNS)


def test_failed_cell_rows_carry_status_not_numbers():
    df = records.record_to_frame(rec("failed", reason="oom", detail="exit 137"), None)
    assert len(df) == len(VLLM(None, {}).metric_names("vllm_bench_latency"))
    assert df["value"].isna().all() and (df["reason"] == "oom").all()
    assert (df["log_tail"] == "last lines").all()


def test_unreadable_raw_becomes_parse_error(tmp_path):
    bad = tmp_path / "raw.json"
    bad.write_text(json.dumps({"avg_latency": "nan?", "percentiles": {}}))
    df = records.record_to_frame(rec(), bad)
    assert (df["status"] == "failed").all() and (df["reason"] == "parse_error").all()
    assert df["value"].isna().all()


def test_parquet_roundtrip_keeps_schema(tmp_path):
    from inferlab import io

    df = records.record_to_frame(rec(), SAMPLE)
    io.write_parquet(tmp_path / "m.parquet", df)
    back = pd.read_parquet(tmp_path / "m.parquet")
    assert back.dtypes.to_dict() == df.dtypes.to_dict()
    assert not list(tmp_path.glob(".*tmp"))  # atomic write left no temp file


def test_schema_doc_is_current():
    assert (ROOT / "docs" / "schema.md").read_text() == records.schema_markdown(), (
        "docs/schema.md is stale: python -c 'from inferlab import records; print(records.schema_markdown(), end=\"\")' "
        "> docs/schema.md"
    )


def test_engine_args_cli_style():
    from inferlab.engines import engine_args_to_cli

    assert engine_args_to_cli(
        {"enable_prefix_caching": False, "max_model_len": 4096, "enforce_eager": True, "x": None}
    ) == ["--no-enable-prefix-caching", "--max-model-len", "4096", "--enforce-eager"]


def test_latency_command_carries_params_and_disables_prefix_cache(tmp_path):
    eng = VLLM(str(tmp_path / "env"), {"bin": "vllm"}, {"dtype": "bfloat16"}, {})
    cmd = eng.command(
        "vllm_bench_latency",
        "/m",
        {"batch_size": 16, "input_len": 128, "output_len": 64, "num_iters": 3},
        {"enable_prefix_caching": False},
        Path("/o/raw.json"),
    )
    assert cmd[0] == str(tmp_path / "env" / "bin" / "vllm")
    s = " ".join(cmd)
    assert "--batch-size 16 --input-len 128 --output-len 64 --num-iters 3" in s
    assert "--no-enable-prefix-caching" in s and "--dtype bfloat16" in s and "--output-json /o/raw.json" in s


# -- achieved vs requested ------------------------------------------------------------------------
def test_lengths_ok_mismatch_and_unknown():
    ok = {"requested": {"output_tokens": 640, "requests": 10}, "achieved": {"output_tokens": 636, "requests": 10}}
    assert records.check_lengths(ok) == "ok"  # 0.6% short: within the 2% tolerance
    short = {"requested": {"output_tokens": 640, "requests": 10}, "achieved": {"output_tokens": 410, "requests": 10}}
    assert records.check_lengths(short) == "mismatch: output_tokens 410 of 640 requested (-35.9%)"
    assert records.check_lengths(None) is None  # the tool gives no count: not known, not "ok"


def test_a_length_mismatch_is_flagged_in_rows_and_tables(tmp_path):
    from inferlab import tables

    (tmp_path / "raw.json").write_text(SAMPLE.read_text())
    lengths = {
        "requested": {"prompt_tokens": 512, "output_tokens": 256},
        "achieved": {"prompt_tokens": 512, "output_tokens": 100},
        "source": "test",
    }
    df = records.normalize(records.record_to_frame(rec(lengths=lengths), tmp_path / "raw.json", VLLM(None, {})))
    assert set(df["lengths"]) == {"mismatch: output_tokens 100 of 256 requested (-60.9%)"}
    got = df.set_index("metric")
    assert got.loc["requested_output_tokens", "value"] == 256 and got.loc["achieved_output_tokens", "value"] == 100
    row = got.loc["latency_avg"]
    assert tables.show(row).endswith("(LENGTHS: output_tokens 100 of 256 requested (-60.9%))")


def test_server_length_deltas_from_vllm_histograms():
    from inferlab import scrape

    def prom(req, got, n):
        return (
            "# TYPE vllm:request_params_max_tokens histogram\n"
            f'vllm:request_params_max_tokens_sum{{engine="0"}} {req}\n'
            f'vllm:request_params_max_tokens_count{{engine="0"}} {n}\n'
            "# TYPE vllm:request_generation_tokens histogram\n"
            f'vllm:request_generation_tokens_sum{{engine="0"}} {got}\n'
            f'vllm:request_generation_tokens_count{{engine="0"}} {n}\n'
        )

    d = scrape.length_deltas(scrape.parse_prometheus(prom(100, 90, 2)), scrape.parse_prometheus(prom(740, 500, 12)))
    assert d["requested"] == {"output_tokens": 640, "requests": 10}
    assert d["achieved"] == {"output_tokens": 410, "requests": 10}
    assert records.check_lengths(d).startswith("mismatch: output_tokens 410 of 640")
    assert (
        scrape.length_deltas(scrape.parse_prometheus(prom(1, 1, 1)), scrape.parse_prometheus(prom(1, 1, 1)), "sglang")
        is None
    )


def test_telemetry_per_pool_becomes_rows():
    """A P/D cell's telemetry per pool (the prefill and the decode server's GPUs) is a row per
    number and pool, its definition naming the pool and its GPUs; the job's totals stay as they were."""
    telem = {
        "telemetry": "ok",
        "gpu_util_mean": 60.0,
        "energy_j": 2400.0,
        "pools": {
            "prefill": {
                "gpu_util_mean": 40.0,
                "gpu_util_max": 100,
                "mem_used_max_mib": 500.0,
                "energy_j": 800.0,
                "gpus": [0],
            },  # fmt: skip
            "decode": {
                "gpu_util_mean": 80.0,
                "gpu_util_max": 80,
                "mem_used_max_mib": None,
                "energy_j": 1600.0,
                "gpus": [1],
            },  # fmt: skip
        },
    }
    df = records.record_to_frame(rec(telemetry=telem), SAMPLE).set_index("metric")
    assert df.loc["gpu_util_mean", "value"] == 60.0 and df.loc["energy_j", "value"] == 2400.0
    assert df.loc["gpu_util_mean_prefill", "value"] == 40.0 and df.loc["energy_j_decode", "value"] == 1600.0
    assert df.loc["gpu_util_mean_decode", "unit"] == "%" and "mem_used_max_mib_decode" not in df.index
    assert df.loc["gpu_util_max_prefill", "definition"].startswith("prefill server's GPU(s) only (NVML 0): NVML GPU")

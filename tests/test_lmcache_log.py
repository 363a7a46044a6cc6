"""LMCache's log lines (Week 15 restore time) parsed into per-cell rows. The lines are made by
Python's logging with LMCache's own formatter string and message formats, copied from the lmcache
0.5.6 wheel (lmcache/logging.py L8-14, lmcache/v1/cache_engine.py L985-995 and L588-599,
lmcache/integration/vllm/vllm_v1_adapter.py L1476-1483), with vLLM's prefix for a child process."""

import logging
import time

import pytest

from inferlab import lmcache_log

GREEN, RESET, UNDERLINE = "\x1b[32;20m", "\x1b[0m", "\x1b[3m"
# lmcache/logging.py build_format(color), verbatim
FMT = (
    f"{GREEN}[%(asctime)s] LMCache %(levelname)s:{RESET} %(message)s "
    f"{UNDERLINE}(%(filename)s:%(lineno)d:%(name)s){RESET}"
)
RETRIEVE = (
    "[req_id=%s] Retrieved %d out of %d required tokens "
    "(from %d total tokens). size: %.4f gb, "
    "cost %.4f ms, throughput: %.4f GB/s;"
)
RETRIEVE_LAYERWISE = "[req_id=%s] Retrieved %d out of %d out of total %d tokens"
STORE = (
    "[req_id=%s] Stored %d out of total %d tokens. "
    "size: %.4f GB, cost %.4f ms, throughput: %.4f GB/s; "
    "offload_time: %.4f ms, put_time: %.4f ms"
)
HIT = "Reqid: %s, Total tokens %d, Inference Engine computed tokens: %d, LMCache hit tokens: %d, need to load: %d"
PREFIX = "(EngineCore_DP0 pid=4242) "  # vLLM prefixes its engine process's output


def line(msg, args, created, filename="cache_engine.py", lineno=985, name="lmcache.v1.cache_engine"):
    rec = logging.LogRecord(name, logging.INFO, filename, lineno, msg, args, None)
    rec.created, rec.msecs = created, (created % 1) * 1000
    return PREFIX + logging.Formatter(FMT).format(rec)


def retrieve(req, retrieved, required, total, ms, created, gb_per_token=128 * 1024 / 1024**3):
    size = retrieved * gb_per_token * 1024**3
    onload = ms / 1000
    args = (req, retrieved, required, total, size / 1024**3, onload * 1000, size / onload / 1024**3)
    return line(RETRIEVE, args, created)


T0 = time.mktime((2026, 11, 24, 17, 0, 0, 0, 0, -1))


@pytest.fixture
def log():
    lines = [
        "INFO 11-24 17:00:00 [api_server.py:1] vLLM API server version 0.26.0",
        line(HIT, ("cmpl-a", 1088, 0, 1024, 1024), T0 + 1.0, "vllm_v1_adapter.py", 1476, "lmcache.integration"),
        retrieve("cmpl-a", 1024, 1024, 1088, 3.25, T0 + 1.2),
        retrieve("cmpl-b", 768, 1024, 1088, 1.75, T0 + 2.5),
        retrieve("cmpl-c", 0, 1024, 1088, 0.05, T0 + 3.0),
        line(STORE, ("cmpl-c", 1088, 1088, 0.13, 4.5, 29.0, 3.0, 1.5), T0 + 3.5, lineno=588),
        retrieve("cmpl-late", 512, 512, 576, 9.0, T0 + 100.0),  # another cell's
    ]
    return "\n".join(lines) + "\n"


def rows(text, t0=None, t1=None):
    return {r["metric"]: r for r in lmcache_log.cell_rows(text, t0, t1)}


def test_the_lines_are_lmcaches_own(log):
    # what the formatter wrote: colour codes, LMCache's timestamp, the source location after the message
    first = log.splitlines()[2]
    assert (
        "\x1b[32;20m[2026-11-24 17:00:01,2" in first and "LMCache INFO:\x1b[0m [req_id=cmpl-a] Retrieved 1024" in first
    )
    assert first.endswith("(cache_engine.py:985:lmcache.v1.cache_engine)\x1b[0m")


def test_restore_rows_of_one_cell_window(log):
    r = rows(log, T0, T0 + 10)
    assert r["lmcache_retrieves"]["value"] == 3
    assert r["retrieved_tokens"]["value"] == 1024 + 768 and r["retrieve_required_tokens"]["value"] == 3 * 1024
    assert r["restore_ms_total"]["value"] == pytest.approx(3.25 + 1.75 + 0.05)
    # the mean is over the retrieves that moved tokens (the 0-token lookup miss is not a restore)
    assert r["restore_ms_mean"]["value"] == pytest.approx((3.25 + 1.75) / 2)
    assert r["restore_gb"]["value"] == pytest.approx(round(1024 * 128 / 1024**2, 4) + round(768 * 128 / 1024**2, 4))
    assert r["stored_tokens"]["value"] == 1088 and r["store_ms_total"]["value"] == pytest.approx(4.5)
    assert r["lmcache_hit_tokens"]["value"] == 1024
    assert all(x["unit"] for x in r.values()) and "cache_engine.py" in r["restore_ms_total"]["definition"]
    # the whole log (no window) includes the later cell's retrieve
    assert rows(log)["retrieved_tokens"]["value"] == 1024 + 768 + 512


def test_layerwise_retrieves_count_tokens_but_log_no_cost():
    text = line(RETRIEVE_LAYERWISE, ("cmpl-x", 512, 512, 600), T0, lineno=1146)
    r = rows(text)
    assert r["retrieved_tokens"]["value"] == 512
    assert r["restore_ms_total"]["value"] is None and "layerwise" in r["restore_ms_total"]["definition"]
    assert r["restore_ms_mean"]["value"] is None


def test_no_lmcache_line_is_none_with_the_reason_never_zero(log):
    r = rows(log, T0 + 20, T0 + 30)  # a window with nothing of LMCache's
    assert all(x["value"] is None for x in r.values())
    assert "no LMCache retrieve/store/lookup line" in r["restore_ms_total"]["definition"]
    # an unknown wording is not guessed at
    assert all(x["value"] is None for x in rows("[req_id=a] Fetched 10 tokens in 3 ms\n").values())


def test_a_cell_that_only_stored_restored_nothing(log):
    r = rows(log, T0 + 3.4, T0 + 3.6)
    assert r["stored_tokens"]["value"] == 1088
    assert r["restore_ms_total"]["value"] == 0.0 and r["retrieved_tokens"]["value"] == 0
    assert r["restore_ms_mean"]["value"] is None

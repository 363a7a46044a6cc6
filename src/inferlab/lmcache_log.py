"""LMCache's own log lines in a vLLM + LMCache server log (Week 15): restore (retrieve) time and
tokens, store time and tokens, and the scheduler's hit tokens, as per-cell rows.

The lines, as lmcache 0.5.6 formats them (its wheel's sources; LMCache's logger,
``lmcache/logging.py`` L8-14, writes ``[%(asctime)s] LMCache %(levelname)s: %(message)s
(%(filename)s:%(lineno)d:%(name)s)`` wrapped in ANSI colour codes, asctime ``YYYY-mm-dd HH:MM:SS,mmm``
in local time):

- ``lmcache/v1/cache_engine.py`` L985-995 (``LMCacheEngine.retrieve``)::

      "[req_id=%s] Retrieved %d out of %d required tokens (from %d total tokens). size: %.4f gb, "
      "cost %.4f ms, throughput: %.4f GB/s;"

- ``lmcache/v1/cache_engine.py`` L1146-1151 (``retrieve_layer``, layerwise: no cost)::

      "[req_id=%s] Retrieved %d out of %d out of total %d tokens"

- ``lmcache/v1/cache_engine.py`` L588-599 (``store``; L780-788, layerwise, without the last two)::

      "[req_id=%s] Stored %d out of total %d tokens. size: %.4f GB, cost %.4f ms, throughput: %.4f GB/s; "
      "offload_time: %.4f ms, put_time: %.4f ms"

- ``lmcache/integration/vllm/vllm_v1_adapter.py`` L1476-1483 (the scheduler's lookup)::

      "Reqid: %s, Total tokens %d, Inference Engine computed tokens: %d, LMCache hit tokens: %d, need to load: %d"

Older releases wrote ``Retrieved N out of M out of total T tokens`` for every retrieve; a
wording this module does not know yields rows with value None and the reason, never a guess.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_TS = re.compile(r"\[(\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)(?:,(\d{1,3}))?\] LMCache ")
_N = r"(\d+)"
_F = r"([0-9]+(?:\.[0-9]+)?(?:[eE][-+]?\d+)?|nan|inf)"
RETRIEVE = re.compile(
    r"\[req_id=(?P<req>[^\]]*)\] Retrieved "
    + _N
    + " out of "
    + _N
    + r" required tokens \(from "
    + _N
    + r" total tokens\)\. size: "
    + _F
    + " gb, cost "
    + _F
    + " ms, throughput: "
    + _F
    + " GB/s"
)
RETRIEVE_LAYERWISE = re.compile(
    r"\[req_id=(?P<req>[^\]]*)\] Retrieved " + _N + " out of " + _N + " out of total " + _N + " tokens"
)
STORE = re.compile(
    r"\[req_id=(?P<req>[^\]]*)\] Stored "
    + _N
    + " out of total "
    + _N
    + r" tokens\. size: "
    + _F
    + " GB, cost "
    + _F
    + " ms"
)
HIT = re.compile(
    r"Reqid: (?P<req>[^,]*), Total tokens "
    + _N
    + ", Inference Engine computed tokens: "
    + _N
    + ", LMCache hit tokens: "
    + _N
    + r",(?: but)? need to load: "
    + _N
)
SOURCE = "lmcache 0.5.6 lmcache/v1/cache_engine.py L985-995"


@dataclass
class Retrieve:
    req_id: str
    retrieved: int
    required: int
    total: int
    gb: float | None
    ms: float | None
    t: float | None  # epoch seconds of the line (local time), None without a timestamp


def _epoch(line: str) -> float | None:
    m = _TS.search(line)
    if not m:
        return None
    y, mo, d, h, mi, s, ms = m.groups()
    t = time.mktime((int(y), int(mo), int(d), int(h), int(mi), int(s), 0, 0, -1))
    return t + (int(ms.ljust(3, "0")) / 1000 if ms else 0.0)


def _in(t: float | None, t0: float | None, t1: float | None) -> bool:
    if t0 is None and t1 is None:
        return True
    if t is None:
        return False  # a line without a time cannot be placed in a cell
    return (t0 is None or t >= t0) and (t1 is None or t <= t1)


def parse(text: str, t0: float | None = None, t1: float | None = None) -> dict:
    """LMCache's retrieve / store / hit lines of ``text`` (within [t0, t1] epoch seconds when given:
    one cell's window of the session's server log)."""
    out = {"retrieves": [], "stores": [], "hits": []}
    for raw in text.splitlines():
        if "LMCache" not in raw and "Reqid:" not in raw:
            continue
        line = _ANSI.sub("", raw)
        t = _epoch(line)
        if not _in(t, t0, t1):
            continue
        if m := RETRIEVE.search(line):
            r, q, tot, gb, ms, _ = m.groups()[1:]
            out["retrieves"].append(Retrieve(m["req"], int(r), int(q), int(tot), float(gb), float(ms), t))
        elif m := RETRIEVE_LAYERWISE.search(line):
            r, q, tot = m.groups()[1:]
            out["retrieves"].append(Retrieve(m["req"], int(r), int(q), int(tot), None, None, t))
        elif m := STORE.search(line):
            n, tot, gb, ms = m.groups()[1:]
            out["stores"].append(
                {"req_id": m["req"], "stored": int(n), "total": int(tot), "gb": float(gb), "ms": float(ms)}
            )
        elif m := HIT.search(line):
            tot, computed, hit, load = (int(x) for x in m.groups()[1:])
            out["hits"].append({"req_id": m["req"], "total": tot, "computed": computed, "hit": hit, "load": load})
    return out


def _row(metric: str, value, unit: str, definition: str) -> dict:
    return {"metric": metric, "value": value, "unit": unit, "definition": definition}


#: lmcache 0.5.6's lines saying it stopped caching: its health monitor
#: (``lmcache/v1/health_monitor/base.py`` L485, "Health check failed: <check>") marks the engine
#: unhealthy, after which ``cache_engine.py`` L417 skips every store ("LMCache is unhealthy, skipping
#: store operation") and the server runs on as plain vLLM. Seen on the H100 (2026-11-25) with an
#: ``fs:///path`` remote URL, which 0.5.6's ``parse_remote_url`` rejects ("missing host") although its
#: own docstring lists it: the cells looked ok with 0 hit tokens.
UNHEALTHY = re.compile(
    r"(Health check failed: .*?|LMCache is unhealthy, skipping store operation"
    r"|Failed to initialize/re-establish remote connection: .*?)(?: \(\S+:\d+:[\w.]+\))?$"
)


def unhealthy(text: str) -> str | None:
    """Why LMCache stopped caching in this server log (its own first lines saying so, the cause
    first), or None while it is healthy. A cell measured on an unhealthy LMCache measured plain
    vLLM: the session types it failed, never an ok row with 0 hits."""
    found = []
    for line in _ANSI.sub("", text).splitlines():
        m = UNHEALTHY.search(line.rstrip())
        if m and m.group(1) not in found:
            found.append(m.group(1))
    if not found:
        return None
    found.sort(key=lambda f: f.startswith("LMCache is unhealthy"))  # the cause before the effect
    return "LMCache unhealthy, stores skipped: " + "; ".join(found[:3])


def cell_rows(text: str, t0: float | None = None, t1: float | None = None) -> list[dict]:
    """One cell's LMCache rows from the server log (``t0``/``t1``: the cell's wall-clock window).

    ``restore_ms_total`` / ``restore_ms_mean`` (over the retrieves that moved tokens),
    ``retrieved_tokens``, ``retrieve_required_tokens``, ``lmcache_retrieves``, ``restore_gb``,
    ``stored_tokens``, ``store_ms_total``, ``lmcache_hit_tokens`` (the scheduler's lookup). Without
    any LMCache line in the window the values are None with the reason (LMCache absent, its log
    level above INFO, or a wording this parser does not know), never 0."""
    p = parse(text, t0, t1)
    src = f"LMCache's log ({SOURCE}) in the cell's window"
    rets = p["retrieves"]
    timed = [r for r in rets if r.ms is not None and r.retrieved > 0]
    rows = []
    if not rets and not p["stores"] and not p["hits"]:
        why = "[None: no LMCache retrieve/store/lookup line in the cell's window of the server log]"
        for metric, unit in (
            ("restore_ms_total", "ms"),
            ("restore_ms_mean", "ms"),
            ("retrieved_tokens", "tokens"),
            ("retrieve_required_tokens", "tokens"),
            ("lmcache_retrieves", "count"),
            ("restore_gb", "GB"),
            ("stored_tokens", "tokens"),
            ("store_ms_total", "ms"),
            ("lmcache_hit_tokens", "tokens"),
        ):
            rows.append(_row(metric, None, unit, f"{src} {why}"))
        return rows
    with_ms = [r for r in rets if r.ms is not None]
    if with_ms:
        total, why = float(sum(r.ms for r in with_ms)), ""
    elif not rets:
        total, why = 0.0, " (LMCache logged, but retrieved nothing in the cell)"
    else:
        total, why = None, " [None: only layerwise retrieves, which log no cost]"
    rows.append(_row("restore_ms_total", total, "ms", f"sum of the retrieves' 'cost X ms'; {src}{why}"))
    mean = float(sum(r.ms for r in timed) / len(timed)) if timed else None
    why = "" if timed else " [None: no timed retrieve that moved tokens]"
    rows.append(_row("restore_ms_mean", mean, "ms", f"mean 'cost X ms' per retrieve that moved tokens; {src}{why}"))
    rows.append(
        _row(
            "retrieved_tokens",
            float(sum(r.retrieved for r in rets)),
            "tokens",
            f"sum of 'Retrieved N' (whole chunks); {src}",
        )
    )
    rows.append(
        _row(
            "retrieve_required_tokens",
            float(sum(r.required for r in rets)),
            "tokens",
            f"sum of 'out of M required tokens'; {src}",
        )
    )
    rows.append(_row("lmcache_retrieves", float(len(rets)), "count", f"'Retrieved' lines; {src}"))
    gbs = [r.gb for r in rets if r.gb is not None]
    rows.append(
        _row(
            "restore_gb",
            float(sum(gbs)) if gbs else None,
            "GB",
            f"sum of 'size: X gb' (LMCache's gb = bytes / 2**30); {src}",
        )
    )
    rows.append(
        _row("stored_tokens", float(sum(s["stored"] for s in p["stores"])), "tokens", f"sum of 'Stored N'; {src}")
    )
    rows.append(
        _row(
            "store_ms_total",
            float(sum(s["ms"] for s in p["stores"])),
            "ms",
            f"sum of the store lines' 'cost X ms'; {src}",
        )
    )
    rows.append(
        _row(
            "lmcache_hit_tokens",
            float(sum(h["hit"] for h in p["hits"])),
            "tokens",
            "sum of 'LMCache hit tokens: N' (vllm_v1_adapter.py L1476-1483) in the cell's window",
        )
    )
    return rows

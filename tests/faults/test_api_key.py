"""Servers stay private (issue 18, item 5): loopback by default; a preset's ``server_bind`` beyond
loopback makes each serving job generate an API key of its own, handed to the server (vLLM's
``VLLM_API_KEY``) and to its load client (``OPENAI_API_KEY``) through the environment only: the
key is on no command line and in no file the session writes."""

from __future__ import annotations

import json
import os
import socket
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from canary import scan_for_secret
from conftest import ROOT

from inferlab import config, engines, server, session
from inferlab.engines.sglang import SGLang
from inferlab.engines.vllm import VLLM
from inferlab.errors import ConfigError

ENGINE_ENV = Path(os.environ.get("INFERLAB_VLLM_ENV", ROOT / ".venv-vllm"))
SGL_CLIENT = Path(os.environ.get("INFERLAB_SGLANG_CLIENT_ENV", ROOT / ".venv-sglang-client"))


def preset(**over) -> config.Config:
    p = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    p["catalog"] = str(ROOT / "config")
    p["weeks"] = ["week01"]
    p.update(over)
    return config.load(p, base_dir=ROOT)


def cell(client: str = "vllm") -> dict:
    return {
        "week": "week01",
        "experiment": "serving",
        "engine": "vllm",
        "gpu": "cpu",
        "cell": f"rrinf-{client}",
        "tool": "bench_serving",
        "model": "tiny",
        "params": {"request_rate": "inf", "num_prompts": 10, "client": client},
    }


def test_bind_is_loopback_unless_the_preset_says_otherwise():
    """Default: no server_bind in any engine's entry (every configuration's rule params unchanged),
    the adapters bind loopback. 0.0.0.0: every entry carries it. Not an IPv4 address: a ConfigError
    naming the key."""
    cfg = preset()
    assert cfg.preset["server_bind"] == "127.0.0.1"
    assert all("server_bind" not in cfg.engine_entry(e) for e in cfg.engines)
    assert VLLM(None, cfg.engine_entry("vllm")).server_bind == server.HOST
    wide = preset(server_bind="0.0.0.0")
    assert {wide.engine_entry(e)["server_bind"] for e in wide.engines} == {"0.0.0.0"}
    assert wide.engine_entry("vllm_lmcache")["base"] == "vllm"  # a variant inherits it too
    with pytest.raises(ConfigError, match="server_bind"):
        preset(server_bind="everywhere")
    assert not server.needs_api_key("127.0.0.1") and server.needs_api_key("0.0.0.0")
    assert server.client_host("0.0.0.0") == server.HOST and server.client_host("10.1.2.3") == "10.1.2.3"


def test_sglang_beyond_loopback_is_unsupported_and_starts_nothing(tmp_path):
    """SGLang takes a key only as --api-key (and logs its server arguments, key included): a bind
    beyond loopback types its cells skipped (unsupported) with the reason, no server started."""
    eng = SGLang(None, {"python": sys.executable, "server_bind": "0.0.0.0"})  # no probe: "available"
    res = session.run_session(
        [{**cell(), "engine": "sglang"}], [tmp_path / "c"], eng, "/m", "", tmp_path / "_engine", {}, ROOT
    )
    rec = json.loads((tmp_path / "c" / "cell.json").read_text())
    assert (rec["status"], rec["reason"]) == ("skipped", "unsupported")
    assert "0.0.0.0" in rec["detail"] and "command line" in rec["detail"]
    assert res["status"] == "skipped" and "port" not in res
    assert not (tmp_path / "_engine" / "server.log").exists()


def listening(port: int) -> set[str]:
    """The IPv4 addresses a TCP socket listens on at ``port`` (/proc/net/tcp, state 0A)."""
    out = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        f = line.split()
        addr, p = f[1].split(":")
        if f[3] == "0A" and int(p, 16) == port:
            out.add(socket.inet_ntoa(bytes.fromhex(addr)[::-1]))
    return out


def own_address() -> str | None:
    """A non-loopback IPv4 address of this host (a UDP connect sends nothing), or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))
        except OSError:
            return None
        ip = s.getsockname()[0]
    return None if ip.startswith("127.") else ip


def post_completion(url: str, model: str, key: str | None = None) -> int:
    body = json.dumps({"model": model, "prompt": "hi", "max_tokens": 2}).encode()
    req = urllib.request.Request(url + "/v1/completions", data=body, headers={"Content-Type": "application/json"})
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def run(tmp_path, tiny, bind: str | None, monkeypatch, clients=("vllm",)) -> dict:
    """One real session (vLLM CPU server + a cell per load client: vllm bench serve, SGLang's
    bench_serving; through the normal path) with the preset's bind; before the first cell runs,
    what the server looks like from outside is observed."""
    model, data = tiny
    cfg = preset(**({"server_bind": bind} if bind else {}))
    setup = {**cfg.preset["engines"]["vllm"], "env": str(ENGINE_ENV)}
    eng = engines.from_setup("vllm", setup, cfg.engine_entry("vllm"), str(tmp_path / "cc"), ROOT)
    eng.client_engines = {"sglang": engines.from_setup("sglang", {"client_env": str(SGL_CLIENT)}, {"python": "python"})}
    seen: dict = {}
    run_one = session._run_one

    def observe(c, engine, srv, *a, **k):
        if seen:
            return run_one(c, engine, srv, *a, **k)
        pid = srv.proc.pid
        environ = dict(
            kv.split("=", 1) for kv in Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0") if "=" in kv
        )
        seen.update(
            key=environ.get("VLLM_API_KEY"),
            cmdline=Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"),
            listening=listening(srv.port),
            base_url=srv.base_url,
            unauthenticated=post_completion(srv.base_url, str(model)),
            health=server.http_get(srv.base_url + "/health")[0],
        )
        if seen["key"]:
            seen["wrong_key"] = post_completion(srv.base_url, str(model), "not-the-key")
            seen["right_key"] = post_completion(srv.base_url, str(model), seen["key"])
        ip = own_address()
        if ip:  # reached through this host's own network address, not loopback
            seen["from_network"] = server.http_get(f"http://{ip}:{srv.port}/health")[0]
        return run_one(c, engine, srv, *a, **k)

    monkeypatch.setattr(session, "_run_one", observe)
    res = session.run_session(
        [cell(x) for x in clients],
        [tmp_path / x for x in clients],
        eng,
        str(model),
        str(data),
        tmp_path / "_engine",
        {"max_model_len": 2048},
        ROOT,
        ready_timeout_s=600,
        cell_timeout_s=600,
    )
    seen["session"] = res
    seen["records"] = {x: json.loads((tmp_path / x / "cell.json").read_text()) for x in clients}
    return seen


@pytest.mark.engine
def test_bind_beyond_loopback_requires_a_per_job_key_never_written(tmp_path, tiny, monkeypatch):
    """server_bind 0.0.0.0: the vLLM server listens on every interface (reachable at this host's
    own address), an unauthenticated or wrongly keyed POST /v1/completions gets 401, /health stays
    open; the key reached the server in its environment (not its command line) and both load clients
    (vllm bench serve's and SGLang's cells are ok, 10 of 10 requests); the key is in no file of the
    session, the cells or the compile cache, and the session says a key was used without saying which."""
    if not (SGL_CLIENT / "bin" / "python").exists():
        pytest.fail(f"SGLang's client is not installed at {SGL_CLIENT} (run scripts/setup.sh)")
    seen = run(tmp_path, tiny, "0.0.0.0", monkeypatch, clients=("vllm", "sglang"))
    key = seen["key"]
    assert key and len(key) >= 40, "no per-job key in the server's environment"
    assert seen["listening"] == {"0.0.0.0"}
    assert seen["base_url"].startswith("http://127.0.0.1:")  # the client stays on loopback
    assert seen.get("from_network", 200) == 200
    assert (seen["unauthenticated"], seen["wrong_key"], seen["right_key"], seen["health"]) == (401, 401, 200, 200)
    assert key not in seen["cmdline"]
    for rec in seen["records"].values():
        assert rec["status"] == "ok", (rec["cell"], rec["reason"], rec["detail"], rec["log_tail"])
        assert rec["cache_reset"]["ok"], rec["cache_reset"]  # dev-mode route: not behind the key
        assert key not in json.dumps(rec["provenance"]["command"])
    raw = json.loads((tmp_path / "vllm" / "raw.json").read_text())
    assert raw["completed"] == 10 and raw.get("failed", 0) == 0
    rows = {
        r["metric"]: r["value"]
        for r in VLLM(None, {}).parse("bench_serving", tmp_path / "sglang" / "raw.json", cell("sglang")["params"])
    }
    assert (rows["completed"], rows["failed"]) == (10, 0)
    assert seen["session"]["server_bind"]["bind"] == "0.0.0.0" and "never written" in str(
        seen["session"]["server_bind"]["api_key"]
    )
    assert rec["provenance"]["server_env"]["VLLM_API_KEY"].startswith("<redacted")
    assert seen["session"]["server_env"]["VLLM_API_KEY"].startswith("<redacted")
    assert scan_for_secret(tmp_path, key) == []


@pytest.mark.engine
def test_default_bind_makes_no_key_and_changes_nothing(tmp_path, tiny, monkeypatch):
    """Default bind: loopback only, no key generated, /v1/completions open to the same node, no
    server_bind in the session's record."""
    seen = run(tmp_path, tiny, None, monkeypatch)
    assert seen["key"] is None and seen["listening"] == {"127.0.0.1"}
    assert seen["unauthenticated"] == 200
    assert seen.get("from_network") is None  # nothing listens on the host's own address
    rec = seen["records"]["vllm"]
    assert rec["status"] == "ok", rec["log_tail"]
    assert "server_bind" not in seen["session"] and "VLLM_API_KEY" not in rec["provenance"]["server_env"]

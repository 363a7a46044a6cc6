"""Layouts (inferlab.layouts) and the P/D proxy (inferlab.pd_proxy).

Without the engine: the proxy against two fake backends (http.server in threads: the prefill call,
SSE relay chunk by chunk, a backend error as a 502 with the backend's message, health, metrics,
NIXL's kv_transfer_params, the reset fan-out); the command lines of both connectors; the layout's
lifecycle with toy servers as prefill and decode (readiness, a member's death typed and the others
torn down, start-up death, the shared deadline, no process left).

With the engine (``-m engine``): a real pd layout of two vLLM CPU servers with ExampleConnector and
the proxy: a 600-token prompt goes through it (plain and streamed), the decode server loads the
prefill server's KV (``External Cache Hit!``, ``vllm:external_prefix_cache_hits_total``), the output
equals one server's for the same greedy request, ``vllm bench serve`` runs through the proxy; then
the decode server's group is killed (named with its exit code, the others torn down by the
layout's watcher), and ``stop()`` leaves no process of any member (also after a plain stop of a
live single layout)."""

import http.client
import http.server
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import ROOT

from inferlab import layouts, pd_proxy
from inferlab.engines.vllm import VLLM

TOY = ROOT / "tests" / "helpers" / "toy_server.py"
SGLANG_PD_STANDIN = ROOT / "tests" / "helpers" / "sglang_pd_standin.py"
ENGINE_ENV = ROOT / ".venv-vllm"


# -- helpers -------------------------------------------------------------------------------------
def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of a process group, from /proc."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            out.append(int(d.name))
    return out


def pid_alive(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def request(url, body=None, method=None, timeout=60):
    """(status, headers, body bytes) without raising on error statuses."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def sse_text(raw: bytes) -> tuple[str, list[dict]]:
    events = []
    for line in raw.decode().splitlines():
        if line.startswith("data: ") and line != "data: [DONE]":
            events.append(json.loads(line[6:]))
    return "".join(c["text"] for e in events for c in e.get("choices", [])), events


# -- fake backends -------------------------------------------------------------------------------
class Fake:
    """A backend in a thread: records requests, answers health, completions (JSON or SSE with a
    gap between events), metrics, errors on demand."""

    def __init__(self, name, health=200, error=None, events=3, gap_s=0.0, kv_params=None):
        self.name, self.health, self.error = name, health, error
        self.events, self.gap_s, self.kv_params = events, gap_s, kv_params
        self.got: list[tuple[str, str, dict | None]] = []
        fake = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _reply(self, status, body: bytes, ctype="application/json"):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                fake.got.append(("GET", self.path, None))
                if self.path == "/health":
                    self._reply(fake.health, b"")
                elif self.path == "/metrics":
                    self._reply(200, f'fake_metric{{backend="{fake.name}"}} 1.0\n'.encode(), "text/plain")
                else:
                    self._reply(404, b"{}")

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"null")
                fake.got.append(("POST", self.path, body))
                if fake.error:
                    status, msg = fake.error
                    return self._reply(status, json.dumps({"error": {"message": msg, "code": status}}).encode())
                if self.path in ("/reset_prefix_cache", "/start_profile", "/stop_profile"):
                    return self._reply(200, b"")
                if body.get("stream"):
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream; charset=utf-8")
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    for i in range(fake.events):
                        ev = f"data: {json.dumps({'choices': [{'index': 0, 'text': f'<{fake.name}{i}>'}]})}\n\n"
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(ev), ev.encode()))
                        self.wfile.flush()
                        time.sleep(fake.gap_s)
                    done = b"data: [DONE]\n\n"
                    self.wfile.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(done), done))
                    return
                out = {"choices": [{"index": 0, "text": f"<{fake.name}>"}], "kv_transfer_params": fake.kv_params}
                self._reply(200, json.dumps(out).encode())

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def pd(tmp_path):
    """(proxy URL, prefill fake, decode fake, proxy server); reconfigure the fakes in the test."""
    made = []

    def make(connector="ExampleConnector", kv_dir=None, **kw):
        p, d = Fake("prefill", **kw.get("prefill", {})), Fake("decode", **kw.get("decode", {}))
        srv = pd_proxy.serve("127.0.0.1", 0, p.url, d.url, connector, kv_dir)
        made.extend([p, d, srv])
        return f"http://127.0.0.1:{srv.server_address[1]}", p, d, srv

    yield make
    for m in made:
        m.shutdown() if isinstance(m, pd_proxy.ProxyServer) else m.close()


# -- the proxy -----------------------------------------------------------------------------------
def test_proxy_prefills_one_token_then_relays_the_decode_answer(pd):
    url, p, d, _ = pd()
    body = {
        "model": "m",
        "prompt": "hello",
        "max_tokens": 64,
        "min_tokens": 8,
        "temperature": 0,
        "stream_options": {"include_usage": True},
    }
    status, headers, raw = request(url + "/v1/completions", body)
    assert status == 200
    assert json.loads(raw)["choices"][0]["text"] == "<decode>"  # the decode server's answer
    (_, ppath, pbody), (_, dpath, dbody) = p.got[-1], d.got[-1]
    assert ppath == dpath == "/v1/completions"
    assert pbody["max_tokens"] == 1 and pbody["stream"] is False
    assert "stream_options" not in pbody and "min_tokens" not in pbody and "kv_transfer_params" not in pbody
    assert pbody["prompt"] == "hello" and pbody["temperature"] == 0
    assert dbody == body  # the decode server gets the client's request untouched
    assert float(headers["X-Inferlab-Prefill-Ms"]) >= 0 and headers["X-Request-Id"]


def test_proxy_chat_caps_max_completion_tokens(pd):
    url, p, d, _ = pd()
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_completion_tokens": 50}
    assert request(url + "/v1/chat/completions", body)[0] == 200
    assert p.got[-1][1] == "/v1/chat/completions"
    assert p.got[-1][2]["max_completion_tokens"] == 1 and p.got[-1][2]["max_tokens"] == 1
    assert d.got[-1][2] == body


def test_proxy_relays_sse_chunks_as_they_arrive(pd):
    url, p, d, _ = pd(decode={"events": 4, "gap_s": 0.4})
    host, port = url[7:].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    t0 = time.monotonic()
    conn.request("POST", "/v1/completions", json.dumps({"prompt": "x", "max_tokens": 4, "stream": True}))
    resp = conn.getresponse()
    assert resp.status == 200 and resp.getheader("Content-Type").startswith("text/event-stream")
    first = resp.read1(65536)
    t_first = time.monotonic() - t0
    rest = resp.read()
    t_all = time.monotonic() - t0
    conn.close()
    # the first event came through while the decode server was still generating (4 x 0.4 s)
    assert b"<decode0>" in first and t_first < 0.3 and t_all >= 1.5
    text, events = sse_text(first + rest)
    assert text == "<decode0><decode1><decode2><decode3>" and (first + rest).endswith(b"data: [DONE]\n\n")
    assert p.got[-1][2]["stream"] is False and p.got[-1][2]["max_tokens"] == 1


@pytest.mark.parametrize("who", ["prefill", "decode"])
def test_backend_error_is_a_502_with_the_backends_message(pd, who):
    url, p, d, _ = pd(**{who: {"error": (400, f"{who}: This model's maximum context length is 2048 tokens")}})
    status, _, raw = request(url + "/v1/completions", {"prompt": "x", "max_tokens": 5})
    assert status == 502
    err = json.loads(raw)["error"]
    assert err["backend"] == who and err["backend_status"] == 400
    assert err["backend_message"] == f"{who}: This model's maximum context length is 2048 tokens"
    assert "maximum context length" in err["message"]
    if who == "prefill":
        assert not [g for g in d.got if g[0] == "POST"]  # the decode server is not asked
    # streamed requests fail the same way (before any event is sent)
    assert request(url + "/v1/completions", {"prompt": "x", "max_tokens": 5, "stream": True})[0] == 502


def test_unreachable_backend_is_a_502(pd):
    url, p, d, _ = pd()
    d.close()
    status, _, raw = request(url + "/v1/completions", {"prompt": "x"})
    assert status == 502
    err = json.loads(raw)["error"]
    assert err["backend"] == "decode" and err["backend_status"] is None and "unreachable" in err["message"]


def test_proxy_health_needs_both_backends(pd):
    url, p, d, _ = pd(decode={"health": 503})
    status, _, raw = request(url + "/health")
    assert status == 503 and json.loads(raw) == {"status": "unavailable", "prefill": 200, "decode": 503}
    d.health = 200
    assert request(url + "/health")[0] == 200
    p.close()
    assert request(url + "/health")[0] == 503


def test_proxy_metrics_are_the_decode_servers(pd):
    url, *_ = pd()
    status, headers, raw = request(url + "/metrics")
    assert status == 200 and raw == b'fake_metric{backend="decode"} 1.0\n'
    assert request(url + "/prefill/metrics")[2] == b'fake_metric{backend="prefill"} 1.0\n'


def test_proxy_passes_nixl_kv_transfer_params(pd):
    params = {"do_remote_prefill": True, "remote_engine_id": "e1", "remote_block_ids": [1, 2], "remote_port": 5600}
    url, p, d, _ = pd(connector="NixlConnector", prefill={"kv_params": params})
    assert request(url + "/v1/completions", {"prompt": "x", "max_tokens": 8})[0] == 200
    assert p.got[-1][2]["kv_transfer_params"] == pd_proxy.NIXL_PREFILL_PARAMS
    assert p.got[-1][2]["kv_transfer_params"]["do_remote_decode"] is True
    assert d.got[-1][2]["kv_transfer_params"] == params and d.got[-1][2]["max_tokens"] == 8


def test_reset_goes_to_both_and_empties_the_kv_folder(pd, tmp_path):
    kv = tmp_path / "kv"
    (kv / "abc").mkdir(parents=True)
    (kv / "abc" / "model.layers.0.self_attn.attn.safetensors").write_bytes(b"x")
    url, p, d, _ = pd(kv_dir=kv)
    status, _, raw = request(url + "/reset_prefix_cache", {}, method="POST")
    assert status == 200 and json.loads(raw)["kv_dir_cleared"] == 1
    assert kv.is_dir() and not list(kv.iterdir())
    assert ("POST", "/reset_prefix_cache", {}) in p.got and ("POST", "/reset_prefix_cache", {}) in d.got


def test_reset_keeps_a_backends_refusal(pd, tmp_path):
    # vLLM without VLLM_SERVER_DEV_MODE answers 404: the session's record must see that, not a 200
    url, p, d, _ = pd(decode={"error": (404, "Not Found")})
    assert request(url + "/reset_prefix_cache", {}, method="POST")[0] == 404


# -- command lines -------------------------------------------------------------------------------
def plan(connector, devices=None, server_args=None, spec_extra=None, env=None, tmp=Path("/tmp/lay")):
    eng = VLLM(env=str(ENGINE_ENV), catalog={"bin": "vllm"}, run_args={})
    spec = {"kind": "pd", "connector": connector, **(spec_extra or {})}
    args = server_args or {"dtype": "bfloat16", "max_model_len": 2048}
    ports = {"prefill": 8100, "decode": 8200, "proxy": 8192}
    side = {"prefill": 5600, "decode": 5610}
    return layouts.pd_plan(eng, "/m", args, spec, tmp, env or {"PATH": "/bin"}, ports, side, devices)


def kv_cfg(cmd):
    return json.loads(cmd[cmd.index("--kv-transfer-config") + 1])


def test_example_connector_commands():
    pl = plan("ExampleConnector")
    assert set(pl) == {"prefill", "decode", "proxy"}
    for m, role in (("prefill", "kv_producer"), ("decode", "kv_consumer")):
        cmd = pl[m].cmd
        assert cmd[:3] == [str(ENGINE_ENV / "bin" / "vllm"), "serve", "/m"]
        assert cmd[cmd.index("--port") + 1] == str({"prefill": 8100, "decode": 8200}[m])
        assert kv_cfg(cmd) == {
            "kv_connector": "ExampleConnector",
            "kv_role": role,
            "kv_connector_extra_config": {"shared_storage_path": "/tmp/lay/kv"},
        }
        assert "VLLM_NIXL_SIDE_CHANNEL_PORT" not in pl[m].env and "CUDA_VISIBLE_DEVICES" not in pl[m].env
    proxy = pl["proxy"].cmd
    assert proxy[1:3] == ["-m", "inferlab.pd_proxy"]
    assert proxy[proxy.index("--prefill") + 1] == "http://127.0.0.1:8100"
    assert proxy[proxy.index("--decode") + 1] == "http://127.0.0.1:8200"
    assert proxy[proxy.index("--port") + 1] == "8192" and proxy[proxy.index("--kv-dir") + 1] == "/tmp/lay/kv"
    for p in pl.values():  # NVLink multicast off in every process
        assert {k: p.env[k] for k in layouts.LAYOUT_ENV} == layouts.LAYOUT_ENV


def test_nixl_connector_commands():
    pl = plan(
        "NixlConnector",
        devices=["0", "1", "2"],
        spec_extra={"prefill": {"tensor_parallel_size": 2}, "decode": {"max_num_seqs": 64}},
    )
    pre, dec, proxy = pl["prefill"], pl["decode"], pl["proxy"]
    assert kv_cfg(pre.cmd) == {"kv_connector": "NixlConnector", "kv_role": "kv_producer"}
    assert kv_cfg(dec.cmd) == {"kv_connector": "NixlConnector", "kv_role": "kv_consumer"}
    # the member's own args over the configuration's
    assert pre.cmd[pre.cmd.index("--tensor-parallel-size") + 1] == "2" and "--tensor-parallel-size" not in dec.cmd
    assert dec.cmd[dec.cmd.index("--max-num-seqs") + 1] == "64" and "--max-num-seqs" not in pre.cmd
    assert pre.cmd[pre.cmd.index("--max-model-len") + 1] == dec.cmd[dec.cmd.index("--max-model-len") + 1] == "2048"
    # its own GPUs, side-channel port, UCX devices
    assert pre.env["CUDA_VISIBLE_DEVICES"] == "0,1" and dec.env["CUDA_VISIBLE_DEVICES"] == "2"
    assert pre.devices == ["0", "1"] and dec.devices == ["2"]
    assert pre.env["VLLM_NIXL_SIDE_CHANNEL_PORT"] == "5600" and dec.env["VLLM_NIXL_SIDE_CHANNEL_PORT"] == "5610"
    assert pre.env["VLLM_NIXL_SIDE_CHANNEL_HOST"] == dec.env["VLLM_NIXL_SIDE_CHANNEL_HOST"] == "127.0.0.1"
    assert pre.env["UCX_NET_DEVICES"] == dec.env["UCX_NET_DEVICES"] == "all"
    for p in pl.values():
        assert p.env["NCCL_NVLS_ENABLE"] == "0" and p.env["TORCH_SYMM_MEM_DISABLE_MULTICAST"] == "1"
        assert p.env["NVSHMEM_DISABLE_NVLS"] == "1"
    assert proxy.cmd[proxy.cmd.index("--connector") + 1] == "NixlConnector" and "--kv-dir" not in proxy.cmd
    # the GPU pools the cell's telemetry is split by: each engine member's devices as NVML indices
    lay = layouts.Layout("pd", {}, "proxy", "decode", gpu_devices={n: p.devices for n, p in pl.items() if p.devices})
    assert lay.gpu_pools() == {"prefill": [0, 1], "decode": [2]}
    assert layouts.Layout("pd", {}, "proxy", "decode").gpu_pools() is None  # CPU: no member holds a GPU
    # a UCX choice of the job is kept; a kv_transfer_config the spec gives a member wins
    pl2 = plan(
        "NixlConnector",
        env={"UCX_NET_DEVICES": "mlx5_0:1"},
        spec_extra={"decode": {"kv_transfer_config": {"kv_connector": "NixlConnector", "kv_role": "kv_both"}}},
    )
    assert pl2["decode"].env["UCX_NET_DEVICES"] == "mlx5_0:1"
    assert kv_cfg(pl2["decode"].cmd)["kv_role"] == "kv_both"


def test_pd_needs_enough_devices_and_a_known_connector():
    with pytest.raises(layouts.LayoutError) as e:
        plan("NixlConnector", devices=["0"])
    assert e.value.reason == "resources" and "decode" in e.value.detail
    with pytest.raises(layouts.LayoutError) as e:
        plan("P2pNcclConnector")
    assert e.value.reason == "unsupported" and "P2pNcclConnector" in e.value.detail


def test_nixl_without_nixl_fails_typed_before_anything_starts(tmp_path):
    # the workflow env's Python stands for an engine env without the nixl package
    eng = VLLM(env=str(Path(sys.executable).parents[1]), catalog={"bin": "vllm"}, run_args={})
    t0 = time.monotonic()
    with pytest.raises(layouts.LayoutError) as e:
        layouts.start(
            "pd",
            eng,
            "/m",
            {},
            tmp_path,
            dict(os.environ),
            600,
            layout_spec={"kind": "pd", "connector": "NixlConnector"},
        )
    assert time.monotonic() - t0 < 30
    assert e.value.reason == "unsupported" and "nixl" in e.value.detail
    assert not list(tmp_path.glob("*.log"))  # nothing was started


def test_unknown_layout_kind():
    with pytest.raises(layouts.LayoutError) as e:
        layouts.start("mesh", None, "/m", {}, "/tmp/x", {}, 10)
    assert e.value.reason == "unsupported" and "router" in e.value.detail


# -- the router layout: commands, devices, the fan-out ---------------------------------------------
def rplan(devices=None, cores=None, server_args=None, replicas=2, policy="cache_aware"):
    eng = VLLM(env=str(ENGINE_ENV), catalog={"bin": "vllm"}, run_args={})
    spec = {"kind": "router", "replicas": replicas, "policy": policy}
    ports = {f"replica{i}": 8100 + i for i in range(replicas)} | {"router": 8000, "prometheus": 8900}
    args = server_args or {"dtype": "bfloat16"}
    return layouts.router_plan(eng, "/m", args, spec, {"PATH": "/bin"}, ports, "/py", devices, cores, 300)


def test_router_commands():
    pl = rplan()
    assert list(pl) == ["replica0", "replica1", "router"]
    r = pl["router"].cmd
    assert r[:3] == ["/py", "-m", "sglang_router.launch_router"]
    i = r.index("--worker-urls")
    assert r[i + 1 : i + 3] == ["http://127.0.0.1:8100", "http://127.0.0.1:8101"]
    assert r[r.index("--policy") + 1] == "cache_aware" and r[r.index("--port") + 1] == "8000"
    # never the router's fixed default Prometheus port (29000): two jobs on a node would collide
    assert r[r.index("--prometheus-port") + 1] == "8900" and r[r.index("--prometheus-host") + 1] == "127.0.0.1"
    assert r[r.index("--worker-startup-check-interval") + 1] == "1"  # default 30 s per registration poll
    assert r[r.index("--worker-startup-timeout-secs") + 1] == "300"
    assert pl["router"].health_path == "/readiness"  # its /health is 200 before any worker registered
    for n, port in (("replica0", 8100), ("replica1", 8101)):
        c = pl[n].cmd
        assert c[c.index("--port") + 1] == str(port) and pl[n].health_path == "/health"
        assert pl[n].env["NCCL_NVLS_ENABLE"] == "0"
    with pytest.raises(layouts.LayoutError) as e:
        rplan(policy="manual")
    assert e.value.reason == "unsupported" and "cache_aware" in e.value.detail


def test_router_replicas_take_their_slice_of_devices_or_cores():
    pl = rplan(devices=["4", "5"])
    assert [pl[f"replica{i}"].env["CUDA_VISIBLE_DEVICES"] for i in range(2)] == ["4", "5"]
    assert "CUDA_VISIBLE_DEVICES" not in pl["router"].env or pl["router"].env["CUDA_VISIBLE_DEVICES"] != "4"
    pl = rplan(devices=["0", "1", "2", "3"], server_args={"tensor_parallel_size": 2})
    assert [pl[f"replica{i}"].env["CUDA_VISIBLE_DEVICES"] for i in range(2)] == ["0,1", "2,3"]
    with pytest.raises(layouts.LayoutError) as e:
        rplan(devices=["0"])
    assert e.value.reason == "resources" and "2 replicas" in e.value.detail
    # the CPU: one core each (vLLM's CPU build binds its OpenMP threads there)
    pl = rplan(cores=[0, 1])
    assert [pl[f"replica{i}"].env["VLLM_CPU_OMP_THREADS_BIND"] for i in range(2)] == ["0", "1"]
    pl = rplan(cores=[0, 1, 2, 3], server_args={"tensor_parallel_size": 2})
    assert [pl[f"replica{i}"].env["VLLM_CPU_OMP_THREADS_BIND"] for i in range(2)] == ["0|1", "2|3"]
    with pytest.raises(layouts.LayoutError) as e:
        rplan(cores=[0], replicas=2)
    assert e.value.reason == "resources"


METRICS_TEXT = """# HELP vllm:prefix_cache_hits_total hits
# TYPE vllm:prefix_cache_hits_total counter
vllm:prefix_cache_hits_total{{engine="0",model_name="m"}} {hits}
# TYPE vllm:prefix_cache_queries_total counter
vllm:prefix_cache_queries_total{{engine="0",model_name="m"}} {queries}
# TYPE vllm:request_success_total counter
vllm:request_success_total{{engine="0",finished_reason="length",model_name="m"}} {req}
"""


def test_merged_metrics_sum_over_replicas_and_split_per_replica():
    from inferlab import scrape

    def merged(h0, q0, h1, q1):
        texts = {
            "replica0": METRICS_TEXT.format(hits=h0, queries=q0, req=0),
            "replica1": METRICS_TEXT.format(hits=h1, queries=q1, req=0),
        }
        return scrape.parse_prometheus(layouts.merge_metrics(texts))

    before, after = merged(0, 0, 10, 100), merged(300, 400, 10, 200)
    assert after.total("vllm:prefix_cache_hits_total") == 310
    rows = {r["metric"]: r["value"] for r in scrape.cell_rows(before, after, "vllm", on_reset="flag")}
    assert rows["prefix_cache_hit_rate"] == pytest.approx(300 / 500)  # summed counters, not a mean of rates
    lay = layouts.Layout("router", {"replica0": None, "replica1": None, "router": None}, "router", "replica0")
    lay.fanout = object()  # member_rows only reads the scrapes
    per = {r["metric"]: r["value"] for r in lay.member_rows(before, after)}
    assert per["prefix_cache_hit_rate_replica0"] == pytest.approx(0.75) and per["prefix_cache_hits_replica0"] == 300
    assert per["prefix_cache_hit_rate_replica1"] == 0.0 and per["prefix_cache_queries_replica1"] == 100
    # label values are escaped, values round-trip
    odd = 'x{a="q\\"uote",b="back\\\\slash"} +Inf\n'
    back = scrape.parse_prometheus(layouts.merge_metrics({"r": odd}))
    assert back[("x", frozenset({"replica": "r", "a": 'q"uote', "b": "back\\slash"}.items()))] == float("inf")


def test_fanout_merges_metrics_and_resets_every_replica():
    a, b = Fake("a"), Fake("b", health=503)
    fan = layouts.Fanout({"replica0": a.url, "replica1": b.url})
    try:
        status, _, raw = request(fan.base_url + "/metrics")
        text = raw.decode()
        assert status == 200
        assert 'fake_metric{replica="replica0",backend="a"} 1.0' in text
        assert 'fake_metric{replica="replica1",backend="b"} 1.0' in text
        status, _, raw = request(fan.base_url + "/reset_prefix_cache", method="POST")
        assert status == 200 and json.loads(raw) == {"replica0": 200, "replica1": 200}
        assert ("POST", "/reset_prefix_cache", None) in a.got and ("POST", "/reset_prefix_cache", None) in b.got
        status, _, raw = request(fan.base_url + "/health")
        assert status == 503 and json.loads(raw) == {"replica0": 200, "replica1": 503}
        b.error = (404, "no such route")  # a replica that refuses the reset: the whole reset fails
        status, _, raw = request(fan.base_url + "/flush_cache", method="POST")
        assert status == 502 and json.loads(raw)["replica1"] == 404
        b.close()  # a replica gone: /metrics fails, naming it (never half the counters)
        status, _, raw = request(fan.base_url + "/metrics")
        assert status == 502 and "replica1" in json.loads(raw)["errors"]
    finally:
        fan.close()
        a.close()


def test_router_without_sglang_router_fails_typed_before_anything_starts(tmp_path):
    eng = ToyEngine(tmp_path)
    env = {**os.environ, "INFERLAB_ROUTER_PYTHON": sys.executable}  # the workflow's Python: no sglang_router
    with pytest.raises(layouts.LayoutError) as e:
        layouts.start("router", eng, "/m", {}, tmp_path / "lay", env, 30, layout_spec={"kind": "router"})
    assert e.value.reason == "unsupported" and e.value.member == "router"
    assert "sglang-router" in e.value.detail and sys.executable in e.value.detail
    assert not list(tmp_path.glob("**/*.log"))  # nothing was started


# -- lifecycle with toy servers ------------------------------------------------------------------
class ToyEngine:
    """Stands for an engine adapter: its 'server' is tests/helpers/toy_server.py (it forks a worker
    child, as vLLM forks EngineCore); toy_* args set its readiness/exit times."""

    health_path = "/health"
    python = sys.executable

    def __init__(self, folder: Path):
        self.folder = folder

    def serve_command(self, model_path, host, port, args):
        role = args.get("kv_transfer_config", {"kv_role": "server"})["kv_role"]
        cmd = [sys.executable, str(TOY), "--port", str(port), "--pidfile", str(self.folder / f"{role}.worker")]
        cmd += ["--ready-after", str(args.get("toy_ready_after", 0.5))]
        if args.get("toy_exit_after") is not None:
            cmd += ["--exit-after", str(args["toy_exit_after"])]
        return cmd

    @staticmethod
    def classify_failure(rc, text):
        return "engine_error"

    def workers(self):
        return [int(p.read_text()) for p in self.folder.glob("*.worker")]


def start_toy(tmp_path, spec_extra=None, timeout=30, **args):
    eng = ToyEngine(tmp_path)
    spec = {"kind": "pd", "connector": "ExampleConnector", **(spec_extra or {})}
    return eng, layouts.start("pd", eng, "/m", args, tmp_path / "lay", dict(os.environ), timeout, layout_spec=spec)


def test_toy_pd_ready_then_stop_leaves_no_process(tmp_path):
    stale = tmp_path / "lay" / "kv" / "0123abcd"
    stale.mkdir(parents=True)
    (stale / "model.layers.0.self_attn.attn.safetensors").write_bytes(b"old")
    eng, lay = start_toy(tmp_path, toy_ready_after=1.0)
    with lay:
        assert not stale.exists()  # a previous run's KV would be loaded instead of computed
        assert lay.alive() and lay.dead_member() is None and lay.healthy()
        assert lay.ready_s >= 1.0 and set(lay.members) == {"prefill", "decode", "proxy"}
        assert lay.base_url == lay.members["proxy"].base_url and lay.port == lay.members["proxy"].port
        assert set(lay.logs) == {"prefill", "decode", "proxy"} and all(p.exists() for p in lay.logs.values())
        status, _, raw = request(lay.base_url + "/health")
        assert status == 200 and json.loads(raw)["decode"] == 200
        d = lay.describe()
        assert d["kind"] == "pd" and set(d["commands"]) == {"prefill", "decode", "proxy"}
        pgids = [m.proc.pid for m in lay.members.values()]
        workers = eng.workers()
        assert len(workers) == 2 and all(pid_alive(w) for w in workers)
    drain = lay.drain
    assert drain["group_gone"] is True and drain["dead_member"] is None
    assert all(v["group_gone"] for v in drain["members"].values())
    assert not any(group_members(g) for g in pgids) and not any(pid_alive(w) for w in workers + pgids)
    assert lay.stop() is drain  # a second stop is a no-op


def test_toy_decode_killed_is_named_and_the_others_torn_down(tmp_path):
    eng, lay = start_toy(tmp_path)
    try:
        pgids = {n: m.proc.pid for n, m in lay.members.items()}
        os.killpg(pgids["decode"], signal.SIGKILL)  # the decode server's whole group
        deadline = time.monotonic() + 20
        while lay.alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not lay.alive()
        assert lay.dead_member() == ("decode", -9) and lay.returncode == -9
        # the watcher tears the others down without anyone calling stop()
        deadline = time.monotonic() + 30
        while any(group_members(g) for g in pgids.values()) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(group_members(g) for g in pgids.values())
        assert "--- decode (decode.log) ---" in lay.log_tail().splitlines()[0]
    finally:
        drain = lay.stop()
    assert drain["dead_member"] == ["decode", -9] and drain["group_gone"] is True
    assert not any(pid_alive(w) for w in eng.workers())


def test_toy_member_dying_at_start_fails_at_once(tmp_path):
    t0 = time.monotonic()
    eng = ToyEngine(tmp_path)
    spec = {"kind": "pd", "decode": {"toy_exit_after": 1.5}}
    with pytest.raises(layouts.LayoutError) as e:
        layouts.start(
            "pd", eng, "/m", {"toy_ready_after": 60}, tmp_path / "lay", dict(os.environ), 120, layout_spec=spec
        )
    assert time.monotonic() - t0 < 30  # not after the 120 s deadline
    assert e.value.member == "decode" and e.value.returncode == 3 and e.value.reason == "engine_error"
    assert isinstance(e.value, layouts.ServerError)  # the session's `except ServerError` still types it
    assert "exited with 3" in e.value.detail
    time.sleep(0.5)
    assert not any(pid_alive(w) for w in eng.workers())  # prefill's worker went too


def test_toy_shared_deadline(tmp_path):
    eng = ToyEngine(tmp_path)
    spec = {"kind": "pd", "decode": {"toy_ready_after": 600}}
    t0 = time.monotonic()
    with pytest.raises(layouts.LayoutError) as e:
        layouts.start("pd", eng, "/m", {}, tmp_path / "lay", dict(os.environ), 3, layout_spec=spec)
    assert 3 <= time.monotonic() - t0 < 30
    assert e.value.reason == "timeout" and "decode" in e.value.detail and "proxy" in e.value.detail
    assert not any(pid_alive(w) for w in eng.workers())


def test_missing_engine_binary_is_typed(tmp_path):
    class Missing(ToyEngine):
        def serve_command(self, model_path, host, port, args):
            return [str(tmp_path / "no-such-vllm"), "serve", "--port", str(port)]

    with pytest.raises(layouts.LayoutError) as e:
        layouts.start("pd", Missing(tmp_path), "/m", {}, tmp_path / "lay", dict(os.environ), 30, layout_spec={})
    assert e.value.reason == "engine_error" and e.value.member == "prefill" and "no-such-vllm" in e.value.detail


def test_single_layout_wraps_one_server(tmp_path):
    eng = ToyEngine(tmp_path)
    with layouts.start("single", eng, "/m", {}, tmp_path / "one", dict(os.environ), 30) as lay:
        assert lay.kind == "single" and list(lay.members) == ["server"] and lay.alive()
        assert lay.base_url == lay.members["server"].base_url and lay.log == tmp_path / "one" / "server.log"
        assert lay.members["server"].proc is lay.proc
        pgid = lay.proc.pid
        lay.kill("server")
        deadline = time.monotonic() + 10
        while lay.alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert lay.dead_member() == ("server", -9)
    assert lay.drain["group_gone"] and not group_members(pgid)


# -- the router layout with toy replicas and the real router (sglang_router) ----------------------
def router_python():
    py, why = layouts.find_router_python(ToyEngine(Path("/nonexistent")), {})
    if py is None:
        pytest.skip(why)
    return py


class ToyReplicas(ToyEngine):
    def serve_command(self, model_path, host, port, args):
        cmd = super().serve_command(model_path, host, port, args)
        cmd[cmd.index("--pidfile") + 1] = str(self.folder / f"replica-{port}.worker")
        return cmd


def start_toy_router(tmp_path, timeout=60, **args):
    eng = ToyReplicas(tmp_path)
    spec = {"kind": "router", "replicas": 2, "policy": "cache_aware"}
    lay = layouts.start("router", eng, "/m", args, tmp_path / "lay", dict(os.environ), timeout, layout_spec=spec)
    return eng, lay


def test_toy_router_ready_restart_and_a_dead_replica(tmp_path):
    router_python()
    eng, lay = start_toy_router(tmp_path, toy_ready_after=1.0)
    try:
        assert set(lay.members) == {"replica0", "replica1", "router"} and lay.base_url == lay.members["router"].base_url
        assert lay.alive() and lay.healthy() and lay.ready_s >= 1.0
        status, _, raw = request(lay.base_url + "/workers")
        urls = {w["url"] for w in json.loads(raw)["workers"]}
        assert urls == {lay.members["replica0"].base_url, lay.members["replica1"].base_url}
        d = lay.describe()
        assert d["router"]["policy"] == "cache_aware" and d["control_url"] == lay.control_url != lay.base_url
        assert len(eng.workers()) == 2
        # the router again with another policy: the replicas (same processes) untouched
        reps = {n: lay.members[n].proc.pid for n in ("replica0", "replica1")}
        old_router = lay.members["router"].proc.pid
        out = lay.restart_router("round_robin")
        assert out["policy"] == "round_robin" and out["old_router_gone"] and not group_members(old_router)
        assert {n: lay.members[n].proc.pid for n in reps} == reps and lay.alive() and lay.healthy()
        assert lay.commands["router"][lay.commands["router"].index("--policy") + 1] == "round_robin"
        # a replica's whole group dies: noticed within a second or two, named, the rest torn down
        pgids = {n: m.proc.pid for n, m in lay.members.items()}
        os.killpg(pgids["replica1"], signal.SIGKILL)
        deadline = time.monotonic() + 20
        while lay.alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert lay.dead_member() == ("replica1", -9)
        deadline = time.monotonic() + 30
        while any(group_members(g) for g in pgids.values()) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(group_members(g) for g in pgids.values())
        assert lay.log_tail().splitlines()[0] == "--- replica1 (replica1.log) ---"
    finally:
        drain = lay.stop()
    assert drain["dead_member"] == ["replica1", -9] and drain["group_gone"] is True
    assert not any(pid_alive(w) for w in eng.workers())
    with pytest.raises(OSError):  # the fan-out went with the layout
        urllib.request.urlopen(lay.control_url + "/metrics", timeout=2)


def test_toy_router_replica_dying_at_start_is_named(tmp_path):
    router_python()
    t0 = time.monotonic()
    with pytest.raises(layouts.LayoutError) as e:
        start_toy_router(tmp_path, timeout=120, toy_ready_after=60, toy_exit_after=1.5)
    assert time.monotonic() - t0 < 30
    assert e.value.member in ("replica0", "replica1") and e.value.returncode == 3
    assert e.value.reason == "engine_error" and "exited with 3" in e.value.detail
    time.sleep(0.5)
    assert not any(pid_alive(w) for w in ToyReplicas(tmp_path).workers())


def test_toy_router_shared_deadline_names_what_was_not_ready(tmp_path):
    router_python()
    t0 = time.monotonic()
    with pytest.raises(layouts.LayoutError) as e:
        start_toy_router(tmp_path, timeout=3, toy_ready_after=600)
    assert 3 <= time.monotonic() - t0 < 30
    assert e.value.reason == "timeout" and "replica0" in e.value.detail and "router" in e.value.detail


# -- the real engine -----------------------------------------------------------------------------
ARGS = {"dtype": "bfloat16", "enforce_eager": True, "max_model_len": 2048}
PROMPT_A = [(i * 7919) % 9000 + 200 for i in range(600)]  # 600 token ids: 4 whole blocks of 128 move
PROMPT_B = PROMPT_A[::-1]
BLOCK = 128
MOVED = (len(PROMPT_A) - 2) // BLOCK * BLOCK  # ExampleConnector: whole blocks of prompt_len - 1 tokens


def engine_env(work: Path) -> dict:
    env = dict(os.environ)
    env.update(
        VLLM_CPU_KVCACHE_SPACE="1",
        HF_HUB_OFFLINE="1",
        VLLM_ENABLE_V1_MULTIPROCESSING="0",
        VLLM_CACHE_ROOT=str(work / "cache" / "vllm"),
        TORCHINDUCTOR_CACHE_DIR=str(work / "cache" / "inductor"),
    )
    return env


def ask(base_url, model, prompt, stream):
    body = {"model": str(model), "prompt": prompt, "max_tokens": 16, "temperature": 0, "ignore_eos": True}
    if stream:
        body.update(stream=True, stream_options={"include_usage": True})
    status, headers, raw = request(base_url + "/v1/completions", body, timeout=180)
    assert status == 200, raw[-2000:]
    if stream:
        text, events = sse_text(raw)
        return {"text": text, "usage": events[-1].get("usage"), "events": len(events)}
    data = json.loads(raw)
    return {"text": data["choices"][0]["text"], "usage": data["usage"]}


def metric(text: str, name: str) -> float:
    vals = [float(m.group(1)) for m in re.finditer(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$", text, re.M)]
    return sum(vals) if vals else float("nan")


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    if not (ENGINE_ENV / "bin" / "python").exists():
        pytest.skip(f"the vLLM CPU engine is not installed at {ENGINE_ENV}")
    work = tmp_path_factory.mktemp("pd-real")
    env = engine_env(work)
    model = work / "tiny-llama"
    subprocess.run(
        [str(ENGINE_ENV / "bin" / "python"), "-m", "inferlab.tinymodel", "--out", str(model)],
        check=True,
        capture_output=True,
        env={**env, "PYTHONPATH": str(ROOT / "src")},
    )
    eng = VLLM(env=str(ENGINE_ENV), catalog={"bin": "vllm"}, run_args={})
    out = {"work": work, "model": model, "timings": {}}
    # 1. the pd layout (one layout at a time: the 2 cores are shared)
    t0 = time.monotonic()
    spec = {"kind": "pd", "connector": "ExampleConnector"}
    lay = layouts.start("pd", eng, model, ARGS, work / "pd", env, 600, layout_spec=spec)
    out["timings"]["pd_ready_s"] = lay.ready_s
    try:
        out["pd_health"] = request(lay.base_url + "/health")[0]
        out["pd_a"] = ask(lay.base_url, model, PROMPT_A, stream=False)
        out["metrics_after_a"] = request(lay.base_url + "/metrics")[2].decode()
        out["pd_b"] = ask(lay.base_url, model, PROMPT_B, stream=True)
        out["metrics_after_b"] = request(lay.base_url + "/metrics")[2].decode()
        out["prefill_metrics"] = request(lay.base_url + "/prefill/metrics")[2].decode()
        out["kv_files"] = sorted(
            p.relative_to(work / "pd" / "kv").as_posix() for p in (work / "pd" / "kv").rglob("*.safetensors")
        )
        # 2. vllm bench serve through the proxy (streams, many requests at once)
        raw = work / "bench.json"
        t = time.monotonic()
        bench_cmd = eng.client_command(
            lay.base_url,
            model,
            {"dataset_name": "random", "num_prompts": 8, "request_rate": "inf", "seed": 0},
            "",
            raw,
        )
        bench_cmd = [c for c in bench_cmd if c not in ("--dataset-path", "")]
        bench_cmd += ["--random-input-len", "300", "--random-output-len", "16"]
        out["bench"] = subprocess.run(bench_cmd, capture_output=True, text=True, env=env, timeout=300, cwd=work)
        out["timings"]["bench_s"] = round(time.monotonic() - t, 1)
        out["bench_json"] = json.loads(raw.read_text()) if raw.exists() else None
        out["metrics_after_bench"] = request(lay.base_url + "/metrics")[2].decode()
        out["proxy_stats"] = json.loads(request(lay.base_url + "/proxy/stats")[2])
        out["groups"] = {n: group_members(m.proc.pid) for n, m in lay.members.items()}
        out["pgids"] = {n: m.proc.pid for n, m in lay.members.items()}
        out["alive_before_kill"] = lay.alive() and lay.dead_member() is None
        # 3. the decode server's whole group dies: named, with its exit code; the others torn down
        t = time.monotonic()
        os.killpg(out["pgids"]["decode"], signal.SIGKILL)
        while lay.alive() and time.monotonic() - t < 30:
            time.sleep(0.1)
        out["alive_after_kill"] = lay.alive()
        out["dead_member"] = lay.dead_member()
        while any(group_members(g) for g in out["pgids"].values()) and time.monotonic() - t < 60:
            time.sleep(0.2)
        out["timings"]["kill_teardown_s"] = round(time.monotonic() - t, 1)
        out["groups_after_kill"] = {n: group_members(g) for n, g in out["pgids"].items()}
    finally:
        t = time.monotonic()
        out["drain"] = lay.stop()
        out["timings"]["pd_stop_s"] = round(time.monotonic() - t, 1)
    out["groups_after"] = {n: group_members(g) for n, g in out["pgids"].items()}
    out["pids_after"] = {p: pid_alive(p) for g in out["groups"].values() for p in g}
    out["decode_log"] = lay.logs["decode"].read_text()
    # 4. one server, the same greedy requests; a plain stop()
    single = layouts.start("single", eng, model, ARGS, work / "single", env, 600)
    out["timings"]["single_ready_s"] = single.ready_s
    with single:
        out["one_a"] = ask(single.base_url, model, PROMPT_A, stream=False)
        out["one_b"] = ask(single.base_url, model, PROMPT_B, stream=True)
        out["single_group"] = group_members(single.proc.pid)
        t = time.monotonic()
        out["single_drain"] = single.stop()
        out["timings"]["single_stop_s"] = round(time.monotonic() - t, 1)
    out["single_group_after"] = group_members(single.proc.pid)
    out["single_pids_after"] = {p: pid_alive(p) for p in out["single_group"]}
    out["timings"]["total_s"] = round(time.monotonic() - t0, 1)
    print("pd layout timings:", out["timings"])
    return out


@pytest.mark.engine
def test_real_pd_serves_through_the_proxy(real):
    assert real["pd_health"] == 200 and real["alive_before_kill"]
    assert real["pd_a"]["usage"]["prompt_tokens"] == 600 and real["pd_a"]["usage"]["completion_tokens"] == 16
    # streamed in several chunks (a chunk may carry several tokens when the client lags: not one per token)
    assert real["pd_b"]["usage"]["prompt_tokens"] == 600 and real["pd_b"]["events"] > 2


@pytest.mark.engine
def test_real_pd_decode_loads_the_prefill_servers_kv(real):
    # the decode server's log: the prompt's KV found in the shared storage and injected
    log = real["decode_log"]
    assert log.count("External Cache Hit!") >= 2
    assert log.count(f"Inject KV cache of {MOVED} tokens to the paged memory") >= 2
    # its metrics (through the proxy): 512 tokens per 600-token prompt came from outside
    hits = "vllm:external_prefix_cache_hits_total"
    assert metric(real["metrics_after_a"], hits) == MOVED
    assert metric(real["metrics_after_b"], hits) == 2 * MOVED
    assert metric(real["metrics_after_b"], "vllm:external_prefix_cache_queries_total") == 2 * len(PROMPT_A)
    # the prefill server loaded nothing: it computed and stored (one file per layer and prompt)
    assert metric(real["prefill_metrics"], hits) == 0
    assert len(real["kv_files"]) >= 4 and all(f.endswith("self_attn.attn.safetensors") for f in real["kv_files"])


@pytest.mark.engine
def test_real_pd_output_equals_one_servers(real):
    assert real["pd_a"]["text"] == real["one_a"]["text"] and real["pd_a"]["text"]
    assert real["pd_b"]["text"] == real["one_b"]["text"] and real["pd_b"]["text"]


@pytest.mark.engine
def test_real_bench_serve_through_the_proxy(real):
    b = real["bench"]
    assert b.returncode == 0, (b.stdout + b.stderr)[-3000:]
    data = real["bench_json"]
    assert data["completed"] == 8 and data["total_output_tokens"] == 8 * 16
    assert data["mean_ttft_ms"] > 0
    assert real["proxy_stats"]["ok"] >= 10 and real["proxy_stats"]["decode_errors"] == 0
    # 300-token prompts: 2 blocks each moved to the decode server
    hits = "vllm:external_prefix_cache_hits_total"
    assert metric(real["metrics_after_bench"], hits) - metric(real["metrics_after_b"], hits) == 8 * 256


@pytest.mark.engine
def test_real_decode_death_is_named_and_the_others_torn_down(real):
    assert real["alive_after_kill"] is False
    assert real["dead_member"] == ("decode", -9)
    assert real["groups_after_kill"] == {"prefill": [], "decode": [], "proxy": []}  # by the watcher
    assert real["drain"]["dead_member"] == ["decode", -9]


@pytest.mark.engine
def test_real_stop_leaves_no_process(real):
    # every member's group had its processes (vLLM: API server + EngineCore + resource tracker)
    assert len(real["groups"]["prefill"]) >= 2 and len(real["groups"]["decode"]) >= 2 and real["groups"]["proxy"]
    assert real["drain"]["group_gone"] is True
    assert all(v["group_gone"] for v in real["drain"]["members"].values())
    assert real["groups_after"] == {"prefill": [], "decode": [], "proxy": []}
    assert not any(real["pids_after"].values())
    # a plain stop() of a live layout (the single one): the same, with nothing dead
    assert len(real["single_group"]) >= 2
    assert real["single_drain"]["group_gone"] is True and real["single_drain"]["dead_member"] is None
    assert real["single_group_after"] == [] and not any(real["single_pids_after"].values())


# -- the real router layout: two vLLM CPU servers behind sglang_router ----------------------------
def by_replica(metrics_text: str, name: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for m in re.finditer(rf'^{re.escape(name)}{{replica="(replica\d)"[^}}]*}} (\S+)$', metrics_text, re.M):
        out[m.group(1)] = out.get(m.group(1), 0.0) + float(m.group(2))
    return out


TEXT_A = " ".join(f"river {i} stone" for i in range(150))  # a shared prefix of some hundred tokens
TEXT_B = " ".join(f"cloud {i} window" for i in range(150))


@pytest.fixture(scope="module")
def router_real(tmp_path_factory):
    if not (ENGINE_ENV / "bin" / "python").exists():
        pytest.skip(f"the vLLM CPU engine is not installed at {ENGINE_ENV}")
    eng = VLLM(env=str(ENGINE_ENV), catalog={"bin": "vllm"}, run_args={})
    py, why = layouts.find_router_python(eng, {})
    if py is None:
        pytest.skip(why)
    work = tmp_path_factory.mktemp("router-real")
    env = {**engine_env(work), "VLLM_SERVER_DEV_MODE": "1"}  # /reset_prefix_cache
    model = work / "tiny-llama"
    subprocess.run(
        [str(ENGINE_ENV / "bin" / "python"), "-m", "inferlab.tinymodel", "--out", str(model)],
        check=True,
        capture_output=True,
        env={**env, "PYTHONPATH": str(ROOT / "src")},
    )
    out = {"timings": {}}
    t0 = time.monotonic()
    spec = {"kind": "router", "replicas": 2, "policy": "cache_aware"}
    args = {**ARGS, "enable_prefix_caching": True}
    lay = layouts.start("router", eng, model, args, work / "router", env, 600, layout_spec=spec, cores=[0, 1])
    out["timings"]["ready_s"] = lay.ready_s
    out["describe"] = lay.describe()
    try:
        out["health"] = request(lay.base_url + "/readiness")[0]
        out["workers"] = json.loads(request(lay.base_url + "/workers")[2])
        out["replica_urls"] = {n: lay.members[n].base_url for n in lay.replicas}
        out["reset"] = request(lay.control_url + "/reset_prefix_cache", method="POST")
        # two prompts that share a long prefix, then two of another: cache_aware sends each pair to one replica
        metrics = [request(lay.control_url + "/metrics")[2].decode()]
        # (text: the router's /v1/completions takes a string prompt, not token ids - a 422 otherwise)
        for prompt in (TEXT_A + " first?", TEXT_A + " second?", TEXT_B + " first?", TEXT_B + " second?"):
            out.setdefault("answers", []).append(ask(lay.base_url, model, prompt, stream=False))
            metrics.append(request(lay.control_url + "/metrics")[2].decode())
        out["metrics"] = metrics
        out["streamed"] = ask(lay.base_url, model, "a streamed question", stream=True)
        out["pgids"] = {n: m.proc.pid for n, m in lay.members.items()}
        out["groups"] = {n: group_members(g) for n, g in out["pgids"].items()}
        out["alive_before_kill"] = lay.alive() and lay.dead_member() is None
        t = time.monotonic()
        os.killpg(out["pgids"]["replica1"], signal.SIGKILL)
        while lay.alive() and time.monotonic() - t < 30:
            time.sleep(0.1)
        out["timings"]["noticed_s"] = round(time.monotonic() - t, 1)
        out["dead_member"] = lay.dead_member()
        while any(group_members(g) for g in out["pgids"].values()) and time.monotonic() - t < 60:
            time.sleep(0.2)
        out["groups_after_kill"] = {n: group_members(g) for n, g in out["pgids"].items()}
    finally:
        t = time.monotonic()
        out["drain"] = lay.stop()
        out["timings"]["stop_s"] = round(time.monotonic() - t, 1)
    out["groups_after"] = {n: group_members(g) for n, g in out["pgids"].items()}
    out["pids_after"] = {p: pid_alive(p) for g in out["groups"].values() for p in g}
    out["timings"]["total_s"] = round(time.monotonic() - t0, 1)
    print("router layout timings:", out["timings"])
    return out


@pytest.mark.engine
def test_real_router_serves_through_the_router(router_real):
    r = router_real
    assert r["health"] == 200 and r["alive_before_kill"]
    assert {w["url"] for w in r["workers"]["workers"]} == set(r["replica_urls"].values())
    assert all(a["usage"]["prompt_tokens"] > 256 and a["usage"]["completion_tokens"] == 16 for a in r["answers"])
    # streamed in several chunks: a chunk may carry more than one token when the client lags (14 events
    # for 16 tokens seen on a loaded 2-core CI machine), so not one event per token
    assert r["streamed"]["usage"]["completion_tokens"] == 16 and r["streamed"]["events"] > 2
    assert r["describe"]["router"]["policy"] == "cache_aware" and r["describe"]["router"]["python"].endswith("python")
    assert r["reset"][0] == 200 and json.loads(r["reset"][2]) == {"replica0": 200, "replica1": 200}


@pytest.mark.engine
def test_real_router_cache_aware_keeps_a_prefix_on_one_replica(router_real):
    m = router_real["metrics"]
    req = [by_replica(t, "vllm:request_success_total") for t in m]
    hits = [by_replica(t, "vllm:prefix_cache_hits_total") for t in m]
    delta = [{k: req[i + 1][k] - req[i].get(k, 0.0) for k in req[i + 1]} for i in range(4)]
    assert all(sum(d.values()) == 1 for d in delta)  # one request each, counted by exactly one replica
    first, second = ({k for k, v in d.items() if v} for d in (delta[0], delta[1]))
    assert first == second  # the second prompt of the pair went where its prefix was cached
    (a_rep,) = first
    assert hits[2][a_rep] - hits[1][a_rep] >= 256  # its shared blocks came from that replica's cache
    (b_rep,) = {k for k, v in delta[3].items() if v}
    assert {k for k, v in delta[2].items() if v} == {b_rep}
    assert hits[4][b_rep] - hits[3][b_rep] >= 256


@pytest.mark.engine
def test_real_router_dead_replica_is_named_and_nothing_is_left(router_real):
    r = router_real
    assert r["dead_member"] == ("replica1", -9) and r["timings"]["noticed_s"] <= 5
    assert r["groups_after_kill"] == {"replica0": [], "replica1": [], "router": []}  # by the watcher
    assert r["drain"]["dead_member"] == ["replica1", -9] and r["drain"]["group_gone"] is True
    assert len(r["groups"]["replica0"]) >= 1 and r["groups"]["router"]
    assert r["groups_after"] == {"replica0": [], "replica1": [], "router": []}
    assert not any(r["pids_after"].values())


# -- SGLang's P/D: commands, the connector check, the real PD router with stand-in workers -----------
def test_sglang_pd_commands():
    from inferlab.engines.sglang import SGLang

    eng = SGLang(env="/env", catalog={"python": "python"})
    ports = {"prefill": 30000, "decode": 30001, "router": 8000, "prometheus": 29000, "bootstrap": 8998}
    spec = {"kind": "pd", "connector": "nixl", "decode": {"max_num_seqs": 64}}
    pl = layouts.pd_plan(
        eng, "/m", {"max_model_len": 8192}, spec, "/tmp/lay", {"PATH": "/bin"}, ports, None, ["0", "1"]
    )
    assert set(pl) == {"prefill", "decode", "router"}
    for m, port, dev in (("prefill", 30000, "0"), ("decode", 30001, "1")):
        c = pl[m].cmd
        assert c[:3] == ["/env/bin/python", "-m", "sglang.launch_server"] and c[c.index("--port") + 1] == str(port)
        assert c[c.index("--disaggregation-mode") + 1] == m and "--enable-metrics" in c
        assert c[c.index("--disaggregation-transfer-backend") + 1] == "nixl"
        assert c[c.index("--disaggregation-bootstrap-port") + 1] == "8998"
        assert c[c.index("--context-length") + 1] == "8192"  # vLLM's name translated
        assert pl[m].env["CUDA_VISIBLE_DEVICES"] == dev and pl[m].env["UCX_NET_DEVICES"] == "all"
        assert {k: pl[m].env[k] for k in layouts.LAYOUT_ENV} == layouts.LAYOUT_ENV
    assert pl["decode"].cmd[pl["decode"].cmd.index("--max-running-requests") + 1] == "64"
    assert "--max-running-requests" not in pl["prefill"].cmd
    r = pl["router"].cmd
    i = r.index("--prefill")
    assert r[1:4] == ["-m", "sglang_router.launch_router", "--pd-disaggregation"] and "--mini-lb" not in r
    assert r[i + 1 : i + 3] == ["http://127.0.0.1:30000", "8998"]
    assert r[r.index("--decode") + 1] == "http://127.0.0.1:30001" and r[r.index("--port") + 1] == "8000"
    assert pl["router"].health_path == "/readiness"
    with pytest.raises(layouts.LayoutError) as e:  # vLLM's connector names are not SGLang's backends
        layouts.pd_plan(eng, "/m", {}, {"kind": "pd", "connector": "NixlConnector"}, "/t", {}, ports)
    assert e.value.reason == "unsupported" and "nixl, mooncake" in e.value.detail


def test_pd_connector_is_checked_against_the_engine_at_load(catalog):
    import yaml

    from inferlab import config, matrix
    from inferlab.errors import ConfigError

    f = catalog / "weeks" / "week16.yaml"
    w = yaml.safe_load(f.read_text())
    w["experiments"]["pd_sglang"]["layout"]["connector"] = "NixlConnector"
    f.write_text(yaml.safe_dump(w))
    cfg = config.load(str(catalog / "config.yaml"), base_dir=catalog.parent)
    with pytest.raises(ConfigError) as e:
        matrix.expand_week(cfg, "week16")
    msg = str(e.value)
    assert str(f) in msg and "experiments.pd_sglang.layout.connector" in msg and "nixl, mooncake" in msg


class ToySGLangPD(ToyEngine):
    """SGLang's P/D servers cannot run without a GPU: tests/helpers/sglang_pd_standin.py stands in
    for each (health, a role's /metrics, POSTs); the PD router is the real sglang_router."""

    name, metrics_dialect, health_path, metrics_path = "sglang", "sglang", "/health", "/metrics"
    python = sys.executable

    def serve_command(self, model_path, host, port, args):
        role = args["disaggregation_mode"]
        cmd = [sys.executable, str(SGLANG_PD_STANDIN), "--port", str(port), "--role", role]
        return cmd + ["--pidfile", str(self.folder / f"{role}.worker")]


def test_sglang_pd_with_the_real_pd_router(tmp_path):
    router_python()
    eng = ToySGLangPD(tmp_path)
    spec = {"kind": "pd", "connector": "nixl"}
    # without the nixl package in the engine's Python: typed, before anything starts
    with pytest.raises(layouts.LayoutError) as e:
        layouts.start("pd", eng, "/m", {}, tmp_path / "none", dict(os.environ), 30, layout_spec=spec)
    assert e.value.reason == "unsupported" and "nixl package is not installed" in e.value.detail
    assert not list((tmp_path / "none").glob("*.log"))
    # a stand-in nixl package (the real one is CUDA-only) on the engine's path
    (tmp_path / "pkgs" / "nixl").mkdir(parents=True)
    (tmp_path / "pkgs" / "nixl" / "__init__.py").write_text("")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "pkgs")}
    lay = layouts.start("pd", eng, "/m", {}, tmp_path / "lay", env, 60, layout_spec=spec)
    try:
        assert set(lay.members) == {"prefill", "decode", "router"} and lay.base_url == lay.members["router"].base_url
        assert lay.alive() and lay.connector == "nixl" and lay.counters_member == "decode"
        _, _, raw = request(lay.base_url + "/workers")
        kinds = {w["url"]: (w["worker_type"], w.get("bootstrap_port")) for w in json.loads(raw)["workers"]}
        boot = int(lay.commands["router"][lay.commands["router"].index("--prefill") + 2])  # the prefill's bootstrap
        assert kinds == {
            lay.members["prefill"].base_url: ("prefill", boot),
            lay.members["decode"].base_url: ("decode", None),
        }
        # /metrics through the fan-out: both servers, labelled; the cell's counters are the decode server's
        from inferlab import scrape

        m = scrape.scrape(lay.control_url)
        assert m.total("sglang:num_requests_total") == 3.0
        assert lay.counter_scrape(m).total("sglang:num_requests_total") == 2.0
        st, _, body = request(lay.control_url + "/flush_cache", {}, method="POST")
        assert st == 200 and json.loads(body) == {"prefill": 200, "decode": 200}
        pgids = [mm.proc.pid for mm in lay.members.values()]
        # the decode server dies: named within seconds, the prefill server and the router torn down
        os.killpg(lay.members["decode"].proc.pid, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while lay.alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert lay.dead_member() == ("decode", -9)
    finally:
        drain = lay.stop()
    assert drain["dead_member"] == ["decode", -9]
    assert drain["group_gone"] is True and not any(group_members(g) for g in pgids)
    assert not any(pid_alive(w) for w in eng.workers())

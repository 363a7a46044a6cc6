"""A disaggregated prefill/decode (P/D) proxy: the one URL a load client sees in front of a prefill
server and a decode server. Standard library only (the workflow environment has no aiohttp).

For each ``POST /v1/completions`` or ``/v1/chat/completions``:

1. the request goes to the prefill server with ``max_tokens=1`` (``max_completion_tokens=1`` too
   where the client set it), ``stream: false``, no ``stream_options``, no ``min_tokens``: the prefill
   server computes the prompt's KV cache and hands it over through the KV connector;
2. the original request goes to the decode server, and its response is relayed to the client:
   whole, or as server-sent events chunk by chunk when ``stream: true`` (what ``vllm bench serve``
   sends), so the client's TTFT and inter-token latencies are the decode server's as seen
   through the proxy.

``--connector NixlConnector`` adds what vLLM's NIXL handshake needs (as vLLM's own
``toy_proxy_server.py`` does): the prefill request carries ``kv_transfer_params`` with
``do_remote_decode: true``, and the prefill response's ``kv_transfer_params`` (engine id, block ids,
host, port) go into the decode request. With ``ExampleConnector`` the KV travels through the
shared storage folder and the two requests only need the same prompt.

A backend that answers an error status, or cannot be reached, makes the proxy answer ``502`` with
the backend's name, status and message. ``GET /health`` is 200 only when both backends' health
endpoints are. ``GET /metrics`` relays the decode server's metrics (``/prefill/metrics`` the
prefill server's). ``POST /reset_prefix_cache`` (and the profiler's ``/start_profile``,
``/stop_profile``) go to both servers; a reset also empties ``--kv-dir`` (the ExampleConnector's
shared storage), so the next cell finds no KV of the previous one anywhere.

Run: ``python -m inferlab.pd_proxy --prefill URL --decode URL --port P [--connector C] [--kv-dir D]``.
"""

from __future__ import annotations

import argparse
import http.client
import http.server
import json
import shutil
import sys
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

COMPLETIONS = ("/v1/completions", "/v1/chat/completions")
FANOUT = ("/reset_prefix_cache", "/start_profile", "/stop_profile")
RELAY_GET = {"/metrics": "decode", "/prefill/metrics": "prefill", "/v1/models": "decode", "/version": "decode"}
NIXL_PREFILL_PARAMS = {
    "do_remote_decode": True,
    "do_remote_prefill": False,
    "remote_engine_id": None,
    "remote_block_ids": None,
    "remote_host": None,
    "remote_port": None,
}
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "te", "trailer", "upgrade"}


class BackendError(Exception):
    """A backend answered an error status or could not be reached."""

    def __init__(self, backend: str, status: int | None, message: str):
        super().__init__(f"{backend} server {'unreachable' if status is None else f'returned {status}'}: {message}")
        self.backend = backend
        self.status = status
        self.message = message


def backend_message(body: bytes) -> str:
    """The error message of a backend's error body (OpenAI style or vLLM's), else the raw text."""
    text = body.decode(errors="replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        return text[:2000]
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])[:2000]
        for k in ("message", "detail", "error"):
            if data.get(k):
                return str(data[k])[:2000]
    return text[:2000]


def prefill_request(req: dict, connector: str) -> dict:
    """The request the prefill server gets: one token, not streamed."""
    p = dict(req)
    p["stream"] = False
    p["max_tokens"] = 1
    if "max_completion_tokens" in p:
        p["max_completion_tokens"] = 1
    for k in ("stream_options", "min_tokens", "min_completion_tokens"):
        p.pop(k, None)
    if connector == "NixlConnector":
        p["kv_transfer_params"] = dict(NIXL_PREFILL_PARAMS)
    return p


class Backend:
    def __init__(self, name: str, url: str, timeout: float):
        u = urlsplit(url)
        if u.scheme != "http" or not u.hostname:
            raise ValueError(f"{name}: not an http URL: {url!r}")
        self.name = name
        self.url = url.rstrip("/")
        self.host = u.hostname
        self.port = u.port or 80
        self.timeout = timeout

    def open(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None, timeout=None):
        """(connection, response); the caller reads the response and closes the connection."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout or self.timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            return conn, conn.getresponse()
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            raise BackendError(self.name, None, f"{e.__class__.__name__}: {e}") from e

    def call(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None, timeout=None):
        """(status, headers, body) of a whole request."""
        conn, resp = self.open(method, path, body, headers, timeout)
        try:
            return resp.status, resp.getheaders(), resp.read()
        except (OSError, http.client.HTTPException) as e:
            raise BackendError(self.name, None, f"{e.__class__.__name__}: {e}") from e
        finally:
            conn.close()


class ProxyServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024  # a request-rate-inf client opens hundreds of connections at once

    def __init__(self, addr, prefill: str, decode: str, connector: str, kv_dir=None, timeout: float = 3600.0):
        self.prefill = Backend("prefill", prefill, timeout)
        self.decode = Backend("decode", decode, timeout)
        self.connector = connector
        self.kv_dir = Path(kv_dir) if kv_dir else None
        self.stats = {"requests": 0, "ok": 0, "prefill_errors": 0, "decode_errors": 0, "client_gone": 0}
        self.lock = threading.Lock()
        super().__init__(addr, Handler)

    def count(self, key: str) -> None:
        with self.lock:
            self.stats[key] += 1


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ProxyServer

    def log_message(self, fmt, *args):  # one line per error only (see _fail); no access log
        pass

    # -- replies ---------------------------------------------------------------------------------
    def _send(self, status: int, body: bytes, content_type: str = "application/json", headers=()) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, obj) -> None:
        self._send(status, json.dumps(obj).encode())

    def _fail(self, e: BackendError) -> None:
        print(f"pd_proxy: {self.command} {self.path}: {e}", file=sys.stderr, flush=True)
        self._json(
            502,
            {
                "error": {
                    "message": str(e),
                    "type": "BadGateway",
                    "code": 502,
                    "backend": e.backend,
                    "backend_status": e.status,
                    "backend_message": e.message,
                }
            },
        )

    # -- GET -------------------------------------------------------------------------------------
    def do_GET(self):
        path = urlsplit(self.path).path
        srv = self.server
        if path == "/health":
            out = {}
            for b in (srv.prefill, srv.decode):
                try:
                    out[b.name] = b.call("GET", "/health", timeout=5.0)[0]
                except BackendError:
                    out[b.name] = None
            ok = all(v == 200 for v in out.values())
            self._json(200 if ok else 503, {"status": "ok" if ok else "unavailable", **out})
        elif path in RELAY_GET:
            b = srv.prefill if RELAY_GET[path] == "prefill" else srv.decode
            target = "/metrics" if path.endswith("/metrics") else path
            try:
                status, headers, body = b.call("GET", target, timeout=30.0)
            except BackendError as e:
                return self._fail(e)
            ctype = next((v for k, v in headers if k.lower() == "content-type"), "text/plain")
            self._send(status, body, ctype)
        elif path == "/proxy/stats":
            with srv.lock:
                self._json(200, {**srv.stats, "connector": srv.connector})
        else:
            self._json(404, {"error": {"message": f"no route {path}", "code": 404}})

    # -- POST ------------------------------------------------------------------------------------
    def _body(self) -> bytes | None:
        n = self.headers.get("Content-Length")
        if n is None:
            self._json(411, {"error": {"message": "Content-Length required", "code": 411}})
            return None
        return self.rfile.read(int(n))

    def do_POST(self):
        path = urlsplit(self.path).path
        body = self._body()
        if body is None:
            return
        if path in COMPLETIONS:
            self._completions(path, body)
        elif path in FANOUT:
            self._fanout(path, body)
        else:
            self._json(404, {"error": {"message": f"no route {path}", "code": 404}})

    def _fwd_headers(self, request_id: str) -> dict:
        h = {"Content-Type": "application/json", "X-Request-Id": request_id}
        if self.headers.get("Authorization"):
            h["Authorization"] = self.headers["Authorization"]
        return h

    def _completions(self, path: str, body: bytes) -> None:
        srv = self.server
        srv.count("requests")
        try:
            req = json.loads(body)
            if not isinstance(req, dict):
                raise ValueError("the body is not a JSON object")
        except ValueError as e:
            return self._json(400, {"error": {"message": f"bad request body: {e}", "code": 400}})
        rid = self.headers.get("X-Request-Id") or str(uuid.uuid4())
        headers = self._fwd_headers(rid)
        # 1. prefill: one token, not streamed
        t0 = time.monotonic()
        try:
            status, _, pbody = srv.prefill.call(
                "POST", path, json.dumps(prefill_request(req, srv.connector)).encode(), headers
            )
            if not 200 <= status < 300:
                raise BackendError("prefill", status, backend_message(pbody))
        except BackendError as e:
            srv.count("prefill_errors")
            return self._fail(e)
        prefill_ms = round((time.monotonic() - t0) * 1e3, 3)
        try:
            params = json.loads(pbody).get("kv_transfer_params")
        except (ValueError, AttributeError):
            params = None
        dbody = json.dumps({**req, "kv_transfer_params": params}).encode() if params else body
        # 2. decode: the original request, relayed as it comes
        try:
            conn, resp = srv.decode.open("POST", path, dbody, headers)
        except BackendError as e:
            srv.count("decode_errors")
            return self._fail(e)
        try:
            if not 200 <= resp.status < 300:
                try:
                    msg = backend_message(resp.read())
                except (OSError, http.client.HTTPException) as e:
                    msg = f"{e.__class__.__name__}: {e}"
                srv.count("decode_errors")
                return self._fail(BackendError("decode", resp.status, msg))
            extra = [("X-Request-Id", rid), ("X-Inferlab-Prefill-Ms", str(prefill_ms))]
            ctype = resp.getheader("Content-Type", "application/json")
            if "text/event-stream" in ctype or req.get("stream"):
                self._relay_stream(resp, ctype, extra)
            else:
                try:
                    data = resp.read()
                except (OSError, http.client.HTTPException) as e:
                    srv.count("decode_errors")
                    return self._fail(BackendError("decode", None, f"{e.__class__.__name__}: {e}"))
                self._send(resp.status, data, ctype, extra)
                srv.count("ok")
        finally:
            conn.close()

    def _relay_stream(self, resp, ctype: str, extra) -> None:
        """Server-sent events, chunk by chunk as the decode server writes them."""
        srv = self.server
        self.send_response(resp.status)
        self.send_header("Content-Type", ctype)
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        try:
            while True:
                try:
                    chunk = resp.read1(65536)
                except (OSError, http.client.HTTPException) as e:
                    # headers are out: end the stream with an error event the client can see
                    srv.count("decode_errors")
                    err = {"error": {"message": f"decode server stream broke: {e}", "code": 502}}
                    chunk = f"data: {json.dumps(err)}\n\n".encode()
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    break
                if not chunk:
                    srv.count("ok")
                    break
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            # the client went away: closing the decode connection aborts the request there
            srv.count("client_gone")
            self.close_connection = True

    def _fanout(self, path: str, body: bytes) -> None:
        srv = self.server
        out, worst = {}, 200
        for b in (srv.prefill, srv.decode):
            try:
                status, _, data = b.call("POST", self.path, body, {"Content-Type": "application/json"}, timeout=120.0)
            except BackendError as e:
                return self._fail(e)
            out[b.name] = {"status": status, "body": data.decode(errors="replace")[:500]}
            if not 200 <= status < 300 and worst == 200:
                worst = status  # e.g. 404 from a vLLM without VLLM_SERVER_DEV_MODE: the same answer
        if path == "/reset_prefix_cache" and worst == 200 and srv.kv_dir is not None:
            out["kv_dir_cleared"] = clear_dir(srv.kv_dir)
        self._json(worst, out)


def clear_dir(d: Path) -> int:
    """Remove what is inside ``d`` (not ``d``); the number of entries removed."""
    n = 0
    if not d.is_dir():
        return 0
    for p in d.iterdir():
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        n += 1
    return n


def serve(host: str, port: int, prefill: str, decode: str, connector: str, kv_dir=None, timeout=3600.0):
    """A running proxy (``serve_forever`` in a daemon thread); ``shutdown()`` stops it. For tests."""
    srv = ProxyServer((host, port), prefill, decode, connector, kv_dir, timeout)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prefill", required=True, help="the prefill server's base URL (http://host:port)")
    ap.add_argument("--decode", required=True, help="the decode server's base URL")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--connector", default="ExampleConnector", help="the KV connector of the two servers")
    ap.add_argument("--kv-dir", default=None, help="shared KV storage emptied on /reset_prefix_cache")
    ap.add_argument("--timeout", type=float, default=3600.0, help="per backend request (s)")
    a = ap.parse_args(argv)
    try:
        srv = ProxyServer((a.host, a.port), a.prefill, a.decode, a.connector, a.kv_dir, a.timeout)
    except OSError as e:
        print(f"pd_proxy: cannot listen on {a.host}:{a.port}: {e}", file=sys.stderr, flush=True)
        return 1
    print(
        f"pd_proxy: listening on http://{a.host}:{a.port}; prefill {a.prefill}, decode {a.decode}, "
        f"connector {a.connector}, kv_dir {a.kv_dir}",
        flush=True,
    )
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())

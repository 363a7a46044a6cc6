"""A stand-in for one SGLang P/D server (``sglang.launch_server --disaggregation-mode ROLE``), which
cannot run without a GPU, in layout tests with the real sglang_router PD router: /health 200 once
--ready-after seconds passed (503 before), /metrics a Prometheus counter
``sglang:num_requests_total{engine_type="ROLE"}`` (1 on prefill, 2 on decode), any POST 200
(``/flush_cache``); it forks a worker child, as SGLang's scheduler processes are, into --pidfile."""

import argparse
import http.server
import subprocess
import sys
import time

ap = argparse.ArgumentParser()
ap.add_argument("--port", type=int, required=True)
ap.add_argument("--role", required=True)
ap.add_argument("--ready-after", type=float, default=0.5)
ap.add_argument("--pidfile", required=True)
a = ap.parse_args()
t0 = time.monotonic()
worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(100000)"])
with open(a.pidfile, "w") as f:
    f.write(f"{worker.pid}\n")


class H(http.server.BaseHTTPRequestHandler):
    def _reply(self, status: int, body: bytes):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if time.monotonic() - t0 < a.ready_after:
            return self._reply(503, b"loading")
        if self.path == "/metrics":
            n = {"prefill": 1, "decode": 2}.get(a.role, 0)
            text = (
                f'# TYPE sglang:num_requests_total counter\nsglang:num_requests_total{{engine_type="{a.role}"}} {n}.0\n'
            )
            return self._reply(200, text.encode())
        return self._reply(200 if self.path == "/health" else 404, b"ok")

    def do_POST(self):
        self._reply(200, b"{}")

    def log_message(self, *args):
        pass


http.server.HTTPServer(("127.0.0.1", a.port), H).serve_forever()

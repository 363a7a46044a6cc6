"""A small real HTTP server standing in for an engine in lifecycle tests: it forks a worker child
(as vLLM forks EngineCore), answers /health 503 until --ready-after seconds have passed, then 200;
--exit-after N makes it die N seconds after start (a server that crashes while loading)."""

import argparse
import http.server
import subprocess
import sys
import threading
import time

ap = argparse.ArgumentParser()
ap.add_argument("--port", type=int, required=True)
ap.add_argument("--ready-after", type=float, default=0.5)
ap.add_argument("--exit-after", type=float, default=None)
ap.add_argument("--pidfile", default=None)
a = ap.parse_args()
t0 = time.monotonic()
worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(100000)"])
if a.pidfile:
    with open(a.pidfile, "w") as f:
        f.write(f"{worker.pid}\n")


class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        ok = self.path == "/health" and time.monotonic() - t0 >= a.ready_after
        self.send_response(200 if ok else 503)
        self.end_headers()
        self.wfile.write(b"ok" if ok else b"loading")

    def log_message(self, *args):
        pass


if a.exit_after is not None:
    threading.Timer(
        a.exit_after, lambda: (print("fatal: engine failed to load", flush=True), __import__("os")._exit(3))
    ).start()
http.server.HTTPServer(("127.0.0.1", a.port), H).serve_forever()

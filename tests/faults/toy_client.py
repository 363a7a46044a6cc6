"""A real load client standing in for ``vllm bench serve`` in fault tests: it GETs the server's
/health for a while and writes a vLLM-shaped result file, or fails in the named way (--mode)."""

import argparse
import json
import os
import signal
import time
import urllib.request

ap = argparse.ArgumentParser()
ap.add_argument("--base-url", required=True)
ap.add_argument("--out", required=True)
ap.add_argument("--mode", default="ok")
ap.add_argument("--seconds", type=float, default=1.0)
ap.add_argument("--server-pidfile", default=None)
a = ap.parse_args()

GOOD = {
    "completed": 8,
    "failed": 0,
    "duration": 1.0,
    "request_throughput": 8.0,
    "output_throughput": 128.0,
    "total_token_throughput": 640.0,
    "total_input_tokens": 512,
    "total_output_tokens": 128,
    **{f"{s}_{m}_ms": 10.0 for m in ("ttft", "tpot", "itl", "e2el") for s in ("mean", "median", "p99")},
}


def load(seconds):
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        try:
            urllib.request.urlopen(a.base_url + "/health", timeout=2).read()
        except OSError:
            pass
        time.sleep(0.1)


m = a.mode
if m == "hang":
    time.sleep(100000)
if m == "killed":
    os.kill(os.getpid(), signal.SIGKILL)
if m in ("term_server", "kill_server"):
    load(0.5)
    pid = int(open(a.server_pidfile).read())
    os.kill(pid, signal.SIGTERM if m == "term_server" else signal.SIGKILL)
load(a.seconds)
text = json.dumps(GOOD)
if m == "all_fail":
    text = json.dumps({**GOOD, "completed": 0, "failed": 8})
elif m == "corrupt":
    text = "\x00\x07{garbage"
elif m == "truncated":
    text = text[: len(text) // 2]
elif m == "wrong_type":
    text = "Infinity"
with open(a.out, "w") as f:
    f.write(text)

"""A real engine adapter over the toy server (tests/helpers/toy_server.py) and toy client: the
session, server and teardown code paths run for real, without the cost of starting vLLM. The
result files are read by vLLM's own parser, so a corrupt output meets the real parse path."""

from __future__ import annotations

import sys
from pathlib import Path

from inferlab.engines import serving
from inferlab.engines.base import Engine
from inferlab.engines.vllm import VLLM

HERE = Path(__file__).parent
TOY_SERVER = HERE.parent / "helpers" / "toy_server.py"
TOY_CLIENT = HERE / "toy_client.py"


class ToyEngine(Engine):
    """``server``: extra toy server flags (e.g. ``--ready-after 600``); ``client``: the client's
    ``--mode``; ``pidfile``: where the server's leader writes its pid (for faults that kill it);
    ``wrap``: a command prefix (e.g. ``prlimit --as=...``)."""

    name = "toy"
    serving_client = "toy client"

    def __init__(self, workdir: Path, server=(), client="ok", seconds=1.0, wrap=(), port=None):
        super().__init__(None, {"python": sys.executable})
        self.workdir = Path(workdir)
        self.server_extra = list(server)
        self.mode = client
        self.seconds = seconds
        self.wrap = list(wrap)
        self.fixed_port = port  # the first start binds this port (a port someone else holds)
        self.pidfile = self.workdir / "server.pid"

    def versions(self):
        return {"toy": "1"}

    def serve_command(self, model_path, host, port, server_args):
        if self.fixed_port is not None:
            port, self.fixed_port = self.fixed_port, None
        # the leader writes its own pid, then becomes the toy server (same pid: exec)
        boot = (
            "import os, sys; open(sys.argv[1], 'w').write(str(os.getpid())); "
            "os.execv(sys.executable, [sys.executable] + sys.argv[2:])"
        )
        toy = [str(TOY_SERVER), "--port", str(port), *self.server_extra]
        return [*self.wrap, sys.executable, "-c", boot, str(self.pidfile), *toy]

    def client_command(self, base_url, model_path, params, dataset_path, out_file, warmups=0):
        return [
            sys.executable,
            str(TOY_CLIENT),
            "--base-url",
            base_url,
            "--out",
            str(out_file),
            "--mode",
            str(params.get("mode", self.mode)),
            "--seconds",
            str(params.get("seconds", self.seconds)),
            "--server-pidfile",
            str(self.pidfile),
        ]

    def parse(self, tool, raw_path, params):
        return VLLM(None, {"python": sys.executable}).parse("bench_serving", raw_path, params)

    def metric_names(self, tool):
        return serving.metric_names()

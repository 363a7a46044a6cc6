"""Two workflow runs or two users fetching the same model or data set into a shared cache at once
(issue 18): they take turns on a lock; the second finds the first's complete copy and fetches
nothing; no partial or corrupt file is left under the final name."""

from __future__ import annotations

import hashlib
import http.server
import os
import subprocess
import sys
import threading
import time
from functools import partial

from conftest import ROOT

from inferlab import download

PY = [sys.executable, "-c"]
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": "1"}


def test_two_fetches_of_one_dataset_at_once(tmp_path):
    root = tmp_path / "srv"
    root.mkdir()
    body = os.urandom(3 << 20)
    (root / "d.json").write_bytes(body)
    hits = []

    class Slow(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            time.sleep(1.5)  # a slow download: the two fetches overlap
            super().do_GET()

        def log_message(self, *a):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Slow, directory=str(root)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/d.json"
        sha = hashlib.sha256(body).hexdigest()
        dest = tmp_path / "cache" / "d.json"
        code = f"from inferlab import download; download.fetch_dataset({url!r}, {sha!r}, {str(dest)!r})"
        procs = [subprocess.Popen([*PY, code], env=ENV) for _ in range(2)]
        assert [p.wait(timeout=60) for p in procs] == [0, 0]
    finally:
        httpd.shutdown()
    assert hits == ["/d.json"]  # fetched once: the second run waited, then found it complete
    assert download.sha256_file(dest) == sha
    assert sorted(p.name for p in dest.parent.iterdir()) == ["d.json"]  # no partial or lock file left


def test_a_second_user_waits_for_the_model_being_fetched(tmp_path):
    """User A is fetching a model (holds the cache's lock, files still arriving); user B's
    fetch_model waits, then finds A's complete copy at the pinned revision and downloads nothing
    (HF_HUB_OFFLINE: any download attempt would fail)."""
    dest = tmp_path / "cache" / "models" / "m"
    a = (
        "import time; from pathlib import Path; from inferlab import download\n"
        f"d = Path({str(dest)!r})\n"
        "with download.cache_lock(d):\n"
        "    print('locked', flush=True)\n"
        "    d.mkdir(parents=True); time.sleep(2); (d / 'model.safetensors').write_bytes(b'w' * 1000)\n"
        "    (d / '.inferlab_revision').write_text('org/m@abc123\\n')\n"
    )
    pa = subprocess.Popen([*PY, a], env=ENV, stdout=subprocess.PIPE, text=True)
    assert pa.stdout.readline().strip() == "locked"
    t0 = time.monotonic()
    b = f"from inferlab import download; print(download.fetch_model('org/m', 'abc123', {str(dest)!r}))"
    rb = subprocess.run([*PY, b], env=ENV, capture_output=True, text=True, timeout=60)
    assert pa.wait(timeout=30) == 0
    assert rb.returncode == 0, rb.stderr[-2000:]
    assert time.monotonic() - t0 >= 1.0  # B waited for A's lock
    assert (dest / "model.safetensors").read_bytes() == b"w" * 1000
    assert not dest.with_name(".m.partial").exists()

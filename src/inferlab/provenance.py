"""Provenance of a cell: where, on what, with which versions and which exact command it ran."""

from __future__ import annotations

import datetime as dt
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path

SLURM_VARS = ("SLURM_JOB_ID", "SLURM_JOB_PARTITION", "SLURM_JOB_NODELIST", "SLURM_ARRAY_TASK_ID")


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def git_state(repo: Path | str = ".") -> dict:
    def run(*args):
        r = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=30)
        return r.stdout.strip() if r.returncode == 0 else None

    try:
        commit = run("rev-parse", "HEAD")
        dirty = run("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.TimeoutExpired):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": bool(dirty) if dirty is not None else None}


def gpu_info() -> dict:
    """GPU name/driver/memory via NVML where it sees one; otherwise says it is unavailable."""
    try:
        import pynvml
    except ImportError:
        return {"nvml": "unavailable: nvidia-ml-py not installed"}
    try:
        pynvml.nvmlInit()
    except Exception as e:  # no driver / no GPU: the CPU default
        return {"nvml": f"unavailable: {e.__class__.__name__}: {e}"}
    try:
        out = {"nvml": "ok", "driver": _s(pynvml.nvmlSystemGetDriverVersion()), "devices": []}
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        out["cuda_visible_devices"] = visible
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            mem = pynvml.nvmlDeviceGetMemoryInfo(h)
            out["devices"].append(
                {
                    "index": i,
                    "name": _s(pynvml.nvmlDeviceGetName(h)),
                    "uuid": _s(pynvml.nvmlDeviceGetUUID(h)),
                    "memory_total_mib": mem.total // 2**20,
                }
            )
        return out
    finally:
        pynvml.nvmlShutdown()


def _s(v):
    return v.decode() if isinstance(v, bytes) else v


def collect(
    workflow_dir: Path | str, engine_versions: dict, command: list[str] | None, extra: dict | None = None
) -> dict:
    return {
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "slurm": {k: os.environ.get(k) for k in SLURM_VARS if os.environ.get(k)},
        "workflow_git": git_state(workflow_dir),
        "engine_versions": engine_versions,
        "gpu": gpu_info(),
        "command": command,
        **(extra or {}),
    }

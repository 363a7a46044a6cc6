"""GPU telemetry with NVML, beside every GPU cell (replaces the course's hand-run ``nvidia-smi dmon``).

A :class:`Sampler` thread reads utilization, memory used, power, SM and memory clocks of the
cell's GPUs at ``hz`` (>= 1) into ``telemetry.csv`` (one row per GPU and tick, column ``gpu`` = the
NVML index), and :func:`summarize` turns the samples of a time window into per-cell numbers
(mean/max utilization, energy in joules, joules per output token). A layout whose members hold
different GPUs (P/D: the prefill server's and the decode server's) is sampled on all of them, and
``summarize(..., pools={"prefill": [0], "decode": [1]})`` adds the same numbers per pool. Energy comes from NVML's energy counter where the GPU has one (Volta and newer), else
from integrating the power samples. Where NVML is absent (the CPU default) the summary says
``unavailable`` with the reason, and nothing fails.
"""

from __future__ import annotations

import csv
import os
import threading
import time
from pathlib import Path

FIELDS = (
    "t",
    "gpu_util_pct",
    "mem_util_pct",
    "mem_used_mib",
    "power_w",
    "sm_clock_mhz",
    "mem_clock_mhz",
    "energy_mj",
    "gpu",
)
#: the numbers :func:`summarize` gives per pool of GPUs (``<number>_<pool>`` in a week's Parquet)
POOL_KEYS = ("gpu_util_mean", "gpu_util_max", "mem_used_max_mib", "energy_j")


def _nvml_index(pynvml, dev: str, n: int) -> int | None:
    """The NVML index of one CUDA_VISIBLE_DEVICES entry: an index (None beyond the n GPUs), or a
    UUID (GPU-xxxx) NVML lists (None if it lists none such)."""
    if dev.isdigit():
        return int(dev) if int(dev) < n else None
    for i in range(n):
        try:
            u = pynvml.nvmlDeviceGetUUID(pynvml.nvmlDeviceGetHandleByIndex(i))
            u = u.decode() if isinstance(u, bytes) else u
        except Exception:
            continue
        if u.startswith(dev) or dev.startswith(u):
            return i
    return None


def visible_gpu_indices() -> list[int]:
    """NVML indices of every GPU of the job: Slurm and CUDA name them in CUDA_VISIBLE_DEVICES, by
    index or by UUID (every GPU NVML sees when unset; a first entry NVML does not list, e.g. a MIG
    id, stands for GPU 0); [] where NVML sees no GPU."""
    try:
        import pynvml

        pynvml.nvmlInit()
        n = pynvml.nvmlDeviceGetCount()
    except Exception:
        return []
    if n == 0:
        return []
    vis = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    if not vis:
        return list(range(n))
    out = [i for i in (_nvml_index(pynvml, v, n) for v in vis) if i is not None]
    if not out and not vis[0].isdigit():
        out = [0]
    return out


def visible_gpu_index() -> int | None:
    """NVML index of the job's first GPU (:func:`visible_gpu_indices`); None where NVML sees none."""
    idx = visible_gpu_indices()
    return idx[0] if idx else None


class Sampler:
    """Samples the job's GPU(s) in a thread. ``index``: one NVML index, a list of them, or None (no
    GPU). ``status`` is "ok" or "unavailable: <why>"."""

    def __init__(self, out_csv: Path, index: int | list[int] | None, hz: float = 2.0):
        self.out_csv = Path(out_csv)
        self.period = 1.0 / max(1.0, hz)
        self.indices = [] if index is None else ([index] if isinstance(index, int) else list(index))
        self.index = self.indices[0] if self.indices else None
        self.samples: list[dict] = []
        self._stop = threading.Event()
        self._thread = None
        self.status = "unavailable: no GPU seen by NVML" if not self.indices else "ok"
        self._h = {}
        if self.indices:
            try:
                import pynvml

                pynvml.nvmlInit()
                self._h = {i: pynvml.nvmlDeviceGetHandleByIndex(i) for i in self.indices}
                self._nv = pynvml
            except Exception as e:
                self._h = {}
                self.status = f"unavailable: {e.__class__.__name__}: {e}"

    def _read(self, index: int) -> dict:
        nv, h = self._nv, self._h[index]
        row = {"t": time.time(), "gpu": index}

        def get(key, fn):
            try:
                row[key] = fn()
            except Exception:
                row[key] = None

        def util():
            u = nv.nvmlDeviceGetUtilizationRates(h)
            row["mem_util_pct"] = u.memory
            return u.gpu

        get("gpu_util_pct", util)
        row.setdefault("mem_util_pct", None)
        get("mem_used_mib", lambda: nv.nvmlDeviceGetMemoryInfo(h).used / 2**20)
        get("power_w", lambda: nv.nvmlDeviceGetPowerUsage(h) / 1000.0)
        get("sm_clock_mhz", lambda: nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM))
        get("mem_clock_mhz", lambda: nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_MEM))
        get("energy_mj", lambda: nv.nvmlDeviceGetTotalEnergyConsumption(h))
        return row

    def _loop(self):
        self.out_csv.parent.mkdir(parents=True, exist_ok=True)
        with open(self.out_csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=FIELDS)
            w.writeheader()
            nxt = time.monotonic()
            while not self._stop.is_set():
                for i in self._h:
                    row = self._read(i)
                    self.samples.append(row)
                    w.writerow(row)
                f.flush()
                nxt += self.period
                self._stop.wait(max(0.0, nxt - time.monotonic()))

    def start(self) -> Sampler:
        if self._h:
            self._thread = threading.Thread(target=self._loop, name="nvml-sampler", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def window(self, t0: float, t1: float) -> list[dict]:
        return [s for s in self.samples if t0 <= s["t"] <= t1]


def _energy_j(samples: list[dict]) -> tuple[float | None, str | None]:
    """Energy of one GPU's samples: its NVML energy counter's rise, else integrated power."""
    e = [s for s in samples if s.get("energy_mj") is not None]
    if len(e) >= 2:
        return (e[-1]["energy_mj"] - e[0]["energy_mj"]) / 1000.0, "nvml energy counter"
    p = [s for s in samples if s.get("power_w") is not None]
    if len(p) >= 2:
        return sum(
            (p[i + 1]["t"] - p[i]["t"]) * (p[i]["power_w"] + p[i + 1]["power_w"]) / 2 for i in range(len(p) - 1)
        ), "integrated power samples"
    return None, None


def _by_gpu(samples: list[dict]) -> dict:
    out: dict = {}
    for s in samples:
        out.setdefault(s.get("gpu"), []).append(s)
    return out


def _numbers(samples: list[dict]) -> dict:
    """Utilization, memory, power and energy of samples of one or several GPUs: utilization and
    power averaged over every sample (the GPUs' mean), memory the largest one GPU used, energy and
    power summed over the GPUs."""

    def vals(rows, k):
        return [s[k] for s in rows if s.get(k) is not None]

    util = vals(samples, "gpu_util_pct")
    mem = vals(samples, "mem_used_mib")
    groups = _by_gpu(samples)
    energies = [_energy_j(g) for g in groups.values()]
    power = [_mean(vals(g, "power_w")) for g in groups.values()]
    power = [p for p in power if p is not None]
    energy = sum(e for e, _ in energies) if energies and all(e is not None for e, _ in energies) else None
    sources = sorted({src for _, src in energies if src})
    return {
        "gpu_util_mean": sum(util) / len(util) if util else None,
        "gpu_util_max": max(util) if util else None,
        "mem_used_max_mib": max(mem) if mem else None,
        "power_mean_w": sum(power) if power else None,
        "sm_clock_mean_mhz": _mean(vals(samples, "sm_clock_mhz")),
        "mem_clock_mean_mhz": _mean(vals(samples, "mem_clock_mhz")),
        "energy_j": energy,
        "energy_source": " + ".join(sources) if sources else None,
        "gpus": len(groups),
    }


def summarize(
    samples: list[dict], status: str, output_tokens: float | None, pools: dict[str, list[int]] | None = None
) -> dict:
    """Per-cell telemetry numbers from the samples of the cell's measuring window (all of the
    job's sampled GPUs together), and per pool of GPUs (``pools``: name -> NVML indices, e.g. a
    P/D layout's prefill and decode servers) under ``pools`` with :data:`POOL_KEYS`."""
    out = {"telemetry": status}
    if status != "ok" or not samples:
        if status == "ok":
            out["telemetry"] = "unavailable: no samples in the cell's window"
        return out
    n = _numbers(samples)
    energy = n.pop("energy_j")
    src = n.pop("energy_source")
    gpus = n.pop("gpus")
    out.update(samples=len(samples), **n)
    if src:
        out["energy_source"] = src
    if gpus > 1:
        out["gpus_sampled"] = gpus
    out["energy_j"] = energy
    out["j_per_output_token"] = energy / output_tokens if energy is not None and output_tokens else None
    if pools:
        out["pools"] = {}
        for name, idx in pools.items():
            sub = [s for s in samples if s.get("gpu") in set(idx)]
            if not sub:
                out["pools"][name] = {"telemetry": f"unavailable: no samples of GPU(s) {idx}"}
                continue
            pn = _numbers(sub)
            out["pools"][name] = {k: pn[k] for k in POOL_KEYS} | {"gpus": list(idx)}
    return out


def _mean(v):
    return sum(v) / len(v) if v else None

"""GPU telemetry with NVML, beside every GPU cell (replaces the course's hand-run ``nvidia-smi dmon``).

A :class:`Sampler` thread reads utilization, memory used, power, SM and memory clocks of the
cell's GPU at ``hz`` (>= 1) into ``telemetry.csv``, and :func:`summarize` turns the samples of a
time window into per-cell numbers (mean/max utilization, energy in joules, joules per output
token). Energy comes from NVML's energy counter where the GPU has one (Volta and newer), else
from integrating the power samples. Where NVML is absent (the CPU default) the summary says
``unavailable`` with the reason, and nothing fails.
"""

from __future__ import annotations

import csv
import os
import threading
import time
from pathlib import Path

FIELDS = ("t", "gpu_util_pct", "mem_util_pct", "mem_used_mib", "power_w", "sm_clock_mhz", "mem_clock_mhz", "energy_mj")


def visible_gpu_index() -> int | None:
    """NVML index of the job's (first) GPU: Slurm and CUDA name it in CUDA_VISIBLE_DEVICES, by
    index or by UUID; None where NVML sees no GPU."""
    try:
        import pynvml

        pynvml.nvmlInit()
        n = pynvml.nvmlDeviceGetCount()
    except Exception:
        return None
    if n == 0:
        return None
    vis = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip()
    if not vis:
        return 0
    if vis.isdigit():
        return int(vis) if int(vis) < n else None
    for i in range(n):  # a UUID (GPU-xxxx) or MIG id
        try:
            u = pynvml.nvmlDeviceGetUUID(pynvml.nvmlDeviceGetHandleByIndex(i))
            u = u.decode() if isinstance(u, bytes) else u
            if u.startswith(vis) or vis.startswith(u):
                return i
        except Exception:
            continue
    return 0


class Sampler:
    """Samples one GPU in a thread. ``status`` is "ok" or "unavailable: <why>"."""

    def __init__(self, out_csv: Path, index: int | None, hz: float = 2.0):
        self.out_csv = Path(out_csv)
        self.period = 1.0 / max(1.0, hz)
        self.index = index
        self.samples: list[dict] = []
        self._stop = threading.Event()
        self._thread = None
        self.status = "unavailable: no GPU seen by NVML" if index is None else "ok"
        self._h = None
        if index is not None:
            try:
                import pynvml

                pynvml.nvmlInit()
                self._h = pynvml.nvmlDeviceGetHandleByIndex(index)
                self._nv = pynvml
            except Exception as e:
                self.status = f"unavailable: {e.__class__.__name__}: {e}"

    def _read(self) -> dict:
        nv, h = self._nv, self._h
        row = {"t": time.time()}

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
                row = self._read()
                self.samples.append(row)
                w.writerow(row)
                f.flush()
                nxt += self.period
                self._stop.wait(max(0.0, nxt - time.monotonic()))

    def start(self) -> Sampler:
        if self._h is not None:
            self._thread = threading.Thread(target=self._loop, name="nvml-sampler", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def window(self, t0: float, t1: float) -> list[dict]:
        return [s for s in self.samples if t0 <= s["t"] <= t1]


def summarize(samples: list[dict], status: str, output_tokens: float | None) -> dict:
    """Per-cell telemetry numbers from the samples of the cell's measuring window."""
    out = {"telemetry": status}
    if status != "ok" or not samples:
        if status == "ok":
            out["telemetry"] = "unavailable: no samples in the cell's window"
        return out

    def vals(k):
        return [s[k] for s in samples if s.get(k) is not None]

    util = vals("gpu_util_pct")
    mem = vals("mem_used_mib")
    power = vals("power_w")
    out.update(
        samples=len(samples),
        gpu_util_mean=sum(util) / len(util) if util else None,
        gpu_util_max=max(util) if util else None,
        mem_used_max_mib=max(mem) if mem else None,
        power_mean_w=sum(power) / len(power) if power else None,
        sm_clock_mean_mhz=_mean(vals("sm_clock_mhz")),
        mem_clock_mean_mhz=_mean(vals("mem_clock_mhz")),
    )
    e = [s for s in samples if s.get("energy_mj") is not None]
    if len(e) >= 2:
        energy = (e[-1]["energy_mj"] - e[0]["energy_mj"]) / 1000.0
        out["energy_source"] = "nvml energy counter"
    elif len(power) >= 2:
        ts = [s["t"] for s in samples if s.get("power_w") is not None]
        energy = sum((ts[i + 1] - ts[i]) * (power[i] + power[i + 1]) / 2 for i in range(len(power) - 1))
        out["energy_source"] = "integrated power samples"
    else:
        energy = None
    out["energy_j"] = energy
    out["j_per_output_token"] = energy / output_tokens if energy is not None and output_tokens else None
    return out


def _mean(v):
    return sum(v) / len(v) if v else None

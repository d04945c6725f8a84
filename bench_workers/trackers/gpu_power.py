"""GPU power and energy over the timed window, through NVML.

Power: samples averaged over the window (``gpu_avg_power_w``). Energy: the difference of
NVML's total-energy counter where the GPU has one (Volta and newer), else power integrated
over time (trapezoids). The method used is recorded.
"""

from __future__ import annotations

import contextlib

from .sampler import PeriodicSampler


class NvmlPowerTracker:
    name = "gpu_power"

    def __init__(self, nvml=None, handle=None, reason: str | None = None, sample_interval_s: float = 0.05) -> None:
        self._nvml = nvml
        self._handle = handle
        self._reason = reason
        self._interval = sample_interval_s
        self._result: dict = {"available": False, "reason": reason or "not run", "gpu_avg_power_w": None, "gpu_energy_j": None}

    def _energy_mj(self):
        try:
            return self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)
        except Exception:
            return None

    @contextlib.contextmanager
    def track(self):
        if self._handle is None:
            yield self
            self._result = {"available": False, "reason": self._reason or "no NVML handle", "gpu_avg_power_w": None, "gpu_energy_j": None}
            return
        e0 = self._energy_mj()
        with PeriodicSampler(lambda: self._nvml.nvmlDeviceGetPowerUsage(self._handle) / 1000.0, self._interval) as sampler:
            yield self
        e1 = self._energy_mj()
        samples = sampler.samples
        if not samples:
            self._result = {"available": False, "reason": sampler.error or "no power samples", "gpu_avg_power_w": None, "gpu_energy_j": None}
            return
        watts = [w for _, w in samples]
        duration = samples[-1][0] - samples[0][0]
        if e0 is not None and e1 is not None and e1 >= e0:
            energy, method = (e1 - e0) / 1000.0, "NVML total-energy counter"
        else:
            energy = sum((t1 - t0) * (w0 + w1) / 2 for (t0, w0), (t1, w1) in zip(samples, samples[1:]))
            method = f"NVML power integrated over {len(samples)} samples"
        self._result = {
            "available": True,
            "gpu_avg_power_w": sum(watts) / len(watts),
            "gpu_max_power_w": max(watts),
            "gpu_energy_j": energy,
            "energy_method": method,
            "power_samples": len(watts),
            "window_s": duration,
        }

    def result(self) -> dict:
        return self._result

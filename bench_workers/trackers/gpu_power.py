"""GPU power and energy over the timed window, through NVML.

The window closes only after the device has finished the work queued in it: the tracker
synchronises before its last reading (a GPU runs ahead of the Python loop, and the latency
tracker's own synchronisation comes later, since ExitStack exits in reverse order).

Energy: the difference of NVML's total-energy counter where the GPU has one (Volta and newer),
and average power = ΔE/Δt over the window. Without the counter: power samples averaged, energy
integrated (trapezoids). Samples read NVML's instantaneous power field where the driver has it;
``nvmlDeviceGetPowerUsage`` is a one-second average on Ampere and newer, so a window under
``MIN_WINDOW_S`` measured from it is marked approximate. The methods used are recorded.
"""

from __future__ import annotations

import contextlib
import time

from .sampler import PeriodicSampler

MIN_WINDOW_S = 3.0  # shorter windows of 1-s averaged power readings are approximate
MIN_COUNTER_WINDOW_S = 1.0  # the energy counter is updated every few tens of ms: short windows are coarse


def _unavailable(reason: str) -> dict:
    return {"available": False, "reason": reason, "gpu_avg_power_w": None, "gpu_energy_j": None}


def instant_power_reader(nvml, handle):
    """A callable reading instantaneous power (W) from NVML's field values, or None where the
    driver lacks the field."""
    field = getattr(nvml, "NVML_FI_DEV_POWER_INSTANT", None)
    if field is None or not hasattr(nvml, "nvmlDeviceGetFieldValues"):
        return None

    def read() -> float:
        value = nvml.nvmlDeviceGetFieldValues(handle, [field])[0]
        if getattr(value, "nvmlReturn", 0) != 0:
            raise RuntimeError(f"NVML field {field} returned {value.nvmlReturn}")
        return value.value.uiVal / 1000.0

    try:
        read()
    except Exception:
        return None
    return read


def power_usage_is_averaged(nvml, handle) -> bool:
    """nvmlDeviceGetPowerUsage is a one-second average on Ampere (compute 8.0) and newer."""
    try:
        major, _ = nvml.nvmlDeviceGetCudaComputeCapability(handle)
        return major >= 8
    except Exception:
        return True  # unknown: assume the coarser reading


class NvmlPowerTracker:
    name = "gpu_power"

    def __init__(self, nvml=None, handle=None, reason: str | None = None, sample_interval_s: float = 0.05,
                 sync=None) -> None:
        self._nvml = nvml
        self._handle = handle
        self._reason = reason
        self._interval = sample_interval_s
        self._sync = sync or (lambda: None)
        self._result: dict = _unavailable(reason or "not run")

    def _energy_mj(self):
        try:
            return self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)
        except Exception:
            return None

    def _reader(self):
        """(callable -> watts, description, whether it is a 1-s average)."""
        instant = instant_power_reader(self._nvml, self._handle)
        if instant is not None:
            return instant, "NVML instantaneous power field", False
        averaged = power_usage_is_averaged(self._nvml, self._handle)
        return (lambda: self._nvml.nvmlDeviceGetPowerUsage(self._handle) / 1000.0,
                "nvmlDeviceGetPowerUsage" + (" (a 1-second average on this GPU)" if averaged else ""), averaged)

    @contextlib.contextmanager
    def track(self):
        if self._handle is None:
            yield self
            self._result = _unavailable(self._reason or "no NVML handle")
            return
        read, source, averaged = self._reader()
        e0, t0 = self._energy_mj(), time.perf_counter()
        with PeriodicSampler(read, self._interval) as sampler:
            try:
                yield self
            finally:
                self._sync()  # the queued GPU work belongs to the window
                e1, t1 = self._energy_mj(), time.perf_counter()
        self._result = self._summarise(sampler, e0, e1, t1 - t0, source, averaged)

    def _summarise(self, sampler, e0, e1, window_s: float, source: str, averaged: bool) -> dict:
        samples = sampler.samples
        if not samples:
            return _unavailable(sampler.error or "no power samples")
        watts = [w for _, w in samples]
        counter = e0 is not None and e1 is not None and e1 >= e0 and window_s > 0
        if counter:
            energy = (e1 - e0) / 1000.0
            avg, method = energy / window_s, "ΔE/Δt of NVML's total-energy counter"
            approximate = window_s < MIN_COUNTER_WINDOW_S
        else:
            energy = sum((ta - tb) * (wa + wb) / 2 for (tb, wb), (ta, wa) in zip(samples, samples[1:]))
            avg, method = sum(watts) / len(watts), f"mean of {len(watts)} samples ({source})"
            approximate = averaged and window_s < MIN_WINDOW_S
        return {
            "available": True,
            "gpu_avg_power_w": avg,
            "gpu_max_power_w": max(watts),
            "gpu_energy_j": energy,
            "energy_method": ("NVML total-energy counter" if counter
                              else f"NVML power integrated over {len(samples)} samples"),
            "power_method": method,
            "approximate": (f"window {window_s:.2g}s is shorter than {MIN_COUNTER_WINDOW_S if counter else MIN_WINDOW_S:g}s"
                            if approximate else None),
            "power_samples": len(watts),
            "window_s": window_s,
        }

    def result(self) -> dict:
        return self._result

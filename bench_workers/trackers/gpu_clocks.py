"""GPU clocks over the timed window and why NVML says they were held down.

A GPU that hits its power cap or a thermal limit lowers its clocks mid-measurement: the
latency then describes a throttled device. NVML's clock-event reasons (called throttle reasons
before driver 535) are read with each sample and OR-ed over the window; a thermal or hardware
slowdown makes the cell INVALID with the reasons named, a power cap is reported beside it.
"""

from __future__ import annotations

import contextlib

from .sampler import PeriodicSampler

NVML_CLOCK_SM, NVML_CLOCK_MEM = 1, 2
# NVML's reason bits (nvml.h: nvmlClocksEventReason*), by what they say about the measurement.
POWER_REASONS = {0x4: "software power cap"}
THERMAL_REASONS = {0x8: "hardware slowdown", 0x20: "software thermal slowdown", 0x40: "hardware thermal slowdown",
                   0x80: "hardware power brake"}


def reason_names(mask: int) -> list[str]:
    return [name for bit, name in {**POWER_REASONS, **THERMAL_REASONS}.items() if mask & bit]


def _reasons_call(nvml):
    return getattr(nvml, "nvmlDeviceGetCurrentClocksEventReasons", None) or getattr(
        nvml, "nvmlDeviceGetCurrentClocksThrottleReasons", None)


class GpuClockTracker:
    name = "gpu_clocks"

    def __init__(self, nvml=None, handle=None, reason: str | None = None, sample_interval_s: float = 0.1) -> None:
        self._nvml = nvml
        self._handle = handle
        self._reason = reason
        self._interval = sample_interval_s
        self._result: dict = {"available": False, "reason": reason or "not run"}

    def _sample(self):
        nvml, h = self._nvml, self._handle
        reasons = _reasons_call(nvml)
        return (nvml.nvmlDeviceGetClockInfo(h, NVML_CLOCK_SM), nvml.nvmlDeviceGetClockInfo(h, NVML_CLOCK_MEM),
                int(reasons(h)) if reasons is not None else 0)

    @contextlib.contextmanager
    def track(self):
        if self._handle is None:
            yield self
            self._result = {"available": False, "reason": self._reason or "no NVML handle"}
            return
        with PeriodicSampler(self._sample, self._interval) as sampler:
            yield self
        samples = [v for _, v in sampler.samples]
        if not samples:
            self._result = {"available": False, "reason": sampler.error or "no clock samples"}
            return
        sm = [s for s, _, _ in samples]
        mask = 0
        for _, _, bits in samples:
            mask |= bits
        self._result = {
            "available": True,
            "method": f"NVML SM and memory clocks and throttle reasons, sampled every {self._interval:g} s",
            "gpu_sm_clock_mhz_mean": sum(sm) / len(sm),
            "gpu_sm_clock_mhz_min": min(sm),
            "gpu_mem_clock_mhz_mean": sum(m for _, m, _ in samples) / len(samples),
            "throttle_reasons": reason_names(mask),
            "throttled": bool(mask & sum(THERMAL_REASONS)),
            "power_capped": bool(mask & sum(POWER_REASONS)),
        }

    def result(self) -> dict:
        return self._result

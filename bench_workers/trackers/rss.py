"""Peak resident memory of this process during the cell: the seed's ``cpu_memory_mb_max``.

On Linux the kernel keeps the peak (VmHWM) and lets a process reset it (clear_refs "5"), so
the peak is exact and costs no sampling. Elsewhere a sleeping psutil sampler stands in.
"""

from __future__ import annotations

import contextlib
import re

from ..device.optional import psutil
from .sampler import PeriodicSampler

MB = 1024 * 1024


def _vm_hwm_bytes() -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            m = re.search(r"^VmHWM:\s+(\d+) kB", fh.read(), re.M)
        return int(m.group(1)) * 1024 if m else None
    except OSError:
        return None


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


class PeakRssTracker:
    name = "cpu_memory"

    def __init__(self, sample_interval_s: float = 0.05) -> None:
        self._interval = sample_interval_s
        self._result: dict = {"available": False, "reason": "not run", "cpu_memory_mb_max": None}

    @contextlib.contextmanager
    def track(self):
        if _vm_hwm_bytes() is not None and _reset_hwm():
            yield self
            self._result = {"available": True, "method": "VmHWM (kernel peak RSS, reset per cell)",
                            "cpu_memory_mb_max": _vm_hwm_bytes() / MB}
            return
        ps = psutil()
        if ps is None:
            yield self
            self._result = {"available": False, "reason": "no VmHWM and psutil is not installed", "cpu_memory_mb_max": None}
            return
        proc = ps.Process()
        with PeriodicSampler(lambda: proc.memory_info().rss, self._interval) as sampler:
            yield self
        values = [v for _, v in sampler.samples]
        self._result = {"available": bool(values), "method": f"psutil RSS sampled every {self._interval * 1e3:g} ms",
                        "cpu_memory_mb_max": max(values) / MB if values else None,
                        **({"reason": sampler.error} if sampler.error else {})}

    def result(self) -> dict:
        return self._result

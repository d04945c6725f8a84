"""CPU package energy from Intel/AMD RAPL counters (powercap), where the host lets us read them."""

from __future__ import annotations

import contextlib
import glob
import os

POWERCAP = "/sys/class/powercap"


def _packages() -> list[str]:
    return sorted(p for p in glob.glob(os.path.join(POWERCAP, "*-rapl:[0-9]")) if os.path.isfile(os.path.join(p, "energy_uj")))


def _read(path: str, name: str) -> int:
    with open(os.path.join(path, name), encoding="ascii") as fh:
        return int(fh.read().strip())


class RaplTracker:
    name = "cpu_energy"

    def __init__(self) -> None:
        self._result: dict = {"available": False, "reason": "not run", "cpu_energy_j": None}

    @contextlib.contextmanager
    def track(self):
        packages = _packages()
        try:
            start = [_read(p, "energy_uj") for p in packages]
        except OSError as exc:
            packages, reason = [], f"RAPL counters not readable: {exc.strerror}"
        else:
            reason = "no RAPL counters under /sys/class/powercap" if not packages else None
        yield self
        if not packages:
            self._result = {"available": False, "reason": reason, "cpu_energy_j": None}
            return
        total_uj = 0
        for p, s in zip(packages, start):
            end = _read(p, "energy_uj")
            if end < s:  # the counter wrapped
                end += _read(p, "max_energy_range_uj")
            total_uj += end - s
        self._result = {"available": True, "method": f"RAPL package counters ({len(packages)})", "cpu_energy_j": total_uj / 1e6}

    def result(self) -> dict:
        return self._result

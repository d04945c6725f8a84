"""How busy the host was while the cell was timed: the CPU time other processes took, the time
the hypervisor stole, and the load average — the usual reason a latency spreads.

From /proc/stat (all CPUs) against this process's own CPU time (every thread: the model's and
the samplers'), over the timed window. No sampling: two readings per cell.
"""

from __future__ import annotations

import contextlib
import os
import resource
import time

BUSY_SHARE = 0.10  # others took more than this share of the CPUs this process may use: the host was busy
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _proc_stat() -> tuple[float, float] | None:
    """(busy seconds of all CPUs, stolen seconds), or None off Linux."""
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            fields = [int(v) for v in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq) / _TICK, steal / _TICK


def _own_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


class HostLoadTracker:
    name = "host_load"

    def __init__(self) -> None:
        self._result: dict = {"available": False, "reason": "not run"}

    @contextlib.contextmanager
    def track(self):
        start, own0, t0 = _proc_stat(), _own_cpu_s(), time.perf_counter()
        yield self
        end, own1, window = _proc_stat(), _own_cpu_s(), time.perf_counter() - t0
        if start is None or end is None or window <= 0:
            self._result = {"available": False, "reason": "no /proc/stat on this host"}
            return
        # /proc/stat counts every CPU of the host; the share is of the CPUs this process may use.
        others = max(0.0, (end[0] - start[0]) - (own1 - own0))
        capacity = window * _cpus()
        share, steal = min(1.0, others / capacity), (end[1] - start[1]) / capacity
        busy = share > BUSY_SHARE or steal > BUSY_SHARE
        self._result = {
            "available": True,
            "method": "/proc/stat: the share of this process's CPUs that other processes and steal took during the cell",
            "host_other_cpu_share": share,
            "host_steal_share": steal,
            "host_load_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
            "busy": (f"other processes took {share:.0%} and steal {steal:.0%} of the CPUs during the cell"
                     if busy else None),
        }

    def result(self) -> dict:
        return self._result

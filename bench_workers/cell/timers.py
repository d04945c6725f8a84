"""Per-iteration timers. One timer is chosen once per device; the loop never branches on it.

CPU: ``perf_counter_ns`` around the call. CUDA: a pair of events per iteration, recorded on the
cell's device's current stream (the stream the model's kernels go to; the cell runs inside
``torch.cuda.device``) and read after a single synchronize at the end, so timing never stalls
the stream inside the loop.
"""

from __future__ import annotations

import time


class CpuTimer:
    def __init__(self) -> None:
        self._ns: list[int] = []
        self._t0 = 0

    def start(self) -> None:
        self._t0 = time.perf_counter_ns()

    def stop(self) -> None:
        self._ns.append(time.perf_counter_ns() - self._t0)

    def read_ms(self) -> list[float]:
        return [ns / 1e6 for ns in self._ns]


class CudaTimer:
    def __init__(self, torch, device) -> None:
        self._torch = torch
        self._device = device
        self._pairs: list[tuple[object, object]] = []
        self._pending = None

    def _record(self):
        ev = self._torch.cuda.Event(enable_timing=True)
        ev.record(self._torch.cuda.current_stream(self._device))
        return ev

    def start(self) -> None:
        self._pending = self._record()

    def stop(self) -> None:
        self._pairs.append((self._pending, self._record()))

    def read_ms(self) -> list[float]:
        self._torch.cuda.synchronize(self._device)
        return [a.elapsed_time(b) for a, b in self._pairs]


def timer_for(torch, device):
    return CudaTimer(torch, device) if device.type == "cuda" else CpuTimer()


def sync_for(torch, device):
    """A callable that waits for the device: needed around the timed window, never inside it."""
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    if device.type == "mps":
        return torch.mps.synchronize
    return lambda: None

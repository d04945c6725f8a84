"""Latency and throughput of the timed window, from the raw per-iteration latencies."""

from __future__ import annotations

import contextlib
import time

from ..cell.stats import latency_stats


class LatencyTracker:
    """Owns the device's timer. ``timer`` is used in the loop; ``track()`` spans the window."""

    def __init__(self, timer, sync, batch_size: int, seq_len: int) -> None:
        self.timer = timer
        self._sync = sync
        self._batch = batch_size
        self._seq = seq_len
        self.elapsed_s = 0.0
        self._latencies: list[float] | None = None

    @contextlib.contextmanager
    def track(self):
        self._sync()
        t0 = time.perf_counter()
        try:
            yield self
        finally:
            self._sync()
            self.elapsed_s = time.perf_counter() - t0

    def latencies_ms(self) -> list[float]:
        if self._latencies is None:
            self._latencies = self.timer.read_ms()
        return self._latencies

    def result(self) -> dict:
        lat = self.latencies_ms()
        stats = latency_stats(lat)
        n = stats["n"]
        mean_s = stats["mean"] / 1e3 if n else None
        items = n * self._batch
        return {
            "latency_ms": stats,
            # The seed's column: batch / mean latency.
            "throughput_mean": self._batch / mean_s if mean_s else None,
            # Items actually measured over the wall-clock window (includes loop overhead).
            "throughput_measured": items / self.elapsed_s if self.elapsed_s > 0 else None,
            "tokens_per_s": self._batch * self._seq / mean_s if mean_s else None,
            "timed_items": items,
            "timed_elapsed_s": self.elapsed_s,
        }

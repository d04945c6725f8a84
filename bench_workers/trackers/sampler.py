"""A background sampler that sleeps between samples (Event.wait), never busy-waits."""

from __future__ import annotations

import threading
import time


class PeriodicSampler:
    def __init__(self, sample, interval_s: float) -> None:
        self._sample = sample
        self._interval = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.samples: list[tuple[float, object]] = []
        self.error: str | None = None

    def _run(self) -> None:
        while True:
            try:
                self.samples.append((time.perf_counter(), self._sample()))
            except Exception as exc:  # a failing probe ends sampling, with its reason kept
                self.error = f"{exc.__class__.__name__}: {exc}"
                return
            if self._stop.wait(self._interval):
                return

    def __enter__(self) -> PeriodicSampler:
        self._thread = threading.Thread(target=self._run, name="benchctl-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            self.samples.append((time.perf_counter(), self._sample()))
        except Exception:
            pass

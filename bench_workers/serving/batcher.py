"""The worker's dynamic batcher: requests queue as they arrive; one thread takes up to
``max_batch`` of them, waiting at most ``window_s`` after the oldest one's arrival for more, runs
the batch and completes its requests. Latency of a request = its completion - its arrival, so
the time it waited in the queue counts.

For generated text (``first_token`` given), ``run_batch(n, mark)`` calls ``mark()`` when the
batch's first token exists: each request's time to first token = that moment - its arrival,
and ``first_token`` hears of it at once (a streaming server sends the token then).

A batch that raises stops serving: every request still queued is completed unserved (so the
load generator never waits for ever) and the error is raised by :meth:`stop`. A deadline does
the same for a host that cannot keep up: what it never served is counted as dropped.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable


class DynamicBatcher:
    def __init__(self, run_batch: Callable[[int], None], complete: Callable[[list], None], max_batch: int,
                 window_s: float, clock: Callable[[], float] = time.perf_counter,
                 first_token: Callable[[list], None] | None = None) -> None:
        if max_batch < 1 or window_s < 0:
            raise ValueError("max_batch must be positive and window_s non-negative")
        self._run_batch, self._complete, self._clock, self._first_token = run_batch, complete, clock, first_token
        self.max_batch, self.window_s = max_batch, window_s
        self._queue: collections.deque = collections.deque()  # (request id, arrival)
        self._cv = threading.Condition()
        self._closing = False
        self._deadline: float | None = None
        self._thread: threading.Thread | None = None
        # What the run was: arrivals and per-request latencies (s), the batches formed, busy time.
        self.arrivals: list[float] = []
        self.latencies_s: list[float] = []
        self.first_token_s: list[float] = []  # per request, its time to first token (generated text only)
        self.batches: list[int] = []
        self.first_waits_s: list[float] = []  # how long each batch's oldest request waited for it to start
        self.spans: list[tuple[float, float]] = []  # (start, end) of each batch run
        self.busy_s = 0.0
        self.dropped = 0
        self.error: BaseException | None = None

    def submit(self, request_ids: list) -> None:
        """Called by the load generator as requests arrive (any thread)."""
        now = self._clock()
        with self._cv:
            for rid in request_ids:
                self._queue.append((rid, now))
                self.arrivals.append(now)
            self._cv.notify()

    def start(self, deadline: float | None = None) -> None:
        """Serve from now; requests still queued at ``deadline`` (the clock's time) are dropped."""
        self._deadline = deadline
        self._thread = threading.Thread(target=self._serve, name="benchctl-batcher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float) -> None:
        """Stop once the queue is empty (or at the deadline); raise what a batch raised."""
        with self._cv:
            self._closing = True
            self._cv.notify()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise TimeoutError(f"the batcher did not stop within {timeout:g}s")
        if self.error is not None:
            raise self.error

    def _next_batch(self) -> list | None:
        """The next batch to run, or None to stop. Waits: for a first request, then until the
        batch is full or its oldest request has waited the window."""
        with self._cv:
            while not self._queue:
                if self._closing or self._past_deadline():
                    return None
                self._cv.wait(0.05)
            oldest = self._queue[0][1]
            while len(self._queue) < self.max_batch and not self._past_deadline():
                left = oldest + self.window_s - self._clock()
                if left <= 0:
                    break
                self._cv.wait(left)
            if self._past_deadline():
                return None
            return [self._queue.popleft() for _ in range(min(self.max_batch, len(self._queue)))]

    def _run(self, batch: list) -> float | None:
        """Run a batch; for generated text, the moment its first token existed."""
        if self._first_token is None:
            self._run_batch(len(batch))
            return None
        marked: list[float] = []

        def mark() -> None:
            if not marked:
                marked.append(self._clock())
                self._first_token([rid for rid, _ in batch])

        self._run_batch(len(batch), mark)
        return marked[0] if marked else None

    def _past_deadline(self) -> bool:
        return self._deadline is not None and self._clock() > self._deadline

    def _serve(self) -> None:
        batch: list = []
        try:
            while (batch := self._next_batch()) is not None:
                t0 = self._clock()
                self.first_waits_s.append(t0 - batch[0][1])
                first = self._run(batch)
                done = self._clock()
                self.busy_s += done - t0
                self.spans.append((t0, done))
                self.batches.append(len(batch))
                self.latencies_s.extend(done - arrival for _, arrival in batch)
                if self._first_token is not None:
                    at = first if first is not None else done
                    self.first_token_s.extend(at - arrival for _, arrival in batch)
                self._complete([rid for rid, _ in batch])
                batch = []
        except BaseException as exc:  # noqa: BLE001 - raised again by stop(); the generator must not wait for ever
            self.error = exc
            if batch:  # the batch that failed is completed unserved too
                self.dropped += len(batch)
                self._complete([rid for rid, _ in batch])
        finally:
            self._drain()

    def _drain(self) -> None:
        """Complete what was never served, so the load generator can finish; until stop()."""
        while True:
            with self._cv:
                left = [rid for rid, _ in self._queue]
                self._queue.clear()
                closing = self._closing
                if not left and not closing:
                    self._cv.wait(0.05)
            if left:
                self.dropped += len(left)
                self._complete(left)
            elif closing:
                return

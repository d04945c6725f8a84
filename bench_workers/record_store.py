"""What a worker writes to Redis: its registration, its claim on a cell, the cell's record.

Writes go through pipelines (one round trip, applied together) and retry while Redis is
away — a restart of Redis must not lose a finished measurement.
"""

from __future__ import annotations

import json
import logging
import threading
import time

import redis

from bench_protocol import keys
from bench_protocol.broker import redact
from bench_protocol.celery_app import CLAIM_REFRESH, CLAIM_TTL, WORKER_HEARTBEAT, WORKER_TTL
from bench_protocol.records import CellState

log = logging.getLogger("benchctl.worker")

SAVE_PATIENCE_S = 180.0  # how long a finished record waits for Redis to come back


def _retrying(what: str, fn, patience: float = SAVE_PATIENCE_S):
    deadline = time.monotonic() + patience
    delay = 0.5
    while True:
        try:
            return fn()
        except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError) as exc:
            if time.monotonic() > deadline:
                raise
            log.warning("%s: Redis unavailable (%s); retrying in %.1fs", what, redact(exc), delay)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


class RecordStore:
    def __init__(self, client) -> None:
        self.r = client

    # -- cells ---------------------------------------------------------------------------
    def cell_state(self, run_id: str, cell_id: str) -> str | None:
        return _retrying("read cell state", lambda: self.r.hget(keys.run_cells(run_id), cell_id))

    def finished(self, cell_id: str) -> bool:
        raw = _retrying("read cell record", lambda: self.r.get(keys.cell(cell_id)))
        return bool(raw) and json.loads(raw).get("status") in ("ok", "error")

    def claim(self, run_id: str, cell_id: str, worker: str) -> str | None:
        """Take the cell for this worker; None when it is ours, else the holder's name."""
        def take():
            if self.r.set(keys.cell_claim(cell_id), worker, nx=True, ex=int(CLAIM_TTL)):
                pipe = self.r.pipeline()
                pipe.hset(keys.run_cells(run_id), cell_id, CellState.RUNNING.value)
                pipe.set(keys.worker_current(worker), cell_id, ex=int(CLAIM_TTL))
                pipe.execute()
                return None
            holder = self.r.get(keys.cell_claim(cell_id))
            return None if holder == worker else (holder or "another worker")
        return _retrying("claim cell", take)

    def save(self, record: dict, worker: str) -> None:
        cell_id, run_id = record["cell_id"], record["run_id"]

        def write():
            pipe = self.r.pipeline()
            pipe.set(keys.cell(cell_id), json.dumps(record, allow_nan=False))
            pipe.hset(keys.run_cells(run_id), cell_id, record["status"])
            pipe.delete(keys.cell_claim(cell_id))
            pipe.delete(keys.worker_current(worker))
            pipe.execute()
        _retrying("save cell record", write)

    def release(self, cell_id: str, worker: str) -> None:
        try:
            if self.r.get(keys.cell_claim(cell_id)) == worker:
                self.r.delete(keys.cell_claim(cell_id), keys.worker_current(worker))
        except redis.RedisError:
            pass  # the claim lapses by its TTL

    def keep_claim(self, cell_id: str, worker: str) -> Refresher:
        def refresh():
            pipe = self.r.pipeline()
            pipe.set(keys.cell_claim(cell_id), worker, ex=int(CLAIM_TTL))
            pipe.set(keys.worker_current(worker), cell_id, ex=int(CLAIM_TTL))
            pipe.execute()
        return Refresher(refresh, CLAIM_REFRESH, "claim")

    # -- fingerprints and the registry ------------------------------------------------------
    def put_fingerprint(self, fp: dict) -> None:
        _retrying("save fingerprint", lambda: self.r.set(keys.fingerprint(fp["fingerprint_id"]), json.dumps(fp)))

    def register(self, name: str, info: dict) -> None:
        def write():
            pipe = self.r.pipeline()
            pipe.set(keys.worker(name), json.dumps(info), ex=int(WORKER_TTL))
            pipe.sadd(keys.WORKERS, name)
            pipe.execute()
        write()

    def unregister(self, name: str) -> None:
        try:
            pipe = self.r.pipeline()
            pipe.delete(keys.worker(name), keys.worker_current(name))
            pipe.srem(keys.WORKERS, name)
            pipe.execute()
        except redis.RedisError as exc:
            log.warning("could not unregister %s: %s", name, redact(exc))

    def heartbeat(self, name: str, info: dict) -> Refresher:
        return Refresher(lambda: self.register(name, info), WORKER_HEARTBEAT, "heartbeat")


class Refresher:
    """Calls ``fn`` every ``interval`` seconds on a sleeping thread until stopped; a failed call
    (Redis away) is logged and tried again next time."""

    def __init__(self, fn, interval: float, what: str) -> None:
        self._fn, self._interval, self._what = fn, interval, what
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"benchctl-{what}", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._fn()
            except redis.RedisError as exc:
                log.warning("%s refresh failed: %s", self._what, redact(exc))

    def start(self) -> Refresher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

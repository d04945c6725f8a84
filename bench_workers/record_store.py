"""What a worker writes to Redis: its registration, its claim on a cell, the cell's record.

Writes go through pipelines (one round trip, applied together) and retry while Redis is
away — a restart of Redis must not lose a finished measurement.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time

import redis

from bench_protocol import keys, record_codec
from bench_protocol.broker import redact
from bench_protocol.celery_app import CLAIM_REFRESH, CLAIM_TTL, WORKER_HEARTBEAT, WORKER_TTL
from bench_protocol.records import CellState

log = logging.getLogger("benchctl.worker")

SAVE_PATIENCE_S = 180.0  # how long a finished record waits for Redis to come back

# A claim's value is "worker|token": the name says who, the token which attempt.
# Refresh: only our own claim, or our lapsed one while nobody queued the cell again.
# KEYS: claim, run cells, current; ARGV: claim value, cell id, ttl seconds.
_REFRESH = """
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] or (not v and redis.call('HGET', KEYS[2], ARGV[2]) == 'running') then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
  redis.call('SET', KEYS[3], ARGV[2], 'EX', ARGV[3])
  return 1
end
return 0
"""
# The save, fenced by the claim: written only while this attempt still holds the cell.
# KEYS: claim, run cells, cell record, current, claimed set; ARGV: claim value, cell id, record, status.
_SAVE = """
local v = redis.call('GET', KEYS[1])
if v ~= ARGV[1] and not (not v and redis.call('HGET', KEYS[2], ARGV[2]) == 'running') then return 0 end
redis.call('SET', KEYS[3], ARGV[3])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[4])
redis.call('DEL', KEYS[1], KEYS[4])
redis.call('SREM', KEYS[5], ARGV[2])
return 1
"""


def holder_name(claim_value: str | None) -> str | None:
    return claim_value.split("|", 1)[0] if claim_value else None


class Throttled:
    """Logs a recurring warning once per ``interval`` seconds, with how many were held back:
    a worker waiting out a Redis restart says so, without a line per attempt."""

    def __init__(self, interval: float = 30.0) -> None:
        self.interval, self._last, self._held = interval, {}, {}
        self._lock = threading.Lock()

    def warning(self, key: str, msg: str, *args) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._last.get(key, -1e9) < self.interval:
                self._held[key] = self._held.get(key, 0) + 1
                return
            held, self._held[key], self._last[key] = self._held.get(key, 0), 0, now
        log.warning(msg + (f" ({held} more like this in the last {self.interval:g}s)" if held else ""), *args)


AWAY = Throttled()


def _retrying(what: str, fn, patience: float = SAVE_PATIENCE_S):
    deadline = time.monotonic() + patience
    delay = 0.5
    while True:
        try:
            return fn()
        except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError) as exc:
            if time.monotonic() > deadline:
                raise
            AWAY.warning(what, "%s: Redis unavailable (%s); retrying", what, redact(exc))
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


class RecordStore:
    def __init__(self, client) -> None:
        self.r = client
        self.identity: str | None = None  # the store's identity key, once first_use() read it
        self.where = "the store"

    # -- does the store keep our keys (bench_protocol/durability.py) ------------------------
    def first_use(self, where: str) -> list[str]:
        """Mark the store's first use (its identity key) and remember the key's id, which every
        heartbeat checks; returns warnings about a store that may drop benchctl's keys."""
        from bench_protocol.durability import identity, mark_first_use, policy_warnings

        self.where = where
        _retrying("mark the store's first use", lambda: mark_first_use(self.r))
        self.identity = (identity(self.r) or {}).get("id")
        return policy_warnings(self.r, where, persistence=True)

    def check_identity(self) -> None:
        """The identity key gone or changed: Redis lost benchctl's keys. Said once per loss,
        then the key is written anew."""
        from bench_protocol.durability import LOST, identity, mark_first_use

        if self.identity is None:
            return
        now = (identity(self.r) or {}).get("id")
        if now == self.identity:
            return
        log.error("the store at %s lost benchctl's keys (its key written at first use is %s): Redis %s; runs "
                  "submitted before may be gone from it (`benchctl status RUN_ID` says)", self.where,
                  "gone" if now is None else "another one", LOST)
        mark_first_use(self.r, lost=True)
        self.identity = (identity(self.r) or {}).get("id")

    # -- cells ---------------------------------------------------------------------------
    def cell_state(self, run_id: str, cell_id: str) -> str | None:
        return _retrying("read cell state", lambda: self.r.hget(keys.run_cells(run_id), cell_id))

    def finished(self, cell_id: str) -> bool:
        """A cell has a record only once it finished (ok or error)."""
        return bool(_retrying("read cell record", lambda: self.r.exists(keys.cell(cell_id))))

    def claim(self, run_id: str, cell_id: str, worker: str) -> tuple[str | None, str | None]:
        """Take the cell for this worker: (our claim value, None), or (None, the holder's name).
        A claim left by this same worker (its measuring child died) is taken over."""
        value = f"{worker}|{secrets.token_hex(8)}"

        def take():
            held = self.r.get(keys.cell_claim(cell_id))
            if held and holder_name(held) != worker:
                return None, holder_name(held)
            if not self.r.set(keys.cell_claim(cell_id), value, ex=int(CLAIM_TTL), nx=not held):
                return None, holder_name(self.r.get(keys.cell_claim(cell_id))) or "another worker"
            pipe = self.r.pipeline()
            pipe.hset(keys.run_cells(run_id), cell_id, CellState.RUNNING.value)
            pipe.sadd(keys.CLAIMED, cell_id)
            pipe.set(keys.worker_current(worker), cell_id, ex=int(CLAIM_TTL))
            pipe.execute()
            return value, None
        return _retrying("claim cell", take)

    def save(self, record: dict, worker: str, claim: str) -> bool:
        """Write the record while ``claim`` still holds the cell; False (nothing written) when the
        cell was queued again meanwhile and another attempt owns it now."""
        cell_id, run_id = record["cell_id"], record["run_id"]

        def write():
            return self.r.eval(_SAVE, 5, keys.cell_claim(cell_id), keys.run_cells(run_id), keys.cell(cell_id),
                               keys.worker_current(worker), keys.CLAIMED, claim, cell_id,
                               record_codec.encode(record), record["status"])
        return bool(_retrying("save cell record", write))

    def release(self, cell_id: str, worker: str, claim: str | None) -> None:
        try:
            if claim and self.r.get(keys.cell_claim(cell_id)) == claim:
                self.r.delete(keys.cell_claim(cell_id), keys.worker_current(worker))
        except redis.RedisError:
            pass  # the claim lapses by its TTL

    def keep_claim(self, run_id: str, cell_id: str, worker: str, claim: str) -> Refresher:
        def refresh():
            if not self.r.eval(_REFRESH, 3, keys.cell_claim(cell_id), keys.run_cells(run_id), keys.worker_current(worker),
                               claim, cell_id, int(CLAIM_TTL)):
                log.warning("cell %s was queued again while this worker was away; its result will not be saved", cell_id)
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

    def heartbeat(self, name: str, info: dict, broker=None) -> Refresher:
        """Keep this worker registered; with ``broker``, also queue again the cells whose claims
        lapsed (a dead worker's), so recovery does not wait for any one process."""
        def beat():
            self.register(name, info)
            self.check_identity()
            if broker is not None:
                from bench_protocol.errors import BrokerError
                from bench_protocol.recovery import requeue_lapsed_cells

                try:
                    requeued = requeue_lapsed_cells(self.r, broker)
                except BrokerError as exc:  # its task could not be sent: the cell stays running, tried next beat
                    AWAY.warning("requeue", "could not queue a lapsed cell again: %s", redact(exc))
                    requeued = []
                for cell_id in requeued:
                    log.warning("cell %s: its worker's claim lapsed; queued again", cell_id)
        return Refresher(beat, WORKER_HEARTBEAT, "heartbeat")


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
                AWAY.warning(self._what, "%s refresh failed: %s", self._what, redact(exc))

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

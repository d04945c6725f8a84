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

from bench_protocol import keys, lifecycle, record_codec
from bench_protocol.broker import redact
from bench_protocol.celery_app import CLAIM_REFRESHES, CLAIM_TTL, WORKER_HEARTBEAT, WORKER_TTL
from bench_protocol.lifecycle import holder_name  # noqa: F401  (claims are lifecycle.py's)

log = logging.getLogger("benchctl.worker")

SAVE_PATIENCE_S = 180.0  # how long a finished record waits for Redis to come back

# A worker name's owner (bench_workers/worker/identity.py): taken or kept only while it is free or
# already this process's; else the holder's value is returned. KEYS: owner; ARGV: value, instance, ttl ms.
_HOLD_NAME = """
local v = redis.call('GET', KEYS[1])
if v then
  local ok, held = pcall(cjson.decode, v)
  if ok and type(held) == 'table' and held.instance ~= ARGV[2] then return v end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return false
"""
# Give the name up, if it is still this process's. KEYS: owner; ARGV: instance.
_RELEASE_NAME = """
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
local ok, held = pcall(cjson.decode, v)
if ok and type(held) == 'table' and held.instance == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


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


def _full(exc: BaseException) -> bool:
    """Redis refused a write at its memory limit (``maxmemory`` with ``noeviction``)."""
    # redis-py maps the server's OOM reply to OutOfMemoryError and drops the code from the text.
    return isinstance(exc, redis.exceptions.OutOfMemoryError) or (
        isinstance(exc, redis.ResponseError) and str(exc).startswith("OOM"))


def _retrying(what: str, fn, patience: float = SAVE_PATIENCE_S, full_too: bool = False, on_first_refusal=None):
    """``fn()``, tried again with backoff while Redis is away (and, with ``full_too``, while it
    is at its memory limit) for up to ``patience`` seconds; ``on_first_refusal`` runs once,
    at the first failure, before any wait."""
    deadline = time.monotonic() + patience
    delay = 0.5
    while True:
        try:
            return fn()
        except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError, redis.ResponseError) as exc:
            if isinstance(exc, redis.ResponseError) and not (full_too and _full(exc)):
                raise
            if time.monotonic() > deadline:
                raise
            why = "at its memory limit" if _full(exc) else "unavailable"
            AWAY.warning(what, "%s: Redis %s (%s); retrying", what, why, redact(exc))
            if on_first_refusal is not None:  # after the reason is logged: the log reads cause, then action
                on_first_refusal()
                on_first_refusal = None
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


class RecordStore:
    def __init__(self, client, claim_ttl: float = CLAIM_TTL) -> None:
        self.r = client
        self.claim_ttl = claim_ttl  # seconds (the BENCHCTL_CLAIM_TTL setting)
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

    def claim(self, run_id: str, cell_id: str, worker: str, host: str = "",
              host_cap: int = 0) -> tuple[str | None, str | None, str | None]:
        """Take the cell for this worker (bench_protocol/lifecycle.py): (our claim value, None, its
        state before), (None, the holder's name, its state) or, when the cell is not open (finished,
        cancelled, gone), (None, None, its state). A claim left by this same worker (its measuring
        child died) is taken over."""
        value = lifecycle.claim_value(worker)

        def take():
            taken, holder, state = lifecycle.claim(self.r, run_id, cell_id, worker, value, self.claim_ttl, host, host_cap)
            return (value if taken else None), holder, state
        return _retrying("claim cell", take)

    def save(self, record: dict, worker: str, claim: str, on_first_refusal=None) -> bool:
        """Write the record while ``claim`` still holds the running cell; False (nothing written)
        when the cell was queued again meanwhile and another attempt owns it now, or was cancelled.
        A store that is away or full is waited for (``on_first_refusal`` runs at the first refusal)."""
        encoded = record_codec.encode(record)
        return bool(_retrying("save cell record", lambda: lifecycle.save(
            self.r, record["run_id"], record["cell_id"], worker, claim, encoded, record["status"]),
            full_too=True, on_first_refusal=on_first_refusal))

    def release(self, cell_id: str, worker: str, claim: str | None) -> None:
        try:
            if claim:
                lifecycle.release(self.r, cell_id, claim, keys.worker_current(worker))
        except redis.RedisError:
            pass  # the claim lapses by its TTL

    def keep_claim(self, run_id: str, cell_id: str, worker: str, claim: str) -> Refresher:
        def refresh():
            if not lifecycle.refresh(self.r, run_id, cell_id, worker, claim, self.claim_ttl):
                log.warning("cell %s was queued again while this worker was away; its result will not be saved", cell_id)
        return Refresher(refresh, self.claim_ttl / CLAIM_REFRESHES, "claim")

    def run_spec(self, run_id: str) -> str | None:
        """The run's spec as ``benchctl submit`` stored it (JSON), or None."""
        return _retrying("read run spec", lambda: self.r.hget(keys.run(run_id), "spec"))

    def deaths(self, cell_id: str) -> list[dict]:
        """Each death of a measuring process on this cell (bench_protocol/lifecycle.py)."""
        return _retrying("read cell deaths", lambda: lifecycle.deaths(self.r, cell_id))

    def note_death(self, run_id: str, cell_id: str, worker: str, entry: dict) -> int:
        """Count a death of this worker's measuring process on the cell it held; 0 when it held
        none (nothing counted)."""
        return lifecycle.note_death(self.r, run_id, cell_id, worker, entry)

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

    def hold_name(self, name: str, owner: dict) -> dict | None:
        """Take (or keep) the worker name for the process ``owner`` names (its ``instance``):
        None when it is this process's now, else the live holder's owner value."""
        held = self.r.eval(_HOLD_NAME, 1, keys.worker_owner(name), json.dumps(owner), owner["instance"],
                           int(WORKER_TTL * 1000))
        if held is None:
            return None
        try:
            return json.loads(held)
        except ValueError:
            return {"instance": "?"}

    def name_ttl(self, name: str) -> int:
        """Milliseconds left on the name's owner key (negative when it is gone)."""
        return int(self.r.pttl(keys.worker_owner(name)))

    def release_name(self, name: str, instance: str) -> None:
        try:
            self.r.eval(_RELEASE_NAME, 1, keys.worker_owner(name), instance)
        except redis.RedisError as exc:
            log.warning("could not release the name %s: %s", name, redact(exc))

    def unregister(self, name: str) -> None:
        try:
            pipe = self.r.pipeline()
            pipe.delete(keys.worker(name), keys.worker_current(name))
            pipe.srem(keys.WORKERS, name)
            pipe.execute()
        except redis.RedisError as exc:
            log.warning("could not unregister %s: %s", name, redact(exc))

    def heartbeat(self, name: str, info: dict, settings=None, register=None) -> Refresher:
        """Keep this worker registered (``register``, default: list it live); with ``settings``
        (bench_protocol/settings.py), also queue again the cells whose claims lapsed (a dead
        worker's), so recovery does not wait for any one process."""
        def beat():
            (register or (lambda: self.register(name, info)))()
            self.check_identity()
            if settings is not None:
                from bench_protocol.errors import BrokerError
                from bench_protocol.recovery import requeue_lapsed_cells

                try:
                    requeued = requeue_lapsed_cells(self.r, settings)
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

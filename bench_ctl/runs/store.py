"""The controller's view of benchctl's records in Redis (layout in bench_protocol.keys)."""

from __future__ import annotations

import json
import time

import redis
from redis.client import NEVER_DECODE

from bench_protocol import keys, lifecycle, record_codec
from bench_protocol.broker import ping, store_error
from bench_protocol.errors import BenchError, BrokerError, CorruptRecord, RunNotFound
from bench_protocol.settings import Settings
from bench_protocol.spec import check_run_id

READ_BATCH = 1000  # cells per MGET: big enough to amortise a round trip, small enough not to stall Redis


def _json_or_none(raw):
    """A stored JSON value, or None when it is absent or not JSON (a corrupt key)."""
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


class ControllerStore:
    def __init__(self, settings: Settings) -> None:
        self.settings, self.broker = settings, settings.broker
        self.r = ping(settings.broker)

    def _guard(self, fn):
        """Run ``fn``; any failure of the store (lost, at its memory limit, a timeout, another
        server answering) becomes one BrokerError line."""
        try:
            return fn()
        except redis.RedisError as exc:
            raise BrokerError(store_error(exc, self.broker.safe_url)) from None

    def _hgetall(self, key: str) -> dict[str, bytes]:
        """A hash's fields (text) and raw values: garbage bytes under a key never fail the read."""
        raw = self._guard(lambda: self.r.execute_command("HGETALL", key, **{NEVER_DECODE: True}))
        return {k.decode(errors="replace") if isinstance(k, bytes) else str(k): v for k, v in (raw or {}).items()}

    # -- runs ------------------------------------------------------------------------------
    def create_run(self, run_id: str, spec: dict, cell_ids: list[str]) -> None:
        from bench_protocol.durability import mark_first_use

        def write():
            pipe = self.r.pipeline()
            created = time.time()
            mark_first_use(self.r, pipe)  # the store's identity key, if this is its first use
            pipe.hset(keys.run(run_id), mapping={"spec": json.dumps(spec), "created": created, "status": "sending",
                                                  "n_cells": len(cell_ids), "sent": 0, "sent_at": created})
            lifecycle.submit(pipe, run_id, cell_ids)
            pipe.zadd(keys.RUNS, {run_id: created})
            pipe.execute()
        self._guard(write)

    def run_meta(self, run_id: str, lenient: bool = False) -> dict:
        """The run's hash, its spec parsed. A spec that cannot be read (garbage bytes, a field
        lost) raises CorruptRecord, or with ``lenient`` leaves ``spec`` None and says why in
        ``spec_error``."""
        from bench_protocol.spec import RunSpec

        check_run_id(run_id)
        raw = self._hgetall(keys.run(run_id))
        if not raw:
            from bench_protocol.durability import lost_run_reason

            lost = self._guard(lambda: lost_run_reason(self.r, run_id))
            raise RunNotFound(f"no run {run_id} in Redis at {self.broker.safe_url}" + (f": {lost}" if lost else ""))
        meta = {k: v.decode(errors="replace") if isinstance(v, bytes) else v for k, v in raw.items()}
        try:
            meta["created"] = float(meta.get("created") or "nan")
        except ValueError:
            meta["created"] = float("nan")
        try:
            if "spec" not in raw:
                raise KeyError("its spec field is missing")
            spec = json.loads(raw["spec"])
            RunSpec.from_dict(spec)  # every field as submit wrote it
            meta["spec"], meta["spec_error"] = spec, None
        except (ValueError, TypeError, KeyError, AttributeError, BenchError) as exc:
            reason = exc.args[0] if isinstance(exc, KeyError) else f"{type(exc).__name__}: {exc}"
            message = f"run {run_id}: its spec in Redis ({keys.run(run_id)}) is unreadable ({str(reason)[:200]})"
            if not lenient:
                raise CorruptRecord(message + "; the run cannot be reported") from None
            meta["spec"], meta["spec_error"] = None, message
        return meta

    def policy_warnings(self) -> list[str]:
        """Warnings about a store that may drop benchctl's keys (bench_protocol/durability.py)."""
        from bench_protocol.durability import policy_warnings

        return self._guard(lambda: policy_warnings(self.r, self.broker.safe_url))

    def set_run_status(self, run_id: str, status: str) -> None:
        self._guard(lambda: self.r.hset(keys.run(run_id), "status", status))

    def note_sent(self, run_id: str, sent: int, done: bool = False) -> None:
        """How far sending a run's tasks got (in spec order), and when: a submit killed part way
        leaves the run "sending" with a count that stops moving."""
        fields = {"sent": sent, "sent_at": time.time()}
        if done:
            fields["status"] = "queued"
        self._guard(lambda: self.r.hset(keys.run(run_id), mapping=fields))

    def note_send_failed(self, run_id: str, sent: int) -> bool:
        """Mark a run whose sending stopped part way (``status`` says so); False when the store
        refused that too."""
        try:
            self._guard(lambda: self.r.hset(keys.run(run_id), mapping={"status": "incomplete", "sent": sent}))
            return True
        except BrokerError:
            return False

    def restore_cells(self, run_id: str, states: dict[str, str], records: dict[str, dict]) -> None:
        """Put cells back as they were (their state, and their record where they had one)."""
        def write():
            pipe = self.r.pipeline()
            lifecycle.restore(pipe, run_id, states, {c: record_codec.encode(rec) for c, rec in records.items()})
            pipe.execute()
        if states:
            self._guard(write)

    def cell_states(self, run_id: str) -> dict[str, str]:
        """Cell id -> state; a value that is not text reads as its replacement characters."""
        return {c: v.decode(errors="replace") for c, v in self._hgetall(keys.run_cells(run_id)).items()}

    def records(self, cell_ids: list[str], corrupt: dict[str, str] | None = None) -> dict[str, dict]:
        """The records of these cells that exist, read in pipelined batches (one round trip per
        READ_BATCH cells) and decoded from their compact form (bench_protocol/record_codec.py).
        A record that cannot be decoded is left out and, with ``corrupt``, named there with why."""
        if not cell_ids:
            return {}

        def read():
            pipe = self.r.pipeline(transaction=False)
            for i in range(0, len(cell_ids), READ_BATCH):
                pipe.execute_command("MGET", *[keys.cell(c) for c in cell_ids[i:i + READ_BATCH]], **{NEVER_DECODE: True})
            return [raw for batch in pipe.execute() for raw in batch]
        raws = self._guard(read)
        out = {}
        for c, raw in zip(cell_ids, raws):
            if not raw:
                continue
            try:
                rec = record_codec.decode(raw)
                if not isinstance(rec, dict) or rec.get("cell_id") != c:
                    raise ValueError("not this cell's record")
            except Exception as exc:  # garbage bytes: zlib, lzma, struct, JSON or Unicode errors
                if corrupt is not None:
                    kind = type(exc).__name__ if type(exc).__module__ == "builtins" else \
                        f"{type(exc).__module__}.{type(exc).__name__}"
                    corrupt[c] = f"{kind}: {str(exc)[:120]}"
                continue
            out[c] = rec
        return out

    def put_record(self, record: dict) -> bool:
        """Write an open cell's record and state; False (nothing written) when the cell is not
        open any more (a worker saved it, or it was cancelled)."""
        encoded = record_codec.encode(record)
        return self._guard(lambda: lifecycle.record(self.r, record["run_id"], record["cell_id"], encoded,
                                                    record["status"]))

    def backend_results(self, cell_ids: list[str]) -> dict[str, dict]:
        """Celery's stored results (celery-task-meta-{task id}) of these cells, where there are any."""
        if not cell_ids:
            return {}
        raws = self._guard(lambda: self.r.execute_command("MGET", *[f"celery-task-meta-{c}" for c in cell_ids],
                                                          **{NEVER_DECODE: True}))
        return {c: meta for c, meta in zip(cell_ids, map(_json_or_none, raws)) if isinstance(meta, dict)}

    def holders(self, cell_ids: list[str]) -> dict[str, str]:
        if not cell_ids:
            return {}
        raws = self._guard(lambda: self.r.execute_command("MGET", *[keys.cell_claim(c) for c in cell_ids],
                                                          **{NEVER_DECODE: True}))
        return {c: lifecycle.holder_name(w) for c, w in zip(cell_ids, raws) if w}  # "worker|token"

    def fingerprints(self, ids: set[str]) -> dict[str, dict]:
        ids = sorted(i for i in ids if i)
        if not ids:
            return {}
        raws = self._guard(lambda: self.r.execute_command("MGET", *[keys.fingerprint(i) for i in ids],
                                                          **{NEVER_DECODE: True}))
        return {i: fp for i, fp in zip(ids, map(_json_or_none, raws)) if isinstance(fp, dict)}  # unreadable: left out

    def recent_runs(self, limit: int = 20) -> list[tuple[str, float]]:
        """The newest runs whose keys are still there (a run past its retention is skipped)."""
        def read():
            out, start = [], 0
            while len(out) < limit:
                batch = self.r.zrevrange(keys.RUNS, start, start + limit - 1, withscores=True)
                if not batch:
                    break
                pipe = self.r.pipeline(transaction=False)
                for run_id, _ in batch:
                    pipe.exists(keys.run(run_id))
                out += [item for item, alive in zip(batch, pipe.execute()) if alive]
                start += limit
            return out[:limit]
        return self._guard(read)

    def cancel_queued(self, run_id: str, cell_ids: list[str]) -> int:
        return self._guard(lambda: lifecycle.cancel(self.r, run_id, cell_ids))

    def reset_cells(self, run_id: str, cell_ids: list[str]) -> None:
        """Back to queued, their (error) records removed: a worker measures them afresh."""
        def write():
            pipe = self.r.pipeline()
            lifecycle.retry(pipe, run_id, cell_ids)
            pipe.execute()
        self._guard(write)

    def expire_run(self, run_id: str, seconds: float) -> None:
        """Give every key of a run a TTL (its retention once collected), in pipelined batches."""
        ttl = max(1, int(seconds))

        def write():
            cells = sorted(self.r.hkeys(keys.run_cells(run_id)))
            pipe = self.r.pipeline(transaction=False)
            pipe.hset(keys.run(run_id), "expires", time.time() + ttl)
            pipe.expire(keys.run(run_id), ttl)
            pipe.expire(keys.run_cells(run_id), ttl)
            pipe.expire(keys.run_hosts(run_id), ttl)
            for i, cell_id in enumerate(cells, 1):
                pipe.expire(keys.cell(cell_id), ttl)
                if i % READ_BATCH == 0:
                    pipe.execute()
            pipe.execute()
        self._guard(write)

    def prune_runs(self, older_than: float, force: bool = False) -> tuple[list[str], list[str], list[str]]:
        """Delete the runs created before ``older_than`` (epoch seconds), every key of each, and
        drop the index entries of runs whose keys already expired: (deleted, dropped, skipped).
        A run with a cell still queued or running is skipped unless ``force``: its workers would
        measure for nothing (their saves are refused once the run's cells are gone)."""
        def work():
            deleted, dropped, skipped = [], [], []
            for run_id, created in self.r.zrange(keys.RUNS, 0, -1, withscores=True):
                if not self.r.exists(keys.run(run_id)):
                    self.r.zrem(keys.RUNS, run_id)
                    dropped.append(run_id)
                elif created < older_than and not force and any(
                        state not in lifecycle.SETTLED for state in self.r.hvals(keys.run_cells(run_id))):
                    skipped.append(run_id)
                elif created < older_than:
                    cells = self.r.hkeys(keys.run_cells(run_id))
                    for i in range(0, len(cells), READ_BATCH):
                        batch = cells[i:i + READ_BATCH]
                        self.r.delete(*[keys.cell(c) for c in batch], *[keys.cell_deaths(c) for c in batch])
                    self.r.delete(keys.run(run_id), keys.run_cells(run_id), keys.run_hosts(run_id))
                    self.r.zrem(keys.RUNS, run_id)
                    deleted.append(run_id)
            return deleted, dropped, skipped
        return self._guard(work)

    def requeue_lapsed(self) -> list[str]:
        """Queue again the cells whose worker's claim lapsed (bench_protocol/recovery.py)."""
        from bench_protocol.recovery import requeue_lapsed_cells

        return self._guard(lambda: requeue_lapsed_cells(self.r, self.settings))

    # -- workers ---------------------------------------------------------------------------
    def live_workers(self) -> list[dict]:
        """Workers whose heartbeat key is alive; names whose key lapsed are pruned."""
        def read():
            names = sorted(self.r.smembers(keys.WORKERS))
            if not names:
                return []
            raws = self.r.execute_command("MGET", *[keys.worker(n) for n in names], **{NEVER_DECODE: True})
            currents = self.r.execute_command("MGET", *[keys.worker_current(n) for n in names], **{NEVER_DECODE: True})
            dead = [n for n, raw in zip(names, raws) if not raw]
            if dead:
                self.r.srem(keys.WORKERS, *dead)
            out = []
            for raw, current in zip(raws, currents):
                info = _json_or_none(raw)
                if isinstance(info, dict) and {"name", "pool", "device", "hostname", "summary"} <= info.keys():  # an unreadable entry is skipped
                    info["current"] = current.decode(errors="replace") if current else None
                    out.append(info)
            return out
        return self._guard(read)

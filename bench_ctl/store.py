"""The controller's view of benchctl's records in Redis (layout in bench_protocol.keys)."""

from __future__ import annotations

import json
import time

import redis
from redis.client import NEVER_DECODE

from bench_protocol import keys, record_codec
from bench_protocol.broker import BrokerConfig, ping, redact
from bench_protocol.errors import BrokerError, RunNotFound
from bench_protocol.records import CellState
from bench_protocol.spec import check_run_id

READ_BATCH = 1000  # cells per MGET: big enough to amortise a round trip, small enough not to stall Redis

# Cancel a cell only if no worker has started it: compare-and-set in one step.
_CANCEL_IF_QUEUED = """
local n = 0
for i, cell in ipairs(ARGV) do
  if redis.call('HGET', KEYS[1], cell) == 'queued' then
    redis.call('HSET', KEYS[1], cell, 'cancelled'); n = n + 1
  end
end
return n
"""


class ControllerStore:
    def __init__(self, broker: BrokerConfig) -> None:
        self.broker = broker
        self.r = ping(broker)

    def _guard(self, fn):
        try:
            return fn()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise BrokerError(f"lost Redis at {self.broker.safe_url}: {redact(exc)}") from None

    # -- runs ------------------------------------------------------------------------------
    def create_run(self, run_id: str, spec: dict, cell_ids: list[str]) -> None:
        def write():
            pipe = self.r.pipeline()
            created = time.time()
            pipe.hset(keys.run(run_id), mapping={"spec": json.dumps(spec), "created": created, "status": "submitted",
                                                  "n_cells": len(cell_ids)})
            pipe.hset(keys.run_cells(run_id), mapping={c: CellState.QUEUED.value for c in cell_ids})
            pipe.zadd(keys.RUNS, {run_id: created})
            pipe.execute()
        self._guard(write)

    def run_meta(self, run_id: str) -> dict:
        check_run_id(run_id)
        meta = self._guard(lambda: self.r.hgetall(keys.run(run_id)))
        if not meta:
            raise RunNotFound(f"no run {run_id} in Redis at {self.broker.safe_url}")
        meta["spec"] = json.loads(meta["spec"])
        meta["created"] = float(meta["created"])
        return meta

    def set_run_status(self, run_id: str, status: str) -> None:
        self._guard(lambda: self.r.hset(keys.run(run_id), "status", status))

    def cell_states(self, run_id: str) -> dict[str, str]:
        return self._guard(lambda: self.r.hgetall(keys.run_cells(run_id)))

    def records(self, cell_ids: list[str]) -> dict[str, dict]:
        """The records of these cells that exist, read in pipelined batches (one round trip per
        READ_BATCH cells) and decoded from their compact form (bench_protocol/record_codec.py)."""
        if not cell_ids:
            return {}

        def read():
            pipe = self.r.pipeline(transaction=False)
            for i in range(0, len(cell_ids), READ_BATCH):
                pipe.execute_command("MGET", *[keys.cell(c) for c in cell_ids[i:i + READ_BATCH]], **{NEVER_DECODE: True})
            return [raw for batch in pipe.execute() for raw in batch]
        raws = self._guard(read)
        return {c: record_codec.decode(raw) for c, raw in zip(cell_ids, raws) if raw}

    def put_record(self, record: dict) -> None:
        def write():
            pipe = self.r.pipeline()
            pipe.set(keys.cell(record["cell_id"]), record_codec.encode(record))
            pipe.hset(keys.run_cells(record["run_id"]), record["cell_id"], record["status"])
            pipe.execute()
        self._guard(write)

    def backend_results(self, cell_ids: list[str]) -> dict[str, dict]:
        """Celery's stored results (celery-task-meta-{task id}) of these cells, where there are any."""
        if not cell_ids:
            return {}
        raws = self._guard(lambda: self.r.mget([f"celery-task-meta-{c}" for c in cell_ids]))
        return {c: json.loads(raw) for c, raw in zip(cell_ids, raws) if raw}

    def holders(self, cell_ids: list[str]) -> dict[str, str]:
        if not cell_ids:
            return {}
        raws = self._guard(lambda: self.r.mget([keys.cell_claim(c) for c in cell_ids]))
        return {c: w.split("|", 1)[0] for c, w in zip(cell_ids, raws) if w}  # claim = "worker|token"

    def fingerprints(self, ids: set[str]) -> dict[str, dict]:
        ids = sorted(i for i in ids if i)
        if not ids:
            return {}
        raws = self._guard(lambda: self.r.mget([keys.fingerprint(i) for i in ids]))
        return {i: json.loads(raw) for i, raw in zip(ids, raws) if raw}

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
        return self._guard(lambda: self.r.eval(_CANCEL_IF_QUEUED, 1, keys.run_cells(run_id), *cell_ids))

    def reset_cells(self, run_id: str, cell_ids: list[str]) -> None:
        """Back to queued, their (error) records removed: a worker measures them afresh."""
        def write():
            pipe = self.r.pipeline()
            pipe.delete(*[keys.cell(c) for c in cell_ids])
            pipe.hset(keys.run_cells(run_id), mapping={c: CellState.QUEUED.value for c in cell_ids})
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
            for i, cell_id in enumerate(cells, 1):
                pipe.expire(keys.cell(cell_id), ttl)
                if i % READ_BATCH == 0:
                    pipe.execute()
            pipe.execute()
        self._guard(write)

    def prune_runs(self, older_than: float) -> tuple[list[str], list[str]]:
        """Delete the runs created before ``older_than`` (epoch seconds), every key of each, and
        drop the index entries of runs whose keys already expired: (deleted, dropped)."""
        def work():
            deleted, dropped = [], []
            for run_id, created in self.r.zrange(keys.RUNS, 0, -1, withscores=True):
                if not self.r.exists(keys.run(run_id)):
                    self.r.zrem(keys.RUNS, run_id)
                    dropped.append(run_id)
                elif created < older_than:
                    cells = self.r.hkeys(keys.run_cells(run_id))
                    for i in range(0, len(cells), READ_BATCH):
                        self.r.delete(*[keys.cell(c) for c in cells[i:i + READ_BATCH]])
                    self.r.delete(keys.run(run_id), keys.run_cells(run_id))
                    self.r.zrem(keys.RUNS, run_id)
                    deleted.append(run_id)
            return deleted, dropped
        return self._guard(work)

    def requeue_lapsed(self) -> list[str]:
        """Queue again the cells whose worker's claim lapsed (bench_protocol/recovery.py)."""
        from bench_protocol.recovery import requeue_lapsed_cells

        return self._guard(lambda: requeue_lapsed_cells(self.r, self.broker))

    # -- workers ---------------------------------------------------------------------------
    def live_workers(self) -> list[dict]:
        """Workers whose heartbeat key is alive; names whose key lapsed are pruned."""
        def read():
            names = sorted(self.r.smembers(keys.WORKERS))
            if not names:
                return []
            raws = self.r.mget([keys.worker(n) for n in names])
            currents = self.r.mget([keys.worker_current(n) for n in names])
            dead = [n for n, raw in zip(names, raws) if not raw]
            if dead:
                self.r.srem(keys.WORKERS, *dead)
            out = []
            for raw, current in zip(raws, currents):
                if raw:
                    info = json.loads(raw)
                    info["current"] = current
                    out.append(info)
            return out
        return self._guard(read)

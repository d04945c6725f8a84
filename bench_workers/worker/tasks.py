"""The one task, ``benchctl.run_cell``: validate the spec, claim the cell, measure, save.

A second delivery of a cell (a redelivery after a crash, a restore after a Redis restart)
never measures it twice at once: the claim key says someone is on it, and the delivery
retries later; a cell with a finished record is not measured again.

A cell is measured only as its run's stored spec defines it: a task whose cell spec differs
(sent by hand, say, with another model or one iteration) saves a ``spec_mismatch`` error
record instead. A cell whose measuring process keeps dying (the kernel's OOM killer) is given
``max_cell_deaths`` deaths (bench_protocol/settings.py), counted by the worker's parent as
Celery sees each one; its next delivery saves a ``crashed`` error record, so the run ends.

A finished measurement is never thrown away because the store cannot take it: the save waits
for a Redis that is away or at its memory limit, with the claim kept, and the record goes to
the worker's spool (bench_workers/worker/spool.py) at the first refusal.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import signal
import time
from collections import Counter

from bench_protocol.errors import BenchError, SpecError
from bench_protocol.keys import TASK_RUN_CELL
from bench_protocol.lifecycle import FINISHED, HOST_FULL, CellState
from bench_protocol.records import error_record
from bench_protocol.spec import CellSpec, RunSpec, parse_cell_id

from ..cell.measure import ModelCache, measure_cell
from .record_store import RecordStore
from .settings import WorkerSettings
from .spool import Spool, spool_dir

log = logging.getLogger("benchctl.worker")
# A cell this host may not take (--hosts-per-pool) goes back to the pool's queue this soon: its
# next delivery may reach a worker of another host.
HOST_BOUNCE_S = 2.0

_cache = ModelCache()  # lives in the measuring child, between cells
_spool: Spool | None = None  # set by register_tasks: the worker's own folder
_client = (None, None)


def _store(settings: WorkerSettings) -> RecordStore:
    """A Redis client per process: made after the fork, never shared across it."""
    global _client
    pid, client = _client
    if pid != os.getpid():
        client = settings.broker.redis(timeout=10)
        _client = (os.getpid(), client)
    return RecordStore(client, settings.shared.claim_ttl)


def _lost(store: RecordStore, run_id: str) -> str | None:
    """Why a run is missing from the store when Redis lost it (bench_protocol/durability.py)."""
    from bench_protocol.durability import lost_run_reason

    try:
        return lost_run_reason(store.r, run_id)
    except Exception:  # Redis away: the plain refusal stands
        return None


def _apply_threads(settings: WorkerSettings) -> None:
    """torch threads for this worker (OMP_NUM_THREADS, set by bench-worker, covers OpenMP)."""
    if settings.threads:
        import torch

        if torch.get_num_threads() != settings.threads:
            torch.set_num_threads(settings.threads)


def _spec_mismatch(store: RecordStore, cell: CellSpec) -> str | None:
    """Why the task's cell is not the cell its run's stored spec defines, or None when it is."""
    raw = store.run_spec(cell.run_id)
    try:
        run = RunSpec.from_dict(json.loads(raw)) if raw else None
    except (ValueError, TypeError, AttributeError, BenchError) as exc:
        return f"run {cell.run_id}'s stored spec cannot be read ({type(exc).__name__}: {str(exc)[:200]}); not measured"
    stored = run.cell_of(cell.cell_id) if run else None
    if stored is None:
        return f"run {cell.run_id}'s stored spec has no cell {cell.cell_id}; not measured"
    differ = cell.differences(stored)
    if differ:
        return (f"the task's cell spec differs from run {cell.run_id}'s stored spec in {', '.join(differ)}; "
                "not measured (a cell is measured only as `benchctl submit` stored it)")
    return None


def _save(store: RecordStore, record: dict, worker: str, claim: str) -> bool:
    """Save the record, waiting for a store that is away or full; the measurement goes to the
    local spool at the first refusal, so neither the task's time limit nor a restart loses it."""
    cell_id = record["cell_id"]

    def keep():
        path = _spool.put(record)
        log.warning("cell %s: the store refused its record; kept in %s until it is saved", cell_id, path)
    saved = store.save(record, worker, claim, on_first_refusal=keep)
    _spool.drop(cell_id)  # saved, or refused for good (another attempt's now, cancelled, gone)
    return saved


def _crashed(cell: CellSpec, deaths: list[dict], context: dict) -> dict:
    """The record of a cell whose measuring process died on it ``len(deaths)`` times."""
    how = Counter(d.get("status") or "?" for d in deaths)
    hosts = list(dict.fromkeys(str(d.get("host") or "?") for d in deaths))
    signals = list(dict.fromkeys(d.get("signal") or d.get("status") or "?" for d in deaths))
    message = (f"its measuring process died {len(deaths)} times on this cell "
               f"({', '.join(f'{status} x{n}' for status, n in how.items())}) on {', '.join(hosts)}; not measured "
               "again. The kernel's OOM killer ends a process this way when the host runs out of memory: try a smaller "
               f"batch or a host with more memory, then `benchctl retry {cell.run_id} --errors`")
    record = error_record(cell.__dict__ | {"cell_id": cell.cell_id}, "crashed", message, **context)
    record["error"].update(signals=signals, hosts=hosts, deaths=len(deaths))
    return record


_EXITED = re.compile(r"exited prematurely: (.+?)(?: Job: \d+)?\.?$")


def _note_death(settings: WorkerSettings, cell_id: str, why: str, limit: int) -> None:
    """In the worker's parent: the measuring process died under ``cell_id`` (Celery's
    WorkerLostError, ``why``): counted against the cell before its message is queued again."""
    import redis

    from bench_protocol.broker import redact

    found = _EXITED.search(why)
    status = found.group(1) if found else why
    sig = re.search(r"\((SIG[A-Z0-9]+)\)", status)
    entry = {"status": status, "signal": sig.group(1) if sig else None, "host": settings.fingerprint.get("hostname"),
             "worker": settings.name, "at": time.time()}
    try:
        n = _store(settings).note_death(parse_cell_id(cell_id)["run_id"], cell_id, settings.name, entry)
    except (SpecError, redis.RedisError) as exc:
        log.warning("cell %s: its measuring process died (%s); the death could not be counted: %s", cell_id, status,
                    redact(exc))
        return
    if n:
        log.warning("cell %s: its measuring process died (%s): death %d of %d before it is recorded as crashed",
                    cell_id, status, n, limit)


def _request_class(settings: WorkerSettings, limit: int):
    """run_cell's request class: its ``on_failure`` runs in the worker's parent, which sees a
    measuring process die under a cell (WorkerLostError) before Celery puts the message back."""
    from celery.exceptions import WorkerLostError
    from celery.worker.request import Request

    class CellRequest(Request):
        def on_failure(self, exc_info, send_failed_event=True, return_ok=False):
            exc = getattr(exc_info, "exception", None)
            exc = getattr(exc, "exc", exc)  # billiard's ExceptionWithTraceback wraps it
            if isinstance(exc, WorkerLostError):
                _note_death(settings, self.id, str(exc), limit)
            return super().on_failure(exc_info, send_failed_event=send_failed_event, return_ok=return_ok)

    return CellRequest


def _test_kill_hook(cell_id: str) -> None:
    """For tests only (tests/test_faults.py): $BENCHCTL_TEST_KILL_CHILD, a part of a cell id,
    makes the measuring process SIGKILL itself on the cells it names, as the OOM killer would."""
    part = os.environ.get("BENCHCTL_TEST_KILL_CHILD")
    if part and part in cell_id:
        os.kill(os.getpid(), signal.SIGKILL)


def register_tasks(app, settings: WorkerSettings) -> None:
    global _spool
    max_deaths = settings.shared.max_cell_deaths  # resolved once, at the worker's start
    _spool = Spool(spool_dir(settings.name))

    # max_retries=None on the task: retry(max_retries=None) alone means "the default of 3", and a
    # cell held by another worker, or one this host may not take, waits as long as its run does.
    @app.task(name=TASK_RUN_CELL, bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=None,
              Request=_request_class(settings, max_deaths))
    def run_cell(self, payload):
        try:
            cell = CellSpec.from_dict(payload)
        except SpecError as exc:
            log.error("refused task %s: %s", self.request.id, exc)
            return {"status": "refused", "reason": str(exc)}
        if self.request.id != cell.cell_id or cell.pool != settings.pool:
            log.error("refused task %s: its id or pool does not match its cell %s", self.request.id, cell.cell_id)
            return {"status": "refused", "reason": "task id or pool does not match the cell"}
        store = _store(settings)
        state = store.cell_state(cell.run_id, cell.cell_id)
        if state is None:
            lost = _lost(store, cell.run_id)
            log.error("refused task %s: no run %s holds this cell%s", self.request.id, cell.run_id,
                      f" ({lost})" if lost else "")
            return {"status": "refused", "reason": lost or "cell not part of a submitted run"}
        if state == CellState.CANCELLED:
            return {"status": CellState.CANCELLED.value}
        if store.finished(cell.cell_id):
            log.info("cell %s already measured; delivery dropped", cell.cell_id)
            return {"status": "already measured"}
        host = str(settings.fingerprint.get("hostname") or settings.name)
        claim, holder, now = store.claim(cell.run_id, cell.cell_id, settings.name, host, cell.host_cap)
        if claim is None and holder is None:  # settled meanwhile (finished, cancelled) or gone
            log.info("cell %s is %s; delivery dropped", cell.cell_id, now or "gone from its run")
            return {"status": "already measured" if now in FINISHED else now or "refused"}
        if claim is None and holder == HOST_FULL:  # --hosts-per-pool: another host of the pool must take it
            log.info("cell %s: host %s took its %d of this cell's repeats; handed back for another host",
                     cell.cell_id, host, cell.host_cap)
            # Back in the queue now, then this worker's one slot held a while: its consumer fetches
            # nothing meanwhile, so another host's worker is first in line for the task (waiting
            # first and handing it back after, the same worker fetched it straight back; two hosts
            # each holding the other's cell did so for ever). The wait varies, so two such workers
            # do not keep waking in step.
            handed_back = self.retry(countdown=0, max_retries=None, throw=False)  # sent now, not raised yet
            time.sleep(HOST_BOUNCE_S * random.uniform(0.5, 1.5))
            raise handed_back  # the task's state is RETRY, as Flower and `celery events` show it
        if claim is None:
            log.warning("cell %s is being measured by %s; trying again later", cell.cell_id, holder)
            raise self.retry(countdown=2 * settings.shared.claim_refresh, max_retries=None)
        context = {"fingerprint_id": settings.fingerprint.get("fingerprint_id"), "host": settings.fingerprint.get("hostname"),
                   "worker": settings.name, "attempt": self.request.retries,
                   "redelivered": bool((self.request.delivery_info or {}).get("redelivered"))}
        try:
            limit = settings.shared.max_time_limit()
            mismatch = _spec_mismatch(store, cell)
            deaths = store.deaths(cell.cell_id) if mismatch is None else []
            if mismatch:
                log.error("cell %s: %s", cell.cell_id, mismatch)
                record = error_record(cell.__dict__ | {"cell_id": cell.cell_id}, "spec_mismatch", mismatch, **context)
            elif len(deaths) >= max_deaths:
                record = _crashed(cell, deaths, context)
                log.error("cell %s: %s", cell.cell_id, record["error"]["message"])
            elif cell.rules.time_limit > limit:
                record = error_record(cell.__dict__ | {"cell_id": cell.cell_id}, "invalid_spec",
                                      f"time limit {cell.rules.time_limit:g}s is above this worker's maximum "
                                      f"{limit:g}s ({settings.shared.redelivery_timeout()[1]})", **context)
            elif _spool.get(cell.cell_id) is not None:  # measured by an earlier attempt here, never saved
                record = _spool.get(cell.cell_id)
                log.warning("cell %s: saving the record an earlier attempt kept in %s (not measured again)",
                            cell.cell_id, _spool.path(cell.cell_id))
            else:
                _apply_threads(settings)
                with store.keep_claim(cell.run_id, cell.cell_id, settings.name, claim):
                    _test_kill_hook(cell.cell_id)
                    record = measure_cell(cell, settings.torch_device, cache=_cache,
                                          allowed_dirs=settings.models_dirs, context=context)
            record["device"] = settings.device
            record.setdefault("finished_at", time.time())
            with store.keep_claim(cell.run_id, cell.cell_id, settings.name, claim):
                saved = _save(store, record, settings.name, claim)
        except BaseException:
            store.release(cell.cell_id, settings.name, claim)
            raise
        if not saved:  # fenced: the cell was queued again while this worker was cut off, or Redis lost it
            now = store.cell_state(cell.run_id, cell.cell_id)
            lost = _lost(store, cell.run_id) if now is None else None
            if now == CellState.CANCELLED:
                log.warning("cell %s: save refused, the cell was cancelled", cell.cell_id)
                return {"cell_id": cell.cell_id, "status": CellState.CANCELLED.value}
            if lost:
                log.error("cell %s: save refused, its run is gone from the store (%s)", cell.cell_id, lost)
                return {"cell_id": cell.cell_id, "status": "refused", "reason": lost}
            if now is None:  # nothing written: no key of a deleted run comes back without its run
                log.warning("cell %s: save refused, its run is no longer in the store (deleted by "
                            "`benchctl runs --prune --force`, or past its retention)", cell.cell_id)
                return {"cell_id": cell.cell_id, "status": "refused", "reason": "run deleted"}
            log.warning("cell %s: save refused, the cell was queued again and is another attempt's now", cell.cell_id)
            return {"cell_id": cell.cell_id, "status": "superseded"}
        log.info("cell %s: %s", cell.cell_id, record["status"])
        return {"cell_id": cell.cell_id, "status": record["status"]}

"""The one task, ``benchctl.run_cell``: validate the spec, claim the cell, measure, save.

A second delivery of a cell (a redelivery after a crash, a restore after a Redis restart)
never measures it twice at once: the claim key says someone is on it, and the delivery
retries later; a cell with a finished record is not measured again.
"""

from __future__ import annotations

import logging
import os
import time

from bench_protocol.celery_app import CLAIM_REFRESH, max_time_limit, redelivery_timeout
from bench_protocol.errors import SpecError
from bench_protocol.keys import TASK_RUN_CELL
from bench_protocol.records import CellState, error_record
from bench_protocol.spec import CellSpec

from .measure import ModelCache, measure_cell
from .record_store import RecordStore
from .settings import WorkerSettings

log = logging.getLogger("benchctl.worker")

_cache = ModelCache()  # lives in the measuring child, between cells
_client = (None, None)


def _store(settings: WorkerSettings) -> RecordStore:
    """A Redis client per process: made after the fork, never shared across it."""
    global _client
    pid, client = _client
    if pid != os.getpid():
        client = settings.broker.redis(timeout=10)
        _client = (os.getpid(), client)
    return RecordStore(client)


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


def register_tasks(app, settings: WorkerSettings) -> None:
    @app.task(name=TASK_RUN_CELL, bind=True, acks_late=True, reject_on_worker_lost=True)
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
        claim, holder = store.claim(cell.run_id, cell.cell_id, settings.name)
        if claim is None:
            log.warning("cell %s is being measured by %s; trying again later", cell.cell_id, holder)
            raise self.retry(countdown=2 * CLAIM_REFRESH, max_retries=None)
        context = {"fingerprint_id": settings.fingerprint.get("fingerprint_id"), "host": settings.fingerprint.get("hostname"),
                   "worker": settings.name, "attempt": self.request.retries,
                   "redelivered": bool((self.request.delivery_info or {}).get("redelivered"))}
        try:
            limit = max_time_limit(settings.broker.kind)
            if cell.rules.time_limit > limit:
                record = error_record(cell.__dict__ | {"cell_id": cell.cell_id}, "invalid_spec",
                                      f"time limit {cell.rules.time_limit:g}s is above this worker's maximum "
                                      f"{limit:g}s ({redelivery_timeout(settings.broker.kind)[1]})", **context)
            else:
                _apply_threads(settings)
                with store.keep_claim(cell.run_id, cell.cell_id, settings.name, claim):
                    record = measure_cell(cell, settings.torch_device, cache=_cache,
                                          allowed_dirs=settings.models_dirs, context=context)
            record["device"] = settings.device
            record.setdefault("finished_at", time.time())
            saved = store.save(record, settings.name, claim)
        except BaseException:
            store.release(cell.cell_id, settings.name, claim)
            raise
        if not saved:  # fenced: the cell was queued again while this worker was cut off, or Redis lost it
            lost = _lost(store, cell.run_id) if store.cell_state(cell.run_id, cell.cell_id) is None else None
            if lost:
                log.error("cell %s: save refused, its run is gone from the store (%s)", cell.cell_id, lost)
                return {"cell_id": cell.cell_id, "status": "refused", "reason": lost}
            log.warning("cell %s: save refused, the cell was queued again and is another attempt's now", cell.cell_id)
            return {"cell_id": cell.cell_id, "status": "superseded"}
        log.info("cell %s: %s", cell.cell_id, record["status"])
        return {"cell_id": cell.cell_id, "status": record["status"]}

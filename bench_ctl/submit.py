"""Submitting a run: validate, check each pool has a live worker, record the run, send one
task per cell (by name, routed to its pool's queue)."""

from __future__ import annotations

from bench_protocol.celery_app import HARD_LIMIT_GRACE, make_app, max_time_limit
from bench_protocol.errors import NoLiveWorker, SpecError
from bench_protocol.keys import TASK_RUN_CELL
from bench_protocol.records import CellState
from bench_protocol.spec import RunSpec

from .store import ControllerStore


def pools_without_workers(store: ControllerStore, pools: list[str]) -> list[str]:
    live = {w["pool"] for w in store.live_workers()}
    return [p for p in pools if p not in live]


def shared_hosts(store: ControllerStore, pools: list[str]) -> dict[str, list[str]]:
    """Hosts whose live workers serve more than one of ``pools``: their cells will overlap."""
    by_host: dict[str, set[str]] = {}
    for w in store.live_workers():
        if w.get("pool") in pools:
            by_host.setdefault(w.get("hostname") or "?", set()).add(w["pool"])
    return {host: sorted(ps) for host, ps in by_host.items() if len(ps) > 1}


def submit(store: ControllerStore, spec: RunSpec, allow_missing: bool = False) -> str:
    if spec.rules.time_limit > max_time_limit():
        raise SpecError(f"time limit {spec.rules.time_limit:g}s is above {max_time_limit():g}s: the visibility timeout "
                        "must exceed every cell's hard time limit (raise BENCHCTL_VISIBILITY_TIMEOUT on every host)")
    missing = pools_without_workers(store, spec.pools)
    if missing and not allow_missing:
        raise NoLiveWorker(f"no live worker for pool{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                           "(start bench-worker there, or pass --allow-missing to queue anyway)")
    cells = spec.cells()
    store.create_run(spec.run_id, spec.to_dict(), [c.cell_id for c in cells])
    app = make_app(store.broker)
    try:
        with app.producer_or_acquire() as producer:
            for cell in cells:
                app.send_task(TASK_RUN_CELL, args=[cell.to_dict()], task_id=cell.cell_id, queue=cell.pool,
                              routing_key=cell.pool, soft_time_limit=cell.rules.time_limit,
                              time_limit=cell.rules.time_limit + HARD_LIMIT_GRACE, producer=producer,
                              retry=True, retry_policy={"max_retries": 3, "interval_start": 0.2, "interval_step": 0.5})
    finally:
        app.close()
    store.set_run_status(spec.run_id, CellState.QUEUED.value)
    return spec.run_id

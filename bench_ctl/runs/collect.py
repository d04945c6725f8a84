"""Watching and collecting a run: wait (with a timeout) for every cell, then merge the records
and each worker's fingerprint into one results document."""

from __future__ import annotations

import time

from bench_protocol.errors import BrokerError, SpecError
from bench_protocol.lifecycle import ERROR, FINISHED, OPEN, SETTLED, CellState
from bench_protocol.records import error_record, results_document
from bench_protocol.spec import parse_cell_id

from .store import ControllerStore

POLL_S = 0.5
CORRUPT = "corrupt record"  # a missing cell's state when its record cannot be read
LOST = "record lost"  # ... when the cell finished and its record is gone (evicted, lost in a restart)


def requeue_or_warn(store: ControllerStore, warned: set) -> list[str]:
    """Queue again the cells whose worker's claim lapsed; when the store or broker refuses (the
    cells stay as they are, tried again on the next poll), say so once per kind of failure."""
    import sys

    try:
        return store.requeue_lapsed()
    except BrokerError as exc:
        if str(exc) not in warned:
            warned.add(str(exc))
            print(f"benchctl: warning: cells whose worker died are not queued again yet: {exc}", file=sys.stderr)
        return []


def reconcile_failures(store: ControllerStore, run_id: str, states: dict[str, str], spec: dict) -> int:
    """Turn Celery FAILURE results of unfinished cells into error records: a cell killed by its
    hard time limit leaves no record of its own, only Celery's FAILURE."""
    open_cells = [c for c, s in states.items() if s in OPEN]
    made = 0
    for cell_id, meta in store.backend_results(open_cells).items():
        if meta.get("status") != "FAILURE":
            continue
        exc = (meta.get("result") or {}).get("exc_type", "error")
        if exc == "WorkerLostError":
            continue  # the message is delivered again: not a final answer
        kind = "time_limit" if "TimeLimit" in exc else "error"
        message = f"{exc}: {(meta.get('result') or {}).get('exc_message')}"
        if kind == "time_limit":
            message = f"hard time limit exceeded ({exc}); the cell was killed"
        coords = parse_cell_id(cell_id)
        if store.put_record(error_record({"cell_id": cell_id, **coords}, kind, message, worker=None, host=None)):
            states[cell_id] = ERROR
            made += 1
    return made


def wait(store: ControllerStore, run_id: str, timeout: float, on_poll=None) -> dict[str, str]:
    """Poll until every cell is finished or cancelled, or the timeout passes."""
    meta = store.run_meta(run_id)
    deadline = time.monotonic() + timeout
    last_reconcile = 0.0
    warned: set = set()
    while True:
        states = store.cell_states(run_id)
        if time.monotonic() - last_reconcile > 2.0:
            reconcile_failures(store, run_id, states, meta["spec"])
            if requeue_or_warn(store, warned):  # a dead worker's cells, queued again
                states = store.cell_states(run_id)
            last_reconcile = time.monotonic()
        if on_poll is not None:
            on_poll(states)
        if all(s in SETTLED for s in states.values()):
            return states
        if time.monotonic() >= deadline:
            return states
        time.sleep(POLL_S)


def _missing(cell_id: str, state: str, corrupt: str | None) -> dict:
    """A cell the report lacks and why; ``error`` set when its record is unreadable, or gone
    although the cell finished (Redis lost or evicted it)."""
    if corrupt:
        return {"cell_id": cell_id, "state": CORRUPT, "error": corrupt}
    if state in FINISHED:
        return {"cell_id": cell_id, "state": LOST, "error": f"{state}, but its record is gone from Redis"}
    return {"cell_id": cell_id, "state": state}


def gather(store: ControllerStore, run_id: str) -> dict:
    meta = store.run_meta(run_id)
    states = store.cell_states(run_id)
    corrupt: dict[str, str] = {}
    recs = store.records(sorted(states), corrupt)
    cells = [recs[c] for c in sorted(states) if c in recs and recs[c].get("status") in FINISHED]
    missing = [_missing(c, states[c], corrupt.get(c)) for c in sorted(states)
               if c not in recs or recs[c].get("status") not in FINISHED]
    fps = store.fingerprints({r.get("fingerprint_id") for r in cells})
    run = {"run_id": run_id, "spec": meta["spec"], "created": meta["created"], "mode": "distributed",
           "status": "complete" if not missing else "partial", "collected": time.time()}
    doc = results_document(run, cells, fps)
    doc["missing"] = missing
    return doc


def retry(store: ControllerStore, run_id: str, errors: bool = False) -> list[str]:
    """Queue again the cells of a run that have no readable record and no live claim (their
    message was lost, e.g. with a Redis that kept nothing across a restart, or their record is
    corrupt) and, with ``errors``, the cells
    whose record is an error (after the cause was fixed). Returns the cell ids queued."""
    from bench_protocol.celery_app import make_app
    from bench_protocol.recovery import send_cells
    from bench_protocol.spec import RunSpec

    from .progress import still_sending, unsent

    meta = store.run_meta(run_id)
    if still_sending(meta):
        raise SpecError(f"run {run_id} is being sent now ({meta.get('sent')} of {meta.get('n_cells')} cells' tasks "
                        "so far): retry it once its submit has ended")
    ordered = RunSpec.from_dict(meta["spec"]).cells()
    cells = {c.cell_id: c for c in ordered}
    # A run whose submit stopped part way: the tasks it sent are queued still; only the rest go.
    half_sent = unsent(meta)
    never_sent = {c.cell_id for c in ordered[half_sent[0]:]} if half_sent else None
    states = store.cell_states(run_id)
    records = store.records(sorted(states))  # a record that cannot be read counts as none
    held = store.holders(sorted(states))
    picked = []
    for cell_id, state in sorted(states.items()):
        rec = records.get(cell_id)
        if state == CellState.CANCELLED or cell_id in held or cell_id not in cells:
            continue
        if never_sent is not None and rec is None and cell_id not in never_sent:
            continue  # its task was sent and waits in its queue
        if rec is None:
            picked.append(cell_id)  # no task on its way, or its record lost or unreadable
        elif errors and rec is not None and rec.get("status") == CellState.ERROR:
            picked.append(cell_id)
    if not picked:
        if half_sent:
            store.note_sent(run_id, half_sent[1], done=True)  # the unsent cells were all cancelled
        return []
    from bench_protocol.broker import ping_broker
    from bench_protocol.errors import SendError

    ping_broker(store.broker)
    store.reset_cells(run_id, picked)
    app = make_app(store.settings, results=False)
    try:
        with app.producer_or_acquire() as producer:
            send_cells(app, [cells[c] for c in picked], producer)
    except SendError as exc:
        # The cells whose tasks were not certainly sent go back as they were: none stays queued
        # with no task (a restored cell whose task did go out is measured or dropped as usual).
        unsent = picked[exc.sent:]
        try:
            store.restore_cells(run_id, {c: states[c] for c in unsent}, {c: records[c] for c in unsent if c in records})
            after = "the others are as they were"
        except BrokerError as again:
            after = f"putting the others back failed too ({again}): run this command again once the store is back"
        raise SendError(f"run {run_id}: {exc.sent} of {len(picked)} cells queued again, then sending failed: {exc}; "
                        f"{after}", exc.sent, len(picked)) from None
    finally:
        app.close()
    if half_sent:
        store.note_sent(run_id, half_sent[1], done=True)
    return picked

"""Recovery from liveness: a cell whose claim lapsed is queued again within seconds.

A worker refreshes its claim on the cell it measures four times per TTL (the setting
BENCHCTL_CLAIM_TTL, 20 s by default). When a claim has lapsed while the cell is still
``running`` (its worker was killed, lost its host, or was stopped), whoever notices first — a live worker's heartbeat, or the
controller's ``status`` and ``collect`` polls — takes the cell in one Lua step (a short-lived
claim of its own, so two noticers queue it once), sends its task again, and only then moves the
cell back to ``queued``: a cell is never ``queued`` without a task on its way (a send that
fails, say Redis at its memory limit, leaves the cell ``running`` with its claim lapsed, for
the next noticer). This does not wait for the
Redis transport's visibility timeout; the message that the timeout restores later finds the
cell measured and is dropped. A worker cut off meanwhile cannot overwrite the newer record:
its save is fenced by its claim's token. The Lua steps are the lifecycle's (bench_protocol/lifecycle.py).
"""

from __future__ import annotations

import json

from . import keys, lifecycle
from .lifecycle import REQUEUER, claim_value

REQUEUE_HOLD_S = 30  # how long that claim holds the cell if its requeuer dies between the steps


def _run_cells(client, run_id: str) -> dict | None:
    """The run's cells by id from its stored spec, or None when the spec cannot be read (lost
    or corrupt): such a run's cells are left as they are."""
    from .errors import BenchError
    from .spec import RunSpec

    try:
        raw = client.hget(keys.run(run_id), "spec")
        return {c.cell_id: c for c in RunSpec.from_dict(json.loads(raw)).cells()} if raw else None
    except (ValueError, TypeError, AttributeError, BenchError):
        return None


def requeue_lapsed(client, send) -> list[str]:
    """Queue again every claimed cell whose claim has lapsed; ``send(cell_spec)`` publishes its
    task (and raises when it cannot). Returns the cell ids queued again."""
    from .errors import SpecError
    from .spec import parse_cell_id

    claimed = sorted(client.smembers(keys.CLAIMED))
    if not claimed:
        return []
    alive = client.mget([keys.cell_claim(c) for c in claimed])
    requeued = []
    specs: dict[str, dict | None] = {}
    for cell_id, holder in zip(claimed, alive):
        if holder:
            continue
        try:
            run_id = parse_cell_id(cell_id)["run_id"]
        except SpecError:
            continue
        if run_id not in specs:
            specs[run_id] = _run_cells(client, run_id)
        cell = (specs[run_id] or {}).get(cell_id)
        if cell is None:
            continue
        mine = claim_value(REQUEUER)
        if not lifecycle.hold_if_lapsed(client, run_id, cell_id, mine, REQUEUE_HOLD_S):
            continue
        try:
            send(cell)
        except BaseException:
            try:
                lifecycle.release(client, cell_id, mine)
            except Exception:
                pass  # our claim lapses by its TTL; the cell stays running, for the next noticer
            raise
        if lifecycle.requeue(client, run_id, cell_id, mine):
            requeued.append(cell_id)
    return requeued


def requeue_lapsed_cells(client, settings) -> list[str]:
    """:func:`requeue_lapsed` with a Celery app of its own, made only when a cell must be sent."""
    apps = []

    def send(cell):
        if not apps:
            from .celery_app import make_app

            apps.append(make_app(settings, results=False))
        send_cells(apps[0], [cell])

    try:
        return requeue_lapsed(client, send)
    finally:
        for app in apps:
            app.close()


PUBLISH_BATCH = 1000  # messages per pipelined write to a Redis broker


def send_cells(app, cells, producer=None, progress=None) -> int:
    """Publish one task per cell, by name, to its pool's queue, with its own time limits.

    Every message is a normal Celery task message (workers and Flower read it unchanged); with
    a Redis broker kombu writes them in pipelines of PUBLISH_BATCH (one round trip each, not one
    per cell). ``argsrepr`` is the cell id: Celery would otherwise print the whole cell spec
    into every message. Returns how many were sent; a failure part way raises SendError with
    how many were certainly sent (the cells in that order before the failing batch).
    ``progress(sent)`` is called after each batch: a sender killed part way leaves that count."""
    from .broker import redact, store_error
    from .celery_app import HARD_LIMIT_GRACE
    from .errors import SendError
    from .keys import TASK_RUN_CELL

    cells = list(cells)
    declared: set[str] = set()  # a pool's queue is declared with its first message, not every one
    sent = 0
    try:
        with app.producer_or_acquire(producer) as producer:
            for start in range(0, len(cells), PUBLISH_BATCH):
                chunk = cells[start:start + PUBLISH_BATCH]
                with producer.batch(4 * PUBLISH_BATCH):  # flushed as one pipeline when the chunk ends
                    for cell in chunk:
                        cell_id = cell.cell_id
                        app.send_task(TASK_RUN_CELL, args=[cell.to_dict()], task_id=cell_id, queue=cell.pool,
                                      routing_key=cell.pool, soft_time_limit=cell.rules.time_limit,
                                      time_limit=cell.rules.time_limit + HARD_LIMIT_GRACE, producer=producer,
                                      argsrepr=f"[{cell_id}]", kwargsrepr="{}",
                                      declare=[] if cell.pool in declared else None, retry=True,
                                      retry_policy={"max_retries": 3, "interval_start": 0.2, "interval_step": 0.5})
                        declared.add(cell.pool)
                sent += len(chunk)
                if progress is not None:
                    progress(sent)
    except Exception as exc:  # the broker failed: Redis errors, kombu's BatchPublishError, AMQP errors
        import redis

        cause = exc
        while cause.__cause__ is not None and not isinstance(cause, redis.RedisError):
            cause = cause.__cause__
        where = redact(str(app.conf.broker_url))
        why = store_error(cause, where) if isinstance(cause, redis.RedisError) else \
            f"the broker at {where} failed: {type(cause).__name__}: {redact(cause)}"
        raise SendError(why, sent, len(cells)) from None
    return sent


__all__ = ["requeue_lapsed", "requeue_lapsed_cells", "send_cells"]

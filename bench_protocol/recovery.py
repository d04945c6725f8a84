"""Recovery from liveness: a cell whose claim lapsed is queued again within seconds.

A worker refreshes its claim on the cell it measures every CLAIM_REFRESH seconds (TTL
CLAIM_TTL). When a claim has lapsed while the cell is still ``running`` (its worker was killed,
lost its host, or was stopped), whoever notices first — a live worker's heartbeat, or the
controller's ``status`` and ``collect`` polls — moves the cell back to ``queued`` in one Lua
script (so two noticers queue it once) and sends its task again. This does not wait for the
Redis transport's visibility timeout; the message that the timeout restores later finds the
cell measured and is dropped. A worker cut off meanwhile cannot overwrite the newer record:
its save is fenced by its claim's token (bench_workers/record_store.py).
"""

from __future__ import annotations

import json

from . import keys

# KEYS: claim, run cells, claimed set; ARGV: cell id. 1 when this call queued the cell again.
REQUEUE_IF_LAPSED = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('SREM', KEYS[3], ARGV[1])
if redis.call('HGET', KEYS[2], ARGV[1]) ~= 'running' then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], 'queued')
return 1
"""


def requeue_lapsed(client, send) -> list[str]:
    """Queue again every claimed cell whose claim has lapsed; ``send(cell_spec_dict, cell_id)``
    publishes its task. Returns the cell ids queued again."""
    from .spec import RunSpec, parse_cell_id

    claimed = sorted(client.smembers(keys.CLAIMED))
    if not claimed:
        return []
    alive = client.mget([keys.cell_claim(c) for c in claimed])
    requeued = []
    specs: dict[str, dict] = {}
    for cell_id, holder in zip(claimed, alive):
        if holder:
            continue
        run_id = parse_cell_id(cell_id)["run_id"]
        if not client.eval(REQUEUE_IF_LAPSED, 3, keys.cell_claim(cell_id), keys.run_cells(run_id), keys.CLAIMED, cell_id):
            continue
        if run_id not in specs:
            specs[run_id] = {c.cell_id: c for c in RunSpec.from_dict(json.loads(client.hget(keys.run(run_id), "spec"))).cells()}
        cell = specs[run_id].get(cell_id)
        if cell is not None:
            send(cell)
            requeued.append(cell_id)
    return requeued


def requeue_lapsed_cells(client, broker) -> list[str]:
    """:func:`requeue_lapsed` with a Celery app of its own, made only when a cell must be sent."""
    apps = []

    def send(cell):
        if not apps:
            from .celery_app import make_app

            apps.append(make_app(broker, results=False))
        send_cells(apps[0], [cell])

    try:
        return requeue_lapsed(client, send)
    finally:
        for app in apps:
            app.close()


PUBLISH_BATCH = 1000  # messages per pipelined write to a Redis broker


def send_cells(app, cells, producer=None) -> None:
    """Publish one task per cell, by name, to its pool's queue, with its own time limits.

    Every message is a normal Celery task message (workers and Flower read it unchanged); with
    a Redis broker kombu writes them in pipelines of PUBLISH_BATCH (one round trip each, not one
    per cell). ``argsrepr`` is the cell id: Celery would otherwise print the whole cell spec
    into every message."""
    from .celery_app import HARD_LIMIT_GRACE
    from .keys import TASK_RUN_CELL

    declared: set[str] = set()  # a pool's queue is declared with its first message, not every one
    with app.producer_or_acquire(producer) as producer, producer.batch(PUBLISH_BATCH):
        for cell in cells:
            cell_id = cell.cell_id
            app.send_task(TASK_RUN_CELL, args=[cell.to_dict()], task_id=cell_id, queue=cell.pool,
                          routing_key=cell.pool, soft_time_limit=cell.rules.time_limit,
                          time_limit=cell.rules.time_limit + HARD_LIMIT_GRACE, producer=producer,
                          argsrepr=f"[{cell_id}]", kwargsrepr="{}", declare=[] if cell.pool in declared else None,
                          retry=True, retry_policy={"max_retries": 3, "interval_start": 0.2, "interval_step": 0.5})
            declared.add(cell.pool)


__all__ = ["requeue_lapsed", "requeue_lapsed_cells", "send_cells", "REQUEUE_IF_LAPSED"]

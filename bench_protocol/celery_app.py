"""The one Celery app both sides use: the controller sends tasks by name, workers run them.

Its fixed settings are constants here, each with the reason for its value (Celery's own
layout); what a deployment may change (the broker, the redelivery timeouts) comes in the
Settings given to :func:`make_app` (bench_protocol/settings.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .settings import Settings

# JSON only, both ways: a worker never unpickles what a queue hands it.
TASK_SERIALIZER = "json"
RESULT_SERIALIZER = "json"
ACCEPT_CONTENT = ["json"]

# Late acknowledgement: a cell whose worker dies mid-measurement stays in the broker's
# unacked set and is delivered again once the visibility timeout passes. The trap
# (celery#5935, #7651): a message still running when the visibility timeout passes is
# delivered a second time. So every cell's hard time limit stays below the visibility
# timeout (checked on submit and again by the worker), and a claim key in Redis guards the
# rest: a second delivery of a cell that is being measured waits instead of measuring.
ACKS_LATE = True
REJECT_ON_WORKER_LOST = True
# One benchmark at a time per worker: nothing else shares the device while it is timed.
PREFETCH_MULTIPLIER = 1
CONCURRENCY = 1

# Between the soft time limit (the cell records "time limit exceeded") and the hard kill.
HARD_LIMIT_GRACE = 15.0
# Safety margin between a cell's hard limit and the visibility timeout.
VISIBILITY_MARGIN = 15.0
# The redelivery timeouts (Redis's visibility timeout, RabbitMQ's consumer_timeout) are settings
# a deployment may change: they live in bench_protocol/settings.py, and make_app takes them from
# the Settings it is given.

# How often a consumer sweeps for messages past the visibility timeout (kombu's default
# effective sweep is 10 s x 10 calls; we want the bound to be the timeout plus a few seconds).
RESTORE_INTERVAL = 5
# A worker's claim on the cell it measures lapses this long after its last refresh (the
# default of the BENCHCTL_CLAIM_TTL setting, bench_protocol/settings.py), so a dead worker's
# cell is queued again soon and long before the message is delivered again. It is refreshed
# CLAIM_REFRESHES times per TTL: three refreshes may be missed (a stalled thread, a Redis
# hiccup) before a live worker loses its cell.
CLAIM_TTL = 20.0
CLAIM_REFRESHES = 4
# The worker registry's TTL; the heartbeat refreshes it.
WORKER_TTL = 15.0
WORKER_HEARTBEAT = 3.0
# How long a new measuring child may take to start: it imports torch and transformers and
# measures the device's ceilings (GEMM per dtype, copy bandwidth) before taking a cell, so no
# cell pays for either (Celery's default of 4 s would kill it on a busy host).
CHILD_START_TIMEOUT = 120.0
# AMQP heartbeat (seconds): RabbitMQ closes a silent connection after about two missed beats,
# so a worker whose host vanished has its cell redelivered within ~20 s (Celery's default of
# 120 s would take minutes). A SIGKILLed worker's socket closes at once anyway.
AMQP_HEARTBEAT = 10.0
# Results of the Celery backend are a backstop only (our own records are in benchctl keys).
RESULT_EXPIRES = 7 * 24 * 3600


def make_app(settings: Settings, results: bool = True):
    """The Celery app of ``settings``' deployment. ``results=False`` for the controller: it only
    sends, and reads outcomes from benchctl's records, so it needs no result backend (no client,
    no subscriptions)."""
    from celery import Celery

    broker = settings.broker
    app = Celery("benchctl", broker=broker.url, backend=broker.store_url if results else None)
    # A controller sends no task-sent events: one more broker write per cell of a submit, for an
    # event that Flower does not need (workers report received, started and finished).
    ssl_opts = broker.ssl_options()
    transport = {} if broker.kind == "rabbitmq" else {
        "visibility_timeout": settings.visibility_timeout,
        "unacked_restore_interval": RESTORE_INTERVAL,
        "unacked_restore_throttle": 1,
        "socket_timeout": 10,
        "socket_connect_timeout": 10,
        # Workers: reconnect quickly after a Redis restart instead of stalling. Not for a
        # controller: it would stop kombu from pipelining a submit's messages (a retried
        # pipeline could publish twice); a send is retried by its own retry policy instead.
        "retry_on_timeout": results,
        "health_check_interval": 10,
    }
    app.conf.update(
        task_serializer=TASK_SERIALIZER,
        result_serializer=RESULT_SERIALIZER,
        event_serializer="json",
        accept_content=ACCEPT_CONTENT,
        result_accept_content=ACCEPT_CONTENT,
        task_acks_late=ACKS_LATE,
        # A backstop for a message that carries no limits of its own: no cell outlives the
        # visibility timeout. submit sends each cell's own (smaller) limits.
        task_soft_time_limit=settings.max_time_limit(),
        task_time_limit=settings.max_time_limit() + HARD_LIMIT_GRACE,
        task_reject_on_worker_lost=REJECT_ON_WORKER_LOST,
        worker_prefetch_multiplier=PREFETCH_MULTIPLIER,
        worker_concurrency=CONCURRENCY,
        worker_proc_alive_timeout=CHILD_START_TIMEOUT,
        broker_transport_options=transport,
        result_backend_transport_options={"visibility_timeout": settings.visibility_timeout, "retry_policy": {"timeout": 10.0}},
        result_expires=RESULT_EXPIRES,
        task_default_queue="cpu",
        # Pools are queue names chosen at run time: a pool's queue is declared when a worker first
        # consumes it or submit first sends to it, so no pool needs configuring here.
        task_create_missing_queues=True,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        worker_hijack_root_logger=False,
        # Task events on, so Flower and `celery events` see every cell as it is received,
        # started and finished: a few small messages per cell on the broker's event exchange.
        worker_send_task_events=True,
        task_send_sent_event=results,
        task_track_started=True,
        # The cell spec travels in the message, the record goes to benchctl keys.
        task_ignore_result=False,
        redis_socket_timeout=10,
        redis_socket_connect_timeout=10,
        redis_retry_on_timeout=True,
        broker_channel_error_retry=True,
        broker_heartbeat=AMQP_HEARTBEAT,
        broker_connection_timeout=10,
    )
    if broker.broker_ssl_options():
        app.conf.broker_use_ssl = broker.broker_ssl_options()
    if ssl_opts:
        app.conf.redis_backend_use_ssl = ssl_opts
    return app


def __getattr__(name: str):
    """The entry point of Celery's own tooling — ``celery -A bench_protocol.celery_app inspect
    ping``, Flower — which looks for ``app`` here. That process has no benchctl flags, so its
    Settings are resolved from the environment and the defaults, once, on first use (importing
    this module never imports Celery). benchctl's own commands never come here: they make their
    app from the Settings they resolved."""
    if name in ("app", "celery"):
        from .settings import Settings

        globals()["app"] = globals()["celery"] = make_app(Settings.resolve())
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""benchctl's settings, resolved once per process from flags, the environment and defaults.

Every setting that a worker and a controller of one deployment share lives in :class:`Settings`:
where the broker and the store are (with their TLS files) and how long a delivery may run
unacknowledged. The process's edge resolves it once — ``bench-worker`` from its flags, each
``benchctl`` command from its ``--broker``/``--store``, the ``celery -A`` tooling from the
environment alone — and passes it on (``make_app``, the worker's settings, the controller's
store). Nothing reads these environment variables elsewhere; ``benchctl config`` prints what was
resolved and where each value came from.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields

from .broker import (
    ENV_AMQP_CA,
    ENV_AMQP_CERT,
    ENV_AMQP_KEY,
    ENV_CA,
    ENV_CERT,
    ENV_KEY,
    ENV_STORE_URL,
    ENV_URL,
    BrokerConfig,
    redact,
)
from .celery_app import CLAIM_REFRESHES, CLAIM_TTL, HARD_LIMIT_GRACE, VISIBILITY_MARGIN
from .lifecycle import MAX_CELL_DEATHS, MAX_CELL_DEATHS_LIMIT
from .numeric import env_number

DEFAULT = "default"
# The longest redelivery timeout accepted (30 days): beyond, a lost message would wait longer
# than any run is kept.
MAX_REDELIVERY_TIMEOUT = 30 * 86400.0
# The shortest: a cell's hard-limit grace plus the safety margin, with some time left to measure.
MIN_REDELIVERY_TIMEOUT = HARD_LIMIT_GRACE + VISIBILITY_MARGIN
# A claim's bounds: below 2 s a refresh every half second; above 10 minutes a dead worker's cell
# would wait longer than the redelivery that liveness is there to beat.
MIN_CLAIM_TTL, MAX_CLAIM_TTL = 2.0, 600.0


@dataclass(frozen=True)
class Settings:
    """One deployment's shared settings and, in ``sources``, where each came from: ``default``,
    ``$VARIABLE`` or ``--flag``."""

    broker: BrokerConfig
    # Seconds. 20 minutes: the default cell time limit (15 min) plus grace and margin fits below
    # it, and a cell whose worker was killed is measured again within about this long. Every
    # worker and controller of a deployment must agree on it.
    visibility_timeout: float = field(default=1200.0, metadata={
        "env": "BENCHCTL_VISIBILITY_TIMEOUT", "help": "how long Redis lets a delivery run unacknowledged (seconds)",
        "lo": MIN_REDELIVERY_TIMEOUT, "hi": MAX_REDELIVERY_TIMEOUT, "lo_open": True})
    # RabbitMQ: a delivery not acknowledged within the broker's consumer_timeout (30 minutes by
    # default) closes the consumer's channel and is delivered again, so it bounds a cell's time as
    # the visibility timeout does on Redis. Set this to the broker's value where it was changed.
    consumer_timeout: float = field(default=1800.0, metadata={
        "env": "BENCHCTL_CONSUMER_TIMEOUT",
        "help": "RabbitMQ's consumer_timeout: how long it lets a delivery run unacknowledged (seconds)",
        "lo": MIN_REDELIVERY_TIMEOUT, "hi": MAX_REDELIVERY_TIMEOUT, "lo_open": True})
    # A worker's: how soon the cell of a worker that died (or lost its host) is queued again. Short
    # enough to recover in seconds; long enough that a live worker, refreshing it CLAIM_REFRESHES
    # times per TTL, does not lose its cell to a stall. Workers of one deployment may differ.
    claim_ttl: float = field(default=CLAIM_TTL, metadata={
        "env": "BENCHCTL_CLAIM_TTL",
        "help": "how long a worker's claim on its cell outlives the worker: a dead worker's cell is queued again "
                "after about this long (seconds)",
        "lo": MIN_CLAIM_TTL, "hi": MAX_CLAIM_TTL})
    # A worker's: deaths of its measuring process on one cell before the cell ends as a
    # 'crashed' record (bench_protocol/lifecycle.py).
    max_cell_deaths: int = field(default=MAX_CELL_DEATHS, metadata={
        "env": "BENCHCTL_MAX_CELL_DEATHS", "help": "deaths of a measuring process on one cell before it is 'crashed'",
        "lo": 1, "hi": MAX_CELL_DEATHS_LIMIT, "integer": True})
    sources: dict = field(default_factory=dict, compare=False)

    @classmethod
    def resolve(cls, broker: str | None = None, store: str | None = None) -> Settings:
        """Flags (``broker``, ``store``; None where not given) over the environment over the
        defaults, every value checked: a bad one is one line (SpecError or BrokerError)."""
        env = os.environ
        sources = {
            "broker": "--broker" if broker else f"${ENV_URL}" if env.get(ENV_URL) else DEFAULT,
            "store": "--store" if store else f"${ENV_STORE_URL}" if env.get(ENV_STORE_URL) else "default (the broker)",
        }
        for name, var in (("redis_ca", ENV_CA), ("redis_cert", ENV_CERT), ("redis_key", ENV_KEY),
                          ("amqp_ca", ENV_AMQP_CA), ("amqp_cert", ENV_AMQP_CERT), ("amqp_key", ENV_AMQP_KEY)):
            sources[name] = f"${var}" if env.get(var) else DEFAULT
        numbers = {}
        for f in fields(cls):
            m = f.metadata
            if m.get("env"):
                numbers[f.name] = env_number(m["env"], f.default, m["lo"], m["hi"], integer=m.get("integer", False),
                                             lo_open=m.get("lo_open", False))
                sources[f.name] = f"${m['env']}" if env.get(m["env"], "").strip() else DEFAULT
        return cls(broker=BrokerConfig.resolve(broker, store), sources=sources, **numbers)

    def redelivery_timeout(self) -> tuple[float, str]:
        """How long this broker lets a delivery run unacknowledged, and the setting that says so."""
        if self.broker.kind == "rabbitmq":
            return self.consumer_timeout, "RabbitMQ's consumer_timeout (BENCHCTL_CONSUMER_TIMEOUT)"
        return self.visibility_timeout, "the visibility timeout (BENCHCTL_VISIBILITY_TIMEOUT)"

    @property
    def claim_refresh(self) -> float:
        """How often a worker refreshes its claim on the cell it measures (seconds)."""
        return self.claim_ttl / CLAIM_REFRESHES

    def max_time_limit(self) -> float:
        """The longest soft time limit a cell may ask for under this broker's redelivery timeout."""
        return self.redelivery_timeout()[0] - HARD_LIMIT_GRACE - VISIBILITY_MARGIN

    def described(self) -> dict[str, dict]:
        """Every setting as ``{name: {"value", "source", "help"}}``, passwords redacted: what
        ``benchctl config`` prints."""
        b = self.broker
        rows = {
            "broker": (b.url, "broker URL: Redis or RabbitMQ, carries the tasks"),
            "store": (b.store_url, "store URL: Redis, benchctl's records"),
            "redis_ca": (b.ca_certs, f"CA for rediss:// URLs (${ENV_CA})"),
            "redis_cert": (b.certfile, f"client certificate for rediss:// URLs (${ENV_CERT})"),
            "redis_key": (b.keyfile, f"client key for rediss:// URLs (${ENV_KEY})"),
            "amqp_ca": (b.amqp_ca, f"CA for amqps:// URLs (${ENV_AMQP_CA})"),
            "amqp_cert": (b.amqp_cert, f"client certificate for amqps:// URLs (${ENV_AMQP_CERT})"),
            "amqp_key": (b.amqp_key, f"client key for amqps:// URLs (${ENV_AMQP_KEY})"),
        }
        for f in fields(self):
            if f.metadata.get("help"):
                rows[f.name] = (getattr(self, f.name), f"{f.metadata['help']} (${f.metadata['env']})")
        out = {name: {"value": redact(value) if isinstance(value, str) else value,
                      "source": self.sources.get(name, DEFAULT), "help": text}
               for name, (value, text) in rows.items()}
        setting = self.redelivery_timeout()[1]
        out["max_time_limit"] = {"value": self.max_time_limit(), "source": "derived",
                                 "help": f"the longest --time-limit a cell may have on this broker: {setting} "
                                         f"minus {HARD_LIMIT_GRACE + VISIBILITY_MARGIN:g}s"}
        return out


__all__ = ["Settings", "MAX_REDELIVERY_TIMEOUT", "MIN_REDELIVERY_TIMEOUT"]

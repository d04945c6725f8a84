"""Does the store keep benchctl's keys? Its identity key, and its eviction policy.

A Redis restarted without persistence, flushed, or evicting keys at its memory limit loses
runs, cell states, records and queued tasks without a word. So the first ``submit`` or
``bench-worker`` against a store writes an identity key (``benchctl:v2:store``: when benchctl
first used it, and a random id), and every worker checks on each heartbeat that the key it
saw is still there. A worker that finds it gone or replaced says so in its log and writes the
key anew with ``lost_at`` (when the loss was found). A run id carries its submission time: a
missing run submitted before ``lost_at`` is reported as lost by Redis, not as "no run"; a
store with no identity key at all is said to hold no benchctl keys.

``submit`` and ``bench-worker`` also read the store's ``maxmemory-policy`` (and a worker its
persistence) with CONFIG GET, where the server allows it, and warn on anything but
``noeviction``: an evicting Redis drops whatever key it picks, a run's spec or a queued task.
"""

from __future__ import annotations

import calendar
import secrets
import time

from . import keys


def mark_first_use(client, pipe=None, lost: bool = False) -> None:
    """Write the identity key unless it is there (HSETNX: the first writer wins), stamped with
    the Redis server's clock (no host's clock skew); into ``pipe`` when given. ``lost``: the
    key was found gone or replaced, so Redis lost benchctl's keys by now (``lost_at``)."""
    import redis

    try:
        seconds, micros = client.time()
        now = repr(seconds + micros / 1e6)
    except redis.ResponseError:  # TIME refused to this user: this host's clock
        now = repr(time.time())
    target = client if pipe is None else pipe
    target.hsetnx(keys.STORE, "created", now)
    target.hsetnx(keys.STORE, "id", secrets.token_hex(8))
    if lost:
        target.hsetnx(keys.STORE, "lost_at", now)


def identity(client) -> dict | None:
    """The identity key's fields ({'created': float, 'id': str, 'lost_at': float or None}),
    or None when there is none."""
    raw = client.hgetall(keys.STORE)
    if not raw:
        return None
    try:
        lost_at = raw.get("lost_at")
        return {"created": float(raw.get("created")), "id": raw.get("id"),
                "lost_at": float(lost_at) if lost_at else None}
    except (TypeError, ValueError):
        return None


def submitted_at(run_id: str) -> float | None:
    """A run's submission time from its id (YYYYMMDD-HHMMSS in UTC), or None."""
    try:
        return float(calendar.timegm(time.strptime(run_id[:15], "%Y%m%d-%H%M%S")))
    except (TypeError, ValueError):
        return None


LOST = "restarted without persistence, flushed, or evicted keys at its memory limit"


def lost_run_reason(client, run_id: str) -> str | None:
    """Why ``run_id`` may be missing from the store through Redis's doing; None when nothing
    says so (a run that never existed here, or expired, or was pruned)."""
    ident = identity(client)
    if ident is None:
        return (f"this Redis holds no trace of benchctl (its key written at first use is absent): if the run was "
                f"submitted here, Redis lost every benchctl key ({LOST})")
    at = submitted_at(run_id)
    if ident["lost_at"] is not None and at is not None and at <= ident["lost_at"] + 1:
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ident["lost_at"]))
        return (f"Redis lost benchctl's keys before {when}, when a worker found them gone ({LOST}); a run submitted "
                "before then is gone")
    return None


def policy_warnings(client, where: str, persistence: bool = False) -> list[str]:
    """Warnings about a store that may drop benchctl's keys: an eviction policy other than
    ``noeviction``, and with ``persistence`` no AOF and no snapshots. Nothing when CONFIG GET
    is refused (a managed Redis, an ACL user)."""
    import redis

    out = []
    try:
        policy = client.config_get("maxmemory-policy").get("maxmemory-policy")
        if policy and policy != "noeviction":
            out.append(f"Redis at {where} has maxmemory-policy {policy}: at its memory limit it evicts keys, a run's "
                       "spec, cell states, records or queued tasks; set maxmemory-policy noeviction")
        if persistence:
            conf = client.config_get("appendonly")
            conf.update(client.config_get("save"))
            if conf.get("appendonly") == "no" and not (conf.get("save") or "").strip():
                out.append(f"Redis at {where} persists nothing (appendonly no, no save points): a restart loses every "
                           "queued cell and record; set appendonly yes")
    except redis.ResponseError:  # CONFIG refused: nothing to check
        pass
    return out


__all__ = ["identity", "lost_run_reason", "mark_first_use", "policy_warnings", "submitted_at"]

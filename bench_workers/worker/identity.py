"""A worker is who it says it is: checked by ``bench-worker`` before it takes a cell.

- **Its pool is of its device's kind**: ``--device cpu --queue cuda`` would put CPU numbers in
  the GPU columns, so a pool named for another device kind is refused unless
  ``--allow-pool-mismatch`` says so (a pool named for no kind, ``--queue fast-box``, is fine).
- **Its device is there**: torch, in a subprocess (the parent never initialises CUDA or NVML),
  must see it; ``--allow-missing-device`` starts anyway (tests, dry runs: every cell then
  becomes an error record).
- **Its name is its own**: one live process holds a name (``worker:{name}:owner``, refreshed by
  the heartbeat); a second one refuses to start. A registration left by a process that died is
  waited out (it lapses within the registry's TTL).
- **It is listed live only while it consumes**: ``worker:{name}`` is written when its consumer
  starts consuming and removed when the broker connection is lost (a consumer bootstep), so
  ``submit`` never counts a worker the broker refuses.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import socket
import threading
import time

from bench_protocol.broker import redact
from bench_protocol.celery_app import WORKER_HEARTBEAT, WORKER_TTL
from bench_protocol.errors import BenchError, SpecError
from bench_protocol.spec import pool_kind

log = logging.getLogger("benchctl.worker")

DEVICE_KINDS = ("cpu", "cuda", "mps")


class NameTaken(BenchError):
    """Another live worker holds this worker's name."""


def check_pool(device: str, pool: str, allow_mismatch: bool = False) -> None:
    """A pool named for another device kind than ``device`` refuses, unless allowed."""
    kind, implied = device.split(":")[0], pool_kind(pool)
    if implied in DEVICE_KINDS and implied != kind and not allow_mismatch:
        raise SpecError(f"--queue {pool} is a {implied} pool but --device {device} is a {kind} device: its numbers "
                        f"would fill the {implied} columns; name a {kind} pool, or pass --allow-pool-mismatch")


def check_device(device: str, missing: str | None, allow_missing: bool = False) -> None:
    """``missing`` (why torch cannot use the device, or None) as one line, unless allowed."""
    if missing and not allow_missing:
        raise SpecError(f"--device {device} is not usable on this host: {missing} "
                        "(pass --allow-missing-device to start anyway, e.g. for a dry run)")
    if missing:
        log.warning("--device %s is not usable on this host (%s): started anyway (--allow-missing-device); "
                    "every cell will be an error record", device, missing)


def owner() -> dict:
    """This process, as a name's owner key names it."""
    return {"instance": secrets.token_hex(8), "hostname": socket.gethostname(), "pid": os.getpid()}


def hold_name(store, name: str, me: dict, patience: float = WORKER_TTL + 2 * WORKER_HEARTBEAT) -> None:
    """Take the worker name, or raise NameTaken naming the live holder. A holder's key is
    refreshed every WORKER_HEARTBEAT while it lives: seen refreshed, the holder is alive; left
    to lapse (a process that died), the name is taken over."""
    holder = store.hold_name(name, me)
    if holder is None:
        return
    who = f"pid {holder.get('pid', '?')} on {holder.get('hostname', '?')}"
    log.info("a worker named %s is registered (%s); waiting up to %gs to see whether it is alive", name, who, patience)
    last, deadline = store.name_ttl(name), time.monotonic() + patience
    while time.monotonic() < deadline:
        time.sleep(0.5)
        if store.hold_name(name, me) is None:
            log.info("the registration of %s lapsed (%s is gone): the name is this worker's now", name, who)
            return
        ttl = store.name_ttl(name)
        if ttl > last:
            break
        last = ttl
    raise NameTaken(f"a live worker named {name} is running ({who}): two workers of one name would take over "
                    "each other's cells; give this one another --name, or stop that one first")


class Presence:
    """What the heartbeat keeps: the name (always) and the live listing (only while the consumer
    consumes). Losing the name to another process stops this worker."""

    def __init__(self, store, name: str, info: dict, me: dict) -> None:
        self.store, self.name, self.info, self.me = store, name, info, me
        self._listed = False
        self._lock = threading.Lock()
        self._lost = False

    def beat(self) -> None:
        holder = self.store.hold_name(self.name, self.me)
        if holder is not None:
            if not self._lost:
                self._lost = True
                log.error("another worker named %s (pid %s on %s) holds the name now: this worker stops", self.name,
                          holder.get("pid", "?"), holder.get("hostname", "?"))
                self.offline()
                os.kill(os.getpid(), signal.SIGTERM)  # Celery's warm shutdown
            return
        with self._lock:
            if self._listed:
                self.store.register(self.name, self.info)

    def online(self) -> None:
        import redis

        with self._lock:
            if self._lost:
                return
            self._listed = True
            try:
                self.store.register(self.name, self.info)
            except redis.RedisError as exc:  # the store is away: the next heartbeat lists it
                log.warning("worker %s is consuming but could not be listed live yet: %s", self.name, redact(exc))
                return
        log.info("worker %s is consuming pool %s: listed live", self.name, self.info.get("pool"))

    def offline(self) -> None:
        with self._lock:
            was, self._listed = self._listed, False
        if was:
            self.store.unregister(self.name)
            log.info("worker %s stopped consuming (a lost broker connection, or shutting down): not listed live",
                     self.name)

    def close(self) -> None:
        with self._lock:
            self._listed = False
        self.store.unregister(self.name)
        self.store.release_name(self.name, self.me["instance"])


def listing_step(presence: Presence):
    """A consumer bootstep: listed live once the task consumer has started, unlisted whenever the
    consumer stops (a lost connection restarts it; a shutdown ends it)."""
    from celery import bootsteps

    class LiveListing(bootsteps.StartStopStep):
        requires = ("celery.worker.consumer.tasks:Tasks",)

        def start(self, c):
            presence.online()

        def stop(self, c):
            presence.offline()

        def shutdown(self, c):
            presence.offline()

        terminate = stop

    return LiveListing

"""A worker's settings, fixed by ``bench-worker`` before Celery starts and inherited by the
forked child that measures."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bench_protocol.broker import BrokerConfig
from bench_protocol.settings import Settings


@dataclass
class WorkerSettings:
    device: str  # as the host names it: cuda:1
    torch_device: str  # as this process sees it after pinning: cuda:0
    pool: str  # the queue consumed
    name: str
    shared: Settings  # the deployment's (bench_protocol/settings.py), resolved once by bench-worker
    threads: int | None = None
    cpus: list[int] | None = None
    models_dirs: list[Path] = field(default_factory=list)
    fingerprint: dict = field(default_factory=dict)

    @property
    def broker(self) -> BrokerConfig:
        return self.shared.broker

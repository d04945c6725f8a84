"""``bench-worker``: a Celery worker pinned to one device, consuming exactly its pool's queue.

The parent process stays responsive (prefork pool, concurrency 1): it answers control
messages and keeps the registry heartbeat while the forked child measures. The parent never
initialises CUDA (NVML only); ``cuda:N`` is pinned through CUDA_VISIBLE_DEVICES before torch
is imported, so the child sees only GPU N.
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import signal
import socket
import sys
import time
from pathlib import Path

from bench_protocol.broker import BrokerConfig, ping, redact
from bench_protocol.errors import BenchError, SpecError
from bench_protocol.spec import check_pool, check_torch_device, pool_kind


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench-worker", description=__doc__.splitlines()[0].replace("``", ""))
    p.add_argument("--device", required=True, help="cpu, cuda, cuda:N or mps")
    p.add_argument("--queue", help="pool (queue) to consume; default: the device kind (cpu, cuda, mps)")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's choice, or the --cpus count)")
    p.add_argument("--cpus", help="CPU affinity, e.g. 0-3 or 0,2,4")
    p.add_argument("--name", help="worker name (default POOL-PID@HOSTNAME)")
    p.add_argument("--broker", help="redis://, rediss://, amqp:// or amqps:// URL (default $BENCHCTL_BROKER_URL)")
    p.add_argument("--store", help="redis:// or rediss:// URL of benchctl's records (default $BENCHCTL_STORE_URL, "
                                   "else the broker when it is Redis)")
    p.add_argument("--models-dir", action="append", default=[],
                   help="directory whose model folders tasks may name (repeatable); other paths are refused")
    p.add_argument("--loglevel", default="INFO")
    return p.parse_args(argv)


def parse_cpus(text: str) -> list[int]:
    cpus: list[int] = []
    try:
        for part in text.split(","):
            lo, _, hi = part.strip().partition("-")
            cpus.extend(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        raise SpecError(f"malformed --cpus {text!r}: use a list like 0-3 or 0,2,4") from None
    available = os.sched_getaffinity(0)
    bad = [c for c in cpus if c not in available]
    if bad:
        raise SpecError(f"--cpus {text}: CPU {bad[0]} is not available here (available: {sorted(available)})")
    return sorted(set(cpus))


def _die_with_parent() -> None:
    """The measuring child dies with the worker: a killed worker leaves no orphan measuring."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _warm_child(settings) -> None:
    """The measuring child, before its first cell: torch threads, imports, the device's ceilings."""
    log = logging.getLogger("benchctl.worker")
    try:
        from .peaks import warm_start
        from .tasks import _apply_threads

        t0 = time.perf_counter()
        _apply_threads(settings)
        peaks = warm_start(settings.torch_device)
        summary = ", ".join(f"{d} {p['gemm_tflops']:.3g} TFLOP/s" for d, p in peaks.items())
        log.info("measuring process ready in %.1fs; GEMM peaks: %s", time.perf_counter() - t0, summary or "none")
    except Exception as exc:  # a cell measures its ceilings itself if this failed
        log.warning("measuring process warm start failed: %s", exc)


def configure(args: argparse.Namespace):
    from .settings import WorkerSettings

    device = check_torch_device(args.device)
    pool = check_pool(args.queue or device.split(":")[0])
    if pool_kind(pool) != device.split(":")[0] and args.queue is None:
        raise SpecError(f"pool {pool} does not match device {device}")
    torch_device = device
    if device.startswith("cuda:"):
        # Pin before torch is imported anywhere in this process tree.
        os.environ["CUDA_VISIBLE_DEVICES"] = device.split(":")[1]
        torch_device = "cuda:0"
    cpus = parse_cpus(args.cpus) if args.cpus else None
    if cpus:
        os.sched_setaffinity(0, cpus)
    threads = args.threads or (len(cpus) if cpus else None)
    if threads is not None:
        if threads <= 0:
            raise SpecError("--threads must be positive")
        os.environ["OMP_NUM_THREADS"] = str(threads)
    dirs = []
    for d in args.models_dir:
        path = Path(d).expanduser().resolve()
        if not path.is_dir():
            raise SpecError(f"--models-dir {d} is not a directory")
        dirs.append(path)
    broker = BrokerConfig.resolve(args.broker, args.store)
    name = args.name or f"{pool}-{os.getpid()}@{socket.gethostname()}"
    return WorkerSettings(device=device, torch_device=torch_device, pool=pool, name=name, broker=broker,
                          threads=threads, cpus=cpus, models_dirs=dirs)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.loglevel.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = configure(args)
    client = ping(settings.broker)

    from celery import signals

    from bench_protocol.celery_app import make_app

    from .fingerprint import host_fingerprint
    from .record_store import RecordStore
    from .tasks import register_tasks

    settings.fingerprint = host_fingerprint(settings.device, settings.threads, settings.cpus)
    store = RecordStore(client)
    store.put_fingerprint(settings.fingerprint)
    fp = settings.fingerprint
    gpu = (fp.get("gpu") or {}).get("name")
    info = {"name": settings.name, "pool": settings.pool, "device": settings.device, "hostname": fp["hostname"],
            "fingerprint_id": fp["fingerprint_id"], "pid": os.getpid(), "started": time.time(),
            "summary": f"{fp.get('cpu_model')}, {fp.get('logical_cores')} cores, {fp.get('memory_gb')} GB"
                       + (f", {gpu}" if gpu else "") + f", torch {fp.get('torch')}, {fp.get('torch_threads')} threads"}
    store.register(settings.name, info)
    heartbeat = store.heartbeat(settings.name, info, settings.broker).start()

    app = make_app(settings.broker)
    register_tasks(app, settings)

    @signals.worker_process_init.connect(weak=False)
    def _child_init(**_):  # within CHILD_START_TIMEOUT (bench_protocol/celery_app.py)
        _die_with_parent()
        _warm_child(settings)

    logging.getLogger("benchctl.worker").info("worker %s serving pool %s on %s via %s", settings.name, settings.pool,
                                              settings.device, settings.broker.describe())
    try:
        app.worker_main([
            "worker", f"--loglevel={args.loglevel}", "-Q", settings.pool, "-c", "1", "-P", "prefork",
            "-n", settings.name, "--without-gossip", "--without-mingle", "--without-heartbeat", "-O", "fair",
        ])
    finally:
        heartbeat.stop()
        store.unregister(settings.name)
    return 0


def main(argv=None) -> None:
    args = parse_args(argv)
    try:
        sys.exit(run(args))
    except BenchError as exc:
        print(f"bench-worker: error: {redact(exc)}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()

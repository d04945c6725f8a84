"""``bench-worker``: a Celery worker pinned to one device, consuming exactly its pool's queue.

The parent process stays responsive (prefork pool, concurrency 1): it answers control
messages and keeps the registry heartbeat while the forked child measures. The parent never
initialises CUDA or NVML (neither survives a fork; a GPU host's fingerprint is taken in a
subprocess); ``cuda:N`` is pinned through CUDA_VISIBLE_DEVICES before torch is imported, so
the child sees only GPU N.
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

from bench_protocol.broker import BrokerConfig, ping, ping_broker, redact
from bench_protocol.errors import BenchError, SpecError
from bench_protocol.numeric import check_number
from bench_protocol.settings import Settings
from bench_protocol.spec import check_pool, check_torch_device

from . import identity

MAX_THREADS = 4096


class _OneLineParser(argparse.ArgumentParser):
    """Usage errors in one line (``bench-worker: error: ...``), like every other refusal."""

    def error(self, message: str):
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(2)


def _threads(text: str) -> int:
    try:
        return check_number(text, "threads", 1, MAX_THREADS, integer=True)
    except SpecError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_args(argv=None) -> argparse.Namespace:
    p = _OneLineParser(prog="bench-worker", description=__doc__.splitlines()[0].replace("``", ""))
    p.add_argument("--device", required=True, help="cpu, cuda, cuda:N or mps")
    p.add_argument("--queue", help="pool (queue) to consume; default: the device kind (cpu, cuda, mps)")
    p.add_argument("--allow-pool-mismatch", action="store_true",
                   help="consume a pool named for another device kind (--device cpu --queue cuda)")
    p.add_argument("--allow-missing-device", action="store_true",
                   help="start although torch cannot use --device here (tests, dry runs: every cell is an error record)")
    p.add_argument("--threads", type=_threads, help="torch threads (default: torch's choice, or the --cpus count)")
    p.add_argument("--cpus", help="CPU affinity, e.g. 0-3 or 0,2,4")
    p.add_argument("--name", help="worker name, held by one live worker at a time (default POOL-PID@HOSTNAME)")
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
        from ..device.peaks import warm_start
        from .tasks import _apply_threads

        t0 = time.perf_counter()
        _apply_threads(settings)
        peaks = warm_start(settings.torch_device)
        summary = ", ".join(f"{d} {p['gemm_tflops']:.3g} TFLOP/s" for d, p in peaks.items())
        log.info("measuring process ready in %.1fs; GEMM peaks: %s", time.perf_counter() - t0, summary or "none")
    except Exception as exc:  # a cell measures its ceilings itself if this failed
        log.warning("measuring process warm start failed: %s", exc)


def pin_cuda_device(device: str, env) -> str:
    """Pin ``cuda:N`` before torch is imported anywhere in this process tree; return the device as
    the pinned processes see it (cuda:0). GPUs are numbered in PCI bus order (nvidia-smi's)
    unless the environment chose an order; an inherited CUDA_VISIBLE_DEVICES (integers or
    UUIDs) is indexed, never overwritten: cuda:1 under CUDA_VISIBLE_DEVICES=4,5 is GPU 5."""
    if not device.startswith("cuda"):
        return device
    env.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    if ":" not in device:
        return device
    n = int(device.split(":")[1])
    inherited = env.get("CUDA_VISIBLE_DEVICES")
    if inherited is None:
        env["CUDA_VISIBLE_DEVICES"] = str(n)
        return "cuda:0"
    entries = [e.strip() for e in inherited.split(",") if e.strip()]
    if n >= len(entries):
        raise SpecError(f"--device {device}: CUDA_VISIBLE_DEVICES={inherited!r} makes {len(entries)} GPU(s) visible")
    env["CUDA_VISIBLE_DEVICES"] = entries[n]
    return "cuda:0"


def configure(args: argparse.Namespace):
    from .settings import WorkerSettings

    device = check_torch_device(args.device)
    pool = check_pool(args.queue or device.split(":")[0])
    identity.check_pool(device, pool, args.allow_pool_mismatch)
    torch_device = pin_cuda_device(device, os.environ)
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
    shared = Settings.resolve(args.broker, args.store)
    name = args.name or f"{pool}-{os.getpid()}@{socket.gethostname()}"
    return WorkerSettings(device=device, torch_device=torch_device, pool=pool, name=name, shared=shared,
                          threads=threads, cpus=cpus, models_dirs=dirs)


def _require_torch(device: str) -> None:
    """A worker measures with torch: a host without it (a controller-only install) refuses to
    start instead of taking cells it cannot measure. A GPU worker's parent stays free of torch
    (it forks the measuring child), so it asks a subprocess; a CPU worker's parent imports torch
    for its fingerprint anyway."""
    why = None
    if device.startswith("cuda"):
        import subprocess

        try:
            res = subprocess.run([sys.executable, "-c", "import torch"], capture_output=True, text=True, timeout=300)
            if res.returncode != 0:
                why = (res.stderr.strip().splitlines() or ["import torch failed"])[-1]
        except (OSError, subprocess.SubprocessError) as exc:
            why = f"{type(exc).__name__}: {exc}"
    else:
        try:
            import torch  # noqa: F401
        except Exception as exc:  # ImportError, or a torch whose libraries fail to load
            why = f"{type(exc).__name__}: {exc}"
    if why:
        raise SpecError(f"torch cannot be imported here ({why}); a worker measures with it: "
                        "install it with pip install 'benchctl[worker]'")


def run(args: argparse.Namespace) -> int:
    """Check who this worker is (its flags, torch, the store, the broker, its device, its name),
    then serve its pool until it is stopped."""
    logging.basicConfig(level=args.loglevel.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = configure(args)  # every flag and setting checked: a bad one is one line
    _require_torch(settings.device)
    client = ping(settings.broker)
    ping_broker(settings.broker)  # a RabbitMQ that refuses the credentials or the vhost: one line, exit 3

    from ..device.fingerprint import device_missing, fingerprint_in_subprocess, host_fingerprint
    from .record_store import RecordStore

    if settings.device.startswith("cuda"):
        # NVML and CUDA are not fork-safe: this process forks the measuring child, so the GPU's
        # fingerprint is taken by a subprocess that sees what the child will see; the same
        # subprocess says whether torch can use the GPU at all.
        settings.fingerprint = fingerprint_in_subprocess(settings.device, settings.torch_device, settings.threads,
                                                         settings.cpus, check_device=True)
        missing = settings.fingerprint.pop("device_missing", None)
    else:
        settings.fingerprint = host_fingerprint(settings.device, settings.threads, settings.cpus)
        missing = device_missing(settings.torch_device)
    identity.check_device(settings.device, missing, args.allow_missing_device)
    store = RecordStore(client, settings.shared.claim_ttl)
    me = identity.owner()
    identity.hold_name(store, settings.name, me)  # a live worker of this name: refused here, in one line
    try:
        return _serve(args, settings, store, me)
    finally:
        store.release_name(settings.name, me["instance"])


def _serve(args: argparse.Namespace, settings, store, me: dict) -> int:
    from celery import signals

    from bench_protocol.celery_app import make_app

    from ..runtimes import installed as installed_runtimes
    from .tasks import register_tasks

    for warning in store.first_use(settings.broker.safe_url):
        logging.getLogger("benchctl.worker").warning(warning)
    store.put_fingerprint(settings.fingerprint)
    fp = settings.fingerprint
    gpu = (fp.get("gpu") or {}).get("name")
    info = {"name": settings.name, "pool": settings.pool, "device": settings.device, "hostname": fp["hostname"],
            "fingerprint_id": fp["fingerprint_id"], "pid": os.getpid(), "started": time.time(),
            "summary": f"{fp.get('cpu_model')}, {fp.get('logical_cores')} cores, {fp.get('memory_gb')} GB"
                       + (f", {gpu}" if gpu else "") + f", torch {fp.get('torch')}, {fp.get('torch_threads')} threads",
            # What this worker can run (libraries found, nothing imported): submit checks variants against it.
            "runtimes": installed_runtimes()}
    presence = identity.Presence(store, settings.name, info, me)
    # Listed live by the consumer once it consumes (identity.listing_step), not before.
    heartbeat = store.heartbeat(settings.name, info, settings.shared, register=presence.beat).start()

    app = make_app(settings.shared)
    app.steps["consumer"].add(identity.listing_step(presence))
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
        presence.close()
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
    except Exception as exc:
        import redis

        if not isinstance(exc, redis.RedisError):
            raise
        from bench_protocol.broker import store_error

        try:
            where = BrokerConfig.resolve(args.broker, args.store).safe_url
        except BenchError:
            where = "the store"
        print(f"bench-worker: error: {store_error(exc, where)}", file=sys.stderr)
        sys.exit(3)


if __name__ == "__main__":
    main()

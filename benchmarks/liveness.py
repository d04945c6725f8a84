"""Liveness check: benchctl's worker registry in Redis against Celery's inspect(), side by side.

`benchctl submit` asks "does each pool have a live worker?" before queuing. Celery's
`inspect().active_queues()` broadcasts and then waits out its whole timeout for replies; the
registry is one read of keys that each worker's heartbeat keeps alive. This starts its own
redis-server on a free port and one bench-worker, then times both, interleaved.

    .venv/bin/python benchmarks/liveness.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_protocol.celery_app import make_app
from bench_protocol.settings import Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=7)
    args = p.parse_args()
    from bench_ctl.runs.store import ControllerStore

    tmp = Path(tempfile.mkdtemp(prefix="benchctl-liveness-"))
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    redis = subprocess.Popen([shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind", "127.0.0.1",
                              "--save", "", "--dir", str(tmp)], stdout=subprocess.DEVNULL)
    worker = None
    try:
        time.sleep(0.5)
        worker = subprocess.Popen([str(Path(sys.executable).parent / "bench-worker"), "--device", "cpu", "--broker", url,
                                   "--name", "liveness@bench"], stdout=open(tmp / "worker.log", "wb"),
                                  stderr=subprocess.STDOUT, env=dict(os.environ, HF_HUB_OFFLINE="1"))
        store = ControllerStore(Settings.resolve(url))
        deadline = time.monotonic() + 60
        while not any(w["pool"] == "cpu" for w in store.live_workers()):
            if time.monotonic() > deadline:
                sys.exit("the worker did not register within 60 s")
            time.sleep(0.2)
        time.sleep(2)  # let the worker's consumer come up for inspect()
        app = make_app(Settings.resolve(url))
        reg, insp = [], []
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            live = {w["pool"] for w in store.live_workers()}
            reg.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            queues = app.control.inspect(timeout=1.0).active_queues() or {}
            insp.append(time.perf_counter() - t0)
            assert "cpu" in live and any(q["name"] == "cpu" for qs in queues.values() for q in qs)
        r, i = statistics.median(reg), statistics.median(insp)
        print(f"registry (Redis keys):        median {r * 1e3:8.2f} ms over {args.rounds} rounds")
        print(f"inspect().active_queues():    median {i * 1e3:8.2f} ms over {args.rounds} rounds")
        print(f"ratio inspect/registry:       {i / r:.0f}x")
        app.close()
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(30)
        redis.terminate()
        redis.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

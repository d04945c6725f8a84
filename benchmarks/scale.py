"""The controller at scale: submit, collect and render runs of 1,000 and 10,000 cells; what a
record costs in Redis; how many Redis commands a cell and a worker cost.

Starts its own redis-server on a free port. No worker is needed: ``benchctl submit
--allow-missing`` queues the run, then finished records are written straight into Redis in the
real layout (each a copy of one real record of the default model, measured here first with
``benchctl run``, its coordinates changed), and ``benchctl collect`` reads and renders them.
Wall times are whole commands, process start included, medians of ``--rounds``.

    .venv/bin/python benchmarks/scale.py [--sizes 1000,10000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(*args: str, env=None) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    res = subprocess.run([str(BIN / "benchctl"), *args], capture_output=True, text=True, env=env)
    took = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"benchctl {' '.join(args[:3])}... failed: {res.stderr.strip()[-500:]}")
    return took, res


def template_record(tmp: Path, env) -> tuple[dict, dict]:
    """One real record of the default model (random weights, batch 1, 3 iterations)."""
    out = tmp / "template"
    run("run", "--devices", "cpu", "--batch-sizes", "1", "--seq-lens", "32", "--warmup", "1", "--iterations", "3",
        "--min-time", "0", "--no-history", "--out", str(out), env=env)
    doc = json.loads((out / "results.json").read_text())
    return doc["cells"][0], doc["fingerprints"]


def grid_args(n: int) -> list[str]:
    """--batch-sizes x --seq-lens making exactly n cells on one pool."""
    seqs = 10 if n >= 10 else 1
    return ["--batch-sizes", ",".join(str(b) for b in range(1, n // seqs + 1)),
            "--seq-lens", ",".join(str(s) for s in range(1, seqs + 1))]


def commands(client) -> int:
    info = client.info("commandstats")
    return sum(v["calls"] for k, v in info.items() if k not in ("cmdstat_info", "cmdstat_config"))


def with_latencies(record: dict, n: int) -> dict:
    import numpy as np

    base = record["latencies_ms"] or [1.0]
    rng = np.random.default_rng(0)
    return dict(record, latencies_ms=(np.median(base) * rng.lognormal(0, 0.05, n)).tolist())


def fill(client, cell_ids: list[str], template: dict, fingerprints: dict) -> None:
    """Finished records for every cell, in the layout workers write (bench_workers/worker/record_store.py)."""
    from bench_protocol import keys, record_codec
    from bench_protocol.spec import parse_cell_id

    pipe = client.pipeline(transaction=False)
    for fid, fp in fingerprints.items():
        pipe.set(keys.fingerprint(fid), json.dumps(fp))
    t0 = time.time()
    for i, cell_id in enumerate(cell_ids):
        coords = parse_cell_id(cell_id)
        # One worker, one cell after another: the times of a real sweep.
        rec = dict(template, cell_id=cell_id, **coords, started_at=t0 + i, finished_at=t0 + i + 0.9)
        pipe.set(keys.cell(cell_id), record_codec.encode(rec))
        pipe.hset(keys.run_cells(coords["run_id"]), cell_id, "ok")
        if i % 1000 == 999:
            pipe.execute()
    pipe.execute()


def lifecycle_commands(client, url: str, run_id: str, cell_id: str) -> dict:
    """Redis commands of one cell's worker side (claim, one claim refresh, save) and of one
    worker heartbeat, by the workers' own code."""
    from bench_protocol.broker import BrokerConfig
    from bench_protocol.settings import Settings
    from bench_workers.worker.record_store import RecordStore

    store = RecordStore(BrokerConfig.resolve(url).redis())
    out = {}
    n0 = commands(client)
    claim, _, _ = store.claim(run_id, cell_id, "scale@bench")
    out["claim"] = commands(client) - n0 - 1
    refresher = store.keep_claim(run_id, cell_id, "scale@bench", claim)
    n0 = commands(client)
    refresher._fn()
    out["refresh (each 5 s of a cell)"] = commands(client) - n0 - 1
    n0 = commands(client)
    store.save({"cell_id": cell_id, "run_id": run_id, "status": "ok", "latencies_ms": [1.0]}, "scale@bench", claim)
    out["save"] = commands(client) - n0 - 1
    beat = store.heartbeat("scale@bench", {"name": "scale@bench"}, Settings.resolve(url))
    n0 = commands(client)
    beat._fn()
    out["heartbeat (every 3 s)"] = commands(client) - n0 - 1
    return out


def worker_costs(client, url: str, tmp: Path, env, cells: int) -> tuple[float, float]:
    """A real bench-worker on this Redis: its Redis commands per minute while idle (heartbeat,
    Celery's polling), and the commands a cell costs over its whole life (submit, delivery,
    claim, refresh, save, task events, result, collect), the idle rate taken out."""
    worker = subprocess.Popen([str(BIN / "bench-worker"), "--device", "cpu", "--broker", url, "--name", "scale@bench"],
                              stdout=open(tmp / "worker.log", "wb"), stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 300
        while b"ready" not in (tmp / "worker.log").read_bytes():
            if time.monotonic() > deadline or worker.poll() is not None:
                raise SystemExit(f"bench-worker did not start: {(tmp / 'worker.log').read_text()[-800:]}")
            time.sleep(0.5)
        time.sleep(5)
        n0, t0 = commands(client), time.monotonic()
        time.sleep(30)
        idle_per_s = (commands(client) - n0) / (time.monotonic() - t0)
        n0, t0 = commands(client), time.monotonic()
        run("submit", "--devices", "cpu", "--batch-sizes", ",".join(map(str, range(1, cells + 1))), "--seq-lens", "8",
            "--warmup", "0", "--iterations", "1", "--min-time", "0", "--wait", "--timeout", "600", "--no-history",
            "--out", str(tmp / "worker-run"), env=env)
        per_cell = (commands(client) - n0 - idle_per_s * (time.monotonic() - t0)) / cells
        return idle_per_s * 60, per_cell
    finally:
        worker.terminate()
        worker.wait(30)


def redis_ops_per_s(port: int) -> float:
    tool = shutil.which("redis-benchmark")
    if not tool:
        return float("nan")
    res = subprocess.run([tool, "-p", str(port), "-q", "-n", "200000", "-c", "8", "-t", "get,set", "--csv"],
                         capture_output=True, text=True)
    rates = []
    for line in res.stdout.splitlines():
        parts = [p.strip('"') for p in line.split(",")]
        if parts[0] in ("SET", "GET"):
            rates.append(float(parts[1]))
    return statistics.mean(rates) if rates else float("nan")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="1000,10000")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--worker-cells", type=int, default=40, help="cells a real worker measures for the per-cell "
                   "command count (0: skip; the worker imports torch and measures its ceilings first)")
    args = p.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    import redis

    from bench_protocol import keys, record_codec

    tmp = Path(tempfile.mkdtemp(prefix="benchctl-scale-"))
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    server = subprocess.Popen([shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind", "127.0.0.1",
                               "--save", "", "--dir", str(tmp)], stdout=subprocess.DEVNULL)
    env = dict(os.environ, HF_HUB_OFFLINE="1", BENCHCTL_BROKER_URL=url, BENCHCTL_HISTORY=str(tmp / "history.db"))
    env.pop("BENCHCTL_STORE_URL", None)
    try:
        client = redis.Redis(port=port)
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.1)
        template, fps = template_record(tmp, env)
        print(f"template record: the default model, batch 1, seq 32, {len(template['latencies_ms'])} iterations")

        # Bytes per record: MEMORY USAGE of one stored record at 10 and 1,000 iterations.
        sizes_b = {}
        for iters in (10, 1000):
            rec = with_latencies(template, iters)
            client.set("scale:probe", record_codec.encode(rec))
            sizes_b[iters] = client.memory_usage("scale:probe")
            plain = len(json.dumps(rec))
            print(f"record at {iters:>5} iterations: {sizes_b[iters]:>6} bytes in Redis (MEMORY USAGE); "
                  f"plain JSON would be {plain} bytes")
        client.delete("scale:probe")

        results = {}
        for n in sizes:
            submits, collects, per_cell = [], [], []
            for r in range(args.rounds):
                client.flushall()
                client.config_resetstat()
                t_submit, res = run("submit", "--devices", "cpu", *grid_args(n), "--allow-missing", "--json", env=env)
                submitted = commands(client)
                doc = json.loads(res.stdout)
                cells = doc["cells"]
                assert len(cells) == n, len(cells)
                fill(client, cells, template, fps)
                before = commands(client)
                t_collect, _ = run("collect", doc["run_id"], "--timeout", "30", "--no-history", "--out",
                                   str(tmp / f"out-{n}-{r}"), env=env)
                collected = commands(client) - before
                submits.append(t_submit)
                collects.append(t_collect)
                per_cell.append((submitted / n, collected / n))
                md = tmp / f"out-{n}-{r}" / "report.md"
            results[n] = (statistics.median(submits), statistics.median(collects), per_cell[-1], md.stat().st_size)
            s, c, (cs, cc), md_size = results[n]
            print(f"{n:>6} cells: submit {s:.2f} s, collect+render {c:.2f} s (medians of {args.rounds}, process start "
                  f"included); Redis commands per cell: submit {cs:.2f}, collect {cc:.2f}; report.md {md_size / 1024:.0f} KB")
        if len(sizes) == 2:
            a, b = sizes
            print(f"growth {b}/{a} ({b / a:g}x the cells): submit {results[b][0] / results[a][0]:.2f}x, "
                  f"collect+render {results[b][1] / results[a][1]:.2f}x")

        client.flushall()
        client.config_resetstat()
        _, res = run("submit", "--devices", "cpu", "--batch-sizes", "1", "--seq-lens", "8", "--allow-missing", "--json",
                     env=env)
        doc = json.loads(res.stdout)
        client.hset(keys.run_cells(doc["run_id"]), doc["cells"][0], "queued")
        life = lifecycle_commands(client, url, doc["run_id"], doc["cells"][0])
        print("worker-side Redis commands: " + ", ".join(f"{k} {v}" for k, v in life.items()))
        ops = redis_ops_per_s(port)
        print(f"this redis-server: {ops:,.0f} GET/SET per second (redis-benchmark, 8 clients, no pipelining)")
        if args.worker_cells:
            client.flushall()
            per_min, per_cell = worker_costs(client, url, tmp, env, args.worker_cells)
            print(f"a real worker: {per_min:,.0f} Redis commands per minute while idle; a cell's whole life "
                  f"{per_cell:.0f} commands (over {args.worker_cells} cells of the default model)")
            print(f"one Redis at half of {ops:,.0f} commands/s carries ~{ops / 2 / per_cell:,.0f} cells/s, or "
                  f"~{ops / 2 / (per_min / 60):,.0f} idle workers")
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

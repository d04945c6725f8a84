"""The highest rate benchctl finds within a p99 bound, checked by an independent open-loop load:
this script's own Poisson generator (not benchctl's, not LoadGen) and its own batching server
offer that rate to the same model in the same process for --check-seconds, and its measured
p99 is printed beside benchctl's (they should be within 10%).

    .venv/bin/python benchmarks/serving.py --slo-p99-ms 1000 --max-batch 8 --check-seconds 60

The default model's architecture with random weights (bundled config), synthetic inputs.
"""

from __future__ import annotations

import argparse
import collections
import random
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_protocol.spec import DEFAULT_MODEL, CellSpec, MeasureRules, ModelRef  # noqa: E402
from bench_workers.cell.measure import ModelCache, measure_cell  # noqa: E402

RUN = "20260101-000000-5e7e00"


def open_loop_p99(model, feeds, torch, rate: float, seconds: float, max_batch: int, window_s: float, seed: int):
    """Requests at Poisson times (seeded), queued; one server thread batches up to max_batch,
    waiting at most window_s for the oldest, padded to a power of two (as benchctl's prepared
    shapes); latency = completion - scheduled arrival. Returns (p50, p99, completed/s, n)."""
    rng = random.Random(seed)
    t, arrivals = 0.0, []
    while t < seconds:
        t += rng.expovariate(rate)
        arrivals.append(t)
    queue: collections.deque = collections.deque()
    lock = threading.Condition()
    latencies: list[float] = []
    done = threading.Event()

    def shapes(n):
        k = 1
        while k < n:
            k *= 2
        return min(k, max_batch)

    sliced = {k: {n: v[:k] for n, v in feeds.items()} for k in {shapes(i) for i in range(1, max_batch + 1)}}

    def server():
        with torch.inference_mode():
            while True:
                with lock:
                    while not queue and not done.is_set():
                        lock.wait(0.05)
                    if not queue and done.is_set():
                        return
                    first = queue[0]
                    while len(queue) < max_batch and time.perf_counter() < first + window_s:
                        lock.wait(max(0.0, first + window_s - time.perf_counter()))
                    batch = [queue.popleft() for _ in range(min(max_batch, len(queue)))]
                model(**sliced[shapes(len(batch))])
                end = time.perf_counter()
                latencies.extend(end - a for a in batch)

    th = threading.Thread(target=server, daemon=True)
    th.start()
    t0 = time.perf_counter()
    for a in arrivals:
        delay = t0 + a - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        with lock:
            queue.append(t0 + a)  # the scheduled time: a late generator does not hide queueing
            lock.notify()
    done.set()
    with lock:
        lock.notify()
    th.join(600)
    elapsed = time.perf_counter() - t0
    lat = sorted(latencies)
    q = lambda p: lat[min(len(lat) - 1, int(p * (len(lat) - 1) + 0.5))] * 1e3  # noqa: E731
    return q(0.50), q(0.99), len(lat) / elapsed, len(lat)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slo-p99-ms", type=float, default=1000.0)
    ap.add_argument("--max-batch", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--batch-window-ms", type=float, default=5.0)
    ap.add_argument("--serve-time", type=float, default=10.0, help="benchctl's seconds per load step (at least)")
    ap.add_argument("--max-time", type=float, default=400.0, help="benchctl's search budget (s)")
    ap.add_argument("--check-seconds", type=float, default=60.0)
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--rate", type=float, default=None,
                    help="skip the search: compare at this rate (requests/s)")
    ap.add_argument("--repeats", type=int, default=1,
                    help="with --rate: interleaved pairs (benchctl's step, the open loop), each --check-seconds long")
    args = ap.parse_args()
    if args.rate is not None:
        return repeat_at(args)

    import torch

    rules = MeasureRules(warmup=2, min_iterations=5, max_time=args.max_time, time_limit=3 * args.max_time + 600,
                         slo_p99_ms=args.slo_p99_ms, batch_window_ms=args.batch_window_ms, serve_time=args.serve_time)
    cell = CellSpec(run_id=RUN, pool="cpu", batch_size=args.max_batch, seq_len=args.seq_len, dtype="fp32",
                    scenario="server", model=ModelRef(model=args.model, weights="random"), rules=rules)
    cache = ModelCache()
    t0 = time.perf_counter()
    rec = measure_cell(cell, "cpu", cache=cache)
    if rec["status"] != "ok":
        sys.exit(f"benchctl's cell failed: {rec['error']}")
    info = rec["serving"]
    print(f"benchctl search ({time.perf_counter() - t0:.0f} s, torch threads {torch.get_num_threads()}):")
    for st in info["steps"]:
        print(f"  {st.get('role', 'step'):12} offered {st['offered_rate']:8.3f}/s  p50 {st['p50_ms']:8.1f} ms  p99 {st['p99_ms']:8.1f} ms  "
              f"(LoadGen {st['loadgen_p99_ms']:.1f})  n={st['requests']}  {'VALID' if st['valid'] else st['why_invalid']}")
    rate = rec["metrics"]["served_rate"]
    if rate is None:
        sys.exit(f"benchctl found no rate within p99 {args.slo_p99_ms:g} ms: {info['invalid']}")
    offered = info["reported"]["offered_rate"]
    ours = info["reported"]["p99_ms"]
    print(f"benchctl: highest rate within p99 <= {args.slo_p99_ms:g} ms at max batch {args.max_batch}: offered "
          f"{offered:.3f}/s (completed {rate:.3f}/s), p99 {ours:.1f} ms, LoadGen's p99 {info['reported']['loadgen_p99_ms']:.1f} ms")

    model = cache.loaded.model
    feeds = {"input_ids": torch.randint(1000, 20000, (args.max_batch, args.seq_len)),
             "attention_mask": torch.ones(args.max_batch, args.seq_len, dtype=torch.long)}
    p50, p99, completed, n = open_loop_p99(model, feeds, torch, offered, args.check_seconds, args.max_batch,
                                           args.batch_window_ms / 1e3, seed=7)
    print(f"independent open loop at {offered:.3f}/s for {args.check_seconds:g} s: n={n}, completed {completed:.3f}/s, "
          f"p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    print(f"ratio of p99 (independent / benchctl): {p99 / ours:.3f}  (within 10%: {abs(p99 / ours - 1) <= 0.10})")


def repeat_at(args) -> None:
    """benchctl's server step and the open loop at one rate, each --check-seconds, interleaved
    --repeats times: the spread within each says how much of a difference between them is noise."""
    import torch

    ours, theirs = [], []
    cache = ModelCache()
    for i in range(args.repeats):
        rules = MeasureRules(warmup=2, min_iterations=5, rate=args.rate, batch_window_ms=args.batch_window_ms,
                             serve_time=args.check_seconds, time_limit=10 * args.check_seconds + 600)
        cell = CellSpec(run_id=RUN, pool="cpu", batch_size=args.max_batch, seq_len=args.seq_len, dtype="fp32",
                        scenario="server", model=ModelRef(model=args.model, weights="random"), rules=rules)
        rec = measure_cell(cell, "cpu", cache=cache)
        if rec["status"] != "ok":
            sys.exit(f"benchctl's cell failed: {rec['error']}")
        rep = rec["serving"]["reported"]
        ours.append(rep["p99_ms"])
        print(f"repeat {i + 1}: benchctl     n={rep['requests']:5d} p50 {rep['p50_ms']:8.1f} ms  p99 {rep['p99_ms']:8.1f} ms"
              f"  (LoadGen {rep['loadgen_p99_ms']:.1f})", flush=True)
        feeds = {"input_ids": torch.randint(1000, 20000, (args.max_batch, args.seq_len)),
                 "attention_mask": torch.ones(args.max_batch, args.seq_len, dtype=torch.long)}
        p50, p99, _, n = open_loop_p99(cache.loaded.model, feeds, torch, args.rate, args.check_seconds, args.max_batch,
                                       args.batch_window_ms / 1e3, seed=7 + i)
        theirs.append(p99)
        print(f"repeat {i + 1}: open loop    n={n:5d} p50 {p50:8.1f} ms  p99 {p99:8.1f} ms", flush=True)
    import statistics

    a, b = statistics.median(ours), statistics.median(theirs)
    print(f"at {args.rate:g}/s, {args.check_seconds:g} s each: p99 benchctl {min(ours):.0f}-{max(ours):.0f} ms (median {a:.0f}), "
          f"open loop {min(theirs):.0f}-{max(theirs):.0f} ms (median {b:.0f}); ratio of medians {b / a:.3f}")


if __name__ == "__main__":
    main()

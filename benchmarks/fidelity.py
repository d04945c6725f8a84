"""Fidelity: does the harness time what a bare loop times?

The same cells (default model, random weights, seq 128, fp32) are measured by the harness
(`measure_cell`, every tracker on) and by a bare `torch.utils.benchmark.Timer` on the same
model and inputs, interleaved round by round in one process; machines are noisy, so the
figure is the median over rounds of the per-round ratio harness/bare, per batch size.

    .venv/bin/python benchmarks/fidelity.py [--rounds 5] [--batch-sizes 1,8,32] [--sampled-rss]

--sampled-rss also runs the harness with the psutil RSS sampler instead of the kernel's
peak counter, to show that a sampler thread does not steal the CPU it measures.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from torch.utils.benchmark import Timer  # noqa: E402

from bench_protocol.spec import CellSpec, MeasureRules, ModelRef  # noqa: E402
from bench_workers.cell import inputs  # noqa: E402
from bench_workers.cell.measure import ModelCache, measure_cell  # noqa: E402
from bench_workers.trackers import rss  # noqa: E402

ITERS = {1: 20, 8: 6, 32: 3}


def harness_ms(cache, batch: int, seq: int, iters: int) -> float:
    rules = MeasureRules(warmup=1, min_iterations=iters, min_time=0, max_time=600)
    cell = CellSpec(run_id="20260101-000000-f1de11", pool="cpu", batch_size=batch, seq_len=seq, dtype="fp32",
                    model=ModelRef(), rules=rules)
    rec = measure_cell(cell, "cpu", cache=cache)
    if rec["status"] != "ok":
        sys.exit(f"harness cell failed: {rec['error']}")
    return rec["metrics"]["latency_ms"]["mean"]


def bare_ms(model, feeds, iters: int) -> float:
    timer = Timer(stmt="model(**feeds)", globals={"model": model, "feeds": feeds}, num_threads=torch.get_num_threads())
    with torch.inference_mode():
        model(**feeds)  # warm-up, as the harness does
        return timer.timeit(iters).mean * 1e3


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--batch-sizes", default="1,8,32")
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--sampled-rss", action="store_true")
    args = p.parse_args()
    batches = [int(b) for b in args.batch_sizes.split(",")]
    cache = ModelCache()
    harness_ms(cache, 1, 8, 1)  # load the model once; every measurement below shares it
    model = cache.loaded.model
    vocab = model.config.vocab_size
    variants = ["harness"] + (["harness+sampler"] if args.sampled_rss else [])
    ratios = {(v, b): [] for v in variants for b in batches}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.rounds} rounds, seq {args.seq_len}")
    for rnd in range(args.rounds):
        for b in batches:
            feeds = inputs.synthetic(torch, b, args.seq_len, vocab, torch.device("cpu"))
            n = ITERS.get(b, 3)
            for v in variants:
                bare_a = bare_ms(model, feeds, n)
                if v == "harness+sampler":
                    saved = rss._reset_hwm
                    rss._reset_hwm = lambda: False  # force the psutil sampler thread
                    try:
                        h = harness_ms(cache, b, args.seq_len, n)
                    finally:
                        rss._reset_hwm = saved
                else:
                    h = harness_ms(cache, b, args.seq_len, n)
                bare_b = bare_ms(model, feeds, n)
                # Bare before and after the harness: drift within a round cancels out.
                ratios[(v, b)].append(h / ((bare_a + bare_b) / 2))
                print(f"round {rnd + 1} {v:16s} b{b:<3d} harness {h:9.2f} ms  bare {bare_a:9.2f}/{bare_b:9.2f} ms  "
                      f"ratio {ratios[(v, b)][-1]:.3f}", flush=True)
    print("\nmedian ratio harness/bare (1.00 = identical timing):")
    for v in variants:
        for b in batches:
            rs = ratios[(v, b)]
            print(f"  {v:16s} batch {b:3d}: {statistics.median(rs):.3f}  (rounds: {', '.join(f'{r:.3f}' for r in rs)})")


if __name__ == "__main__":
    main()

"""Fidelity: does the harness time what a bare loop times?

The same cells (default model, random weights, seq 128, fp32) are measured by the harness
(`measure_cell`, every tracker on) and by a bare `torch.utils.benchmark.Timer` on the same
model and inputs, interleaved round by round in one process; machines are noisy, so the
figure is the median over rounds of the per-round ratio harness/bare, per batch size.

    .venv/bin/python benchmarks/fidelity.py [--rounds 5] [--batch-sizes 1,8,32] [--sampled-rss]

--sampled-rss also runs the harness with the psutil RSS sampler instead of the kernel's
peak counter, to show that a sampler thread does not steal the CPU it measures.

--fresh also times the bare loop in a fresh process of its own (the model loaded there, nothing
run before it), twice: with glibc's allocator as it comes and in the state every cell declares
(bench_workers/cell/allocator.py). A bare loop in the harness's process inherits whatever the
harness ran before (its GEMM ceilings leave glibc's thresholds raised); a fresh one does not.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
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


def fresh_bare_ms(batch: int, seq: int, iters: int, declared: bool) -> float:
    """The bare loop in a process of its own: the model built there, then only the loop."""
    env = {**os.environ, "BENCHCTL_ALLOCATOR": "" if declared else "default"}
    res = subprocess.run([sys.executable, __file__, "--bare-child", f"{batch},{seq},{iters}"], capture_output=True,
                         text=True, timeout=900, env=env)
    if res.returncode != 0:
        sys.exit(f"fresh bare loop failed: {res.stderr[-500:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])["ms"]


def bare_child(spec: str) -> None:
    batch, seq, iters = (int(v) for v in spec.split(","))
    from bench_workers.cell import allocator
    from bench_workers.cell.models import load_model

    allocator.declare()  # as a measuring process does first (a no-op under BENCHCTL_ALLOCATOR=default)
    model = load_model(ModelRef()).model.eval()
    feeds = inputs.synthetic(torch, batch, seq, model.config.vocab_size, torch.device("cpu"))
    print(json.dumps({"ms": bare_ms(model, feeds, iters)}))


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--bare-child":
        bare_child(sys.argv[2])
        return
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--batch-sizes", default="1,8,32")
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--sampled-rss", action="store_true")
    p.add_argument("--fresh", action="store_true", help="also a bare loop in a fresh process, both allocator states")
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
                if args.fresh and v == "harness":
                    for declared, name in ((False, "fresh, glibc as is"), (True, "fresh, declared")):
                        f = fresh_bare_ms(b, args.seq_len, n, declared)
                        ratios.setdefault((name, b), []).append(h / f)
                        print(f"round {rnd + 1} {name:20s} b{b:<3d} bare {f:9.2f} ms  harness/bare {h / f:.3f}", flush=True)
    print("\nmedian ratio harness/bare (1.00 = identical timing):")
    shown = variants + (["fresh, glibc as is", "fresh, declared"] if args.fresh else [])
    for v in shown:
        for b in batches:
            rs = ratios[(v, b)]
            print(f"  {v:20s} batch {b:3d}: {statistics.median(rs):.3f}  (rounds: {', '.join(f'{r:.3f}' for r in rs)})")


if __name__ == "__main__":
    main()

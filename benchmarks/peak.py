"""Is the worker's measured GEMM peak a strong ceiling? Against a bare torch.matmul loop.

The worker's peak (`bench_workers.device.peaks.gemm_peak`: best of square sizes, best repetition)
and a bare loop of `torch.matmul` at one size timed end to end with perf_counter, interleaved
round by round in one process (machines are noisy). The figure is the median over rounds of
peak / bare: at or above 0.9 the % of peak in a report is not flattered by a weak ceiling.

    .venv/bin/python benchmarks/peak.py [--rounds 5] [--dtypes fp32,bf16] [--size 2048] [--iters 10] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from bench_workers.cell.dtypes import torch_dtype
from bench_workers.device.peaks import gemm_peak


def bare_tflops(n: int, dtype, iters: int, device) -> float:
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    a = torch.randn(n, n, dtype=dtype, device=device)
    b = torch.randn(n, n, dtype=dtype, device=device)
    torch.matmul(a, b)
    sync()
    t0 = time.perf_counter()
    for _ in range(iters):
        torch.matmul(a, b)
    sync()
    return 2 * n**3 * iters / (time.perf_counter() - t0) / 1e12


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--dtypes", default="fp32,bf16")
    p.add_argument("--size", type=int, default=2048)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--device", default="cpu", help="cpu or cuda (use --size 8192 --iters 50 there)")
    args = p.parse_args()
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; bare loop: {args.iters} x matmul {args.size}^2")
    for name in args.dtypes.split(","):
        ratios, peaks, bares = [], [], []
        for _ in range(args.rounds):
            peak = gemm_peak(torch, device, name)["tflops"]
            bare = bare_tflops(args.size, torch_dtype(torch, name), args.iters, device)
            peaks.append(peak)
            bares.append(bare)
            ratios.append(peak / bare)
        print(f"{name}: worker peak {statistics.median(peaks):.3f} TFLOP/s, bare loop {statistics.median(bares):.3f} TFLOP/s, "
              f"median ratio peak/bare {statistics.median(ratios):.3f} (min {min(ratios):.3f}, max {max(ratios):.3f})")


if __name__ == "__main__":
    main()

"""The device's measured ceilings: GEMM TFLOP/s per dtype and copy bandwidth in GB/s.

Measured once per process and dtype, on first need, in the process that measures cells and
between cells (never inside a timed window), so the ceilings come from the same threads,
clocks and device as the cells they are compared with. Best of several square matmul sizes,
best of several repetitions each: a weak ceiling would flatter every % of peak.
"""

from __future__ import annotations

import time

from bench_protocol.metrics import UNSTABLE_PCT

from ..cell.dtypes import torch_dtype

# Square GEMM sizes: large enough to reach the device's rate, small enough to take seconds.
GEMM_SIZES = {"cpu": (512, 1024, 2048), "cuda": (2048, 4096, 8192), "mps": (1024, 2048, 4096)}
COPY_BYTES = {"cpu": 256 << 20, "cuda": 1 << 30, "mps": 256 << 20}
REPEATS = 2  # best of this many timed calls per size, in each round
ROUNDS = 3  # spaced rounds over every size: the best is kept, the spread between rounds recorded
ROUND_GAP_S = 0.1  # between rounds, so one burst of another process does not sit in all of them

BUDGET_S = 1.5  # a size stops repeating after this long (a slow emulated dtype still ends in seconds)


def _timed(torch, device, fn, repeats: int, warm: bool = True) -> float:
    """The best time of ``fn`` over ``repeats`` calls (seconds): on CUDA by events on the device's
    stream around the whole call (a burst of kernels), elsewhere by the wall clock, synchronised."""
    cuda = device.type == "cuda"
    sync = (lambda: torch.cuda.synchronize(device)) if cuda else (
        torch.mps.synchronize if device.type == "mps" else (lambda: None))
    if warm:
        fn()  # warm-up: allocation, kernel selection, thread pool start
        sync()
    best = float("inf")
    spent = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record(torch.cuda.current_stream(device))
            fn()
            end.record(torch.cuda.current_stream(device))
            sync()
            dt = start.elapsed_time(end) / 1e3
        else:
            fn()
            sync()
            dt = time.perf_counter() - t0
        best = min(best, dt)
        spent += time.perf_counter() - t0
        if spent > BUDGET_S:
            break
    return best


def spread_pct(values: list[float]) -> float:
    """How far apart the rounds of a ceiling were: (best - worst) / best, in %."""
    return 100.0 * (max(values) - min(values)) / max(values) if values and max(values) > 0 else 0.0


def gemm_peak(torch, device, dtype: str, rounds: int = ROUNDS) -> dict:
    """Best TFLOP/s of ``a @ b`` over the device's sizes, in ``dtype``. The first round sweeps the
    sizes; the later, spaced rounds time the size it found best again: the best round is kept,
    and their spread says how stable the ceiling was."""
    tdtype = torch_dtype(torch, dtype)
    first = _gemm_sweep(torch, device, tdtype)
    results = [first["tflops"]]
    if first["size"] is not None:
        for _ in range(rounds - 1):
            time.sleep(ROUND_GAP_S)
            results.append(_gemm_tflops(torch, device, tdtype, first["size"], warm=False))
    return {"tflops": max(results), "size": first["size"], "rounds_tflops": results, "spread_pct": spread_pct(results)}


def _gemm_tflops(torch, device, tdtype, n: int, warm: bool = True) -> float:
    a = torch.randn(n, n, device=device, dtype=tdtype)
    b = torch.randn(n, n, device=device, dtype=tdtype)
    out = torch.empty(n, n, device=device, dtype=tdtype)
    # On a GPU one call is microseconds: time a burst so launch gaps do not count.
    burst = 20 if device.type == "cuda" else 1

    def run():
        for _ in range(burst):
            torch.matmul(a, b, out=out)

    return 2 * n**3 / (_timed(torch, device, run, REPEATS, warm=warm) / burst) / 1e12


def _gemm_sweep(torch, device, tdtype) -> dict:
    best = {"tflops": 0.0, "size": None}
    for n in GEMM_SIZES.get(device.type, GEMM_SIZES["cpu"]):
        tflops = _gemm_tflops(torch, device, tdtype, n)
        if tflops > best["tflops"]:
            best = {"tflops": tflops, "size": n}
        if 2 * n**3 / tflops / 1e12 > BUDGET_S:  # larger sizes would take too long on this dtype
            break
    return best


def copy_bandwidth(torch, device, rounds: int = ROUNDS) -> dict:
    """Best GB/s of a device-to-device copy over spaced rounds (counting the bytes read and the
    bytes written), and the rounds' spread. On a GPU one copy is a fraction of a millisecond: a
    burst is timed, as for the GEMM."""
    n = COPY_BYTES.get(device.type, COPY_BYTES["cpu"]) // 4
    src = torch.ones(n, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    burst = 10 if device.type == "cuda" else 1

    def run():
        for _ in range(burst):
            dst.copy_(src)

    results = []
    for i in range(rounds):
        if i:
            time.sleep(ROUND_GAP_S)
        results.append(2 * n * 4 / (_timed(torch, device, run, REPEATS, warm=i == 0) / burst) / 1e9)
    return {"gbps": max(results), "rounds_gbps": results, "spread_pct": spread_pct(results)}


class DevicePeaks:
    """Ceilings per (device, dtype), measured on first need and kept for the process's life."""

    def __init__(self) -> None:
        self._gemm: dict = {}
        self._copy: dict = {}

    def get(self, torch, device, dtype: str) -> dict:
        key = (str(device), dtype, torch.get_num_threads())
        if key not in self._gemm:
            t0 = time.perf_counter()
            self._gemm[key] = gemm_peak(torch, device, dtype)
            self._gemm[key]["seconds"] = time.perf_counter() - t0
        if key[::2] not in self._copy:
            self._copy[key[::2]] = copy_bandwidth(torch, device)
        if device.type == "cuda":
            from .cuda_device import free_cached

            free_cached(torch)  # the ceilings' gigabytes go back, not into the next cell's peak
        g, c = self._gemm[key], self._copy[key[::2]]
        unstable = [f"{what} ceiling moved {spread:.0f}% between rounds" for what, spread in
                    (("GEMM", g["spread_pct"]), ("copy", c["spread_pct"])) if spread > UNSTABLE_PCT]
        tf32 = {}
        if device.type == "cuda":
            from .cuda_device import tf32_state

            tf32 = {"tf32": tf32_state(torch)}  # an fp32 GEMM under TF32 is a TF32 ceiling
        return {**tf32, "gemm_tflops": g["tflops"], "gemm_dtype": dtype, "gemm_size": g["size"], "gemm_seconds": g["seconds"],
                "gemm_rounds_tflops": g["rounds_tflops"], "gemm_spread_pct": g["spread_pct"],
                "copy_gbps": c["gbps"], "copy_rounds_gbps": c["rounds_gbps"], "copy_spread_pct": c["spread_pct"],
                **({"unstable": "; ".join(unstable)} if unstable else {}),
                "method": f"best of {ROUNDS} spaced rounds of square torch.matmul sizes "
                          f"{', '.join(map(str, GEMM_SIZES.get(device.type, GEMM_SIZES['cpu'])))}; "
                          "best device-to-device copy (read + write bytes)"}


def warm_start(torch_device: str) -> dict:
    """At a measuring process's start: import what cells need and measure the ceilings of every
    dtype the device runs natively (bf16 on a CPU only with AVX512-BF16 or AMX), so that no cell
    pays for either."""
    import torch
    import transformers  # noqa: F401 (imported now, not inside the first cell)

    from ..cell.dtypes import UnsupportedDtype, check_supported, cpu_flags

    device = torch.device(torch_device)
    if device.type == "cuda" and not torch.cuda.is_available():
        return {}
    from .cuda_device import scope

    measured = {}
    with scope(torch, device):
        for name in ("fp32", "bf16", "fp16"):
            try:
                check_supported(torch, device, name)
            except UnsupportedDtype:
                continue
            if device.type == "cpu" and name == "bf16" and not cpu_flags() & {"avx512_bf16", "amx_bf16"}:
                continue  # emulated here: its (slow) ceiling is measured if a bf16 cell ever comes
            measured[name] = PEAKS.get(torch, device, name)
    return measured


PEAKS = DevicePeaks()  # one per process: the measuring child of a worker, or the embedded run

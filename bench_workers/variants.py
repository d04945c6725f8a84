"""How the model is run in the timed loop: eager, torch.compile, or a captured CUDA graph.

``prepare`` returns a :class:`Runner`: the one call the loop times, the seconds spent
preparing it (compiling or capturing, never timed), and a count of the compilations that
happened after preparation (a recompiling model is measured compiling, which is worth knowing).

``cudagraph`` captures the eager forward with ``torch.cuda.CUDAGraph`` for the cell's static
shape and replays it. It is kept apart from ``torch.compile(mode="reduce-overhead")`` (which
uses CUDA graphs too) so the two effects read apart in one report: ``compile`` is what
fusion and generated kernels give, ``cudagraph`` is what removing launch overhead alone gives.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


class UnsupportedVariant(Exception):
    pass


@dataclass
class Runner:
    call: Callable[[], object]
    prepare_s: float | None = None  # compile or capture time, including the first (compiling) call
    method: str = "eager"
    compiled_graphs: Callable[[], int | None] = lambda: None


def _graphs(torch) -> int:
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def check_supported(variant: str, device, task: str = "classify") -> None:
    """Refuse a variant the device (or the task) cannot run before anything is loaded."""
    if task == "generate" and variant != "eager":
        # generate() drives the model step by step with a growing cache: a compiled or captured
        # forward would need a static cache, which not every model has.
        raise UnsupportedVariant(f"unsupported variant: {variant} is not available for generate cells (eager only)")
    if variant == "cudagraph" and device.type != "cuda":
        raise UnsupportedVariant(f"unsupported variant: cudagraph needs a CUDA device, this cell runs on {device.type}")


def prepare(torch, variant: str, model, feeds: dict, device, sync, eager: Callable[[], object]) -> Runner:
    """``eager`` is the call as it is (a forward pass, or a generate)."""
    if variant == "eager":
        return Runner(eager)
    if variant == "compile":
        # A fresh compile per cell: its compile time is its own and its graph is for its own
        # static shape (no cache from a previous cell's shape, no dynamic-shape fallback).
        torch._dynamo.reset()
        t0 = time.perf_counter()
        compiled = torch.compile(model)
        compiled(**feeds)
        sync()
        prepare_s = time.perf_counter() - t0
        after = _graphs(torch)
        return Runner(lambda: compiled(**feeds), prepare_s, "torch.compile (inductor, default mode)",
                      lambda: _graphs(torch) - after)
    if variant == "cudagraph":
        check_supported(variant, device)
        t0 = time.perf_counter()
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):  # warm up off the default stream, as capture requires
            for _ in range(3):
                model(**feeds)
        torch.cuda.current_stream(device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        # Captured on the current device's side stream: the cell runs inside its device's scope.
        with torch.cuda.graph(graph):
            static_out = model(**feeds)
        graph.replay()
        sync()

        def replay():
            graph.replay()
            return static_out  # the output buffers the graph writes, as eager returns its output

        return Runner(replay, time.perf_counter() - t0, "torch.cuda.CUDAGraph capture of the eager forward")
    raise UnsupportedVariant(f"unsupported variant {variant!r}")

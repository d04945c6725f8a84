"""``eager``: the PyTorch model called as it is. int8 here is PyTorch's dynamic quantisation of
the linear layers (weights int8 ahead of time, activations quantised per call), on a CPU."""

from __future__ import annotations

import time

from .base import PrepareContext, Runner, Runtime


class Eager(Runtime):
    name = "eager"
    tasks = ("classify", "generate")

    def check_dtype(self, torch, device, dtype: str) -> None:
        from ..cell.dtypes import UnsupportedDtype

        if dtype == "int8" and device.type != "cpu":
            raise UnsupportedDtype(f"int8 on eager runs on a CPU (PyTorch's dynamic quantisation), not on {device.type}")

    def prepare(self, ctx: PrepareContext) -> Runner:
        if ctx.cell.dtype != "int8":
            return Runner(ctx.eager)
        torch = ctx.torch
        t0 = time.perf_counter()
        quantized = torch.ao.quantization.quantize_dynamic(ctx.model, {torch.nn.Linear}, dtype=torch.qint8)
        feeds = ctx.feeds
        return Runner(lambda: quantized(**feeds), time.perf_counter() - t0,
                      "torch.ao.quantization.quantize_dynamic (int8 linear layers, dynamic activations)")

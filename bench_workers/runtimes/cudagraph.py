"""``cudagraph``: the eager forward captured once in a ``torch.cuda.CUDAGraph`` and replayed.

Kept apart from ``torch.compile(mode="reduce-overhead")`` (which uses CUDA graphs too) so the
two effects read apart in one report: ``compile`` is what fusion and generated kernels give,
``cudagraph`` what removing launch overhead alone gives.
"""

from __future__ import annotations

import time

from .base import PrepareContext, Runner, Runtime


class CudaGraph(Runtime):
    name = "cudagraph"
    devices = ("cuda",)

    def check(self, torch, device, cell) -> None:
        if device.type != "cuda":  # the message people know from before the plug-ins
            from .base import UnsupportedVariant

            raise UnsupportedVariant(f"unsupported variant: cudagraph needs a CUDA device, this cell runs on {device.type}")
        super().check(torch, device, cell)

    def prepare(self, ctx: PrepareContext) -> Runner:
        torch, device, model, feeds = ctx.torch, ctx.device, ctx.model, ctx.feeds
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
        ctx.sync()

        def replay():
            graph.replay()
            return static_out  # the output buffers the graph writes, as eager returns its output

        return Runner(replay, time.perf_counter() - t0, "torch.cuda.CUDAGraph capture of the eager forward")

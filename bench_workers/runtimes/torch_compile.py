"""``compile``: torch.compile (inductor, default mode), fresh per cell."""

from __future__ import annotations

import time

from .base import PrepareContext, Runner, Runtime


def _graphs() -> int:
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


class Compile(Runtime):
    name = "compile"

    def prepare(self, ctx: PrepareContext) -> Runner:
        torch = ctx.torch
        # A fresh compile per cell: its compile time is its own and its graph is for its own
        # static shape (no cache from a previous cell's shape, no dynamic-shape fallback).
        torch._dynamo.reset()
        t0 = time.perf_counter()
        compiled = torch.compile(ctx.model)
        compiled(**ctx.feeds)
        ctx.sync()
        prepare_s = time.perf_counter() - t0
        after = _graphs()
        feeds = ctx.feeds
        return Runner(lambda: compiled(**feeds), prepare_s, "torch.compile (inductor, default mode)",
                      lambda: _graphs() - after, release=torch._dynamo.reset)

"""What a GPU cell's numbers leave out: copying the inputs to the device and the output back.

The timed loop runs on inputs already on the device, as a served model's would be once
batched; a request from a host pays for both copies too. They are measured here, apart and
after the timed window (pageable host memory, as a tokenizer returns it), so a CPU-vs-GPU
speedup can be read with and without them.
"""

from __future__ import annotations

import statistics
import time

REPEATS = 5


def _tensors(value) -> list:
    """The tensors of a model output: a tensor, a ModelOutput or tuple of them (first level)."""
    if hasattr(value, "to") and hasattr(value, "element_size"):
        return [value]
    items = value.values() if isinstance(value, dict) else value if isinstance(value, (tuple, list)) else []
    return [v for v in items if hasattr(v, "element_size")]


def _median_ms(sync, fn) -> float:
    times = []
    for _ in range(REPEATS):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def transfer_metrics(torch, device, feeds: dict, output, sync) -> dict:
    """{'transfer_h2d_ms', 'transfer_d2h_ms', 'transfer_bytes'} for a CUDA cell; {} elsewhere."""
    if device.type != "cuda":
        return {}
    host = {k: v.cpu() for k, v in feeds.items() if hasattr(v, "cpu")}
    outs = _tensors(output)[:1]  # logits, or the generated ids: what a caller reads back
    h2d = _median_ms(sync, lambda: [v.to(device) for v in host.values()])
    d2h = _median_ms(sync, lambda: [v.cpu() for v in outs]) if outs else None
    moved = sum(v.numel() * v.element_size() for v in [*host.values(), *outs])
    return {"transfer_h2d_ms": h2d, "transfer_d2h_ms": d2h, "transfer_bytes": moved}

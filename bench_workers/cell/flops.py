"""FLOPs of one forward pass, counted by torch's FlopCounterMode outside any timed window.

torch has no FLOP formula for the CPU flash-attention kernel (it counts attention on CUDA but
not on CPU), so the same cell would count fewer FLOPs on a CPU than on a GPU. The CPU kernel
gets the formula of its CUDA siblings here: a cell's FLOPs depend on its shape, not its device.
"""

from __future__ import annotations


def _custom_mapping(torch) -> dict:
    from torch.utils.flop_counter import sdpa_flop_count

    def cpu_sdpa(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
        return sdpa_flop_count(query_shape, key_shape, value_shape)

    op = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    return {op: cpu_sdpa} if op is not None else {}


def count_flops(torch, call) -> int:
    """FLOPs of one ``call()`` (a forward pass, or a whole generate; multiply-add = 2 FLOPs),
    from one untimed run of it."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False, custom_mapping=_custom_mapping(torch))
    with torch.inference_mode(), counter:
        call()
    return int(counter.get_total_flops())


def weight_bytes(model) -> int:
    """Bytes of parameters and buffers: what one forward pass reads at least once."""
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    return int(params + buffers)

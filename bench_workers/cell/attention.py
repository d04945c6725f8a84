"""The attention kernel of a cell, pinned for every variant of it, and named in its record.

PyTorch's scaled-dot-product attention picks a kernel per call: flash attention when no mask
is passed, memory-efficient or plain math otherwise. transformers drops an all-ones mask in
eager mode (flash becomes eligible at fp16/bf16) but keeps it explicit under torch.compile and
CUDA-graph capture, where it must not read the mask's values. Left alone, "cudagraph is faster
than eager" would also mean "another attention kernel". So each cell runs every call under
one backend that accepts an explicit mask, chosen by a probe on the cell's device and dtype.
"""

from __future__ import annotations

import contextlib

# Preference per device type: the fastest backend that takes an explicit mask, then math.
CANDIDATES = {"cuda": ("EFFICIENT_ATTENTION", "MATH"), "cpu": ("FLASH_ATTENTION", "MATH")}


def _probe(torch, backend, device, dtype) -> bool:
    from torch.nn.attention import sdpa_kernel

    q = torch.randn(1, 2, 16, 32, device=device, dtype=dtype)
    mask = torch.ones(1, 1, 16, 16, device=device, dtype=torch.bool)
    try:
        with sdpa_kernel([backend]):
            torch.nn.functional.scaled_dot_product_attention(q, q, q, attn_mask=mask)
        return True
    except RuntimeError:  # "No available kernel": this backend cannot run these inputs here
        return False


def choose(torch, device, dtype) -> str | None:
    """The backend's name for this device and dtype, or None where nothing is pinned."""
    try:
        from torch.nn.attention import SDPBackend
    except ImportError:
        return None
    for name in CANDIDATES.get(device.type, ()):
        backend = getattr(SDPBackend, name, None)
        if backend is not None and _probe(torch, backend, device, dtype):
            return name
    return None


def pinned(torch, name: str | None):
    """Every attention call inside runs on the named backend only."""
    if name is None:
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([getattr(SDPBackend, name)])


def implementation(model) -> str | None:
    """How the model computes attention (sdpa, eager, flash_attention_2...): the pin applies to sdpa."""
    config = getattr(model, "config", None)
    return getattr(config, "_attn_implementation", None)

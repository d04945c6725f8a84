"""One declared state of the C allocator for every cell, whatever ran before it in the process.

glibc's malloc serves a block above its mmap threshold with a fresh mmap (zeroed pages, a page
fault per 4 KiB on first touch) and raises that threshold to the largest such block freed so far.
So a cell's speed depended on what the process ran before it: measured with the default model at
batch 8 on a 2-core host, a fresh process took 36,672 minor page faults per forward pass; after
five 2048² matmuls (what a worker's GEMM ceiling runs) the same loop took 51 to 12,960, and read
about 10% faster. Fixing the thresholds (which also turns glibc's adjustment off) gave 0.2 to 512
faults per pass whatever ran before. Elsewhere than glibc nothing is changed, and the record says
so; BENCHCTL_ALLOCATOR=default leaves glibc as it is.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's largest on 64-bit: blocks below come from the heap
TRIM_THRESHOLD = 256 * 1024 * 1024  # free heap top kept up to this, not returned between calls
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt's parameters (malloc.h)

_declared: dict | None = None


def declare() -> dict:
    """Set the declared state once per process; returns what a record says about it."""
    global _declared
    if _declared is None:
        _declared = _declare()
    return _declared


def _declare() -> dict:
    if os.environ.get("BENCHCTL_ALLOCATOR", "").strip().lower() == "default":
        return {"declared": False, "reason": "BENCHCTL_ALLOCATOR=default: the C allocator left as it is"}
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        version = libc.gnu_get_libc_version
    except (OSError, AttributeError):
        return {"declared": False, "reason": "not glibc: the C allocator left as it is"}
    version.restype = ctypes.c_char_p
    if not (libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) and libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)):
        return {"declared": False, "reason": "glibc refused mallopt"}
    return {"declared": True, "allocator": f"glibc {version().decode()} malloc",
            "mmap_threshold": MMAP_THRESHOLD, "trim_threshold": TRIM_THRESHOLD}

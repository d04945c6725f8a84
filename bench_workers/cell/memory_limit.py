"""An address-space cap that a CPU cell honours (``--memory-limit-mb``): a batch too large for
it fails the way a real out-of-memory does, as an error record, and the worker lives on."""

from __future__ import annotations

import contextlib
import re
import resource


def _vm_size_bytes() -> int:
    with open("/proc/self/status", encoding="ascii") as fh:
        return int(re.search(r"^VmSize:\s+(\d+) kB", fh.read(), re.M).group(1)) * 1024


@contextlib.contextmanager
def address_space_cap(extra_mb: int | None):
    """Allow ``extra_mb`` MiB of address space beyond what the process maps now."""
    if not extra_mb:
        yield
        return
    old = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (_vm_size_bytes() + extra_mb * 1024 * 1024, old[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, old)

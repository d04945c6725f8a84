"""Optional dependencies, guarded in one place so a CPU-only host never imports what it lacks."""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import threading

_nvml_lock = threading.Lock()
# (pid, (module or None, reason)): NVML's state belongs to the process that initialised it. A
# forked child that inherited a parent's state would use handles it never initialised (NVML is
# not fork-safe), so a new PID initialises afresh.
_nvml_state: tuple[int, tuple[object | None, str | None]] | None = None


def package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def nvml():
    """(pynvml module initialised in this process, None) or (None, reason). NVML never creates a
    CUDA context; still, only a process that measures (or a throwaway subprocess) calls this:
    a worker's parent, which forks the measuring child, never does."""
    global _nvml_state
    with _nvml_lock:
        if _nvml_state is None or _nvml_state[0] != os.getpid():
            try:
                pynvml = importlib.import_module("pynvml")
            except ImportError:
                state = (None, "pynvml (nvidia-ml-py) is not installed")
            else:
                try:
                    pynvml.nvmlInit()
                    state = (pynvml, None)
                except Exception as exc:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...
                    state = (None, f"NVML unavailable: {exc}")
            _nvml_state = (os.getpid(), state)
        return _nvml_state[1]


def nvml_initialised_here() -> bool:
    """Whether this process has called nvmlInit (a worker's parent must never have)."""
    return _nvml_state is not None and _nvml_state[0] == os.getpid() and _nvml_state[1][0] is not None


def psutil():
    try:
        return importlib.import_module("psutil")
    except ImportError:
        return None

"""Optional dependencies, guarded in one place so a CPU-only host never imports what it lacks."""

from __future__ import annotations

import importlib
import importlib.metadata
import threading

_nvml_lock = threading.Lock()
_nvml_state: tuple[object | None, str | None] | None = None


def package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def nvml():
    """(pynvml module initialised, None) or (None, reason). NVML never creates a CUDA context."""
    global _nvml_state
    with _nvml_lock:
        if _nvml_state is None:
            try:
                pynvml = importlib.import_module("pynvml")
            except ImportError:
                _nvml_state = (None, "pynvml (nvidia-ml-py) is not installed")
            else:
                try:
                    pynvml.nvmlInit()
                    _nvml_state = (pynvml, None)
                except Exception as exc:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...
                    _nvml_state = (None, f"NVML unavailable: {exc}")
        return _nvml_state


def psutil():
    try:
        return importlib.import_module("psutil")
    except ImportError:
        return None

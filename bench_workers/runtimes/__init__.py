"""Runtimes: how a model is run in the timed loop, one module each (the contract: ``base.py``).

The registry maps the protocol's variant names (``bench_protocol.spec.VARIANTS``; a test holds
the two lists together) to ``"module:Class"``, imported on first use, so a worker without
ONNX Runtime or OpenVINO never imports them. A new runtime is one module and one line here.
"""

from __future__ import annotations

import importlib
import importlib.util

from .base import PrepareContext, Runner, Runtime, RuntimeUnavailable, UnsupportedVariant

REGISTRY = {
    "eager": "bench_workers.runtimes.torch_eager:Eager",
    "compile": "bench_workers.runtimes.torch_compile:Compile",
    "cudagraph": "bench_workers.runtimes.cudagraph:CudaGraph",
    "ort": "bench_workers.runtimes.onnxruntime:OnnxRuntime",
    "openvino": "bench_workers.runtimes.openvino:OpenVino",
}

__all__ = ["REGISTRY", "PrepareContext", "Runner", "Runtime", "RuntimeUnavailable", "UnsupportedVariant", "get",
           "installed"]


def get(name: str) -> Runtime:
    target = REGISTRY.get(name)
    if target is None:
        raise UnsupportedVariant(f"unsupported variant {name!r}")
    module, cls = target.split(":")
    return getattr(importlib.import_module(module), cls)()


def installed() -> list[str]:
    """The runtimes whose library imports here (what a worker can run; devices aside)."""
    names = []
    for name in REGISTRY:
        runtime = get(name)
        if runtime.library is None or importlib.util.find_spec(runtime.library) is not None:
            names.append(name)
    return names

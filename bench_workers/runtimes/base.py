"""The contract of a runtime: one way of running a model, in one file.

A runtime says, before anything is loaded, whether it can run a cell (``check``: the device,
the task, the dtype, its library), then ``prepare`` turns the loaded PyTorch model and the
cell's inputs into a :class:`Runner`: the one call the timed loop makes, the timer and the
synchronisation that call needs, the seconds spent preparing it (compiling, capturing,
exporting: never timed), how the outputs are read back for the accuracy check, and what it
holds (``release``). The measurement loop knows nothing else of it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


class UnsupportedVariant(Exception):
    """The runtime cannot run this cell here (device, task): an ``unsupported_variant`` record."""


class RuntimeUnavailable(Exception):
    """The runtime's library is missing or misbehaves on this worker: a ``runtime_unavailable`` record."""


@dataclass
class PrepareContext:
    torch: object
    model: object  # the PyTorch model, on the cell's device, in the cell's dtype (fp32 for int8)
    feeds: dict  # the cell's inputs as torch tensors on the device
    device: object
    sync: Callable[[], None]
    eager: Callable[[], object]  # the model called as it is: a forward pass or a generate
    cell: object  # the CellSpec
    threads: int
    model_key: str  # names the model and its weights, for caches of derived artefacts


@dataclass
class Runner:
    call: Callable[[], object]  # returns the outputs (logits first) where the runtime can
    prepare_s: float | None = None  # compile, capture, export or quantisation time, never timed
    method: str = "eager"
    compiled_graphs: Callable[[], int | None] = lambda: None
    timer: object | None = None  # None: the device's timer (CUDA events, perf_counter)
    sync: Callable[[], None] | None = None  # None: the device's synchronisation
    torch_allocator: bool = True  # False: device memory is held outside torch (NVML's view is used)
    info: dict = field(default_factory=dict)  # what the record should say of it (provider, precision, ...)
    release: Callable[[], None] = lambda: None


class Runtime:
    name = ""
    library: str | None = None  # the module its library installs, checked before loading
    extra: str | None = None  # the benchctl extra that installs it
    devices: tuple[str, ...] = ("cpu", "cuda", "mps")
    tasks: tuple[str, ...] = ("classify",)

    def check(self, torch, device, cell) -> None:
        """Raise before anything is loaded if this cell cannot run here."""
        if cell.task not in self.tasks:
            raise UnsupportedVariant(f"unsupported variant: {self.name} is not available for {cell.task} cells "
                                     f"({', '.join(self.tasks)} only)")
        if device.type not in self.devices:
            raise UnsupportedVariant(f"unsupported variant: {self.name} needs a {' or '.join(self.devices)} device, "
                                     f"this cell runs on {device.type}")
        self.check_dtype(torch, device, cell.dtype)
        if self.library is not None:
            import importlib

            try:
                importlib.import_module(self.library)
            except ImportError as exc:
                raise RuntimeUnavailable(f"{self.name} needs {self.library}, which is not installed on this worker "
                                         f"({exc}): pip install 'benchctl[{self.extra}]'") from None

    def check_dtype(self, torch, device, dtype: str) -> None:
        from ..cell.dtypes import UnsupportedDtype

        if dtype == "int8":
            raise UnsupportedDtype(f"int8 is not available on {self.name}")

    def load_dtype(self, dtype: str) -> str:
        """The dtype the PyTorch model is loaded in for a cell of ``dtype`` (int8 starts from fp32)."""
        return "fp32" if dtype == "int8" else dtype

    def prepare(self, ctx: PrepareContext) -> Runner:
        raise NotImplementedError

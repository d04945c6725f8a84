"""GPU memory of the cell: torch's allocator peaks and NVML's view of the device.

``gpu_memory_mb_max`` is torch.cuda.max_memory_reserved: the peak the caching allocator held
on the device for this process during the cell (the CUDA context itself is not included).
:func:`start_cell` runs once the cell's model is on the device, before its inputs are made and
its variant prepared: it frees what earlier work left cached (the ceilings allocate gigabytes, a CUDA
graph's capture empties the cache) and only then resets the peaks, so a cell's peak is its own
— warm-up and timed window included — and the allocated and reserved peaks are reported apart.
"""

from __future__ import annotations

import contextlib

from .sampler import PeriodicSampler

MB = 1024 * 1024


def start_cell(torch, device) -> float:
    """Free the cache, reset the peaks; the bytes still allocated (MiB) are the cell's baseline."""
    from ..device.cuda_device import free_cached

    free_cached(torch)
    torch.cuda.reset_peak_memory_stats(device)
    return torch.cuda.memory_allocated(device) / MB


class CudaMemoryTracker:
    name = "gpu_memory"

    def __init__(self, torch, device, nvml_handle=None, nvml=None, sample_interval_s: float = 0.1,
                 baseline_mb: float | None = None, torch_allocator: bool = True) -> None:
        self._torch = torch
        self._torch_allocator = torch_allocator
        self._baseline = baseline_mb
        self._device = device
        self._handle = nvml_handle
        self._nvml = nvml
        self._interval = sample_interval_s
        self._result: dict = {"available": False, "reason": "not run", "gpu_memory_mb_max": None}

    @contextlib.contextmanager
    def track(self):
        cuda = self._torch.cuda
        sampler = None
        if self._handle is not None:
            sampler = PeriodicSampler(lambda: self._nvml.nvmlDeviceGetMemoryInfo(self._handle).used, self._interval)
        with sampler if sampler is not None else contextlib.nullcontext():
            yield self
        cuda.synchronize(self._device)
        nvml_used = [v for _, v in sampler.samples] if sampler is not None else []
        nvml_peak = max(nvml_used) / MB if nvml_used else None
        if not self._torch_allocator:  # the runtime allocates outside torch (ONNX Runtime's arena)
            self._result = {
                "available": nvml_peak is not None,
                **({} if nvml_peak is not None else {"reason": "the runtime allocates outside torch and NVML has no reading"}),
                "method": "NVML device memory used (peak of samples; the runtime allocates outside torch)",
                "gpu_memory_mb_max": nvml_peak, "nvml_device_used_mb_max": nvml_peak,
            }
            return
        self._result = {
            "available": True,
            "method": "torch.cuda.max_memory_reserved (peak held by the allocator from the cell's start with its model placed, cache emptied first)",
            "gpu_memory_mb_max": cuda.max_memory_reserved(self._device) / MB,
            "gpu_memory_allocated_mb_max": cuda.max_memory_allocated(self._device) / MB,
            "gpu_memory_reserved_mb_max": cuda.max_memory_reserved(self._device) / MB,
            "nvml_device_used_mb_max": nvml_peak,
            "gpu_memory_baseline_mb": self._baseline,
        }

    def result(self) -> dict:
        return self._result

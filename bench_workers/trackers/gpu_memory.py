"""GPU memory of the cell: torch's allocator peaks (reset per cell) and NVML's view of the device.

``gpu_memory_mb_max`` is torch.cuda.max_memory_reserved: the peak the caching allocator held
on the device for this process during the cell (the CUDA context itself is not included).
"""

from __future__ import annotations

import contextlib

from .sampler import PeriodicSampler

MB = 1024 * 1024


class CudaMemoryTracker:
    name = "gpu_memory"

    def __init__(self, torch, device, nvml_handle=None, nvml=None, sample_interval_s: float = 0.1) -> None:
        self._torch = torch
        self._device = device
        self._handle = nvml_handle
        self._nvml = nvml
        self._interval = sample_interval_s
        self._result: dict = {"available": False, "reason": "not run", "gpu_memory_mb_max": None}

    @contextlib.contextmanager
    def track(self):
        cuda = self._torch.cuda
        cuda.reset_peak_memory_stats(self._device)
        sampler = None
        if self._handle is not None:
            sampler = PeriodicSampler(lambda: self._nvml.nvmlDeviceGetMemoryInfo(self._handle).used, self._interval)
        with sampler if sampler is not None else contextlib.nullcontext():
            yield self
        cuda.synchronize(self._device)
        nvml_used = [v for _, v in sampler.samples] if sampler is not None else []
        self._result = {
            "available": True,
            "method": "torch.cuda.max_memory_reserved (peak held by the allocator during the cell)",
            "gpu_memory_mb_max": cuda.max_memory_reserved(self._device) / MB,
            "gpu_memory_allocated_mb_max": cuda.max_memory_allocated(self._device) / MB,
            "gpu_memory_reserved_mb_max": cuda.max_memory_reserved(self._device) / MB,
            "nvml_device_used_mb_max": max(nvml_used) / MB if nvml_used else None,
        }

    def result(self) -> dict:
        return self._result

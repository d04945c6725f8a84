"""What a worker's host is, with a stable hash id. GPU facts come through NVML, which never
creates a CUDA context, so a parent process that will fork stays CUDA-free."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import socket
import sys

from .dtypes import cpu_flags
from .optional import nvml, package_version, psutil

FLAGS_THAT_MATTER = ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "avx512_vnni", "amx_bf16", "amx_int8", "amx_fp16", "amx_tile", "neon", "sve")
# Left out of the hash: they change without the host changing.
VOLATILE = ("memory_available_gb",)


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith(("model name", "Model", "Hardware")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _visible_gpu_indices(pynvml, device: str) -> list[int]:
    """NVML indices of the GPUs this worker may use (CUDA_VISIBLE_DEVICES, then cuda:N)."""
    count = pynvml.nvmlDeviceGetCount()
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    indices = list(range(count))
    if visible is not None:
        indices = [int(v) for v in visible.split(",") if v.strip().isdigit() and int(v) < count]
    return indices


def _gpu_facts(device: str) -> dict:
    if not device.startswith("cuda"):
        return {"gpu": None, "gpu_reason": f"device {device} is not a GPU"}
    pynvml, reason = nvml()
    if pynvml is None:
        return {"gpu": None, "gpu_reason": reason}
    try:
        indices = _visible_gpu_indices(pynvml, device)
        gpus = []
        for i in indices:
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = pynvml.nvmlDeviceGetName(h)
            major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(h)
            try:
                limit_w = pynvml.nvmlDeviceGetPowerManagementLimit(h) / 1000.0
            except Exception:
                limit_w = None
            gpus.append({
                "index": i,
                "name": name.decode() if isinstance(name, bytes) else name,
                "memory_gb": round(pynvml.nvmlDeviceGetMemoryInfo(h).total / 1024**3, 2),
                "compute_capability": f"{major}.{minor}",
                "power_limit_w": limit_w,
            })
        driver = pynvml.nvmlSystemGetDriverVersion()
        cuda_drv = pynvml.nvmlSystemGetCudaDriverVersion()
        return {
            "gpu": gpus[0] if gpus else None,
            "gpus": gpus,
            "gpu_count": len(gpus),
            "gpu_driver": driver.decode() if isinstance(driver, bytes) else driver,
            "cuda_driver_version": f"{cuda_drv // 1000}.{(cuda_drv % 1000) // 10}",
        }
    except Exception as exc:
        return {"gpu": None, "gpu_reason": f"NVML query failed: {exc}"}


def _torch_facts(threads: int | None) -> dict:
    """torch build facts without touching CUDA: importing torch creates no context."""
    try:
        import torch
    except ImportError:
        return {"torch": None}
    try:
        cudnn = torch.backends.cudnn.version() if torch.version.cuda else None
    except Exception:
        cudnn = None
    return {
        "torch": torch.__version__,
        "torch_threads": threads or torch.get_num_threads(),
        "cuda_version": torch.version.cuda,
        "cudnn_version": cudnn,
    }


def host_fingerprint(device: str, threads: int | None = None, cpus: list[int] | None = None) -> dict:
    ps = psutil()
    flags = cpu_flags()
    fp = {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "processor": platform.machine(),
        "cpu_model": _cpu_model(),
        "cpu_flags": [f for f in FLAGS_THAT_MATTER if f in flags],
        "logical_cores": os.cpu_count(),
        "physical_cores": ps.cpu_count(logical=False) if ps else None,
        "cpu_affinity": cpus,
        "memory_gb": round(ps.virtual_memory().total / 1024**3, 2) if ps else None,
        "memory_available_gb": round(ps.virtual_memory().available / 1024**3, 2) if ps else None,
        "python": platform.python_version(),
        "transformers": package_version("transformers"),
        "device": device,
    }
    fp.update(_torch_facts(threads))
    fp.update(_gpu_facts(device))
    stable = {k: v for k, v in fp.items() if k not in VOLATILE}
    fp["fingerprint_id"] = hashlib.sha256(json.dumps(stable, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return fp


if __name__ == "__main__":  # python -m bench_workers.fingerprint [device]
    json.dump(host_fingerprint(sys.argv[1] if len(sys.argv) > 1 else "cpu"), sys.stdout, indent=2)
    print()

"""What a worker's host is, with a stable hash id.

GPU facts come through NVML, matched to torch's devices by UUID. NVML's state does not survive
a fork, so a worker's parent (which forks the measuring child) never initialises NVML or CUDA:
it takes a GPU host's fingerprint in a subprocess (:func:`fingerprint_in_subprocess`), which
sees the same CUDA_VISIBLE_DEVICES as the measuring child and exits before any fork."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import socket
import sys

from ..cell.dtypes import cpu_flags
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


def _cpu_governor() -> str | None:
    """The CPU frequency governor: 'powersave' clocks a CPU down between bursts of work."""
    try:
        with open("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor", encoding="ascii") as fh:
            return fh.read().strip() or None
    except OSError:
        return None


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _visible_nvml_handles(pynvml) -> list[tuple[str, object]]:
    """(how this process names the GPU, NVML handle) for each GPU this process may use, in
    CUDA's order. Where torch sees CUDA, its devices are matched to NVML by UUID (what
    CUDA_VISIBLE_DEVICES lists, integers or UUIDs, is then torch's business); otherwise the
    variable is read as CUDA reads it: integers under CUDA_DEVICE_ORDER, or UUID prefixes."""
    from . import cuda_device

    try:
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    except ImportError:
        torch, count = None, 0
    if count:
        found = []
        for i in range(count):
            uuid = cuda_device.torch_uuid(torch, torch.device("cuda", i))
            handle, reason = cuda_device.nvml_handle_by_uuid(pynvml, uuid)
            if handle is None:
                raise LookupError(f"cuda:{i}: {reason}")
            found.append((f"cuda:{i}", handle))
        return found
    total = pynvml.nvmlDeviceGetCount()
    all_handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(total)]
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return [(f"cuda:{i}", h) for i, h in enumerate(all_handles)]
    found = []
    for entry in (e.strip() for e in visible.split(",")):
        if entry.isdigit() and int(entry) < total:
            match = all_handles[int(entry)]
        else:
            match = next((h for h in all_handles if entry and _text(pynvml.nvmlDeviceGetUUID(h)).startswith(entry)), None)
        if match is None:
            break  # CUDA stops at the first entry it cannot resolve
        found.append((f"cuda:{len(found)}", match))
    return found


def _gpu_fact(pynvml, name_in_process: str, h) -> dict:
    major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(h)
    try:
        limit_w = pynvml.nvmlDeviceGetPowerManagementLimit(h) / 1000.0
    except Exception:
        limit_w = None
    return {
        "device": name_in_process,
        "index": pynvml.nvmlDeviceGetIndex(h) if hasattr(pynvml, "nvmlDeviceGetIndex") else None,  # NVML's
        "uuid": _text(pynvml.nvmlDeviceGetUUID(h)),
        "name": _text(pynvml.nvmlDeviceGetName(h)),
        "memory_gb": round(pynvml.nvmlDeviceGetMemoryInfo(h).total / 1024**3, 2),
        "compute_capability": f"{major}.{minor}",
        "power_limit_w": limit_w,
    }


def _gpu_facts(device: str) -> dict:
    """The GPUs this process sees, named by their UUID; ``gpu`` is the one ``device`` measures.
    Call it in the process that measures, or in a subprocess (never in a worker's parent)."""
    if not device.startswith("cuda"):
        return {"gpu": None, "gpu_reason": f"device {device} is not a GPU"}
    pynvml, reason = nvml()
    if pynvml is None:
        return {"gpu": None, "gpu_reason": reason}
    try:
        gpus = [_gpu_fact(pynvml, name, h) for name, h in _visible_nvml_handles(pynvml)]
        index = int(device.split(":")[1]) if ":" in device else 0
        driver = pynvml.nvmlSystemGetDriverVersion()
        cuda_drv = pynvml.nvmlSystemGetCudaDriverVersion()
        return {
            "gpu": gpus[index] if index < len(gpus) else None,
            **({} if index < len(gpus) else {"gpu_reason": f"{device} is not among the {len(gpus)} GPU(s) this process sees"}),
            "gpus": gpus,
            "gpu_count": len(gpus),
            "gpu_driver": _text(driver),
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


def host_fingerprint(device: str, threads: int | None = None, cpus: list[int] | None = None,
                     torch_device: str | None = None) -> dict:
    """``device`` as the host names it (cuda:1), ``torch_device`` as this process sees it after
    pinning (cuda:0; default: ``device``)."""
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
        "cpu_governor": _cpu_governor(),
        "memory_gb": round(ps.virtual_memory().total / 1024**3, 2) if ps else None,
        "memory_available_gb": round(ps.virtual_memory().available / 1024**3, 2) if ps else None,
        "python": platform.python_version(),
        "transformers": package_version("transformers"),
        # The runtimes beyond PyTorch, where installed (bench_workers/runtimes/).
        "onnxruntime": package_version("onnxruntime") or package_version("onnxruntime-gpu"),
        "openvino": package_version("openvino"),
        "device": device,
    }
    fp.update(_torch_facts(threads))
    fp.update(_gpu_facts(torch_device or device))
    return _identified(fp)


def _identified(fp: dict) -> dict:
    stable = {k: v for k, v in fp.items() if k not in VOLATILE and k != "fingerprint_id"}
    fp["fingerprint_id"] = hashlib.sha256(json.dumps(stable, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return fp


SUBPROCESS_TIMEOUT_S = 120  # importing torch and initialising CUDA on a busy host


def device_missing(torch_device: str) -> str | None:
    """Why torch in this process cannot use ``torch_device`` (as this process sees it: cuda:0
    after pinning, mps), or None when it can. Asking about CUDA initialises it: call this in a
    subprocess (:func:`fingerprint_in_subprocess` with ``check_device``), never in a worker's parent."""
    try:
        import torch
    except Exception as exc:
        return f"torch cannot be imported: {exc}"
    kind = torch_device.split(":")[0]
    if kind == "mps":
        mps = getattr(torch.backends, "mps", None)
        return None if mps is not None and mps.is_available() else "torch has no MPS device on this host"
    if kind != "cuda":
        return None
    if not torch.version.cuda and not getattr(torch.version, "hip", None):
        return f"torch {torch.__version__} is built without CUDA"
    try:
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception as exc:
        return f"CUDA is unavailable to torch: {exc}"
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    shown = f" with CUDA_VISIBLE_DEVICES={visible}" if visible is not None else ""
    index = int(torch_device.split(":")[1]) if ":" in torch_device else 0
    if count == 0:
        return f"torch sees no CUDA device{shown} (no GPU, or no driver)"
    if index >= count:
        return f"torch sees {count} CUDA device(s){shown}"
    return None


def fingerprint_in_subprocess(device: str, torch_device: str, threads: int | None, cpus: list[int] | None,
                              check_device: bool = False) -> dict:
    """``host_fingerprint`` taken by a child process, so this process never touches NVML or CUDA.
    A child that fails leaves a fingerprint without GPU facts, with the reason. With
    ``check_device``, the same child also says whether torch can use the device: the result's
    ``device_missing`` is why not (None when it can; not part of the fingerprint, pop it)."""
    import subprocess

    args = [sys.executable, "-m", "bench_workers.device.fingerprint", device, "--torch-device", torch_device]
    if check_device:
        args.append("--check-device")
    if threads:
        args += ["--threads", str(threads)]
    if cpus:
        args += ["--cpus", ",".join(map(str, cpus))]
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S, check=True).stdout
        return json.loads(out)
    except (subprocess.SubprocessError, OSError, ValueError) as exc:
        detail = getattr(exc, "stderr", None) or str(exc)
        fp = host_fingerprint("cpu", threads, cpus)
        fp.update({"device": device, "gpu": None, "gpu_reason": f"fingerprint subprocess failed: {detail.strip()[-300:]}"})
        fp = _identified(fp)
        if check_device:
            fp["device_missing"] = f"it cannot be checked: {fp['gpu_reason']}"
        return fp


def main(argv=None) -> None:
    import argparse

    p = argparse.ArgumentParser(prog="python -m bench_workers.device.fingerprint", description="This host's fingerprint as JSON.")
    p.add_argument("device", nargs="?", default="cpu")
    p.add_argument("--torch-device")
    p.add_argument("--threads", type=int)
    p.add_argument("--cpus")
    p.add_argument("--check-device", action="store_true", help="add device_missing: why torch cannot use the device")
    a = p.parse_args(argv)
    cpus = [int(c) for c in a.cpus.split(",")] if a.cpus else None
    fp = host_fingerprint(a.device, a.threads, cpus, a.torch_device)
    if a.check_device:
        fp["device_missing"] = device_missing(a.torch_device or a.device)
    json.dump(fp, sys.stdout, indent=2, default=str)
    print()


if __name__ == "__main__":  # python -m bench_workers.device.fingerprint [device] [--torch-device cuda:0]
    main()

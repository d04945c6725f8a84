"""One CUDA device, named the same way everywhere: its scope, its UUID, its NVML handle.

torch's CUDA calls that take no device (events, ``torch.cuda.graph``, stream capture,
``is_bf16_supported``) act on the *current* device, which is device 0 unless set. A cell on
``cuda:1`` run outside ``torch.cuda.device(1)`` would time an idle GPU 0. Every cell therefore
runs inside :func:`scope`.

NVML ignores ``CUDA_VISIBLE_DEVICES`` and numbers GPUs its own way, so the NVML handle of a torch
device is found by the UUID torch reports for it (``GPU-…`` for a whole GPU, ``MIG-…`` for a
MIG instance), never by index: a handle that matches nothing leaves the GPU's trackers
unavailable, with that reason, instead of reading another GPU.
"""

from __future__ import annotations

import contextlib

from .optional import nvml


def scope(torch, device):
    """The cell's device made current for everything inside (a no-op off CUDA)."""
    if getattr(device, "type", None) == "cuda":
        return torch.cuda.device(device)
    return contextlib.nullcontext()


def index_of(device) -> int:
    return device.index or 0


def torch_uuid(torch, device) -> str | None:
    """The UUID torch reports for the device, as torch gives it (without a GPU-/MIG- prefix)."""
    try:
        return str(torch.cuda.get_device_properties(index_of(device)).uuid)
    except Exception:
        return None


def uuid_forms(uuid: str) -> list[str]:
    """The NVML spellings to try for a torch UUID: as given when prefixed, else GPU- then MIG-."""
    if uuid.startswith(("GPU-", "MIG-")):
        return [uuid]
    return [f"GPU-{uuid}", f"MIG-{uuid}"]


def nvml_handle_by_uuid(pynvml, uuid: str | None):
    """(handle, None) for the GPU or MIG instance with this UUID, or (None, reason)."""
    if not uuid:
        return None, "torch reports no UUID for this device, so its NVML handle cannot be matched"
    errors = []
    for form in uuid_forms(uuid):
        try:
            return pynvml.nvmlDeviceGetHandleByUUID(form), None
        except Exception as exc:
            errors.append(f"{form}: {exc}")
    return None, f"no NVML device has UUID {uuid} ({'; '.join(errors)})"


def nvml_handle(torch, device):
    """(pynvml, handle, None) for a torch CUDA device, or (pynvml or None, None, reason)."""
    pynvml, reason = nvml()
    if pynvml is None:
        return None, None, reason
    handle, reason = nvml_handle_by_uuid(pynvml, torch_uuid(torch, device))
    return pynvml, handle, reason


def bf16_native(torch, device) -> bool:
    """bf16 run natively by this device (compute capability 8.0 and newer), not emulated."""
    with scope(torch, device):
        try:
            return bool(torch.cuda.is_bf16_supported(including_emulation=False))
        except TypeError:  # a torch without the argument: decide from the capability
            return torch.cuda.get_device_capability(index_of(device)) >= (8, 0)


def tf32_state(torch) -> dict:
    """Whether fp32 matmuls and convolutions may run as TF32: it changes what "fp32" measures."""
    try:
        precision = torch.get_float32_matmul_precision()
    except Exception:
        precision = None
    return {"matmul_allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32),
            "cudnn_allow_tf32": bool(torch.backends.cudnn.allow_tf32),
            "float32_matmul_precision": precision}


def free_cached(torch) -> None:
    """Return the allocator's cached blocks to the device, so the next peak starts from what is
    actually held, not from what earlier work (ceilings, other cells) left cached."""
    import gc

    gc.collect()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()

"""Which dtypes a device runs natively; a combination it lacks becomes an error record."""

from __future__ import annotations

TORCH_NAMES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


class UnsupportedDtype(Exception):
    pass


def cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith(("flags", "Features")):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_fp16_native() -> bool:
    """Whether this CPU computes fp16 natively (AVX512-FP16 or AMX-FP16)."""
    return bool(cpu_flags() & {"avx512_fp16", "amx_fp16"})


def torch_dtype(torch, name: str):
    return getattr(torch, TORCH_NAMES[name])


def check_supported(torch, device, name: str) -> None:
    """Raise UnsupportedDtype for a combination the device cannot run natively.

    CPU fp16 without AVX512-FP16 or AMX-FP16 runs through slow conversion paths: timing it
    would measure an emulation, so the cell is refused with that reason.
    """
    if name == "fp32":
        return
    if device.type == "cuda":
        from ..device.cuda_device import bf16_native

        # Asked of the cell's device (not the current one), and native only: an emulated bf16
        # (before compute 8.0) would time a conversion path.
        if name == "bf16" and not bf16_native(torch, device):
            raise UnsupportedDtype(f"bf16 is not native on {torch.cuda.get_device_name(device)} (compute capability below 8.0)")
        return
    if device.type == "cpu" and name == "fp16":
        if not cpu_fp16_native():
            raise UnsupportedDtype("fp16 on this CPU has no native support (no AVX512-FP16 or AMX-FP16)")
    if device.type == "mps" and name == "bf16" and not hasattr(torch.backends.mps, "is_macos_or_newer"):
        raise UnsupportedDtype("bf16 on MPS needs a newer macOS/torch")

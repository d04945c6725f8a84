"""A fake of NVML's Python binding (nvidia-ml-py) for hosts without a GPU; tests install it
themselves (sys.modules, or this folder on PYTHONPATH of a subprocess).

It keeps NVML's rule that matters across a fork: state belongs to the process that called
nvmlInit. A call from a process that did not initialise raises NVMLError (Uninitialized), as a
forked child using its parent's NVML would fail. Every call is appended, with its PID, to the
file named by FAKE_NVML_LOG, so a test can see which process called what.

GPUs come from FAKE_NVML_GPUS (JSON list of {"uuid", "name", "cc": [major, minor], "mig": [uuids]}).
"""

import json
import os
import time

NVML_FI_DEV_POWER_INSTANT = 186
_init_pid = None
_t0 = time.monotonic()
DEFAULT_GPUS = [{"uuid": "GPU-11111111-2222-3333-4444-555555555555", "name": "NVIDIA H200", "cc": [9, 0]},
                {"uuid": "GPU-66666666-7777-8888-9999-000000000000", "name": "NVIDIA H200", "cc": [9, 0]}]
WATTS = 150.0
CLOCK_REASONS = int(os.environ.get("FAKE_NVML_CLOCK_REASONS", "0"))


class NVMLError(Exception):
    pass


class _Handle:
    def __init__(self, index: int, gpu: dict, uuid: str) -> None:
        self.index, self.gpu, self.uuid = index, gpu, uuid


def _gpus() -> list[dict]:
    return json.loads(os.environ["FAKE_NVML_GPUS"]) if os.environ.get("FAKE_NVML_GPUS") else DEFAULT_GPUS


def _log(call: str) -> None:
    path = os.environ.get("FAKE_NVML_LOG")
    if path:
        with open(path, "a", encoding="ascii") as fh:
            fh.write(f"{os.getpid()} {call}\n")


def _checked(call: str) -> None:
    _log(call)
    if _init_pid != os.getpid():
        raise NVMLError(f"Uninitialized: {call} from pid {os.getpid()}, which never called nvmlInit")


def nvmlInit():
    global _init_pid
    _log("nvmlInit")
    _init_pid = os.getpid()


def nvmlShutdown():
    _checked("nvmlShutdown")


def nvmlDeviceGetCount():
    _checked("nvmlDeviceGetCount")
    return len(_gpus())


def nvmlDeviceGetHandleByIndex(i):
    _checked("nvmlDeviceGetHandleByIndex")
    gpu = _gpus()[i]
    return _Handle(i, gpu, gpu["uuid"])


def nvmlDeviceGetHandleByUUID(uuid):
    _checked("nvmlDeviceGetHandleByUUID")
    uuid = uuid.decode() if isinstance(uuid, bytes) else uuid
    for i, gpu in enumerate(_gpus()):
        if gpu["uuid"] == uuid or uuid in gpu.get("mig", []):
            return _Handle(i, gpu, uuid)
    raise NVMLError("Not Found")


def nvmlDeviceGetUUID(h):
    _checked("nvmlDeviceGetUUID")
    return h.uuid


def nvmlDeviceGetIndex(h):
    _checked("nvmlDeviceGetIndex")
    return h.index


def nvmlDeviceGetName(h):
    _checked("nvmlDeviceGetName")
    return h.gpu["name"]


def nvmlDeviceGetCudaComputeCapability(h):
    _checked("nvmlDeviceGetCudaComputeCapability")
    return tuple(h.gpu.get("cc", (9, 0)))


def nvmlDeviceGetPowerManagementLimit(h):
    _checked("nvmlDeviceGetPowerManagementLimit")
    return 700_000


class _Memory:
    total = 141 * 1024**3
    used = 2 * 1024**3


def nvmlDeviceGetMemoryInfo(h):
    _checked("nvmlDeviceGetMemoryInfo")
    return _Memory()


def nvmlSystemGetDriverVersion():
    _checked("nvmlSystemGetDriverVersion")
    return "580.65.06"


def nvmlSystemGetCudaDriverVersion():
    _checked("nvmlSystemGetCudaDriverVersion")
    return 13000


def nvmlDeviceGetPowerUsage(h):
    _checked("nvmlDeviceGetPowerUsage")
    return int(WATTS * 1000)


def nvmlDeviceGetTotalEnergyConsumption(h):
    _checked("nvmlDeviceGetTotalEnergyConsumption")
    return int((time.monotonic() - _t0) * WATTS * 1000)  # mJ at a steady draw


class _Value:
    def __init__(self, mw: int) -> None:
        self.nvmlReturn = 0
        self.value = type("V", (), {"uiVal": mw})()


def nvmlDeviceGetFieldValues(h, fields):
    _checked("nvmlDeviceGetFieldValues")
    return [_Value(int(WATTS * 1000)) for _ in fields]


def nvmlDeviceGetClockInfo(h, kind):
    _checked("nvmlDeviceGetClockInfo")
    return 1980 if kind == 1 else 2619


def nvmlDeviceGetCurrentClocksEventReasons(h):
    _checked("nvmlDeviceGetCurrentClocksEventReasons")
    return CLOCK_REASONS

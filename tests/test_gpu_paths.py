"""The GPU half without a GPU: NVML across the fork, the right device and handle, energy over
the whole window, clocks, out-of-memory, spec sheets and device pinning. NVML and CUDA are
faked (tests/fake_nvml, fake torch namespaces); Redis and the worker stay real."""

import contextlib
import importlib.util
import json
import os
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import benchctl, read_record, wait_for, worker_env

from bench_protocol.errors import SpecError
from bench_workers.cell.measure import classify
from bench_workers.cell.timers import CudaTimer
from bench_workers.device import cuda_device, optional
from bench_workers.device.spec_sheet import spec_peak
from bench_workers.trackers.gpu_clocks import GpuClockTracker
from bench_workers.trackers.gpu_power import NvmlPowerTracker
from bench_workers.worker.cli import pin_cuda_device

FAKE_DIR = Path(__file__).parent / "fake_nvml"
UUID0 = "GPU-11111111-2222-3333-4444-555555555555"
UUID1 = "GPU-66666666-7777-8888-9999-000000000000"


@pytest.fixture
def fake_nvml(monkeypatch, tmp_path):
    """The fake NVML installed as `pynvml` in this process, with a fresh per-process state."""
    log = tmp_path / "nvml.log"
    monkeypatch.setenv("FAKE_NVML_LOG", str(log))
    spec = importlib.util.spec_from_file_location("pynvml", FAKE_DIR / "pynvml.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setitem(os.sys.modules, "pynvml", module)
    monkeypatch.setattr(optional, "_nvml_state", None)
    module.log_path = log
    return module


def calls(log: Path) -> list[tuple[int, str]]:
    if not log.exists():
        return []
    return [(int(pid), call) for pid, call in (line.split(" ", 1) for line in log.read_text().split("\n") if line)]


def fake_torch(uuid: str | None, events: list | None = None):
    """Just enough of torch.cuda for the code under test: a device's UUID, streams and events."""
    class Event:
        def __init__(self, enable_timing=False):
            self.stream = None

        def record(self, stream=None):
            self.stream = stream
            events.append(stream)

    cuda = SimpleNamespace(
        get_device_properties=lambda i: SimpleNamespace(uuid=uuid),
        current_stream=lambda device: f"stream-of-{device}",
        device=lambda device: contextlib.nullcontext(device),
        Event=Event, synchronize=lambda device=None: None)
    return SimpleNamespace(cuda=cuda, device=lambda kind, i=None: SimpleNamespace(type=kind, index=i))


# -- 1. NVML across the fork -------------------------------------------------------------------

@pytest.mark.fast
def test_nvml_is_initialised_again_in_a_forked_child_and_power_is_measured_there(fake_nvml):
    pynvml, reason = optional.nvml()
    assert reason is None and optional.nvml_initialised_here()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the measuring child, as Celery's prefork pool makes it
        try:
            nv, _ = optional.nvml()
            handle = nv.nvmlDeviceGetHandleByUUID(UUID0)
            tracker = NvmlPowerTracker(nv, handle, sample_interval_s=0.01)
            with tracker.track():
                time.sleep(0.3)
            os.write(write, json.dumps(tracker.result()).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as fh:
        result = json.loads(fh.read() or "{}")
    os.waitpid(pid, 0)
    assert result.get("available") is True, result
    assert result["gpu_avg_power_w"] == pytest.approx(150.0, rel=0.05)
    child = {call for p, call in calls(fake_nvml.log_path) if p == pid}
    assert "nvmlInit" in child  # the child's own init: the parent's state was not used


def test_a_gpu_worker_parent_never_touches_nvml(redis_server, workers, tmp_path):
    """The real bench-worker on a cuda pool, under the fake NVML: its fingerprint names the GPU
    by UUID, and neither the worker's parent nor its measuring child initialised NVML before
    forking (the fingerprint came from a subprocess)."""
    log = tmp_path / "nvml.log"
    env = worker_env(PYTHONPATH=f"{FAKE_DIR}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", FAKE_NVML_LOG=log)
    env.pop("CUDA_VISIBLE_DEVICES", None)
    r = redis_server.client()
    # No CUDA in this host's torch: the worker starts only because it is told to (a dry run).
    w = workers(redis_server.url, device="cuda:1", queue="cuda", name="gpu-a@test", env=env, client=r,
                extra=["--allow-missing-device"])
    from bench_protocol import keys

    info = json.loads(r.get(keys.worker(w.name)))
    fp = json.loads(r.get(keys.fingerprint(info["fingerprint_id"])))
    # cuda:1 on a host of two: pinned by CUDA_VISIBLE_DEVICES=1, seen as the second GPU by NVML.
    assert fp["gpu"]["uuid"] == UUID1 and fp["gpu"]["name"] == "NVIDIA H200", fp
    # A cell reaches the measuring child, which has no CUDA here: an error record, not a crash.
    res = benchctl("submit", "--devices", "cuda", "--batch-sizes", "1", "--seq-lens", "16", "--iterations", "1",
                   "--min-time", "0", "--warmup", "0", "--broker", redis_server.url, "--json")
    assert res.returncode == 0, res.stderr
    cell = json.loads(res.stdout)["cells"][0]
    rec = wait_for(lambda: read_record(r, cell), 120, f"the record of {cell}")
    assert rec["error"]["type"] == "device_unavailable" and rec["fingerprint_id"] == info["fingerprint_id"]
    by_pid: dict[int, list[str]] = {}
    for pid, call in calls(log):
        by_pid.setdefault(pid, []).append(call)
    assert w.proc.pid not in by_pid, by_pid.get(w.proc.pid)  # the parent made no NVML call at all
    assert len(by_pid) == 1 and next(iter(by_pid.values()))[0] == "nvmlInit"  # one subprocess, initialised first


# -- 2. The right device and the right handle -------------------------------------------------

@pytest.mark.fast
@pytest.mark.parametrize("torch_uuid, known, expected", [
    (UUID0[4:], None, UUID0),  # torch's bare UUID: the GPU- form
    ("aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", ["MIG-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"],
     "MIG-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"),  # a MIG instance
])
def test_nvml_handle_is_found_by_uuid_in_both_forms(fake_nvml, monkeypatch, torch_uuid, known, expected):
    if known:
        monkeypatch.setenv("FAKE_NVML_GPUS", json.dumps([{"uuid": UUID0, "name": "NVIDIA H100 80GB HBM3", "mig": known}]))
    torch = fake_torch(torch_uuid)
    pynvml, handle, reason = cuda_device.nvml_handle(torch, SimpleNamespace(type="cuda", index=0))
    assert reason is None and handle.uuid == expected


@pytest.mark.fast
def test_no_nvml_handle_matches_so_the_trackers_say_why_and_no_index_is_guessed(fake_nvml):
    torch = fake_torch("deadbeef-0000-0000-0000-000000000000")
    pynvml, handle, reason = cuda_device.nvml_handle(torch, SimpleNamespace(type="cuda", index=0))
    assert handle is None and "deadbeef" in reason
    assert "nvmlDeviceGetHandleByIndex" not in {c for _, c in calls(fake_nvml.log_path)}
    tracker = NvmlPowerTracker(pynvml, handle, reason)
    with tracker.track():
        pass
    assert tracker.result()["available"] is False and "deadbeef" in tracker.result()["reason"]


@pytest.mark.fast
def test_cuda_events_record_on_the_cells_device_stream():
    events: list = []
    torch = fake_torch(UUID0, events)
    timer = CudaTimer(torch, "cuda:1")
    timer.start()
    timer.stop()
    assert events == ["stream-of-cuda:1", "stream-of-cuda:1"]


@pytest.mark.fast
@pytest.mark.parametrize("inherited, device, expected", [
    (None, "cuda:2", "2"),
    ("4,5", "cuda:1", "5"),
    (f"{UUID0},{UUID1}", "cuda:1", UUID1),
    ("MIG-aaaa", "cuda:0", "MIG-aaaa"),
])
def test_a_worker_indexes_an_inherited_cuda_visible_devices(inherited, device, expected):
    env = {} if inherited is None else {"CUDA_VISIBLE_DEVICES": inherited}
    assert pin_cuda_device(device, env) == "cuda:0"
    assert env["CUDA_VISIBLE_DEVICES"] == expected and env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"


@pytest.mark.fast
def test_device_order_chosen_by_the_environment_is_kept_and_an_absent_gpu_is_one_line():
    env = {"CUDA_DEVICE_ORDER": "FASTEST_FIRST", "CUDA_VISIBLE_DEVICES": "3"}
    with pytest.raises(SpecError, match="makes 1 GPU"):
        pin_cuda_device("cuda:1", env)
    assert env["CUDA_DEVICE_ORDER"] == "FASTEST_FIRST"
    assert pin_cuda_device("cpu", env) == "cpu"


@pytest.mark.fast
def test_fingerprint_reads_uuids_in_cuda_visible_devices(fake_nvml, monkeypatch):
    from bench_workers.device.fingerprint import _gpu_facts

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", UUID1[:12])  # a UUID prefix, as CUDA accepts
    facts = _gpu_facts("cuda:0")
    assert facts["gpu"]["uuid"] == UUID1 and facts["gpu_count"] == 1
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,0")
    facts = _gpu_facts("cuda:1")
    assert facts["gpu"]["uuid"] == UUID0 and [g["uuid"] for g in facts["gpus"]] == [UUID1, UUID0]


# -- 4. Energy over the whole timed window -----------------------------------------------------

@pytest.mark.fast
def test_energy_is_read_after_the_device_has_finished_the_window(fake_nvml):
    """The power tracker exits first (ExitStack exits in reverse), before the latency tracker's
    synchronisation: it must synchronise itself before its last energy reading."""
    order: list[str] = []
    real = fake_nvml.nvmlDeviceGetTotalEnergyConsumption
    fake_nvml.nvmlDeviceGetTotalEnergyConsumption = lambda h: order.append("energy") or real(h)
    pynvml, _ = optional.nvml()
    handle = pynvml.nvmlDeviceGetHandleByUUID(UUID0)
    tracker = NvmlPowerTracker(pynvml, handle, sample_interval_s=0.01, sync=lambda: order.append("sync"))
    with contextlib.ExitStack() as stack:
        stack.callback(lambda: order.append("latency sync"))  # the latency tracker, entered first
        stack.enter_context(tracker.track())
        time.sleep(0.2)
    assert order[-3:] == ["sync", "energy", "latency sync"]
    r = tracker.result()
    assert r["gpu_avg_power_w"] == pytest.approx(150.0, rel=0.1) and "ΔE/Δt" in r["power_method"]
    assert r["approximate"]  # a 0.2 s window


@pytest.mark.fast
def test_sampled_power_uses_the_instantaneous_field_and_marks_a_short_averaged_window(fake_nvml):
    pynvml, _ = optional.nvml()
    handle = pynvml.nvmlDeviceGetHandleByUUID(UUID0)
    pynvml.nvmlDeviceGetTotalEnergyConsumption = lambda h: (_ for _ in ()).throw(RuntimeError("not supported"))
    tracker = NvmlPowerTracker(pynvml, handle, sample_interval_s=0.01)
    with tracker.track():
        time.sleep(0.2)
    assert "instantaneous" in tracker.result()["power_method"] and not tracker.result()["approximate"]
    del pynvml.nvmlDeviceGetFieldValues  # an older driver: the 1-s average on this (Hopper) GPU
    with tracker.track():
        time.sleep(0.2)
    assert "1-second average" in tracker.result()["power_method"] and "shorter than 3s" in tracker.result()["approximate"]


# -- 9. Clocks and throttling ------------------------------------------------------------------

@pytest.mark.fast
@pytest.mark.parametrize("mask, throttled, capped", [(0, False, False), (0x4, False, True), (0x40 | 0x4, True, True)])
def test_clock_reasons_over_the_window(fake_nvml, mask, throttled, capped):
    fake_nvml.CLOCK_REASONS = mask
    pynvml, _ = optional.nvml()
    tracker = GpuClockTracker(pynvml, pynvml.nvmlDeviceGetHandleByUUID(UUID0), sample_interval_s=0.01)
    with tracker.track():
        time.sleep(0.05)
    r = tracker.result()
    assert r["gpu_sm_clock_mhz_mean"] == 1980 and r["throttled"] is throttled and r["power_capped"] is capped
    assert ("hardware thermal slowdown" in r["throttle_reasons"]) is throttled


# -- 6. Spec sheet by exact names --------------------------------------------------------------

@pytest.mark.fast
@pytest.mark.parametrize("name, label", [
    ("NVIDIA H200", "NVIDIA H200 SXM"), ("NVIDIA H200 NVL", "NVIDIA H200 NVL"),
    ("NVIDIA H100 80GB HBM3", "NVIDIA H100 SXM5"), ("NVIDIA H100 NVL", "NVIDIA H100 NVL"),
    ("NVIDIA H100 PCIe", "NVIDIA H100 PCIe"), ("NVIDIA A100-SXM4-80GB", "NVIDIA A100 SXM4 80GB"),
    ("NVIDIA A100 80GB PCIe", "NVIDIA A100 PCIe 80GB"),
    ("NVIDIA GH200 480GB", None), ("NVIDIA H100 80GB HBM3 MIG 1g.10gb", None), ("NVIDIA A100-SXM4-40GB MIG 3g.20gb", None),
])
def test_spec_sheet_matches_exact_names_only(name, label):
    assert spec_peak(name, "bf16").get("spec_name") == label


@pytest.mark.fast
def test_a_measured_peak_above_the_spec_sheet_is_flagged():
    from bench_workers.cell.measure import _peak_check

    assert "above 1.1 x" in _peak_check({"gemm_tflops": 130.0}, {"spec_tflops": 67.0})["peak_above_spec"]
    assert _peak_check({"gemm_tflops": 60.0}, {"spec_tflops": 67.0}) == {}
    assert _peak_check({"gemm_tflops": 60.0}, {}) == {}


# -- 7. Out of memory by type, and through a capture's error -----------------------------------

@pytest.mark.fast
def test_out_of_memory_is_known_by_type_and_through_the_chain():
    import torch

    assert classify(torch.OutOfMemoryError("CUDA error")) == "out_of_memory"
    assert classify(RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling cublasCreate(handle)")) == "out_of_memory"
    try:
        try:
            raise torch.OutOfMemoryError("Tried to allocate 2.00 GiB")
        except torch.OutOfMemoryError:
            # what the capture's exit raises when an allocation inside it failed
            raise RuntimeError("CUDA error: operation failed due to a previous error during capture")  # noqa: B904
    except RuntimeError as exc:
        capture_error = exc
    assert classify(capture_error) == "out_of_memory"
    assert classify(RuntimeError("shape mismatch")) == "error"


# -- 8, 9, 10: what the report makes of a GPU cell -----------------------------------------------

def _gpu_doc(**trackers):
    from seed_records import seed_document

    doc = seed_document()
    gpu = next(c for c in doc["cells"] if c["pool"] == "cuda")
    gpu["trackers"] = {"cpu_memory": {"available": True}, "gpu_memory": {"available": True}, **trackers}
    gpu["metrics"].update(transfer_h2d_ms=0.21, transfer_d2h_ms=0.05)
    return doc


@pytest.mark.fast
def test_a_gpu_without_a_power_reading_keeps_its_latency_valid():
    from bench_ctl.reporting.frame import cells_frame

    doc = _gpu_doc(gpu_power={"available": False, "reason": "Not Supported (MIG device)"})
    next(c for c in doc["cells"] if c["pool"] == "cuda")["metrics"]["gpu_avg_power_w"] = None
    frame = cells_frame(doc)
    gpu = frame[frame["pool"] == "cuda"].iloc[0]
    assert gpu["valid"] == True and gpu["invalid_reason"] is None  # noqa: E712
    from bench_ctl.reporting.report import method_lines as _method_lines

    assert "gpu_power: not measured: Not Supported (MIG device)" in _method_lines(doc)


@pytest.mark.fast
def test_a_thermally_throttled_gpu_cell_is_invalid_and_a_power_cap_is_not():
    from bench_ctl.reporting.frame import cells_frame

    hot = cells_frame(_gpu_doc(gpu_clocks={"available": True, "throttled": True, "power_capped": True,
                                           "throttle_reasons": ["software power cap", "hardware thermal slowdown"]}))
    row = hot[hot["pool"] == "cuda"].iloc[0]
    assert row["valid"] == False and "hardware thermal slowdown" in row["invalid_reason"]  # noqa: E712
    capped = cells_frame(_gpu_doc(gpu_clocks={"available": True, "throttled": False, "power_capped": True,
                                              "throttle_reasons": ["software power cap"]}))
    assert capped[capped["pool"] == "cuda"].iloc[0]["valid"] == True  # noqa: E712


@pytest.mark.fast
def test_transfers_are_shown_in_the_details_of_gpu_cells_only():
    from bench_ctl.reporting.frame import cells_frame
    from bench_ctl.reporting.tables import detail_table

    table = detail_table(cells_frame(_gpu_doc()))
    assert list(table["h2d_ms"].round(2).fillna(-1)) == [-1, 0.21]
    from seed_records import seed_document

    cpu_only = seed_document()
    cpu_only["cells"] = [c for c in cpu_only["cells"] if c["pool"] == "cpu"]
    assert "h2d_ms" not in detail_table(cells_frame(cpu_only)).columns

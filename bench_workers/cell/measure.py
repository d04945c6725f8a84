"""The measurement of one cell: load (cached), cold call, warm-up, timed loop, record.

Every tracker is a context manager composed with ExitStack; the loop itself only calls the
model between ``timer.start()`` and ``timer.stop()``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import logging
import time
from pathlib import Path

from bench_protocol.errors import SpecError
from bench_protocol.records import SCHEMA_VERSION, error_record
from bench_protocol.spec import CellSpec

from .. import runtimes
from ..device import cuda_device
from ..device.peaks import PEAKS
from ..device.spec_sheet import spec_peak
from ..trackers.gpu_clocks import GpuClockTracker
from ..trackers.gpu_memory import CudaMemoryTracker, start_cell
from ..trackers.gpu_power import NvmlPowerTracker
from ..trackers.host_load import HostLoadTracker
from ..trackers.latency import LatencyTracker
from ..trackers.rapl import RaplTracker
from ..trackers.rss import PeakRssTracker
from . import accuracy, allocator, attention, dtypes, generation, inputs, served
from .flops import count_flops, weight_bytes
from .memory_limit import address_space_cap
from .models import ModelNotFound, WeightsUnavailable, load_model
from .roofline import efficiency_metrics
from .stats import ci95_pct
from .stop_rule import PRECISION_CHECK_S, StopRule
from .timers import sync_for, timer_for
from .transfers import transfer_metrics

log = logging.getLogger("benchctl.measure")


# What a tracker says about itself (kept under "trackers"); the rest of its result are metrics.
TRACKER_STATUS_KEYS = ("available", "reason", "method", "energy_method", "power_method", "approximate",
                       "throttle_reasons", "throttled", "power_capped", "busy")


class CellTimeout(Exception):
    pass


class DeviceUnavailable(Exception):
    pass


class ModelCache:
    """Keeps the last model loaded, keyed by (model, weights, device, dtype): cells of the same
    model on the same device reuse it; a different key frees the old one first."""

    def __init__(self) -> None:
        self.key = None
        self.loaded = None
        self.flops: dict = {}  # FLOPs per input shape of the loaded model: counted once
        # fp32 eager outputs per model and shape, for the accuracy check: kept across model
        # switches (a run alternates dtypes), small (logits or token ids), and bounded.
        self.references: dict = {}

    def get(self, key, load):
        if self.key == key:
            return self.loaded, True
        self.clear()
        self.loaded = load()
        self.key = key
        return self.loaded, False

    def clear(self) -> None:
        self.key, self.loaded, self.flops = None, None, {}
        _free_device_cache()


OOM_TYPES = ("OutOfMemoryError", "MemoryError")  # torch.OutOfMemoryError (torch.cuda's too), Python's
OOM_TEXT = ("out of memory", "can't allocate memory", "cannot allocate memory",
            "cublas_status_alloc_failed", "cudnn_status_alloc_failed")


def _is_oom(exc: BaseException | None) -> bool:
    """By type first; by message for allocation failures that come as RuntimeError (cuBLAS,
    cuDNN, oneDNN); and through the chain, since an allocation that fails during CUDA-graph
    capture surfaces as the capture's own error with the out-of-memory as its context."""
    seen = 0
    while exc is not None and seen < 8:
        if any(t.__name__ in OOM_TYPES for t in type(exc).__mro__):
            return True
        text = str(exc).lower()
        if any(t in text for t in OOM_TEXT):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def classify(exc: BaseException) -> str:
    """The error kind a record carries for an exception raised while measuring."""
    if type(exc).__name__ == "SoftTimeLimitExceeded":  # Celery's soft limit, raised inside the cell
        return "time_limit"
    for types, kind in (
        ((SpecError,), "invalid_spec"),
        ((ModelNotFound,), "model_not_found"),
        ((WeightsUnavailable,), "weights_unavailable"),
        ((dtypes.UnsupportedDtype,), "unsupported_dtype"),
        ((runtimes.UnsupportedVariant,), "unsupported_variant"),
        ((runtimes.RuntimeUnavailable,), "runtime_unavailable"),
        ((DeviceUnavailable,), "device_unavailable"),
        ((inputs.NoTokenizer,), "no_tokenizer"),
        ((CellTimeout,), "time_limit"),
    ):
        if isinstance(exc, types):
            return kind
    if _is_oom(exc):
        return "out_of_memory"
    return "error"


def _device(torch, name: str):
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceUnavailable(f"CUDA is not available on this host (device {name})")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise DeviceUnavailable(f"no {name}: this host sees {torch.cuda.device_count()} GPU(s)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceUnavailable("MPS is not available on this host")
    return device


def _trackers(torch, device, latency: LatencyTracker, sync, gpu_baseline_mb, torch_allocator: bool = True) -> list:
    return [latency, *_side_trackers(torch, device, sync, gpu_baseline_mb, torch_allocator)]


def _side_trackers(torch, device, sync, gpu_baseline_mb, torch_allocator: bool = True) -> list:
    """Every tracker but latency: memory, energy, host load; a GPU's memory, clocks and power."""
    trackers = [PeakRssTracker(), RaplTracker(), HostLoadTracker()]
    if device.type == "cuda":
        pynvml, handle, reason = cuda_device.nvml_handle(torch, device)
        trackers.append(CudaMemoryTracker(torch, device, handle, pynvml, baseline_mb=gpu_baseline_mb,
                                          torch_allocator=torch_allocator))
        trackers.append(GpuClockTracker(pynvml, handle, reason))
        trackers.append(NvmlPowerTracker(pynvml, handle, reason, sync=sync))
    return trackers


def measure_cell(cell: CellSpec, device_name: str, *, cache: ModelCache | None = None,
                 allowed_dirs: list[Path] | None = None, context: dict | None = None) -> dict:
    """Measure one cell and return its record; a failure becomes an error record, never a raise
    (except the Celery soft time limit, which the task turns into a record itself)."""
    cache = cache or ModelCache()
    base = {"cell_id": cell.cell_id, "run_id": cell.run_id, **cell.coordinates()}
    started = time.time()
    extra = {"device": device_name, "input": cell.model.input, "rules": _rules_dict(cell), "started_at": started,
             "allocator": allocator.declare(), **(context or {})}
    failure = None
    try:
        record = _measure(cell, device_name, cache, allowed_dirs, started)
    except Exception as exc:  # the cell fails, the worker and the run go on
        failure = _failure(cell, exc)
    # Outside the except block: its traceback no longer holds the cell's model, inputs and
    # activations, so freeing them now returns the memory before the next cell.
    if failure is not None:
        kind, message = failure
        if kind == "out_of_memory":
            cache.clear()  # the model too: the next cell loads it again into the memory freed
        else:
            _free_device_cache()
        log.warning("cell %s failed (%s): %s", cell.cell_id, kind, message)
        return error_record(base, kind, message, **extra, finished_at=time.time())
    record.update(extra)
    record["finished_at"] = time.time()
    return record


def _failure(cell: CellSpec, exc: BaseException) -> tuple[str, str]:
    """(error kind, one-line message) of a failed cell."""
    kind = classify(exc)
    if kind == "error" and cell.rules.memory_limit_mb and "could not create a primitive" in str(exc):
        kind = "out_of_memory"  # oneDNN's word for an allocation refused under the memory cap
    message = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
    if kind == "time_limit" and not str(exc):
        message = f"time limit of {cell.rules.time_limit:g}s exceeded"
    return kind, message


def _free_device_cache() -> None:
    """Garbage collected, and the GPU allocator's cache returned where this process has one."""
    import sys

    torch = sys.modules.get("torch")  # only if this process imported it: a failure before never did
    if torch is not None:
        cuda_device.free_cached(torch)
    else:
        gc.collect()


def _rules_dict(cell: CellSpec) -> dict:
    return dict(cell.rules.__dict__)


def _measure(cell: CellSpec, device_name: str, cache: ModelCache, allowed_dirs, started: float) -> dict:
    import torch

    device = _device(torch, device_name)
    # Everything of the cell on its own device: events, capture, streams, bf16 support, peaks.
    with cuda_device.scope(torch, device):
        return _measure_on(torch, cell, device, cache, allowed_dirs, started)


def _measure_on(torch, cell: CellSpec, device, cache: ModelCache, allowed_dirs, started: float) -> dict:
    deadline = started + cell.rules.time_limit
    runtime = runtimes.get(cell.variant)
    dtypes.check_supported(torch, device, cell.dtype)
    runtime.check(torch, device, cell)  # before anything is loaded: device, task, dtype, library
    dtype = dtypes.torch_dtype(torch, runtime.load_dtype(cell.dtype))
    # The device's ceilings for this dtype, measured once per process, between cells.
    peaks = _peaks(torch, device, cell.dtype)
    spec = spec_peak(torch.cuda.get_device_name(device) if device.type == "cuda" else None, cell.dtype)
    cap = cell.rules.memory_limit_mb if device.type == "cpu" else None

    loaded, cached, info = _load(cell, device, dtype, cache, allowed_dirs)
    # After the model is on the device, before anything of the cell: what is allocated now is
    # the cell's baseline (the model; more would be a leak of an earlier cell).
    gpu_baseline_mb = start_cell(torch, device) if device.type == "cuda" else None
    model = loaded.model
    sync = sync_for(torch, device)
    sdpa = attention.choose(torch, device, dtype)

    # The memory cap covers what the cell itself allocates (inputs, activations), not loading.
    with address_space_cap(cap), torch.inference_mode(), attention.pinned(torch, sdpa):
        tokenize_ms = None
        if cell.model.input == "text":
            feeds, tokenize_ms = inputs.from_text(torch, loaded.tokenizer_source, cell.batch_size, cell.seq_len, device,
                                                  left_pad=cell.task == "generate")
        else:
            feeds = inputs.synthetic(torch, cell.batch_size, cell.seq_len, info["vocab_size"] or 2, device)
        if cell.scenario != "batch":
            return _measure_served(torch, cell, device, runtime, loaded, model, feeds, sync, info, peaks, spec, cached,
                                   gpu_baseline_mb, sdpa, tokenize_ms, deadline, cache, allowed_dirs)

        # What one timed call is: a forward pass, or a whole generate with a mark per new token.
        marks = generation.StepMarks(torch, device) if cell.task == "generate" else None
        eager = (generation.make_call(model, feeds, cell.new_tokens, marks) if marks is not None
                 else lambda: model(**feeds))
        # Compiling, capturing or exporting, then the first (cold) call at this shape: both reported apart.
        runner = runtime.prepare(runtimes.PrepareContext(torch, model, feeds, device, sync, eager, cell,
                                                         torch.get_num_threads(), _model_key(loaded, cell)))
        sync = runner.sync or sync
        _check_deadline(deadline, cell.rules.time_limit)
        sync()
        t0 = time.perf_counter()
        runner.call()
        sync()
        first_call_ms = (time.perf_counter() - t0) * 1e3
        for _ in range(cell.rules.warmup):
            runner.call()
            _check_deadline(deadline, cell.rules.time_limit)
        # FLOPs of the eager call at this shape (the same math whatever the variant), untimed.
        shape = (cell.batch_size, cell.seq_len, cell.model.input, cell.task, cell.new_tokens)
        if shape not in cache.flops:
            cache.flops[shape] = count_flops(torch, eager)
        flops = cache.flops[shape]
        if marks is not None:
            marks.reset()  # only the timed calls' marks count

        rule = StopRule(cell.rules.min_iterations, cell.rules.min_time, cell.rules.max_time, cell.rules.precision)
        # tokens per item: processed by a forward pass, generated by a generate call.
        tokens = cell.new_tokens if cell.task == "generate" else cell.seq_len
        latency = LatencyTracker(runner.timer or timer_for(torch, device), sync, cell.batch_size, tokens)
        trackers = _trackers(torch, device, latency, sync, gpu_baseline_mb, runner.torch_allocator)
        n, elapsed = _timed_loop(runner.call, latency.timer, trackers, rule, deadline, cell.rules.time_limit)
        recompilations = runner.compiled_graphs()
        prepare_s, variant_method, runtime_info = runner.prepare_s, runner.method, runner.info
        # Untimed, after the window: one more call's output against the fp32 eager reference,
        # and (GPU cells) the host-device copies of the inputs and of that output.
        output = _untimed_call(runner.call, marks)
        checked = accuracy.compare(torch, output, _reference(cell, loaded, model, eager, marks, cache, allowed_dirs,
                                                             device, feeds), cell.task, cell.seq_len)
        transfers = transfer_metrics(torch, device, feeds, output, sync)
        runner.release()
        feeds = runner = eager = output = None  # frees the inputs (and a compiled or captured graph) now

    lat = latency.result()
    metrics, tracker_status = _tracker_results(lat, [t for t in trackers if t is not latency])
    items = _per_sample_energy(metrics)
    phases = None
    if marks is not None:
        phase_metrics, phases = generation.generate_metrics(marks, cell.batch_size, cell.new_tokens)
        metrics.update(phase_metrics)
        _per_token_energy(metrics, items * cell.new_tokens)
    metrics.update(transfers)
    metrics.update(_accuracy_metrics(checked))
    metrics.update({"first_call_ms": first_call_ms, "load_s": None if cached else loaded.load_s,
                    "model_cached": cached, "tokenize_ms": tokenize_ms,
                    "compile_s": prepare_s, "recompilations": recompilations})
    metrics.update(efficiency_metrics(flops, weight_bytes(model), lat["latency_ms"]["mean"], cell.batch_size, peaks, spec))
    return _ok_record(torch, cell, device, model, info, variant_method, runtime_info, checked, sdpa, peaks, spec,
                      metrics, tracker_status, latencies_ms=latency.latencies_ms(),
                      **({"phase_latencies_ms": phases} if phases is not None else {}),
                      shortfall=rule.shortfall(n, elapsed))


def _per_token_energy(metrics: dict, generated: int) -> None:
    energy = metrics.get("gpu_energy_j")
    metrics["gpu_energy_j_per_token"] = energy / generated if energy is not None and generated else None


def _accuracy_metrics(checked: dict) -> dict:
    """The record's accuracy metrics from the check against the fp32 eager reference."""
    return {f"accuracy_{k}": checked[k] for k in ("top1_agreement", "max_abs_diff", "token_agreement")
            if checked.get(k) is not None}


def _per_sample_energy(metrics: dict) -> int:
    """Energy per item from the trackers' totals (None where unmeasured); returns the items."""
    items = metrics["timed_items"] or 0
    for src, dst in (("gpu_energy_j", "gpu_energy_j_per_sample"), ("cpu_energy_j", "cpu_energy_j_per_sample")):
        metrics[dst] = metrics[src] / items if metrics.get(src) is not None and items else None
    metrics.setdefault("gpu_memory_mb_max", None)
    metrics.setdefault("gpu_avg_power_w", None)
    return items


def _ok_record(torch, cell: CellSpec, device, model, info, method, runtime_info, checked, sdpa, peaks, spec, metrics,
               tracker_status, **rest) -> dict:
    """A measured cell's record: what every scenario has, then ``rest`` (its raw series, ...)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "cell_id": cell.cell_id, "run_id": cell.run_id,
        **cell.coordinates(),
        "status": "ok", "error": None,
        "model": info,
        "variant_method": method,
        "runtime": runtime_info,
        "accuracy": checked,
        # The attention kernel every variant of this cell ran on, and how the model calls it.
        "attention": {"sdpa_backend": sdpa, "implementation": attention.implementation(model)},
        "peaks": {**peaks, **spec, **_peak_check(peaks, spec)},
        **({"tf32": cuda_device.tf32_state(torch)} if device.type == "cuda" else {}),
        "metrics": metrics,
        "trackers": tracker_status,
        **rest,
        "torch_threads": torch.get_num_threads(),
    }


def _measure_served(torch, cell: CellSpec, device, runtime, loaded, model, feeds, sync, info, peaks, spec, cached,
                    gpu_baseline_mb, sdpa, tokenize_ms, deadline, cache: ModelCache, allowed_dirs) -> dict:
    """A server or offline cell (bench_workers/cell/served.py): prepared per batch shape, served
    under LoadGen's load, the record built from the reported load step."""
    key = _model_key(loaded, cell)
    marks: dict = {}  # generate: per batch shape, the marks of its tokens (the first one is its TTFT)

    def eager_for(fk: dict, m):
        return generation.make_call(model, fk, cell.new_tokens, m) if m is not None else (lambda: model(**fk))

    def ctx_for(k: int):
        fk = {name: t[:k] for name, t in feeds.items()}
        if cell.task == "generate":
            marks[k] = generation.StepMarks(torch, device)
        return runtimes.PrepareContext(torch, model, fk, device, sync, eager_for(fk, marks.get(k)),
                                       dataclasses.replace(cell, batch_size=k), torch.get_num_threads(), key)

    prepared = served.prepare(torch, runtime, ctx_for, cell, sync,
                              lambda: _check_deadline(deadline, cell.rules.time_limit))
    for m in marks.values():
        m.reset()  # the warm-up's marks
    top = prepared.runners[cell.batch_size]
    budget = min(cell.rules.max_time, deadline - time.time() - 2 * cell.rules.serve_time)
    chosen, above, steps, trackers = served.serve(
        torch, prepared, cell, sync, lambda: _side_trackers(torch, device, sync, gpu_baseline_mb, top.torch_allocator), budget,
        lambda: cuda_device.scope(torch, device), marks)
    _check_deadline(deadline, cell.rules.time_limit)
    output = _untimed_call(top.call, marks.get(cell.batch_size))  # the largest batch against the fp32 eager reference
    reference_marks = generation.StepMarks(torch, device) if cell.task == "generate" else None
    checked = accuracy.compare(torch, output, _reference(cell, loaded, model, eager_for(feeds, reference_marks), reference_marks, cache,
                                                         allowed_dirs, device, feeds), cell.task, cell.seq_len)
    runner_info, method = top.info, top.method
    serving = served.serving_info(chosen, above, steps, prepared, cell)
    prepare_s, first_call_ms = prepared.prepare_s, prepared.first_call_ms
    for runner in prepared.runners.values():
        runner.release()
    prepared = top = output = None

    metrics = served.served_metrics(chosen, cell)
    side, tracker_status = _tracker_results({}, trackers)
    metrics.update(side)
    _per_sample_energy(metrics)
    metrics.update(_accuracy_metrics(checked))
    if cell.task == "generate":
        _per_token_energy(metrics, (metrics.get("timed_items") or 0) * cell.new_tokens)
    metrics.update({"load_s": None if cached else loaded.load_s, "model_cached": cached, "tokenize_ms": tokenize_ms,
                    "first_call_ms": first_call_ms, "compile_s": prepare_s, "recompilations": None})
    return _ok_record(torch, cell, device, model, info, method, runner_info, checked, sdpa, peaks, spec, metrics,
                      tracker_status, serving=serving, latencies_ms=served.kept_latencies(chosen.latencies_ms),
                      shortfall=None)


def _untimed_call(call, marks):
    """One call outside the window; a generate's marks of it are dropped (they are not the loop's)."""
    timed_calls = len(marks.calls) if marks is not None else 0
    output = call()
    if marks is not None:
        del marks.calls[timed_calls:]
    return output


def _reference(cell: CellSpec, loaded, model, eager, marks, cache: ModelCache, allowed_dirs, device, feeds):
    """The fp32 eager output on the cell's inputs: the measured model's own for an fp32 cell (in
    whatever runtime), else a second fp32 copy of the same weights, kept per shape in the cache."""
    if cell.dtype == "fp32":
        return _untimed_call(eager, marks)
    key = (_model_key(loaded, cell), str(device), cell.batch_size, cell.seq_len, cell.model.input, cell.task,
           cell.new_tokens)
    if key not in cache.references:
        import torch

        ref = load_model(cell.model, allowed_dirs, cell.task).model.to(device=device, dtype=torch.float32).eval()
        with torch.inference_mode():
            if cell.task == "generate":
                out = generation.make_call(ref, feeds, cell.new_tokens, generation.StepMarks(torch, device))()
            else:
                out = ref(**feeds)
        if len(cache.references) >= REFERENCES_KEPT:
            cache.references.pop(next(iter(cache.references)))
        cache.references[key] = accuracy.as_tensor(torch, out)
        del ref, out
    return cache.references[key]


REFERENCES_KEPT = 64


def _model_key(loaded, cell: CellSpec) -> str:
    """Names a model and its weights, for caches of what is derived from it (ONNX files, references)."""
    return "|".join(map(str, (cell.model.model, loaded.weights, loaded.source, cell.task, loaded.identity())))


def _peaks(torch, device, dtype: str) -> dict:
    if dtype in dtypes.TORCH_NAMES:
        return PEAKS.get(torch, device, dtype)
    # int8 has no GEMM ceiling here (a % of the fp32 one would flatter it); the copy bandwidth stands.
    fp32 = PEAKS.get(torch, device, "fp32")
    return {"copy_gbps": fp32["copy_gbps"], "gemm_tflops": None, "gemm_dtype": None,
            "method": "no int8 GEMM ceiling is measured; " + fp32["method"].split("; ")[-1]}


SPEC_MARGIN = 1.1  # a measured ceiling above the spec sheet by more than this is not a ceiling


def _peak_check(peaks: dict, spec: dict) -> dict:
    """Flag a measured GEMM peak above the spec sheet's: TF32 on an fp32 cell, a wrong spec
    entry or a broken timer, and every % of peak built on it would flatter."""
    measured, sheet = peaks.get("gemm_tflops"), spec.get("spec_tflops")
    if measured and sheet and measured > SPEC_MARGIN * sheet:
        return {"peak_above_spec": f"measured {measured:.3g} TFLOP/s is above {SPEC_MARGIN:g} x the spec sheet's {sheet:.3g}"}
    return {}


def _load(cell: CellSpec, device, dtype, cache: ModelCache, allowed_dirs):
    """The cell's model on its device and dtype (cached between cells): (loaded, cached, info)."""
    key = (cell.model.model, cell.model.weights, str(device), cell.dtype, cell.task)

    def load():
        loaded = load_model(cell.model, allowed_dirs, cell.task)
        loaded.model = loaded.model.to(device=device, dtype=dtype).eval()
        return loaded

    loaded, cached = cache.get(key, load)
    info = loaded.info(cell.model.model)
    limit = info.get("max_position_embeddings")
    if limit and cell.seq_len + cell.new_tokens > limit:
        raise SpecError(f"sequence length {cell.seq_len} (plus {cell.new_tokens} new tokens) is above the maximum {limit} "
                        f"of model {cell.model.model}")
    return loaded, cached, info


def _timed_loop(call, timer, trackers: list, rule: StopRule, deadline: float, limit: float) -> tuple[int, float]:
    """The timed window: every tracker on, only ``call`` between the timer's start and stop."""
    with contextlib.ExitStack() as stack:
        for tracker in trackers:
            stack.enter_context(tracker.track())
        t_start = time.perf_counter()
        n, half, next_read = 0, None, 0.0
        while True:
            elapsed = time.perf_counter() - t_start
            if rule.precision_pct and elapsed >= next_read and rule.minimum_met(n, elapsed):
                half, next_read = ci95_pct(timer.read_ms()), elapsed + PRECISION_CHECK_S
            if rule.done(n, elapsed, half):
                break
            timer.start()
            call()
            timer.stop()
            n += 1
            _check_deadline(deadline, limit)
    return n, time.perf_counter() - t_start


def _tracker_results(latency_result: dict, trackers: list) -> tuple[dict, dict]:
    """(metrics, each tracker's status): what a tracker says about itself is kept apart."""
    metrics = dict(latency_result)
    status = {}
    for tracker in trackers:
        res = tracker.result()
        status[tracker.name] = {k: v for k, v in res.items() if k in TRACKER_STATUS_KEYS}
        metrics.update({k: v for k, v in res.items() if k not in TRACKER_STATUS_KEYS})
    return metrics, status


def _check_deadline(deadline: float, limit: float) -> None:
    if time.time() > deadline:
        raise CellTimeout(f"time limit exceeded: the cell ran past its limit of {limit:g}s")

"""What a cell's latency is worth: achieved TFLOP/s, % of the device's ceilings, effective GB/s.

The roofline's two ceilings are the measured GEMM peak (compute) and the measured copy
bandwidth (memory); the spec-sheet peak is a second, named, compute ceiling for known GPUs.
Bytes are the model's weights read once per forward: the least a forward must move, so
the effective GB/s is a lower bound and arithmetic intensity an upper bound.
"""

from __future__ import annotations


def _pct(value, ceiling):
    return 100.0 * value / ceiling if value is not None and ceiling else None


def efficiency_metrics(flops: int | None, weight_bytes: int | None, mean_ms: float | None, batch_size: int,
                       peaks: dict, spec: dict) -> dict:
    seconds = mean_ms / 1e3 if mean_ms else None
    tflops = flops / seconds / 1e12 if flops and seconds else None
    gbps = weight_bytes / seconds / 1e9 if weight_bytes and seconds else None
    return {
        "flops_per_forward": flops,
        "flops_per_item": flops / batch_size if flops else None,
        "tflops_achieved": tflops,
        "peak_tflops_measured": peaks.get("gemm_tflops"),
        "peak_spread_pct": peaks.get("gemm_spread_pct"),
        "pct_peak_measured": _pct(tflops, peaks.get("gemm_tflops")),
        "peak_tflops_spec": spec.get("spec_tflops"),
        "pct_peak_spec": _pct(tflops, spec.get("spec_tflops")),
        "weight_bytes": weight_bytes,
        "effective_gbps": gbps,
        "bandwidth_gbps_measured": peaks.get("copy_gbps"),
        "pct_bandwidth_measured": _pct(gbps, peaks.get("copy_gbps")),
        "arithmetic_intensity": flops / weight_bytes if flops and weight_bytes else None,
    }

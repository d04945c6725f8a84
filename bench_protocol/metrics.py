"""The metric names of a cell record, declared once: the worker writes them under "metrics",
the controller's tidy frame reads them (and a test holds both sides to this list).

Latency statistics live under "latency_ms" (n, mean, median, p90, p95, p99, std, min, max, cv);
a generate cell adds the same statistics for its two phases (PHASE_STATS).
"""

# Numbers under a record's "metrics", taken as they are (FLOPs and ceilings: bench_workers/roofline.py).
PLAIN_METRICS = [
    "throughput_mean", "throughput_measured", "tokens_per_s",
    "cpu_memory_mb_max", "gpu_memory_mb_max", "gpu_avg_power_w", "gpu_energy_j_per_sample", "cpu_energy_j_per_sample",
    "first_call_ms", "load_s", "tokenize_ms", "compile_s", "recompilations",
    "flops_per_forward", "flops_per_item", "tflops_achieved", "peak_tflops_measured", "pct_peak_measured",
    "peak_tflops_spec", "pct_peak_spec", "weight_bytes", "effective_gbps", "bandwidth_gbps_measured",
    "pct_bandwidth_measured", "arithmetic_intensity",
    "decode_tokens_per_s", "decode_tokens_per_s_batch", "gpu_energy_j_per_token",
]
# Statistics of a generate cell's two phases (bench_workers/generation.py): ttft_ms_mean, ...
PHASE_STATS = {"ttft_ms": ("mean", "median", "p90", "p99", "std"),
               "decode_ms_per_token": ("mean", "median", "p90", "p99", "std")}
# Their columns in the tidy frame: ttft_ms_mean, ttft_ms_p50, ..., decode_ms_per_token_std.
PHASE_COLUMNS = [f"{phase}_{'p50' if stat == 'median' else stat}" for phase, stats in PHASE_STATS.items() for stat in stats]

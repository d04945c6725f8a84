"""The metrics of a cell record, declared once: one line per metric says where a record holds it,
its unit, whether less is better, its label in the report's tables and which tables show it.

The worker writes them under a record's "metrics" (a test holds its trackers to this list); the
controller's tidy frame, its tables, its report and the results history all read METRICS, so a
new metric is one line here plus its tracker. The history gains a column for it on its next
append (bench_ctl/history/database.py).

Latency statistics live under "latency_ms" (n, mean, median, p90, p95, p99, std, min, max, cv);
a generate cell adds statistics for its two phases (PHASE_STATS).
"""

from __future__ import annotations

from dataclasses import dataclass

# Where a metric can be shown. "seed", "prefill" and "decode" are compared across pools (a
# speedup column each); "side" are the seed table's memory and power columns; the others list
# each measured cell.
TABLES = {
    "seed": "the Performance Comparison (the seed report's table)",
    "side": "beside the compared metrics of every comparison table, per pool",
    "prefill": "a generate cell's prefill comparison",
    "decode": "a generate cell's decode comparison",
    "details": "Details: latency distribution, tokens/s, energy and validity per cell",
    "efficiency": "How close to the hardware, per cell",
    "generation": "Details: prefill and decode per generate cell",
    "serving": "Serving under load: per server and offline cell",
}


@dataclass(frozen=True)
class Metric:
    """One number of a cell. ``path``: where under a record's "metrics" it is (default: its
    name); ``lower_is_better``: None where a direction means nothing (a count of FLOPs, a
    device's peak); ``unit`` "count" marks an integer; ``gpu_only``: a GPU pool's number."""

    name: str  # the tidy frame's column (results.csv, the history's cells table)
    unit: str
    lower_is_better: bool | None
    label: str  # its header in the Details, efficiency and generation tables
    tables: tuple[str, ...] = ()
    path: tuple[str, ...] = ()
    gpu_only: bool = False
    sparse: bool = False  # only some cells have it (a runtime's, a GPU's): its column is left out where none has

    @property
    def optional(self) -> bool:
        """Left out of a per-cell table where no cell of it has a value."""
        return self.gpu_only or self.sparse

    def __post_init__(self) -> None:
        unknown = [t for t in self.tables if t not in TABLES]
        if unknown:
            raise ValueError(f"metric {self.name}: unknown table(s) {unknown}; known: {', '.join(TABLES)}")

    def read(self, metrics: dict):
        """This metric's value in a record's "metrics" (None where it is absent)."""
        value = metrics
        for key in self.path or (self.name,):
            value = value.get(key) if isinstance(value, dict) else None
        return value


_LAT, _TTFT, _DEC = "latency_ms", "ttft_ms", "decode_ms_per_token"
# A measured ceiling whose spaced rounds differ by more than this (peak_spread_pct) is flagged
# wherever % of peak is shown: a % of an unstable ceiling is approximate.
UNSTABLE_PCT = 10.0

# In the tidy frame's order. FLOPs and ceilings: bench_workers/cell/roofline.py.
METRICS = (
    Metric("latency_ms_mean", "ms", True, "e2e_ms", ("seed", "generation"), (_LAT, "mean")),
    Metric("latency_ms_p50", "ms", True, "p50_ms", ("details",), (_LAT, "median")),
    Metric("latency_ms_p90", "ms", True, "p90_ms", (), (_LAT, "p90")),
    Metric("latency_ms_p95", "ms", True, "p95_ms", (), (_LAT, "p95")),
    Metric("latency_ms_p99", "ms", True, "p99_ms", ("details",), (_LAT, "p99")),
    Metric("latency_ms_std", "ms", True, "std_ms", ("details",), (_LAT, "std")),
    Metric("latency_ms_min", "ms", True, "min_ms", (), (_LAT, "min")),
    Metric("latency_ms_max", "ms", True, "max_ms", (), (_LAT, "max")),
    Metric("latency_cv", "", True, "cv", ("details",), (_LAT, "cv")),
    # Half-width of the 95% interval of the mean over the cell's iterations (what --precision stops on).
    Metric("latency_ci95_pct", "%", True, "±95%_of_mean", ("details",), (_LAT, "ci95_pct"), sparse=True),
    Metric("n_iterations", "count", None, "n", ("details",), (_LAT, "n")),
    Metric("throughput_mean", "items/s", False, "items_per_s_mean", ("seed",)),
    Metric("throughput_measured", "items/s", False, "items_per_s", ("details",)),
    Metric("tokens_per_s", "tokens/s", False, "tokens_per_s", ("details",)),
    Metric("cpu_memory_mb_max", "MiB", True, "cpu_mib", ("side",)),
    Metric("gpu_memory_mb_max", "MiB", True, "gpu_mib", ("side",), gpu_only=True),
    Metric("gpu_avg_power_w", "W", True, "gpu_w", ("side",), gpu_only=True),
    Metric("gpu_energy_j_per_sample", "J/sample", True, "gpu_j_per_sample", ("details",), gpu_only=True),
    Metric("cpu_energy_j_per_sample", "J/sample", True, "cpu_j_per_sample", ("details",)),
    Metric("first_call_ms", "ms", True, "first_call_ms"),
    Metric("load_s", "s", True, "load_s"),
    Metric("tokenize_ms", "ms", True, "tokenize_ms"),
    Metric("compile_s", "s", True, "compile_s", ("efficiency",)),
    Metric("recompilations", "count", True, "recompiles", ("efficiency",)),
    Metric("flops_per_forward", "FLOP", None, "FLOP/forward"),
    Metric("flops_per_item", "FLOP", None, "FLOP/item"),
    Metric("tflops_achieved", "TFLOP/s", False, "TFLOP/s", ("details", "efficiency")),
    Metric("peak_tflops_measured", "TFLOP/s", None, "peak_measured", ("efficiency",)),
    Metric("pct_peak_measured", "%", False, "%_peak_measured", ("efficiency",)),
    Metric("peak_spread_pct", "%", True, "peak_spread_%", ("efficiency",), sparse=True),
    Metric("peak_tflops_spec", "TFLOP/s", None, "peak_spec", ("efficiency",)),
    Metric("pct_peak_spec", "%", False, "%_peak_spec", ("efficiency",)),
    Metric("weight_bytes", "bytes", None, "weight_bytes"),
    Metric("effective_gbps", "GB/s", False, "GB/s", ("efficiency",)),
    Metric("bandwidth_gbps_measured", "GB/s", None, "bw_measured", ("efficiency",)),
    Metric("pct_bandwidth_measured", "%", False, "%_bw_measured", ("efficiency",)),
    Metric("arithmetic_intensity", "FLOP/byte", None, "FLOP/byte", ("efficiency",)),
    Metric("decode_tokens_per_s", "tokens/s", False, "tokens_per_s_per_seq", ("decode", "generation")),
    Metric("decode_tokens_per_s_batch", "tokens/s", False, "tokens_per_s_batch", ("generation",)),
    Metric("gpu_energy_j_per_token", "J/token", True, "gpu_j_per_token", ("generation",), gpu_only=True),
    # GPU cells: memory apart, the copies a caller pays beside the window, the clocks.
    Metric("gpu_memory_allocated_mb_max", "MiB", True, "gpu_alloc_mib", ("details",), gpu_only=True),
    Metric("gpu_memory_baseline_mb", "MiB", True, "gpu_baseline_mib", (), gpu_only=True),
    Metric("transfer_h2d_ms", "ms", True, "h2d_ms", ("details",), gpu_only=True),
    Metric("transfer_d2h_ms", "ms", True, "d2h_ms", ("details",), gpu_only=True),
    Metric("gpu_sm_clock_mhz_mean", "MHz", None, "sm_mhz", ("details",), gpu_only=True),
    # How busy the host was during the window (bench_workers/trackers/host_load.py).
    Metric("host_other_cpu_share", "share", True, "others_cpu", ("details",), sparse=True),
    Metric("host_steal_share", "share", True, "steal", (), sparse=True),
    Metric("host_load_1m", "", True, "load_1m", (), sparse=True),
    # Against the fp32 eager reference on the same worker (bench_workers/cell/accuracy.py).
    Metric("accuracy_top1_agreement", "share", False, "top1_agree", ("details",), sparse=True),
    Metric("accuracy_max_abs_diff", "logit", True, "max_abs_diff", ("details",), sparse=True),
    Metric("accuracy_token_agreement", "share", False, "token_agree", ("generation",), sparse=True),
    # Server and offline cells (bench_workers/cell/served.py): latency above is per request,
    # queueing included; served_rate is the completed rate of a VALID load step (with
    # --slo-p99-ms: the highest rate found within the bound).
    Metric("served_rate", "req/s", False, "served_req_per_s", ("serving",), sparse=True),
    Metric("offered_rate", "req/s", None, "offered_req_per_s", ("serving",), sparse=True),
    # Requests/s that met every bound of the cell, each judged on its own (a generate request:
    # its time to first token and its time per output token).
    Metric("goodput", "req/s", False, "goodput_req_per_s", ("serving",), sparse=True),
    Metric("batch_formed_mean", "", None, "batch_mean", ("serving",), sparse=True),
    Metric("batch_formed_max", "count", None, "batch_max", ("serving",), sparse=True),
    Metric("batch_wait_ms_max", "ms", True, "first_wait_max_ms", ("serving",), sparse=True),
    Metric("utilisation", "share", None, "busy", ("serving",), sparse=True),
    Metric("ttft_ms_mean", "ms", True, "ttft_mean_ms", ("prefill",), (_TTFT, "mean")),
    Metric("ttft_ms_p50", "ms", True, "ttft_p50_ms", ("generation",), (_TTFT, "median")),
    Metric("ttft_ms_p90", "ms", True, "ttft_p90_ms", ("generation",), (_TTFT, "p90")),
    Metric("ttft_ms_p99", "ms", True, "ttft_p99_ms", ("generation",), (_TTFT, "p99")),
    Metric("ttft_ms_std", "ms", True, "ttft_std_ms", (), (_TTFT, "std")),
    Metric("decode_ms_per_token_mean", "ms", True, "decode_mean_ms", ("decode",), (_DEC, "mean")),
    Metric("decode_ms_per_token_p50", "ms", True, "decode_p50_ms", ("generation",), (_DEC, "median")),
    Metric("decode_ms_per_token_p90", "ms", True, "decode_p90_ms", (), (_DEC, "p90")),
    Metric("decode_ms_per_token_p99", "ms", True, "decode_p99_ms", ("generation",), (_DEC, "p99")),
    Metric("decode_ms_per_token_std", "ms", True, "decode_std_ms", (), (_DEC, "std")),
)
BY_NAME = {m.name: m for m in METRICS}


def metric(name: str) -> Metric:
    return BY_NAME[name]


def shown_in(table: str) -> list[Metric]:
    """The metrics a table shows, in declaration order."""
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}; known: {', '.join(TABLES)}")
    return [m for m in METRICS if table in m.tables]


# The names the worker writes directly under a record's "metrics", taken as they are.
PLAIN_METRICS = [m.name for m in METRICS if not m.path]
# Statistics of a generate cell's two phases (bench_workers/cell/generation.py): {"ttft_ms": ("mean", ...), ...}.
PHASE_STATS: dict[str, tuple[str, ...]] = {}
for _m in METRICS:
    if _m.path and _m.path[0] != _LAT:
        PHASE_STATS[_m.path[0]] = (*PHASE_STATS.get(_m.path[0], ()), _m.path[1])
# Their columns in the tidy frame: ttft_ms_mean, ttft_ms_p50, ..., decode_ms_per_token_std.
PHASE_COLUMNS = [m.name for m in METRICS if m.path and m.path[0] != _LAT]
# Columns that hold whole numbers (printed without decimals).
COUNT_METRICS = [m.name for m in METRICS if m.unit == "count"]

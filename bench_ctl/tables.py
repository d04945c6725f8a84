"""The Performance Comparison: a pivot of the tidy frame per pool, speedups by column arithmetic.

With pools cpu and cuda the columns are exactly the seed report's, in its order.
"""

from __future__ import annotations

import pandas as pd

from .labels import column_prefix, is_gpu_pool

PIVOT_METRICS = ["latency_ms_mean", "throughput_mean", "cpu_memory_mb_max", "gpu_memory_mb_max", "gpu_avg_power_w"]


def speedup_name(metric: str, other: str, n_others: int) -> str:
    return f"speedup_{metric}" if n_others == 1 else f"speedup_{other}_{metric}"


def comparison_table(frame: pd.DataFrame, pools: list[str], baseline: str) -> pd.DataFrame:
    """One row per batch size; ``frame`` holds the cells of one (seq_len, dtype) combination."""
    labels = [column_prefix(p) for p in pools]
    base = column_prefix(baseline)
    others = [label for label in labels if label != base]
    gpu_labels = [column_prefix(p) for p in pools if is_gpu_pool(p)]
    ok = frame[frame["status"] == "ok"]
    wide = ok.pivot_table(index="batch_size", columns="label", values=PIVOT_METRICS, aggfunc="first", dropna=False)
    wide = wide.reindex(sorted(frame["batch_size"].unique()))

    def col(metric: str, label: str) -> pd.Series:
        key = (metric, label)
        return wide[key] if key in wide.columns else pd.Series(float("nan"), index=wide.index)

    out = pd.DataFrame(index=wide.index)
    out["batch_size"] = wide.index.astype("float64")
    for metric in ("latency_ms_mean", "throughput_mean"):
        for label in labels:
            out[f"{label}_{metric}"] = col(metric, label)
        for other in others:
            # Latency: how many times faster than the baseline; throughput: how many times more.
            ratio = col(metric, base) / col(metric, other) if metric.startswith("latency") else col(metric, other) / col(metric, base)
            out[speedup_name(metric, other, len(others))] = ratio
    for label in labels:
        out[f"{label}_cpu_memory_mb_max"] = col("cpu_memory_mb_max", label)
    for label in gpu_labels:
        out[f"{label}_gpu_memory_mb_max"] = col("gpu_memory_mb_max", label)
    for label in gpu_labels:
        out[f"{label}_gpu_avg_power_w"] = col("gpu_avg_power_w", label)
    return out.reset_index(drop=True).astype("float64")


def combinations(frame: pd.DataFrame) -> list[tuple[int, str]]:
    """The (seq_len, dtype) pairs of a run, each of which gets its own table."""
    pairs = frame[["seq_len", "dtype"]].drop_duplicates().sort_values(["dtype", "seq_len"])
    return [(int(s), str(d)) for s, d in pairs.itertuples(index=False)]


def comparison_tables(frame: pd.DataFrame, pools: list[str], baseline: str) -> dict[tuple[int, str], pd.DataFrame]:
    """The Performance Comparison of a run: one table per (seq_len, dtype)."""
    return {(s, d): comparison_table(frame[(frame["seq_len"] == s) & (frame["dtype"] == d)], pools, baseline)
            for s, d in combinations(frame)}


def detail_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Beyond the seed: distribution, tokens/s, energy, validity and host per measured cell."""
    ok = frame[frame["status"] == "ok"].copy()
    ok["validity"] = ok["valid"].map({True: "VALID", False: "INVALID"})
    cols = {"pool": "pool", "batch_size": "batch", "seq_len": "seq", "dtype": "dtype",
            "latency_ms_p50": "p50_ms", "latency_ms_p99": "p99_ms", "latency_ms_std": "std_ms",
            "latency_cv": "cv", "n_iterations": "n", "throughput_measured": "items_per_s",
            "tokens_per_s": "tokens_per_s", "gpu_energy_j_per_sample": "gpu_j_per_sample",
            "cpu_energy_j_per_sample": "cpu_j_per_sample", "validity": "validity", "host": "host"}
    return ok[list(cols)].rename(columns=cols)


def dtype_table(frame: pd.DataFrame) -> pd.DataFrame | None:
    """Lower precision against fp32 on the same pool, shape and batch: fp32 latency / dtype latency."""
    ok = frame[frame["status"] == "ok"]
    dtypes = [d for d in ("fp16", "bf16") if d in set(ok["dtype"])]
    if "fp32" not in set(ok["dtype"]) or not dtypes:
        return None
    wide = ok.pivot_table(index=["pool", "seq_len", "batch_size"], columns="dtype", values="latency_ms_mean", aggfunc="first")
    out = pd.DataFrame(index=wide.index)
    out["fp32_latency_ms_mean"] = wide["fp32"]
    for d in dtypes:
        out[f"{d}_latency_ms_mean"] = wide[d]
        out[f"speedup_{d}_vs_fp32"] = wide["fp32"] / wide[d]
    return out.reset_index()

"""Latency statistics over the raw per-iteration latencies."""

from __future__ import annotations

import math
import statistics


def percentile(sorted_values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not sorted_values:
        return math.nan
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


# Two-sided 95% quantiles of Student's t for small samples; beyond the table the normal's.
_T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
        12: 2.179, 15: 2.131, 20: 2.086, 25: 2.060, 30: 2.042, 40: 2.021, 60: 2.000, 120: 1.980}


def t95(df: int) -> float:
    """The 95% two-sided t quantile for ``df`` degrees of freedom (the next smaller tabled df: conservative)."""
    return _T95[max(k for k in _T95 if k <= df)] if df < 120 else 1.96


def ci95_pct(latencies_ms: list[float]) -> float | None:
    """Half-width of the 95% interval of the mean latency, in % of the mean (None under 2 values).
    Treats iterations as independent: what they share (clocks, neighbours) makes it optimistic,
    which is why repeats (--repeats) measure the spread between passes."""
    n = len(latencies_ms)
    if n < 2:
        return None
    mean = statistics.fmean(latencies_ms)
    if not mean > 0:
        return None
    return 100 * t95(n - 1) * statistics.stdev(latencies_ms) / math.sqrt(n) / mean


def latency_stats(latencies_ms: list[float]) -> dict:
    values = sorted(latencies_ms)
    n = len(values)
    if n == 0:
        return {"n": 0}
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if n > 1 else 0.0
    return {
        "n": n,
        "mean": mean,
        "median": percentile(values, 50),
        "p90": percentile(values, 90),
        "p95": percentile(values, 95),
        "p99": percentile(values, 99),
        "std": std,
        "min": values[0],
        "max": values[-1],
        "cv": std / mean if mean > 0 else math.nan,
        "ci95_pct": ci95_pct(values),
    }

"""Per-cell change between two saved runs, with noise taken from the runs' own spread."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .frame import cells_frame

KEY = ["pool", "batch_size", "seq_len", "dtype"]


def compare(old_doc: dict, new_doc: dict) -> pd.DataFrame:
    old, new = cells_frame(old_doc), cells_frame(new_doc)
    cols = KEY + ["latency_ms_mean", "throughput_mean", "latency_cv"]
    both = old[old.status == "ok"][cols].merge(new[new.status == "ok"][cols], on=KEY, suffixes=("_old", "_new"))
    both["latency_change_pct"] = 100 * (both["latency_ms_mean_new"] / both["latency_ms_mean_old"] - 1)
    both["throughput_change_pct"] = 100 * (both["throughput_mean_new"] / both["throughput_mean_old"] - 1)
    # Noise: two combined per-iteration spreads (relative), never below 1%.
    both["noise_pct"] = np.maximum(100 * 2 * np.sqrt(both["latency_cv_old"].fillna(0) ** 2 + both["latency_cv_new"].fillna(0) ** 2), 1.0)
    beyond = both["latency_change_pct"].abs() > both["noise_pct"]
    both["verdict"] = np.where(~beyond, "within noise", np.where(both["latency_change_pct"] > 0, "REGRESSION", "improvement"))
    return both[KEY + ["latency_ms_mean_old", "latency_ms_mean_new", "latency_change_pct", "throughput_mean_old",
                       "throughput_mean_new", "throughput_change_pct", "noise_pct", "verdict"]]


def regressions(table: pd.DataFrame, pct: float) -> pd.DataFrame:
    """Cells slower by more than ``pct`` percent and beyond their noise."""
    return table[(table["verdict"] == "REGRESSION") & (table["latency_change_pct"] > pct)]

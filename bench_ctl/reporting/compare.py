"""Per-cell change between two saved runs, with noise taken from the runs' own spread. A cell
INVALID in either run is listed with the verdict INVALID and never judged: its number is not
trusted, so it is neither a regression nor an improvement."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench_protocol.spec import AXES

from .frame import cells_frame

KEY = list(AXES)
INVALID = "INVALID (not judged)"


def noise_pct(cv_a, cv_b):
    """Relative noise (%) of a ratio of two means: twice their combined per-iteration spread,
    never below 1%. Numbers or arrays; an unknown CV counts as 0."""
    a = np.nan_to_num(np.asarray(cv_a, dtype="float64"))
    b = np.nan_to_num(np.asarray(cv_b, dtype="float64"))
    return np.maximum(100 * 2 * np.sqrt(a**2 + b**2), 1.0)


def compare(old_doc: dict, new_doc: dict) -> pd.DataFrame:
    old, new = cells_frame(old_doc), cells_frame(new_doc)
    cols = KEY + ["latency_ms_mean", "throughput_mean", "latency_cv", "valid"]
    both = old[old.status == "ok"][cols].merge(new[new.status == "ok"][cols], on=KEY, suffixes=("_old", "_new"))
    both["latency_change_pct"] = 100 * (both["latency_ms_mean_new"] / both["latency_ms_mean_old"] - 1)
    both["throughput_change_pct"] = 100 * (both["throughput_mean_new"] / both["throughput_mean_old"] - 1)
    both["noise_pct"] = noise_pct(both["latency_cv_old"], both["latency_cv_new"])
    beyond = both["latency_change_pct"].abs() > both["noise_pct"]
    both["verdict"] = np.where(~beyond, "within noise", np.where(both["latency_change_pct"] > 0, "REGRESSION", "improvement"))
    untrusted = (both["valid_old"] == False) | (both["valid_new"] == False)  # noqa: E712 (object column)
    both.loc[untrusted, "verdict"] = INVALID
    both = pd.concat([both[~untrusted], both[untrusted]])  # listed apart, after the judged cells
    return both[KEY + ["latency_ms_mean_old", "latency_ms_mean_new", "latency_change_pct", "throughput_mean_old",
                       "throughput_mean_new", "throughput_change_pct", "noise_pct", "verdict"]]


def regressions(table: pd.DataFrame, pct: float) -> pd.DataFrame:
    """Cells slower by more than ``pct`` percent and beyond their noise."""
    return table[(table["verdict"] == "REGRESSION") & (table["latency_change_pct"] > pct)]

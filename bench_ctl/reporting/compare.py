"""Per-cell change between two saved runs, with noise taken from the runs' own spread. A cell
INVALID in either run is listed with the verdict INVALID and never judged: its number is not
trusted, so it is neither a regression nor an improvement."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench_protocol.spec import CELL_KEY, base_cell_id

from .combined import combine_repeats
from .frame import cells_frame

KEY = list(CELL_KEY)  # a cell's repeats are compared as one
INVALID = "INVALID (not judged)"


def noise_pct(cv_a, cv_b):
    """Relative noise (%) of a ratio of two means: twice their combined per-iteration spread,
    never below 1%. Numbers or arrays; an unknown CV counts as 0."""
    a = np.nan_to_num(np.asarray(cv_a, dtype="float64"))
    b = np.nan_to_num(np.asarray(cv_b, dtype="float64"))
    return np.maximum(100 * 2 * np.sqrt(a**2 + b**2), 1.0)


# The test on raw latencies: a percentile bootstrap of the ratio of the two cells' median
# latencies (seeded, so a comparison reads the same every time it is made).
BOOTSTRAP_ROUNDS = 2000
MIN_ITERATIONS = 5  # fewer raw latencies than this in either cell: the noise rule decides
TEST_BOOTSTRAP = "bootstrap 95% CI of the ratio of medians, and the noise rule"
TEST_NOISE = "noise rule (2x combined CV, no raw latencies)"


def median_ratio_interval(old, new, rounds: int = BOOTSTRAP_ROUNDS, level: float = 0.95, seed: int = 0):
    """(low, high) of the ``level`` interval of median(new) / median(old) over their raw
    latencies, or None when either has fewer than MIN_ITERATIONS values."""
    a = np.asarray(old if old is not None else [], dtype="float64")
    b = np.asarray(new if new is not None else [], dtype="float64")
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if len(a) < MIN_ITERATIONS or len(b) < MIN_ITERATIONS:
        return None
    rng = np.random.default_rng(seed)
    ratios = np.empty(rounds)
    for start in range(0, rounds, 250):  # in slices: a cell of 10,000 iterations stays small in memory
        n = min(250, rounds - start)
        ratios[start:start + n] = (np.median(rng.choice(b, (n, len(b))), axis=1)
                                   / np.median(rng.choice(a, (n, len(a))), axis=1))
    tail = (1 - level) / 2
    low, high = np.quantile(ratios, [tail, 1 - tail])
    return float(low), float(high)


def _raw(doc: dict) -> dict:
    """Each cell's raw latencies, every repeat's pooled, by :func:`~bench_protocol.spec.base_cell_id`."""
    out: dict = {}
    for rec in doc.get("cells") or []:
        if rec.get("latencies_ms") is not None:
            out.setdefault(base_cell_id(rec.get("cell_id")), []).extend(rec["latencies_ms"])
    return out


def compare(old_doc: dict, new_doc: dict) -> pd.DataFrame:
    """Each cell both runs measured: its change, and a verdict from a test on the raw latencies
    (a bootstrap interval of the ratio of medians: REGRESSION when the whole interval lies above
    1 and the change is also beyond the noise rule, improvement when below), or from the noise
    rule alone where raw latencies are too few. The test used is named in the ``test`` column."""
    old, new = combine_repeats(cells_frame(old_doc), old_doc)[0], combine_repeats(cells_frame(new_doc), new_doc)[0]
    cols = KEY + ["cell_id", "latency_ms_mean", "throughput_mean", "latency_cv", "valid"]
    both = old[old.status == "ok"][cols].merge(new[new.status == "ok"][cols], on=KEY, suffixes=("_old", "_new"))
    both["latency_change_pct"] = 100 * (both["latency_ms_mean_new"] / both["latency_ms_mean_old"] - 1)
    both["throughput_change_pct"] = 100 * (both["throughput_mean_new"] / both["throughput_mean_old"] - 1)
    both["noise_pct"] = noise_pct(both["latency_cv_old"], both["latency_cv_new"])
    raw_old, raw_new = _raw(old_doc), _raw(new_doc)
    intervals = [median_ratio_interval(raw_old.get(base_cell_id(a)), raw_new.get(base_cell_id(b)))
                 for a, b in zip(both["cell_id_old"], both["cell_id_new"])]
    both["median_ratio_ci"] = [f"{ci[0]:.3f}–{ci[1]:.3f}" if ci else "—" for ci in intervals]
    both["test"] = [TEST_BOOTSTRAP if ci else TEST_NOISE for ci in intervals]
    beyond = (both["latency_change_pct"].abs() > both["noise_pct"]).to_numpy()
    verdict = np.where(~beyond, "within noise", np.where(both["latency_change_pct"] > 0, "REGRESSION", "improvement"))
    floor = 1.0  # percent: below this a significant change is not worth a verdict
    for i, ci in enumerate(intervals):
        if ci is None:
            continue
        # Iterations of one run share its state (clocks, caches, neighbours), so an interval over
        # them is narrower than the spread between runs: the change must also clear the noise rule.
        lo, hi = ci
        if lo > 1 + floor / 100 and beyond[i]:
            verdict[i] = "REGRESSION"
        elif hi < 1 - floor / 100 and beyond[i]:
            verdict[i] = "improvement"
        else:
            verdict[i] = "within noise"
    both["verdict"] = verdict
    untrusted = (both["valid_old"] == False) | (both["valid_new"] == False)  # noqa: E712 (object column)
    both.loc[untrusted, "verdict"] = INVALID
    both = pd.concat([both[~untrusted], both[untrusted]])  # listed apart, after the judged cells
    return both[KEY + ["latency_ms_mean_old", "latency_ms_mean_new", "latency_change_pct", "throughput_mean_old",
                       "throughput_mean_new", "throughput_change_pct", "noise_pct", "median_ratio_ci", "test",
                       "verdict"]]


def regressions(table: pd.DataFrame, pct: float) -> pd.DataFrame:
    """Cells slower by more than ``pct`` percent (the size) and judged REGRESSION by their test
    (the significance); where a bootstrap interval exists, its lower end must clear ``pct`` too."""
    slower = (table["verdict"] == "REGRESSION") & (table["latency_change_pct"] > pct)
    if "median_ratio_ci" in table:
        low = pd.to_numeric(table["median_ratio_ci"].str.split("–").str[0], errors="coerce")
        slower &= low.isna() | (100 * (low - 1) > pct)
    return table[slower]

"""Steps in a history series: where a cell's latency moved to a new level and stayed there.

Optimal partitioning of the log latencies into segments of constant mean (least squares), with a
penalty per step of 4·σ²·ln(n) (twice BIC's for the two parameters a step adds: a step is
chosen among every place in the series, which BIC does not pay for) where σ is the noise of
the series estimated robustly from successive differences, so one slow run is not a step while
a level that holds for a few runs is. A step also has to move the level by at least
MIN_STEP_PCT, and every segment spans at least MIN_SEGMENT runs. Exact (dynamic programming over
every split), O(n²) for n runs: a history of a few thousand runs of one cell takes well under
a second.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import pandas as pd

MIN_SEGMENT = 2
MIN_STEP_PCT = 2.0
VERSION_FIELDS = ("host", "fingerprint_id", "torch", "transformers", "cuda_version", "gpu_driver", "gpu_name",
                  "onnxruntime", "openvino")


@dataclass(frozen=True)
class Step:
    index: int  # the first point of the new level
    before: float  # the level's mean latency before and after (ms)
    after: float

    @property
    def change_pct(self) -> float:
        return 100 * (self.after / self.before - 1)


def _noise(y: np.ndarray) -> float:
    """σ of the points around their level, from successive differences (a step moves one of
    them, not the level's noise) with the largest 5% left out, so a few steps do not count."""
    d = np.sort(np.abs(np.diff(y)))
    if not len(d):
        return 0.0
    drop = max(1, len(d) // 20) if len(d) > 4 else 0
    kept = d[: len(d) - drop]
    return float(np.sqrt(np.mean(kept**2) / 2 / _trimmed_square(drop / len(d))))


def _trimmed_square(f: float) -> float:
    """E[Z² | |Z| below its 1-f quantile] for a standard normal Z: what the trimming keeps."""
    if f <= 0:
        return 1.0
    q = NormalDist().inv_cdf(1 - f / 2)
    return 1 - 2 * q * NormalDist().pdf(q) / (1 - f)


def find_steps(values, min_segment: int = MIN_SEGMENT, min_step_pct: float = MIN_STEP_PCT) -> list[Step]:
    """The steps of a series of positive latencies, in order (none for fewer than 2·min_segment)."""
    x = np.asarray(values, dtype="float64")
    n = len(x)
    if n < 2 * min_segment or not np.all(x > 0):
        return []
    y = np.log(x)
    sigma = max(_noise(y), 1e-3)  # a perfectly flat series still needs a real move to step
    penalty = 4 * sigma**2 * math.log(n)
    s1 = np.concatenate([[0.0], np.cumsum(y)])
    s2 = np.concatenate([[0.0], np.cumsum(y * y)])

    best = np.full(n + 1, np.inf)  # best[j]: the least penalised cost of y[:j]
    best[0] = -penalty
    last = np.zeros(n + 1, dtype=int)
    for j in range(min_segment, n + 1):
        i = np.arange(0, j - min_segment + 1)  # where the last segment, y[i:j], starts
        # its squared deviations from its mean, from the running sums
        seg = s2[j] - s2[i] - (s1[j] - s1[i]) ** 2 / (j - i)
        total = best[i] + seg + penalty  # an i that leaves too short a first segment has best = inf
        k = int(np.argmin(total))
        best[j], last[j] = total[k], i[k]
    cuts, j = [], n
    while j > 0:
        cuts.append(last[j])
        j = last[j]
    bounds = sorted(cuts)[1:] + [n]  # segment ends; the first cut is 0
    starts = [0] + bounds[:-1]
    levels = [float(np.exp(np.mean(y[a:b]))) for a, b in zip(starts, bounds)]
    steps = [Step(start, before, after) for start, before, after in zip(starts[1:], levels, levels[1:])]
    return [s for s in steps if abs(s.change_pct) >= min_step_pct]


def what_changed(before: pd.Series, after: pd.Series) -> str:
    """'torch 2.4.1 → 2.5.0, host a → b' between two history rows; 'nothing recorded' if none."""
    parts = []
    for field in VERSION_FIELDS:
        if field not in before.index or field not in after.index:
            continue
        a, b = before[field], after[field]
        if (pd.isna(a) and pd.isna(b)) or a == b:
            continue
        name = "fingerprint" if field == "fingerprint_id" else field
        parts.append(f"{name} {a if not pd.isna(a) else '—'} → {b if not pd.isna(b) else '—'}")
    return ", ".join(parts) or "nothing recorded in the fingerprint"


def series_steps(cells: pd.DataFrame, key: list[str]) -> pd.DataFrame:
    """Per series (``key`` columns) of a pool's history: one row per run (its repeats averaged,
    oldest first) and the steps found in it, each naming the first run after it and what
    changed in its fingerprint."""
    rows = []
    for k, g in cells.groupby(key, sort=False, dropna=False):
        runs = (g.groupby("run_id", sort=False)
                 .agg(latency_ms_mean=("latency_ms_mean", "mean"), created=("created", "first"),
                      **{f: (f, "first") for f in VERSION_FIELDS if f in g.columns})
                 .sort_values("created").reset_index())
        for step in find_steps(runs["latency_ms_mean"].to_numpy()):
            first, prev = runs.iloc[step.index], runs.iloc[step.index - 1]
            rows.append({**dict(zip(key, k if isinstance(k, tuple) else (k,))), "run_id": first["run_id"],
                         "created": first["created"], "before_ms": step.before, "after_ms": step.after,
                         "change_pct": step.change_pct, "what_changed": what_changed(prev, first)})
    return pd.DataFrame(rows, columns=[*key, "run_id", "created", "before_ms", "after_ms", "change_pct", "what_changed"])

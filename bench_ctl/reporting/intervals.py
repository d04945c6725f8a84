"""95% intervals: of a cell's mean latency, of every speedup, and the one verdict that every
"faster", "slower" or "the same within noise" in a report reads.

A percentile bootstrap, seeded, so a report reads the same every time it is made. Over a cell's
repeats where it has two or more (the spread between repeats holds what one pass of iterations
shares: clocks, caches, neighbours); over its iterations where it has one, which is narrower, and
the report says which basis each interval stands on.
"""

from __future__ import annotations

import numpy as np

ROUNDS = 1000
LEVEL = 0.95
SEED = 0
BLOCK = 2_000_000  # resampled values drawn at a time: a sweep of 10,000 cells stays small in memory
BASIS_REPEATS, BASIS_ITERATIONS = "repeats", "iterations"


def clean(samples) -> np.ndarray:
    x = np.asarray(samples if samples is not None else [], dtype="float64").ravel()
    return x[np.isfinite(x)]


def boot_means(samples: dict, rounds: int = ROUNDS, seed: int = SEED) -> dict:
    """{key: the ``rounds`` bootstrap means of its samples (float32)} for every key with two or
    more samples. Cells of one length share one seeded draw of indices, so ten thousand cells
    cost a few array operations, not ten thousand loops."""
    by_len: dict[int, list] = {}
    for key, x in samples.items():
        x = clean(x)
        if len(x) >= 2:
            by_len.setdefault(len(x), []).append((key, x))
    out = {}
    for n, cells in sorted(by_len.items()):
        idx = np.random.default_rng([seed, n]).integers(0, n, (rounds, n))
        step = max(1, BLOCK // (rounds * n))
        for start in range(0, len(cells), step):
            chunk = cells[start:start + step]
            means = np.stack([x for _, x in chunk])[:, idx].mean(axis=-1)  # (cells, rounds)
            out.update({key: means[i].astype("float32") for i, (key, _) in enumerate(chunk)})
    return out


def _quantiles(values: np.ndarray, level: float) -> tuple[float, float] | None:
    values = values[np.isfinite(values)]
    if not len(values):
        return None
    tail = (1 - level) / 2
    lo, hi = np.quantile(values, [tail, 1 - tail])
    return float(lo), float(hi)


# Two cells of one length were resampled with the same indices: the denominator's means are
# paired with the numerator's in a fixed shuffled order, so the two sides vary independently.
_PAIRING = np.random.default_rng(SEED + 1).permutation(ROUNDS)


def interval(boot: np.ndarray | None, level: float = LEVEL) -> tuple[float, float] | None:
    """The ``level`` interval of a mean from its bootstrap means (None without them)."""
    return None if boot is None else _quantiles(np.asarray(boot, dtype="float64"), level)


def intervals(boots: list, level: float = LEVEL) -> list[tuple[float, float]]:
    """:func:`interval` of many cells at once (their bootstrap means of equal length)."""
    if not boots:
        return []
    stacked = np.stack(boots)
    n = stacked.shape[1]
    tail = (1 - level) / 2
    k = [int(round(tail * (n - 1))), int(round((1 - tail) * (n - 1)))]  # order statistics: no interpolation
    part = np.partition(stacked, k, axis=1)
    return [(float(a), float(b)) for a, b in zip(part[:, k[0]].tolist(), part[:, k[1]].tolist())]


def ratio(boot_num: np.ndarray | None, boot_den: np.ndarray | None, level: float = LEVEL) -> tuple[float, float] | None:
    """The ``level`` interval of mean(num) / mean(den) from the two sides' bootstrap means. A
    speedup of a time is ratio(baseline's, other's)."""
    if boot_num is None or boot_den is None:
        return None
    den = np.asarray(boot_den, dtype="float64")
    den = den[_PAIRING] if len(den) == len(_PAIRING) else den
    return _quantiles(np.asarray(boot_num, dtype="float64") / den, level)


def mean_interval(samples, level: float = LEVEL) -> tuple[float, float] | None:
    """The ``level`` interval of the mean of ``samples``; None under two values."""
    return interval(boot_means({0: samples}).get(0), level)


def ratio_interval(num, den, level: float = LEVEL) -> tuple[float, float] | None:
    """The ``level`` interval of mean(num) / mean(den); None where either side has under two values."""
    boot = boot_means({0: num, 1: den})
    return ratio(boot.get(0), boot.get(1), level)


def verdict(interval: tuple[float, float] | None) -> str | None:
    """A ratio above 1 means faster: 'faster' when the whole interval lies above 1, 'slower'
    when below, else 'the same within noise'; None without an interval."""
    if interval is None:
        return None
    lo, hi = interval
    return "faster" if lo > 1 else "slower" if hi < 1 else "the same within noise"


def fmt_ratio(ratio: float, interval: tuple[float, float] | None) -> str:
    """'27.93x (27.10–28.60)', or '27.93x' without an interval."""
    if ratio is None or not np.isfinite(ratio):
        return "—"
    return f"{ratio:.2f}x" + (f" ({interval[0]:.2f}–{interval[1]:.2f})" if interval else "")

"""A cell's repeats combined into one row: what the comparison tables, the interpretation, the
fastest ways and the plots read (results.csv and the history keep every repeat).

A combined row holds the mean of its measured repeats, how many there were, the basis of its
intervals and the 95% interval of its mean latency. The samples each interval is drawn from
(per-repeat mean latencies, or the iterations of a cell measured once) are returned beside the
frame, keyed by the combined row's cell id, for the speedup intervals.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench_protocol.metrics import COUNT_METRICS, METRICS
from bench_protocol.spec import CELL_KEY as _CELL_KEY

from .intervals import BASIS_ITERATIONS, BASIS_REPEATS, boot_means, intervals

CELL_KEY = list(_CELL_KEY)
ADDED = ["repeats", "interval_basis", "latency_ms_mean_lo", "latency_ms_mean_hi"]


def _series(doc: dict) -> dict:
    return {rec.get("cell_id"): rec.get("latencies_ms") for rec in doc.get("cells") or []
            if rec.get("status") == "ok"}


def _with_intervals(out: pd.DataFrame, samples: dict, basis: list) -> tuple[pd.DataFrame, dict]:
    """The interval columns of ``out`` from its cells' samples; returns it and the bootstrap
    means by cell id (what the speedup intervals are drawn from)."""
    boot = boot_means(samples)
    ids = [cid for cid in out["cell_id"] if cid in boot]
    found = dict(zip(ids, intervals([boot[cid] for cid in ids])))
    cis = [found.get(cid) for cid in out["cell_id"]]
    out["interval_basis"] = [b if ci else None for b, ci in zip(basis, cis)]
    out["latency_ms_mean_lo"] = [ci[0] if ci else np.nan for ci in cis]
    out["latency_ms_mean_hi"] = [ci[1] if ci else np.nan for ci in cis]
    return out.reset_index(drop=True), boot


def combine_repeats(frame: pd.DataFrame, doc: dict) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """(one row per cell, {cell id: the bootstrap means of its mean latency})."""
    raw = _series(doc)
    if frame.empty or not frame.duplicated(CELL_KEY).any():  # every cell measured once: no grouping
        out = frame.copy()
        ok = (out["status"] == "ok").to_numpy()
        out["repeats"] = ok.astype("int64")
        samples = {cid: raw.get(cid) for cid, measured in zip(out["cell_id"], ok) if measured}
        return _with_intervals(out, samples, [BASIS_ITERATIONS] * len(out))
    numeric = [m.name for m in METRICS]
    rows, samples, basis = [], {}, []
    for _, group in frame.groupby(CELL_KEY, sort=False, dropna=False):
        ok = group[group["status"] == "ok"]
        if ok.empty:
            rows.append({**group.iloc[0].to_dict(), "repeats": 0})
            basis.append(None)
            continue
        row = ok.iloc[0].to_dict()
        row["repeats"] = len(ok)
        if len(ok) == 1:
            samples[row["cell_id"]] = raw.get(row["cell_id"])
            basis.append(BASIS_ITERATIONS)
        else:
            row.update(ok[numeric].mean(numeric_only=True).to_dict())
            # Counts stay whole: the iterations behind the mean are all the repeats', the others their largest.
            row.update(ok[COUNT_METRICS].max().to_dict())
            row["n_iterations"] = ok["n_iterations"].sum(min_count=1)
            # The combined cell is VALID when every repeat is; the reasons name their repeat.
            bad = ok[ok["valid"] == False]  # noqa: E712 (object column)
            row["valid"] = bad.empty
            row["invalid_reason"] = "; ".join(f"repeat {int(r)}: {why}" for r, why in zip(bad["repeat"], bad["invalid_reason"])) or None
            row["host"] = ", ".join(sorted({str(h) for h in ok["host"].dropna()})) or None
            samples[row["cell_id"]] = ok["latency_ms_mean"].to_numpy()
            basis.append(BASIS_REPEATS)
        rows.append(row)
    out = pd.DataFrame(rows, columns=[*frame.columns, "repeats"])
    out[numeric] = out[numeric].astype("float64")
    return _with_intervals(out, samples, basis)


def basis_note(frame: pd.DataFrame) -> str:
    """The sentence that says what the intervals stand on."""
    bases = set(frame["interval_basis"].dropna())
    if not bases:
        return "No 95% intervals: no cell has two iterations or two repeats."
    if bases == {BASIS_REPEATS}:
        n = sorted({int(v) for v in frame["repeats"] if v})
        crude = (" With fewer than 5 repeats a bootstrap cannot reach beyond the repeats' own range, so these "
                 "intervals are too narrow: --repeats 5 or more for intervals to trust.") if min(n) < 5 else ""
        return (f"95% intervals: a seeded bootstrap over each cell's repeats ({'/'.join(map(str, n))} per cell, spread "
                f"through the sweep).{crude}")
    if bases == {BASIS_ITERATIONS}:
        return ("95% intervals: a seeded bootstrap over each cell's iterations (one repeat per cell: narrower than the "
                "spread between runs; --repeats N gives intervals over repeats).")
    return "95% intervals: a seeded bootstrap over repeats where a cell has several, over its iterations where it has one."

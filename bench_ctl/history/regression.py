"""A run against its history: each cell against the median of the last N runs of the same model
on the same host fingerprint, with noise from their spread (and the cells' own, as compare)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench_protocol.spec import CELL_KEY

from ..reporting.compare import INVALID, noise_pct

KEY = [*CELL_KEY, "fingerprint_id"]


def _per_run(cells: pd.DataFrame) -> pd.DataFrame:
    """A run's repeats of a cell as one row: the mean of their figures, VALID when every one is."""
    if cells.empty:
        return cells
    valid = (cells["valid"] != 0) & (cells["valid"] != False)  # noqa: E712 (the history keeps 1.0 / 0.0)
    return (cells.assign(valid=valid)
                 .groupby([*KEY, "run_id"], dropna=False, sort=False)
                 .agg(latency_ms_mean=("latency_ms_mean", "mean"), throughput_mean=("throughput_mean", "mean"),
                      latency_cv=("latency_cv", "mean"), valid=("valid", "all"), created=("created", "first"))
                 .reset_index())


def against_history(candidate: pd.DataFrame, past: pd.DataFrame, last: int) -> pd.DataFrame:
    """``candidate``: the run's frame; ``past``: history cells of the same model from other runs.
    A cell's repeats count as one figure per run (their mean) on both sides."""
    if "created" not in candidate:
        candidate = candidate.assign(created=np.nan)
    new = _per_run(candidate[candidate["status"] == "ok"])
    # INVALID past cells are no baseline; an INVALID candidate cell is listed, not judged.
    old = _per_run(past[past["status"] == "ok"])
    old = old[old["valid"]] if len(old) else old
    # The last N runs per cell coordinates and fingerprint, newest first.
    old = old.sort_values("created", ascending=False).groupby(KEY, dropna=False).head(last)
    base = old.groupby(KEY, dropna=False).agg(
        latency_ms_mean_old=("latency_ms_mean", "median"), throughput_mean_old=("throughput_mean", "median"),
        latency_spread=("latency_ms_mean", lambda s: s.std(ddof=1) / s.median() if len(s) > 1 else 0.0),
        latency_cv_old=("latency_cv", "median"), runs=("run_id", "nunique")).reset_index()
    both = new[KEY + ["latency_ms_mean", "throughput_mean", "latency_cv", "valid"]].merge(base, on=KEY)
    both = both.rename(columns={"latency_ms_mean": "latency_ms_mean_new", "throughput_mean": "throughput_mean_new"})
    both["latency_change_pct"] = 100 * (both["latency_ms_mean_new"] / both["latency_ms_mean_old"] - 1)
    both["throughput_change_pct"] = 100 * (both["throughput_mean_new"] / both["throughput_mean_old"] - 1)
    # Noise: the cells' own spread (as compare), or twice the history's run-to-run spread if larger.
    both["noise_pct"] = np.maximum(noise_pct(both["latency_cv_old"], both["latency_cv"]),
                                   200 * both["latency_spread"].fillna(0))
    beyond = both["latency_change_pct"].abs() > both["noise_pct"]
    both["verdict"] = np.where(~beyond, "within noise", np.where(both["latency_change_pct"] > 0, "REGRESSION", "improvement"))
    untrusted = (both["valid"] == 0) | (both["valid"] == False)  # noqa: E712
    both.loc[untrusted, "verdict"] = INVALID
    both = pd.concat([both[~untrusted], both[untrusted]])
    return both[[*CELL_KEY, "runs", "latency_ms_mean_old", "latency_ms_mean_new", "latency_change_pct",
                 "throughput_mean_old", "throughput_mean_new", "throughput_change_pct", "noise_pct", "verdict"]]


def compare_with_history(run: str, last: int, history=None) -> pd.DataFrame:
    """``run``: a results.json or the id of a run in the history."""
    from pathlib import Path

    from bench_protocol.errors import SpecError
    from bench_protocol.records import load_results

    from ..reporting.frame import cells_frame
    from .database import History, model_of

    history = history or History()
    if Path(run).is_file():
        doc = load_results(run)
        run_id, model, candidate = (doc.get("run") or {}).get("run_id"), model_of(doc), cells_frame(doc)
    else:
        candidate = history.cells(run_id=run)
        if candidate.empty:
            raise SpecError(f"{run} is neither a results file nor a run in the history")
        run_id, model = run, candidate["model"].iloc[0]
    past = history.cells(model=model)
    past = past[past["run_id"] != run_id]
    if past.empty:
        raise SpecError(f"the history holds no other run of model {model} to compare with")
    table = against_history(candidate, past, last)
    if table.empty:
        raise SpecError(f"no cell of {run} was measured before on the same host fingerprint and coordinates")
    return table

"""The fastest way to run the model on each pool: the (dtype, variant, batch size) of the
highest throughput, optionally within a p99 latency budget, and whether it beats the runner-up
by the 95% interval of the throughput ratio (intervals.py; the noise ``compare`` uses where
there is none). INVALID cells are never candidates, so a
runtime or dtype that changed the model's answers (accuracy) never wins. ``best_vs_best`` sets
each pool's fastest cell against the baseline's fastest at the same batch size: each device on
its own best stack, beside the like-for-like tables."""

from __future__ import annotations

import pandas as pd

from bench_protocol.spec import AXES, REPLICATE_AXES

from .compare import noise_pct
from .intervals import ratio
from .labels import display_name

# What a user chooses to run a model fast; the other axes (sequence length, ...) are the workload.
HOW_AXES = ("dtype", "variant", "batch_size")
WORKLOAD_AXES = tuple(a for a in AXES if a not in ("pool", *HOW_AXES, *REPLICATE_AXES))

COLUMNS = ["pool", *WORKLOAD_AXES, "dtype", "variant", "batch_size", "throughput_mean", "latency_ms_p50",
           "latency_ms_p99", "tflops_achieved", "pct_peak_measured", "accuracy_top1_agreement", "accuracy_max_abs_diff",
           "runner_up", "margin_pct", "noise_pct", "interval", "verdict"]


def describe(row) -> str:
    """'bf16 compile at batch size 8'."""
    return f"{row['dtype']} {row['variant']} at batch size {int(row['batch_size'])}"


def candidates(cells: pd.DataFrame, budget_ms: float | None = None) -> pd.DataFrame:
    """VALID measured cells (within the budget), best throughput first."""
    ok = cells[(cells["status"] == "ok") & (cells["valid"] == True)]  # noqa: E712 (object column)
    if budget_ms is not None:
        ok = ok[ok["latency_ms_p99"] <= budget_ms]
    return ok[ok["throughput_mean"].notna()].sort_values("throughput_mean", ascending=False, kind="stable")


def winner(ranked: pd.DataFrame) -> tuple[pd.Series | None, pd.Series | None, float | None, float | None]:
    """(best, runner-up, margin %, noise %); runner-up and figures None when there is one candidate."""
    if ranked.empty:
        return None, None, None, None
    best = ranked.iloc[0]
    if len(ranked) == 1:
        return best, None, None, None
    second = ranked.iloc[1]
    margin = 100 * (best["throughput_mean"] / second["throughput_mean"] - 1)
    return best, second, margin, float(noise_pct(best["latency_cv"], second["latency_cv"]))


def throughput_interval(best: pd.Series, second: pd.Series, boot: dict | None) -> tuple[float, float] | None:
    """The 95% interval of best's throughput / second's, from their latencies' bootstrap means
    (items per call / mean latency on each side); None without them."""
    ci = ratio((boot or {}).get(second["cell_id"]), (boot or {}).get(best["cell_id"]))
    if ci is None:
        return None
    scale = best["batch_size"] / second["batch_size"]
    return ci[0] * scale, ci[1] * scale


def fastest_ways(frame: pd.DataFrame, budget_ms: float | None = None, boot: dict | None = None) -> pd.DataFrame:
    """One row per pool (and workload): the fastest way, its runner-up and the verdict. With the
    cells' bootstrap means (``boot``), the verdict is the interval's of best/runner-up throughput:
    'fastest' when all of it lies above 1; else the noise rule decides."""
    rows = []
    for key, cells in frame.groupby(["pool", *WORKLOAD_AXES], sort=False):
        row = dict(zip(["pool", *WORKLOAD_AXES], key))
        best, second, margin, noise = winner(candidates(cells, budget_ms))
        if best is None:
            why = f"no VALID cell has p99 within {budget_ms:g} ms" if budget_ms is not None else "no VALID cell"
            rows.append({**row, "verdict": why})
            continue
        row.update({c: best[c] for c in COLUMNS if c in best.index and c not in row})
        if second is None:
            row["verdict"] = "fastest (only candidate)"
        else:
            ci = throughput_interval(best, second, boot)
            ahead = ci[0] > 1 if ci is not None else margin > noise
            row.update(runner_up=describe(second), margin_pct=margin, noise_pct=noise,
                       interval=f"{ci[0]:.3f}–{ci[1]:.3f}" if ci is not None else None,
                       verdict="fastest" if ahead else "ties with the runner-up within noise")
        rows.append(row)
    return pd.DataFrame(rows, columns=COLUMNS)


def best_vs_best(frame: pd.DataFrame, baseline: str, budget_ms: float | None = None) -> list[str]:
    """Per other pool and batch size (and workload): its fastest VALID cell against the baseline's
    fastest at the same batch size, each naming the stack (dtype and runtime) it ran on."""
    best = candidates(frame, budget_ms).drop_duplicates(["pool", *WORKLOAD_AXES, "batch_size"])
    keys = [*WORKLOAD_AXES, "batch_size"]
    base = best[best["pool"] == baseline].set_index(keys)
    lines = []
    for _, row in best[best["pool"] != baseline].iterrows():
        key = tuple(row[k] for k in keys)
        if key not in base.index:
            continue
        ref = base.loc[key]
        ratio = row["throughput_mean"] / ref["throughput_mean"]
        lines.append(f"Batch size {int(row['batch_size'])}: {display_name(row['pool'])} on {row['dtype']} {row['variant']} "
                     f"runs {ratio:.2f}x the throughput of {display_name(baseline)} on {ref['dtype']} {ref['variant']} "
                     f"({row['throughput_mean']:.4g} vs {ref['throughput_mean']:.4g} items/s).")
    return lines


def sentence(row, shown: tuple = WORKLOAD_AXES) -> str:
    """The Conclusion's sentence for one row of :func:`fastest_ways` (naming the workload axes in ``shown``)."""
    where = display_name(row["pool"]) + "".join(f", {a.replace('_', ' ')} {row[a]}" for a in shown)
    if pd.isna(row.get("throughput_mean")):
        return f"On {where}: nothing to recommend ({row['verdict']})."
    head = (f"On {where}, the fastest way to run it is {describe(row)}: {row['throughput_mean']:.2f} items/s, "
            f"p99 {row['latency_ms_p99']:.2f} ms")
    if pd.isna(row.get("margin_pct")):
        return head + "."
    why = (f"95% interval of the throughput ratio {row['interval']}" if isinstance(row.get("interval"), str)
           else f"noise ±{row['noise_pct']:.1f}%")
    if row["verdict"] == "fastest":
        return head + f", {row['margin_pct']:.1f}% ahead of {row['runner_up']} ({why})."
    return head + f"; it ties with {row['runner_up']} within noise ({row['margin_pct']:.1f}% apart, {why})."

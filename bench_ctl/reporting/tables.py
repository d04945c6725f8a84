"""The Performance Comparison: a pivot of the tidy frame per pool, speedups by column arithmetic.

With pools cpu and cuda the columns are exactly the seed report's, in its order.
"""

from __future__ import annotations

import pandas as pd

from bench_protocol.metrics import BY_NAME, COUNT_METRICS, shown_in
from bench_protocol.spec import CELL_AXES, CELL_KEY, COMBO_AXES, DTYPES, VARIANTS

from .labels import column_prefix, is_gpu_pool

# The compared metrics of each table (bench_protocol/metrics.py), times before rates, and whether
# less is better. "seed": the classic table; a generate cell adds a prefill and a decode table.
PHASES = {phase: [(m.name, m.lower_is_better) for m in sorted(shown_in(phase), key=lambda m: not m.lower_is_better)]
          for phase in ("seed", "prefill", "decode")}
SIDE_METRICS = [m.name for m in shown_in("side")]


def speedup_name(metric: str, other: str, n_others: int) -> str:
    return f"speedup_{metric}" if n_others == 1 else f"speedup_{other}_{metric}"


def comparison_table(frame: pd.DataFrame, pools: list[str], baseline: str, phase: str = "seed") -> pd.DataFrame:
    """One row per batch size; ``frame`` holds the cells of one combination (COMBO_AXES)."""
    labels = [column_prefix(p) for p in pools]
    base = column_prefix(baseline)
    others = [label for label in labels if label != base]
    gpu_labels = [column_prefix(p) for p in pools if is_gpu_pool(p)]
    ok = frame[frame["status"] == "ok"]
    metrics = PHASES[phase]
    wide = ok.pivot_table(index="batch_size", columns="label", values=[m for m, _ in metrics] + SIDE_METRICS,
                          aggfunc="first", dropna=False)
    wide = wide.reindex(sorted(frame["batch_size"].unique()))

    def col(metric: str, label: str) -> pd.Series:
        key = (metric, label)
        return wide[key] if key in wide.columns else pd.Series(float("nan"), index=wide.index)

    out = pd.DataFrame(index=wide.index)
    out["batch_size"] = wide.index.astype("float64")
    for metric, lower_is_better in metrics:
        for label in labels:
            out[f"{label}_{metric}"] = col(metric, label)
        for other in others:
            # A time: how many times faster than the baseline; a rate: how many times more.
            ratio = col(metric, base) / col(metric, other) if lower_is_better else col(metric, other) / col(metric, base)
            out[speedup_name(metric, other, len(others))] = ratio
    for side in SIDE_METRICS:
        for label in gpu_labels if BY_NAME[side].gpu_only else labels:
            out[f"{label}_{side}"] = col(side, label)
    return out.reset_index(drop=True).astype("float64")


_KNOWN_ORDER = {"dtype": DTYPES, "variant": VARIANTS}
_PREFIX = dict(CELL_AXES)


def _order(axis: str, value) -> tuple:
    known = _KNOWN_ORDER.get(axis, ())
    return (known.index(value) if value in known else len(known), value)


def combinations(frame: pd.DataFrame) -> list[tuple]:
    """The combinations of COMBO_AXES values in a run (e.g. (128, 'fp32', 'eager')), each of
    which gets its own table; dtypes and variants in their declared order."""
    rows = frame[list(COMBO_AXES)].drop_duplicates().itertuples(index=False, name=None)
    combos = [tuple(int(v) if _PREFIX[a] else str(v) for a, v in zip(COMBO_AXES, row)) for row in rows]
    priority = ["dtype", "variant"] + [a for a in COMBO_AXES if a not in ("dtype", "variant")]
    return sorted(combos, key=lambda c: [_order(a, c[COMBO_AXES.index(a)]) for a in priority])


def combo_cells(frame: pd.DataFrame, combo: tuple) -> pd.DataFrame:
    mask = pd.Series(True, index=frame.index)
    for axis, value in zip(COMBO_AXES, combo):
        mask &= frame[axis] == value
    return frame[mask]


TITLE_FORMATS = {"seq_len": "Sequence length {}", "new_tokens": "{} new tokens"}


def combo_title(combo: tuple, shown: tuple = ("seq_len", "dtype", "variant")) -> str:
    """'Sequence length 128, fp32, eager': the axes in ``shown`` (those that vary in the run)."""
    return ", ".join(TITLE_FORMATS.get(a, "{}").format(v) for a, v in zip(COMBO_AXES, combo) if a in shown)


def varying_axes(combos: list[tuple]) -> tuple:
    """The combination axes worth naming in titles: sequence length and dtype always (the
    report's classic titles), any other axis where the run has more than one value."""
    return tuple(a for i, a in enumerate(COMBO_AXES)
                 if a in ("seq_len", "dtype") or len({c[i] for c in combos}) > 1)


def combo_key(combo: tuple) -> str:
    """'s128_fp32_eager' (report.json)."""
    return "_".join(f"{_PREFIX[a]}{v}" for a, v in zip(COMBO_AXES, combo))


def comparison_tables(frame: pd.DataFrame, pools: list[str], baseline: str) -> dict[tuple, pd.DataFrame]:
    """The Performance Comparison of a run: one table per combination of COMBO_AXES."""
    return {c: comparison_table(combo_cells(frame, c), pools, baseline) for c in combinations(frame)}


def phase_tables(cells: pd.DataFrame, pools: list[str], baseline: str) -> dict[str, pd.DataFrame]:
    """The prefill and decode tables of one combination, where its cells generate."""
    if not (cells["task"] == "generate").any():
        return {}
    return {phase: comparison_table(cells, pools, baseline, phase) for phase in ("prefill", "decode")}


# The per-cell tables show combined cells (their repeats in one row): no repeat column.
AXIS_HEADERS = {a: {"batch_size": "batch", "seq_len": "seq"}.get(a, a) for a in CELL_KEY}
# Whole numbers, under their names and their headers: printed without decimals (but in the seed's table).
INTEGER_COLUMNS = frozenset({a for a, prefix in CELL_AXES if prefix} | {AXIS_HEADERS.get(a, a) for a, prefix in CELL_AXES if prefix}
                            | set(COUNT_METRICS) | {BY_NAME[m].label for m in COUNT_METRICS} | {"repeats"})


def labelled(table: str, cells: pd.DataFrame | None = None) -> dict[str, str]:
    """Column -> header of the metrics a per-cell table shows (bench_protocol/metrics.py); a
    metric only some cells have (a GPU's, a runtime's) is left out where none of ``cells`` has it."""
    return {m.name: m.label for m in shown_in(table)
            if not (m.optional and cells is not None and cells[m.name].isna().all())}


def efficiency_table(frame: pd.DataFrame) -> pd.DataFrame:
    """How close each measured cell came to its device's ceilings (bench_workers/cell/roofline.py)."""
    ok = frame[frame["status"] == "ok"].copy()
    ok["gflops_per_forward"] = ok["flops_per_forward"] / 1e9
    cols = {**AXIS_HEADERS, "gflops_per_forward": "GFLOP/forward", **labelled("efficiency")}
    return ok[list(cols)].rename(columns=cols)


def generation_table(frame: pd.DataFrame) -> pd.DataFrame | None:
    """Prefill and decode distributions of the generate cells (None when the run has none)."""
    gen = frame[(frame["status"] == "ok") & (frame["task"] == "generate")]
    if gen.empty:
        return None
    cols = {**AXIS_HEADERS, **labelled("generation", gen)}
    return gen[list(cols)].rename(columns=cols)


def detail_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Beyond the seed: distribution, tokens/s, energy, validity and host per measured cell."""
    ok = frame[frame["status"] == "ok"].copy()
    ok["validity"] = ok["valid"].map({True: "VALID", False: "INVALID"})
    extra = {}
    if "repeats" in ok and (ok["repeats"] > 1).any():
        # The mean's 95% interval over repeats (combined.py) and how many, where any cell has several.
        ok["mean_ci"] = [f"{lo:.4g}–{hi:.4g}" if lo == lo else "—" for lo, hi in zip(ok["latency_ms_mean_lo"], ok["latency_ms_mean_hi"])]
        extra.update(mean_ci="mean_95ci_ms", repeats="repeats")
    cols = {**AXIS_HEADERS, **labelled("details", ok), **extra, "validity": "validity", "host": "host"}
    return ok[list(cols)].rename(columns=cols)


def dtype_table(frame: pd.DataFrame) -> pd.DataFrame | None:
    """Lower precision against fp32 on the same pool, shape and batch: fp32 latency / dtype latency."""
    ok = frame[frame["status"] == "ok"]
    dtypes = [d for d in ("fp16", "bf16") if d in set(ok["dtype"])]
    if "fp32" not in set(ok["dtype"]) or not dtypes:
        return None
    index = ["pool", *(a for a in COMBO_AXES if a != "dtype"), "batch_size"]
    wide = ok.pivot_table(index=index, columns="dtype", values="latency_ms_mean", aggfunc="first")
    out = pd.DataFrame(index=wide.index)
    out["fp32_latency_ms_mean"] = wide["fp32"]
    for d in dtypes:
        out[f"{d}_latency_ms_mean"] = wide[d]
        out[f"speedup_{d}_vs_fp32"] = wide["fp32"] / wide[d]
    return out.reset_index()


def _invalid(valid) -> bool:
    """A cell's validity flag says INVALID (False, numpy's too); unknown (None, NaN) is not INVALID."""
    return valid is not None and valid == valid and not bool(valid)


def speedup_interval_rows(cells: pd.DataFrame, pools: list[str], baseline: str, boot: dict,
                          between: dict | None = None) -> list[dict]:
    """Each pool's latency speedup over the baseline per batch size, with its 95% interval and the
    verdict it gives (intervals.py), as numbers: what the report's table and report.json show.
    ``between``: the pools' between-host spread (%, hosts.py), which widens their intervals. A
    pair with an INVALID cell has no interval and the verdict "INVALID (not judged)"."""
    from .hosts import combine_between, widened
    from .intervals import ratio, verdict

    between = between or {}
    ok = cells[cells["status"] == "ok"]
    if ok.empty:
        return []
    at = {(bs, pool): row for bs, pool, row in zip(ok["batch_size"], ok["pool"], ok.to_dict("records"))}
    rows = []
    for bs in sorted(ok["batch_size"].unique()):
        base = at.get((bs, baseline))
        for other in (p for p in pools if p != baseline):
            cell = at.get((bs, other))
            if base is None or cell is None:
                continue
            row = {"batch_size": int(bs), "pool": other, "baseline": baseline,
                   "speedup_latency": base["latency_ms_mean"] / cell["latency_ms_mean"], "low": None, "high": None,
                   "basis": cell.get("interval_basis")}
            if _invalid(base["valid"]) or _invalid(cell["valid"]):
                rows.append({**row, "verdict": "INVALID (not judged)"})
                continue
            ci = ratio(boot.get(base["cell_id"]), boot.get(cell["cell_id"]))
            ci = widened(ci, row["speedup_latency"], combine_between(between.get(baseline, 0.0), between.get(other, 0.0)))
            rows.append({**row, "low": ci[0] if ci else None, "high": ci[1] if ci else None,
                         "verdict": verdict(ci) or "no interval"})
    return rows


def speedup_intervals(cells: pd.DataFrame, pools: list[str], baseline: str, boot: dict,
                      between: dict | None = None) -> pd.DataFrame | None:
    """:func:`speedup_interval_rows` as the report shows them: a row per batch size, per other
    pool its speedup with its interval and the verdict; None with one pool."""
    from .intervals import fmt_ratio

    rows = speedup_interval_rows(cells, pools, baseline, boot, between)
    if not rows:
        return None
    out: dict[int, dict] = {}
    for r in rows:
        name = column_prefix(r["pool"])
        shown = "—" if r["verdict"].startswith("INVALID") else fmt_ratio(
            r["speedup_latency"], (r["low"], r["high"]) if r["low"] is not None else None)
        out.setdefault(r["batch_size"], {"batch": r["batch_size"]}).update(
            {f"{name}_speedup": shown, f"{name}_verdict": r["verdict"]})
    return pd.DataFrame(list(out.values()))

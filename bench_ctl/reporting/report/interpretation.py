"""The Interpretation and Conclusion of a comparison table, drawn from VALID cells only."""

from __future__ import annotations

import math

import pandas as pd

from bench_protocol.metrics import metric

from ..compare import noise_pct
from ..fastest import candidates, winner
from ..intervals import ratio, verdict
from ..labels import column_prefix, display_name, is_gpu_pool
from ..tables import PHASES, comparison_table, phase_tables, speedup_name
from .context import _fmt_bs

PHASE_TITLES = {"prefill": "Prefill (time to first token)", "decode": "Decode (per generated token)"}


def _avg_noise(cells: pd.DataFrame, base: str, other: str) -> float:
    """The mean noise (%) of the per-batch ratios between two pools (compare's estimate)."""
    cv = cells[cells["status"] == "ok"].pivot_table(index="batch_size", columns="pool", values="latency_cv", aggfunc="first")
    if base not in cv or other not in cv:
        return 1.0
    both = cv[[base, other]].dropna(how="all")
    return float(noise_pct(both[base], both[other]).mean()) if len(both) else 1.0


def _interval_at(cells: pd.DataFrame, baseline: str, other: str, batch_size, boot: dict | None) -> str:
    """The sentence of the 95% interval of other's speedup over the baseline at one batch size, or ''."""
    if not boot:
        return ""
    at = cells[(cells["status"] == "ok") & (cells["batch_size"] == batch_size)].set_index("pool")["cell_id"]
    if baseline not in at or other not in at:
        return ""
    ci = ratio(boot.get(at[baseline]), boot.get(at[other]))
    return f"Its 95% interval: {ci[0]:.2f}x to {ci[1]:.2f}x ({verdict(ci)}; see Speedups with 95% intervals)." if ci else ""


def _speedup_sentences(table: pd.DataFrame, cells: pd.DataFrame, pools: list[str], baseline: str, boot: dict | None = None):
    """The Latency and Throughput bullets; returns them and the pool of the best average throughput."""
    labels = {p: column_prefix(p) for p in pools}
    others = [p for p in pools if p != baseline]
    bs = table["batch_size"]
    items: list = []
    best = None  # (average throughput ratio, pool, noise %)
    for other in others:
        o, a, b = labels[other], display_name(other), display_name(baseline)
        noise = _avg_noise(cells, baseline, other)
        for name, _ in PHASES["seed"]:
            s = table[speedup_name(name, o, len(others))]
            if s.notna().sum() == 0:
                continue
            avg, imax, spread = s.mean(), s.idxmax(), ""
            tie = abs(avg - 1) * 100 <= noise
            if name == "latency_ms_mean":
                if tie:
                    head = f"**Latency**: {a} and {b} are the same within noise (on average {avg:.2f}x, noise ±{noise:.1f}%)."
                elif avg >= 1:
                    head = f"**Latency**: {a} is on average {avg:.2f}x faster than {b}."
                else:
                    head = f"**Latency**: {a} is on average {1 / avg:.2f}x slower than {b}."
                sub = f"The maximum speedup of {s[imax]:.2f}x is achieved at batch size {_fmt_bs(bs[imax])}."
                spread = _interval_at(cells, baseline, other, bs[imax], boot)
            else:
                if tie:
                    head = f"**Throughput**: {a} and {b} reach the same throughput within noise (on average {avg:.2f}x, noise ±{noise:.1f}%)."
                else:
                    head = f"**Throughput**: {a} achieves on average {avg:.2f}x {'higher' if avg >= 1 else 'the'} throughput {'than' if avg >= 1 else 'of'} {b}."
                sub = f"The maximum throughput improvement of {s[imax]:.2f}x is achieved at batch size {_fmt_bs(bs[imax])}."
                if best is None or avg > best[0]:
                    best = (avg, other, noise)
            items.append((head, [sub, *([spread] if spread else []), *_stack_note(cells)]))
    return items, best


def _stack_note(cells: pd.DataFrame) -> list[str]:
    """Which stack the compared cells ran on, where it is not PyTorch eager in fp32 (the seed's)."""
    stacks = sorted({(d, v) for d, v in zip(cells["dtype"], cells["variant"])})
    if stacks == [("fp32", "eager")] or not stacks:
        return []
    return [f"Every pool measured on {', '.join(f'{d} {v}' for d, v in stacks)}; Best vs best (after the Conclusion) "
            "sets each pool's fastest stack against the others'."]


def _recommendation(cells: pd.DataFrame, budget_ms: float | None) -> str | None:
    """The pool and batch size of the highest VALID throughput in one table, or a tie within noise."""
    ranked = candidates(cells, budget_ms)
    best, second, margin, noise = winner(ranked)
    budget = f" within a p99 budget of {budget_ms:g} ms" if budget_ms is not None else ""
    if best is None:
        return (f"**Recommendation**: none: no VALID cell{budget} to recommend." if len(cells[cells["status"] == "ok"])
                else None)
    head = f"**Recommendation**: For optimal performance{budget}, use batch size {_fmt_bs(best['batch_size'])} on {display_name(best['pool'])}."
    if second is not None and margin <= noise:
        head += (f" Batch size {_fmt_bs(second['batch_size'])} on {display_name(second['pool'])} ties with it within noise "
                 f"({margin:.1f}% apart, noise ±{noise:.1f}%).")
    return head


def _phase_sentences(phase: str, table: pd.DataFrame, pools: list[str], baseline: str) -> list:
    """One bullet per non-baseline pool: how much sooner the first token comes, how much faster decoding is."""
    others = [p for p in pools if p != baseline]
    out = []
    for other in others:
        a, b = display_name(other), display_name(baseline)
        metric = "ttft_ms_mean" if phase == "prefill" else "decode_tokens_per_s"
        s = table[speedup_name(metric, column_prefix(other), len(others))]
        if s.notna().sum() == 0:
            continue
        avg, imax = s.mean(), s.idxmax()
        at = _fmt_bs(table["batch_size"][imax])
        if phase == "prefill":
            out.append((f"**Prefill**: {a} reaches the first token on average {avg:.2f}x {'sooner' if avg >= 1 else 'as soon'} than {b}.",
                        [f"The largest prefill speedup, {s[imax]:.2f}x, is at batch size {at}."]))
        else:
            out.append((f"**Decode**: {a} generates on average {avg:.2f}x the tokens/s of {b} per sequence.",
                        [f"The largest decode speedup, {s[imax]:.2f}x, is at batch size {at}."]))
    return out


def valid_interpretation(cells: pd.DataFrame, pools: list[str], baseline: str, budget_ms: float | None,
                          table: pd.DataFrame, phases: dict, boot: dict | None = None):
    """The Interpretation and Conclusion of one table, from its VALID cells only: an INVALID
    cell is shown in the tables but never drives a sentence. ``table`` and ``phases`` are the
    shown ones, reused when no cell is INVALID."""
    measured = cells[cells["status"] == "ok"]
    valid = cells[cells["valid"] != False]  # noqa: E712 (object column; error cells stay, unmeasured)
    invalid = len(measured) - int((measured["valid"] == True).sum())  # noqa: E712
    if len(measured) and invalid == len(measured):
        why = f"All {invalid} measured cell(s) here are INVALID (see Details): no sentence is drawn from them."
        return [why], "Every measured cell is INVALID (see Details): there is nothing to conclude or recommend."
    if invalid:
        table, phases = comparison_table(valid, pools, baseline), phase_tables(valid, pools, baseline)
    items, conclusion = _interpretation(table, valid, pools, baseline, budget_ms, phases, boot)
    if invalid:
        items.append(f"{invalid} INVALID cell(s) are left out of these sentences (see Details).")
    return items, conclusion


def _interpretation(table: pd.DataFrame, cells: pd.DataFrame, pools: list[str], baseline: str,
                    budget_ms: float | None = None, phases: dict | None = None, boot: dict | None = None) -> tuple[list, str]:
    labels = {p: column_prefix(p) for p in pools}
    bs = table["batch_size"]
    items, best_other = _speedup_sentences(table, cells, pools, baseline, boot)
    for phase, phase_table in (phases or {}).items():
        items += _phase_sentences(phase, phase_table, pools, baseline)
    mem = []
    for i, b in bs.items():
        parts = []
        for p in pools:
            m = metric("gpu_memory_mb_max" if is_gpu_pool(p) else "cpu_memory_mb_max")
            col = f"{labels[p]}_{m.name}"
            if col in table and not math.isnan(table.at[i, col]):
                parts.append(f"{display_name(p)} {table.at[i, col]:.2f} {m.unit}")
        if parts:
            mem.append(f"Batch size {_fmt_bs(b)}: " + ", ".join(parts))
    items.append(("**Memory Usage**:", mem or ["not measured"]))
    power, watts = [], metric("gpu_avg_power_w")
    for i, b in bs.items():
        parts = [f"{display_name(p)} {table.at[i, f'{labels[p]}_{watts.name}']:.2f} {watts.unit}" for p in pools
                 if is_gpu_pool(p) and not math.isnan(table.at[i, f"{labels[p]}_{watts.name}"])]
        if parts:
            power.append(f"Batch size {_fmt_bs(b)}: " + ", ".join(parts))
    if power or any(is_gpu_pool(p) for p in pools):
        items.append(("**Power Consumption**:", power or ["not measured (no NVML power readings)"]))
    recommendation = _recommendation(cells, budget_ms)
    if recommendation:
        items.append(recommendation)
    best_valid = candidates(cells)
    if best_other is not None:
        avg, other, noise = best_other
        a, b = display_name(other), display_name(baseline)
        if abs(avg - 1) * 100 <= noise:
            conclusion = (f"The {a} and the {b} reach the same throughput within noise (on average {avg:.2f}x, noise ±{noise:.1f}%): "
                          f"neither is recommended over the other for maximum performance.")
        elif avg >= 1:
            conclusion = (f"The {a} provides significant performance benefits with an average of {avg:.2f}x "
                          f"higher throughput compared to {b} execution. For production deployments, "
                          f"{a} is recommended for maximum performance.")
        else:
            conclusion = (f"The {a} reaches on average only {avg:.2f}x the throughput of "
                          f"{b}. For production deployments, {b} is recommended for maximum performance.")
    elif len(best_valid):
        top = best_valid.iloc[0]
        conclusion = (f"Only {display_name(pools[0])} was measured; its highest throughput, {top['throughput_mean']:.2f} "
                      f"{metric('throughput_mean').unit}, "
                      f"comes at batch size {_fmt_bs(top['batch_size'])}.")
    elif len(cells[cells["status"] == "ok"]):
        conclusion = "Every measured cell is INVALID (see Details): there is nothing to recommend."
    else:
        conclusion = "No cell was measured successfully; see the failed cells below."
    return items, conclusion

"""The cross-device speedup report, in the seed's form, with more after its Conclusion."""

from __future__ import annotations

import math

import pandas as pd

from bench_protocol.accuracy import DEFAULT_AGREEMENT
from bench_protocol.metrics import UNSTABLE_PCT, metric

from .compare import noise_pct
from .document import MORE_ROWS, Bullets, Document, Heading, HtmlOnly, Image, Para, Table
from .fastest import WORKLOAD_AXES, best_vs_best, candidates, fastest_ways, sentence, winner
from .frame import CV_THRESHOLD
from .labels import column_prefix, display_name, is_gpu_pool, model_display
from .tables import (
    AXIS_HEADERS,
    PHASES,
    combo_cells,
    combo_title,
    comparison_table,
    comparison_tables,
    detail_table,
    dtype_table,
    efficiency_table,
    generation_table,
    phase_tables,
    speedup_name,
    varying_axes,
)

# A sweep above LARGE_SWEEP cells is summarised in report.md: its first MD_COMBOS combinations
# keep the seed's tables (MD_ROWS rows each), the rest are in report.html and results.csv.
LARGE_SWEEP = 300
MD_COMBOS = 4
MD_ROWS = 40

MIXED_KEYS = ("cpu_model", "logical_cores", "physical_cores", "memory_gb", "torch", "cuda_version", "gpus", "torch_threads", "platform")


def _fmt_bs(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _known(value) -> str:
    """A model figure, or 'unknown' where no measured cell reported it (never 'None')."""
    return "unknown" if value is None else str(value)


def run_pools(doc: dict) -> list[str]:
    spec = doc.get("run", {}).get("spec", {})
    pools = list(spec.get("pools") or [])
    for rec in doc["cells"]:
        if rec.get("pool") not in pools:
            pools.append(rec.get("pool"))
    return pools


def run_baseline(doc: dict, pools: list[str]) -> str:
    base = doc.get("run", {}).get("spec", {}).get("baseline")
    return base if base in pools else pools[0]


def run_budget(doc: dict) -> float | None:
    """The p99 latency budget (ms) the fastest way must fit, from the run's spec (or report's override)."""
    return doc.get("run", {}).get("spec", {}).get("latency_budget_ms")


def model_info(doc: dict) -> dict:
    for rec in doc["cells"]:
        if rec.get("status") == "ok" and rec.get("model"):
            return rec["model"]
    spec = doc.get("run", {}).get("spec", {})
    return {"model": (spec.get("model") or {}).get("model", "unknown")}


def pool_fingerprints(doc: dict, pool: str) -> list[dict]:
    """The fingerprints of the hosts that measured a pool's cells, in order of first use."""
    seen: list[str] = []
    for rec in doc["cells"]:
        fid = rec.get("fingerprint_id")
        if rec.get("pool") == pool and fid and fid not in seen:
            seen.append(fid)
    return [doc["fingerprints"][f] for f in seen if f in doc["fingerprints"]]


def mixed_hardware(fps: list[dict]) -> bool:
    keyed = {tuple(str(fp.get(k)) for k in MIXED_KEYS) for fp in fps}
    return len(keyed) > 1


def _system_lines(fp: dict, gpu: bool) -> list[str]:
    lines = [f"Host: {fp.get('hostname')}", f"Platform: {fp.get('platform')}", f"Processor: {fp.get('processor')}",
             f"CPU Model: {fp.get('cpu_model')}", f"CPU Flags: {', '.join(fp.get('cpu_flags') or []) or 'none of note'}",
             f"CPU Count: {fp.get('logical_cores')}", f"Physical Cores: {fp.get('physical_cores')}",
             f"Memory: {fp.get('memory_gb')} GB", f"Python: {fp.get('python')}", f"PyTorch: {fp.get('torch')}",
             f"Transformers: {fp.get('transformers')}", f"Torch Threads: {fp.get('torch_threads')}"]
    if fp.get("cpu_affinity"):
        lines.append(f"CPU Affinity: {fp['cpu_affinity']}")
    if gpu:
        g = fp.get("gpu")
        if g:
            lines += [f"GPU: {g.get('name')}", f"GPU Count: {fp.get('gpu_count')}", f"GPU Memory: {g.get('memory_gb')} GB",
                      f"Driver: {fp.get('gpu_driver')}", f"CUDA Version: {fp.get('cuda_version') or fp.get('cuda_driver_version')}",
                      f"cuDNN: {fp.get('cudnn_version')}", f"Compute Capability: {g.get('compute_capability')}",
                      f"Power Limit: {g.get('power_limit_w')} W"]
        else:
            lines.append(f"GPU: not identified ({fp.get('gpu_reason', 'no NVML')})")
    lines.append(f"Fingerprint: {fp.get('fingerprint_id')}")
    return lines


def _avg_noise(cells: pd.DataFrame, base: str, other: str) -> float:
    """The mean noise (%) of the per-batch ratios between two pools (compare's estimate)."""
    cv = cells[cells["status"] == "ok"].pivot_table(index="batch_size", columns="pool", values="latency_cv", aggfunc="first")
    if base not in cv or other not in cv:
        return 1.0
    both = cv[[base, other]].dropna(how="all")
    return float(noise_pct(both[base], both[other]).mean()) if len(both) else 1.0


def _speedup_sentences(table: pd.DataFrame, cells: pd.DataFrame, pools: list[str], baseline: str):
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
            avg, imax = s.mean(), s.idxmax()
            tie = abs(avg - 1) * 100 <= noise
            if name == "latency_ms_mean":
                if tie:
                    head = f"**Latency**: {a} and {b} are the same within noise (on average {avg:.2f}x, noise ±{noise:.1f}%)."
                elif avg >= 1:
                    head = f"**Latency**: {a} is on average {avg:.2f}x faster than {b}."
                else:
                    head = f"**Latency**: {a} is on average {1 / avg:.2f}x slower than {b}."
                sub = f"The maximum speedup of {s[imax]:.2f}x is achieved at batch size {_fmt_bs(bs[imax])}."
            else:
                if tie:
                    head = f"**Throughput**: {a} and {b} reach the same throughput within noise (on average {avg:.2f}x, noise ±{noise:.1f}%)."
                else:
                    head = f"**Throughput**: {a} achieves on average {avg:.2f}x {'higher' if avg >= 1 else 'the'} throughput {'than' if avg >= 1 else 'of'} {b}."
                sub = f"The maximum throughput improvement of {s[imax]:.2f}x is achieved at batch size {_fmt_bs(bs[imax])}."
                if best is None or avg > best[0]:
                    best = (avg, other, noise)
            items.append((head, [sub, *_stack_note(cells)]))
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


def _peak_lines(doc: dict, pool: str, fingerprint_id: str | None) -> list[str]:
    """The ceilings the pool's worker measured on this host (and the spec sheet's, where known)."""
    gemm: dict[str, str] = {}
    copy, spec = None, None
    for rec in doc["cells"]:
        pk = rec.get("peaks") or {}
        if rec.get("pool") != pool or rec.get("fingerprint_id") != fingerprint_id or not pk.get("gemm_tflops"):
            continue
        gemm.setdefault(pk["gemm_dtype"], f"{pk['gemm_dtype']} {pk['gemm_tflops']:.3g} TFLOP/s (n={pk.get('gemm_size')})")
        copy = copy or pk.get("copy_gbps")
        if pk.get("spec_name"):
            spec = spec or f"{pk['spec_name']}, {pk.get('spec_gbps'):g} GB/s"
    lines = []
    if gemm:
        lines.append(f"Measured GEMM Peak: {', '.join(gemm.values())}")
    if copy:
        lines.append(f"Measured Copy Bandwidth: {copy:.3g} GB/s")
    if spec:
        lines.append(f"Spec-Sheet Peak: {spec}")
    return lines


PHASE_TITLES = {"prefill": "Prefill (time to first token)", "decode": "Decode (per generated token)"}


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


def _valid_interpretation(cells: pd.DataFrame, pools: list[str], baseline: str, budget_ms: float | None,
                          table: pd.DataFrame, phases: dict):
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
    items, conclusion = _interpretation(table, valid, pools, baseline, budget_ms, phases)
    if invalid:
        items.append(f"{invalid} INVALID cell(s) are left out of these sentences (see Details).")
    return items, conclusion


def _interpretation(table: pd.DataFrame, cells: pd.DataFrame, pools: list[str], baseline: str,
                    budget_ms: float | None = None, phases: dict | None = None) -> tuple[list, str]:
    labels = {p: column_prefix(p) for p in pools}
    bs = table["batch_size"]
    items, best_other = _speedup_sentences(table, cells, pools, baseline)
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


def build(doc: dict, frame: pd.DataFrame, images: list[Image] | None = None, tables: dict | None = None) -> Document:
    """The report's blocks, in the seed's sections and then ours; ``tables`` are the comparison
    tables when the caller has them already."""
    pools = run_pools(doc)
    baseline = run_baseline(doc, pools)
    info = model_info(doc)
    name = model_display(info.get("model_type"), info.get("model", "model"))
    names = [display_name(p) for p in pools]
    d = Document()
    d.add(Heading(1, f"{name} Benchmark: {' vs. '.join(names)} Comparison"),
          Heading(2, "Summary"),
          Para(f"This report compares the performance of {name} on {' and '.join([', '.join(names[:-1]), names[-1]] if len(names) > 1 else names)} device{'s' if len(names) > 1 else ''}."))
    _system_section(d, doc, pools)
    d.add(Heading(2, "Model Information"),
          Bullets([f"Model: {info.get('model')}", f"Hidden Size: {_known(info.get('hidden_size'))}",
                   f"Hidden Layers: {_known(info.get('num_hidden_layers'))}",
                   f"Attention Heads: {_known(info.get('num_attention_heads'))}",
                   f"Parameters: {info['parameters']:,}" if info.get("parameters") else "Parameters: unknown",
                   f"Weights: {info.get('weights', 'unknown')} ({info.get('weights_source', 'unknown')})"]))
    budget = run_budget(doc)
    fastest = fastest_ways(frame, budget)
    combos = tables if tables is not None else comparison_tables(frame, pools, baseline)
    if len(frame) > LARGE_SWEEP:
        _sweep_summary(d, frame, pools, baseline, combos)
    _comparison_and_conclusion(d, frame, pools, baseline, budget, fastest, combos)
    _beyond_the_seed(d, doc, frame, budget, fastest, baseline)
    if images:
        d.add(Heading(2, "Plots"), *images)
    return d


def _cell_words(row) -> str:
    return (f"{row['cell_id'].split(':', 1)[1]}: {row['throughput_mean']:.4g} items/s, "
            f"{row['latency_ms_mean']:.4g} ms mean latency")


def _sweep_summary(d: Document, frame: pd.DataFrame, pools: list[str], baseline: str, combos: dict) -> None:
    """A large sweep in a few lines: per pool its best and worst cells and its speedup range over
    the baseline; where every cell is."""
    ok = frame[(frame["status"] == "ok") & (frame["valid"] != False) & frame["throughput_mean"].notna()]  # noqa: E712
    index = ["seq_len", "dtype", "variant", "task", "new_tokens", "batch_size"]
    base = ok[ok["pool"] == baseline].set_index(index)["throughput_mean"]
    items = []
    for pool in pools:
        cells = ok[ok["pool"] == pool]
        if not len(cells):
            items.append(f"{display_name(pool)}: no VALID cell")
            continue
        sub = [f"best: {_cell_words(cells.loc[cells['throughput_mean'].idxmax()])}",
               f"worst: {_cell_words(cells.loc[cells['throughput_mean'].idxmin()])}"]
        if pool != baseline:
            ratio = (cells.set_index(index)["throughput_mean"] / base).dropna()
            if len(ratio):
                sub.append(f"throughput speedup over {display_name(baseline)}: {ratio.min():.2f}x to {ratio.max():.2f}x "
                           f"(median {ratio.median():.2f}x over {len(ratio)} matched cells)")
        items.append((f"{display_name(pool)}: {len(cells)} VALID cells", sub))
    d.add(Heading(2, "Sweep summary"),
          Para(f"{len(frame)} cells in {len(combos)} combinations of sequence length, dtype and variant. This file "
               f"keeps the seed's tables for the first {min(MD_COMBOS, len(combos))} combinations, {MD_ROWS} rows each; "
               f"{MORE_ROWS} (sortable, paged)."),
          Bullets(items))


def _system_section(d: Document, doc: dict, pools: list[str]) -> None:
    """One subsection per pool and host, from the fingerprint of the host that measured it."""
    d.add(Heading(2, "System Information"))
    warnings = []
    for pool in pools:
        fps = pool_fingerprints(doc, pool)
        if not fps:
            d.add(Heading(3, display_name(pool)), Para("No fingerprint: no worker of this pool reported a measurement."))
            continue
        for fp in fps:
            title = display_name(pool) if len(fps) == 1 else f"{display_name(pool)} ({fp.get('hostname')})"
            d.add(Heading(3, title), Bullets(_system_lines(fp, is_gpu_pool(pool)) + _peak_lines(doc, pool, fp.get("fingerprint_id"))))
        if mixed_hardware(fps):
            warnings.append(f"**Warning**: pool {pool} mixed hardware: its cells were measured on {len(fps)} different hosts "
                            f"({', '.join(fp.get('hostname', '?') for fp in fps)}); compare its cells with care.")
    for w in warnings:
        d.add(Para(w))


def _comparison_and_conclusion(d: Document, frame: pd.DataFrame, pools: list[str], baseline: str,
                               budget: float | None, fastest: pd.DataFrame, combos: dict) -> None:
    """Performance Comparison (a table, the phase tables and an Interpretation per combination)
    and the Conclusion."""
    d.add(Heading(2, "Performance Comparison"))
    conclusions = []
    shown = varying_axes(list(combos))
    level = 3 if len(combos) == 1 else 4
    for i, (combo, table) in enumerate(combos.items()):
        blocks = [Heading(3, combo_title(combo, shown))] if len(combos) > 1 else []
        blocks.append(Table(table, md_rows=MD_ROWS, integers=False))  # the seed's table, as the seed prints it
        cells = combo_cells(frame, combo)
        phases = phase_tables(cells, pools, baseline)
        for phase, phase_table in phases.items():
            blocks += [Heading(level, PHASE_TITLES[phase]), Table(phase_table, md_rows=MD_ROWS)]
        items, conclusion = _valid_interpretation(cells, pools, baseline, budget, table, phases)
        blocks += [Heading(level, "Interpretation"), Bullets(items, loose=True)]
        conclusions.append((combo, conclusion))
        large = len(frame) > LARGE_SWEEP and i >= MD_COMBOS
        d.add(HtmlOnly(blocks) if large else blocks[0], *([] if large else blocks[1:]))
    if len(frame) > LARGE_SWEEP and len(combos) > MD_COMBOS:
        d.add(Para(f"{len(combos) - MD_COMBOS} more combinations: their tables are in report.html; {MORE_ROWS}."))
    d.add(Heading(2, "Conclusion"))
    if len(conclusions) == 1:
        d.add(Para(conclusions[0][1]))
    else:
        d.add(Bullets([f"{combo_title(c, shown)}: {text}" for c, text in conclusions], md_items=MD_COMBOS * 3))
    if len(candidates(frame)) > len(fastest):  # some pool had a choice to make
        workload = tuple(a for a in WORKLOAD_AXES if fastest[a].nunique() > 1)
        d.add(Para(" ".join(sentence(row, workload) for _, row in fastest.iterrows())))


def _beyond_the_seed(d: Document, doc: dict, frame: pd.DataFrame, budget: float | None, fastest: pd.DataFrame,
                     baseline: str) -> None:
    """The fastest way, how close to the hardware, and the details of every cell."""
    accuracy = ["accuracy_top1_agreement", "accuracy_max_abs_diff"]  # records from before accuracy have none
    shown = fastest.drop(columns=[c for c in accuracy if fastest[c].isna().all()])
    d.add(Heading(2, "Fastest way to run it"),
          Para("Per pool: the dtype, variant (runtime) and batch size of the highest throughput among VALID cells"
               + (f" whose p99 latency fits {budget:g} ms" if budget is not None else "")
               + "; a winner is named only where it beats the runner-up beyond the noise of both. A cell whose outputs "
               "left its fp32 eager reference is INVALID, so it never wins."),
          Table(shown.rename(columns=AXIS_HEADERS), floatfmt=".4g", md_rows=MD_ROWS))
    pairs = best_vs_best(frame, baseline, budget)
    if pairs and frame["pool"].nunique() > 1:
        d.add(Heading(3, "Best vs best"),
              Para("Each pool's fastest VALID cell against the baseline's fastest at the same batch size, whatever stack "
                   "each ran on (the Performance Comparison above compares like with like)."),
              Bullets(pairs, md_items=MD_ROWS))
    d.add(Heading(2, "How close to the hardware"),
          Para("FLOPs per forward counted by torch's FlopCounterMode outside the timed window; TFLOP/s = FLOPs / mean "
               "latency; peak_measured = the device's best square-GEMM rate in the cell's dtype, measured by the worker; "
               "peak_spec = the GPU's spec-sheet dense rate where known; GB/s = weight bytes / mean latency against the "
               "measured copy bandwidth; FLOP/byte = FLOPs / weight bytes."),
          Table(efficiency_table(frame), floatfmt=".4g", md_rows=MD_ROWS))
    moved = frame[frame["peak_spread_pct"] > UNSTABLE_PCT]
    if len(moved):
        where = sorted({f"{display_name(p)} {d} ({s:.0f}%)" for p, d, s in
                        zip(moved["pool"], moved["dtype"], moved["peak_spread_pct"])})
        d.add(Para(f"Unstable ceiling: the measured GEMM peak of {', '.join(where)} moved more than {UNSTABLE_PCT:.0f}% "
                   "between its rounds (peak_spread_%), so its % of peak is approximate."))
    d.add(Heading(2, "Details"), Heading(3, "Latency distribution, tokens/s, energy and validity"))
    detail = detail_table(frame)
    d.add(Table(detail, floatfmt=".4g", md_rows=MD_ROWS) if len(detail) else Para("No cell was measured successfully."))
    by_phase = generation_table(frame)
    if by_phase is not None:
        d.add(Heading(3, "Generation: prefill and decode"), Table(by_phase, floatfmt=".4g", md_rows=MD_ROWS))
    by_dtype = dtype_table(frame)
    if by_dtype is not None:
        d.add(Heading(3, "Lower precision against fp32"), Table(by_dtype, md_rows=MD_ROWS))
    invalid = frame[frame["valid"] == False]  # noqa: E712 (pandas column of objects)
    if len(invalid):
        d.add(Bullets([f"INVALID {r.cell_id}: {r.invalid_reason}" for r in invalid.itertuples()], md_items=MD_ROWS))
    failed = frame[frame["status"] != "ok"]
    d.add(Heading(3, "Failed cells"))
    if len(failed):
        d.add(Table(failed[[*AXIS_HEADERS, "error_type", "error", "host"]]
                    .rename(columns={**AXIS_HEADERS, "error_type": "kind"}), floatfmt=".4g", md_rows=MD_ROWS))
    else:
        d.add(Para("None: every cell was measured."))
    missing = doc.get("missing") or []
    if missing:
        d.add(Heading(3, "Missing cells"), Bullets([f"{m['cell_id']} ({m['state']})" for m in missing], md_items=MD_ROWS))
    d.add(Heading(3, "Cells by host"))
    hosts = frame.groupby(["pool", "host", "worker"], dropna=False).size().reset_index(name="cells")
    d.add(Table(hosts, floatfmt="g"))
    d.add(Heading(3, "How it was measured"), Bullets(_method_lines(doc)))


def _method_lines(doc: dict) -> list[str]:
    rules = doc.get("run", {}).get("spec", {}).get("rules", {})
    methods: dict[str, str] = {}
    for rec in doc["cells"]:
        for name, t in (rec.get("trackers") or {}).items():
            methods.setdefault(name, t.get("power_method") or t.get("method") or t.get("energy_method")
                               or f"not measured: {t.get('reason')}")
    lines = [
        f"Warm-up: {rules.get('warmup')} calls excluded after the cold first call; timing stops when both "
        f"{rules.get('min_iterations')} iterations and {rules.get('min_time')} s are reached (at most {rules.get('max_time')} s).",
        "Latency: CUDA events read after one synchronize on GPUs, perf_counter_ns on CPUs; throughput_mean = batch size / mean latency.",
        f"Validity: INVALID when fewer iterations than asked, latency CV above {CV_THRESHOLD:.0%}, a tracker the device "
        "should have failed (a missing GPU power reading does not count), the GPU was throttled by heat, the outputs left "
        f"the fp32 eager reference (top-1 or token agreement below {DEFAULT_AGREEMENT:.0%}), or another worker measured "
        "on the same host at the same time.",
        "gpu_memory_mb_max: torch.cuda.max_memory_reserved over the cell; cpu_memory_mb_max: peak process RSS over the cell; "
        f"both in {metric('cpu_memory_mb_max').unit} (2^20 bytes), under the seed report's column names.",
    ]
    lines += [f"{name}: {m}" for name, m in sorted(methods.items())]
    return lines

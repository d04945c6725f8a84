"""The report as a list of sections: each one function from the report's context to its blocks,
and their order in one place (SECTIONS). The seed's sections come first, in the seed's form
(Summary, System Information, Model Information, Performance Comparison with its
Interpretation, Conclusion); ours follow its Conclusion."""

from __future__ import annotations

import pandas as pd

from bench_protocol.accuracy import DEFAULT_AGREEMENT
from bench_protocol.metrics import UNSTABLE_PCT, metric

from ..combined import basis_note, combine_repeats
from ..cost import cheapest, cost_frame
from ..document import MORE_ROWS, Bullets, Document, Heading, HtmlOnly, Image, Para, Table
from ..fastest import WORKLOAD_AXES, best_vs_best, candidates, sentence
from ..frame import CV_THRESHOLD
from ..hosts import OUTLIER_PCT, pool_between
from ..labels import display_name
from ..tables import (
    AXIS_HEADERS,
    combo_cells,
    combo_title,
    detail_table,
    dtype_table,
    efficiency_table,
    generation_table,
    labelled,
    phase_tables,
    speedup_intervals,
    varying_axes,
)
from .context import MD_COMBOS, MD_ROWS, ReportContext, _known, report_context
from .interpretation import PHASE_TITLES, valid_interpretation
from .system import system_information


def title_and_summary(ctx: ReportContext) -> list:
    names = ctx.names
    devices = " and ".join([", ".join(names[:-1]), names[-1]]) if len(names) > 1 else names[0]
    return [Heading(1, f"{ctx.name} Benchmark: {' vs. '.join(names)} Comparison"),
            Heading(2, "Summary"),
            Para(f"This report compares the performance of {ctx.name} on {devices} device{'s' if len(names) > 1 else ''}.")]


def model_information(ctx: ReportContext) -> list:
    info = ctx.info
    return [Heading(2, "Model Information"),
            Bullets([f"Model: {info.get('model')}", f"Hidden Size: {_known(info.get('hidden_size'))}",
                     f"Hidden Layers: {_known(info.get('num_hidden_layers'))}",
                     f"Attention Heads: {_known(info.get('num_attention_heads'))}",
                     f"Parameters: {info['parameters']:,}" if info.get("parameters") else "Parameters: unknown",
                     f"Weights: {info.get('weights', 'unknown')} ({info.get('weights_source', 'unknown')})"])]


def _cell_words(row) -> str:
    return (f"{row['cell_id'].split(':', 1)[1]}: {row['throughput_mean']:.4g} items/s, "
            f"{row['latency_ms_mean']:.4g} ms mean latency")


def sweep_summary(ctx: ReportContext) -> list:
    """A large sweep in a few lines: per pool its best and worst cells and its speedup range over
    the baseline; where every cell is."""
    if not ctx.large:
        return []
    frame, pools, baseline, combos = ctx.frame, ctx.pools, ctx.baseline, ctx.combos
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
    return [Heading(2, "Sweep summary"),
            Para(f"{len(frame)} cells in {len(combos)} combinations of sequence length, dtype and variant. This file "
                 f"keeps the seed's tables for the first {min(MD_COMBOS, len(combos))} combinations, {MD_ROWS} rows each; "
                 f"{MORE_ROWS} (sortable, paged)."),
            Bullets(items)]


def _per_combination(ctx: ReportContext) -> tuple:
    """Per combination: its blocks (the seed's table, the phase tables, the Interpretation) and its
    Conclusion sentence, made once for the Performance Comparison and the Conclusion."""
    if "per_combination" not in ctx.memo:
        ctx.memo["per_combination"] = _combinations(ctx)
    return ctx.memo["per_combination"]


def _combinations(ctx: ReportContext) -> tuple:
    frame, pools, baseline, combos = ctx.frame, ctx.pools, ctx.baseline, ctx.combos
    shown = varying_axes(list(combos))
    level = 3 if len(combos) == 1 else 4
    out = []
    for combo, table in combos.items():
        blocks = [Heading(3, combo_title(combo, shown))] if len(combos) > 1 else []
        blocks.append(Table(table, md_rows=MD_ROWS, integers=False))  # the seed's table, as the seed prints it
        cells = combo_cells(frame, combo)
        phases = phase_tables(cells, pools, baseline)
        for phase, phase_table in phases.items():
            blocks += [Heading(level, PHASE_TITLES[phase]), Table(phase_table, md_rows=MD_ROWS)]
        items, conclusion = valid_interpretation(cells, pools, baseline, ctx.budget, table, phases, ctx.boot)
        blocks += [Heading(level, "Interpretation"), Bullets(items, loose=True)]
        out.append((combo, blocks, conclusion))
    return tuple(out)


def performance_comparison(ctx: ReportContext) -> list:
    """A table, the phase tables and an Interpretation per combination (past MD_COMBOS of a large
    sweep: in report.html only)."""
    out: list = [Heading(2, "Performance Comparison")]
    for i, (_, blocks, _) in enumerate(_per_combination(ctx)):
        out += [HtmlOnly(blocks)] if ctx.large and i >= MD_COMBOS else blocks
    if ctx.large and len(ctx.combos) > MD_COMBOS:
        out.append(Para(f"{len(ctx.combos) - MD_COMBOS} more combinations: their tables are in report.html; {MORE_ROWS}."))
    return out


def conclusion(ctx: ReportContext) -> list:
    conclusions = [(combo, text) for combo, _, text in _per_combination(ctx)]
    out: list = [Heading(2, "Conclusion")]
    if len(conclusions) == 1:
        out.append(Para(conclusions[0][1]))
    else:
        shown = varying_axes(list(ctx.combos))
        out.append(Bullets([f"{combo_title(c, shown)}: {text}" for c, text in conclusions], md_items=MD_COMBOS * 3))
    fastest = ctx.fastest
    if len(candidates(ctx.frame)) > len(fastest):  # some pool had a choice to make
        workload = tuple(a for a in WORKLOAD_AXES if fastest[a].nunique() > 1)
        out.append(Para(" ".join(sentence(row, workload) for _, row in fastest.iterrows())))
    return out


def speedups_with_intervals(ctx: ReportContext) -> list:
    """Every speedup of the comparison tables with its 95% interval and the verdict it gives
    (after the Conclusion: the seed's sections stay as the seed has them)."""
    shown = varying_axes(list(ctx.combos))
    out: list = []
    for i, combo in enumerate(ctx.combos):
        cells = combo_cells(ctx.frame, combo)
        table = speedup_intervals(cells, ctx.pools, ctx.baseline, ctx.boot, pool_between(ctx.hosts[0]))
        if table is None:
            continue
        blocks = ([Heading(3, combo_title(combo, shown))] if len(ctx.combos) > 1 else []) + [Table(table, md_rows=MD_ROWS)]
        out += [HtmlOnly(blocks)] if ctx.large and i >= MD_COMBOS else blocks
    if not out:
        return []
    return [Heading(2, "Speedups with 95% intervals"),
            Para(f"Each pool's latency speedup over {display_name(ctx.baseline)} per batch size; faster or slower only "
                 f"when the whole interval lies on one side of 1. {basis_note(ctx.frame)} A pair with an INVALID cell "
                 "is not judged."), *out]


def hosts_of_one_pool(ctx: ReportContext) -> list:
    """Per pool of two or more hosts: the spread between hosts and within one, and the outliers."""
    pools, hosts = ctx.hosts
    if pools.empty:
        return []
    widened = ", ".join(display_name(p) for p in pools["pool"])
    return [Heading(2, "Hosts of one pool"),
            Para("Each record's mean latency relative to its cell's mean over the pool. between_host_pct: the spread of "
                 "the hosts' means beyond what the noise within one host explains (one-way random effects); "
                 "within_host_pct: the spread of one host's records of a cell. A host whose median is more than "
                 f"{OUTLIER_PCT:g}% or three robust standard deviations from the pool's is an OUTLIER, with the fingerprint "
                 f"fields in which it differs from the pool's usual host. The speedup intervals of {widened} are widened "
                 "by their pools' between-host spread."),
            Table(pools, floatfmt=".3g"),
            Table(hosts, floatfmt=".3g", md_rows=MD_ROWS)]


def fastest_way(ctx: ReportContext) -> list:
    budget, fastest = ctx.budget, ctx.fastest
    accuracy = ["accuracy_top1_agreement", "accuracy_max_abs_diff"]  # records from before accuracy have none
    shown = fastest.drop(columns=[c for c in accuracy if fastest[c].isna().all()])
    return [Heading(2, "Fastest way to run it"),
            Para("Per pool: the dtype, variant (runtime) and batch size of the highest throughput among VALID cells"
                 + (f" whose p99 latency fits {budget:g} ms" if budget is not None else "")
                 + "; a winner is named only where the 95% interval of its throughput over the runner-up's lies above 1 "
                 "(the noise rule of both where no interval can be drawn). A cell whose outputs "
                 "left its fp32 eager reference is INVALID, so it never wins."),
            Table(shown.rename(columns=AXIS_HEADERS), floatfmt=".4g", md_rows=MD_ROWS)]


def best_vs_best_section(ctx: ReportContext) -> list:
    pairs = best_vs_best(ctx.frame, ctx.baseline, ctx.budget)
    if not pairs or ctx.frame["pool"].nunique() < 2:
        return []
    return [Heading(3, "Best vs best"),
            Para("Each pool's fastest VALID cell against the baseline's fastest at the same batch size, whatever stack "
                 "each ran on (the Performance Comparison above compares like with like)."),
            Bullets(pairs, md_items=MD_ROWS)]


def serving(ctx: ReportContext) -> list:
    """Server and offline cells: the rate served, per-request latency, the batches formed, and
    every load step of a search (the latency-vs-rate curve in numbers)."""
    served = ctx.frame[(ctx.frame["status"] == "ok") & (ctx.frame["scenario"] != "batch")]
    if not len(served):
        return []
    cols = {**AXIS_HEADERS, **labelled("serving", served), "latency_ms_p50": "p50_ms", "latency_ms_p99": "p99_ms"}
    generate = (served["task"] == "generate").any()
    if generate:  # a generate request's own bounds: its first token, then each token after it
        cols.update({"ttft_ms_p99": "ttft_p99_ms", "decode_ms_per_token_p99": "tpot_p99_ms", "tokens_per_s": "tokens_per_s"})
    table = served.assign(validity=served["valid"].map({True: "VALID", False: "INVALID"}))
    out: list = [Heading(2, "Serving under load"),
                 Para("Requests arrive as MLPerf LoadGen schedules them (server: Poisson arrivals at the offered rate; "
                      "offline: all at once), wait in the worker's queue, and are batched up to the batch size (the "
                      "largest batch) within the batch window. Latency is per request, from arrival to completion, "
                      "queueing included. served_req_per_s is the completed rate of a VALID load step; with a p99 bound, "
                      "the highest rate found within it. Validity is LoadGen's verdict (its early-stopping estimate of "
                      "p99 against the bound, the duration and the count) and every request served."
                      + (" A generate request is judged by its tokens, as LoadGen's token latencies count them: its "
                         "time to first token (ttft, queueing included) and its time per output token after the first "
                         "(tpot = (completion - first token) / (new tokens - 1)), each at p99 against its bound "
                         "(--slo-ttft-ms, --slo-tpot-ms); goodput is the rate of requests that met every bound, each "
                         "judged on its own; tokens_per_s counts generated tokens. A batch of generate requests runs "
                         "together until each has its tokens: one that arrives meanwhile waits for the next batch."
                         if generate else ""))]
    out.append(Table(table[[*cols, "validity"]].rename(columns=cols), floatfmt=".4g", md_rows=MD_ROWS))
    steps, notes = [], set()
    for rec in ctx.doc["cells"]:
        info = rec.get("serving") or {}
        if info.get("note"):
            notes.add(info["note"])
        for st in info.get("steps") or []:
            steps.append({"cell": rec["cell_id"].split(":", 1)[1], "step": st.get("role", "step"),
                          "offered_req_per_s": st.get("offered_rate"),
                          "completed_req_per_s": st.get("completed_rate"), "p50_ms": st.get("p50_ms"),
                          "p99_ms": st.get("p99_ms"), "loadgen_p99_ms": st.get("loadgen_p99_ms"),
                          "requests": st.get("requests"),
                          **({"ttft_p99_ms": st.get("ttft_p99_ms"), "loadgen_ttft_p99_ms": st.get("loadgen_ttft_p99_ms"),
                              "tpot_p99_ms": st.get("tpot_p99_ms"), "loadgen_tpot_p99_ms": st.get("loadgen_tpot_p99_ms")}
                             if "ttft_p99_ms" in st else {}),
                          "goodput_req_per_s": st.get("goodput"),
                          "verdict": "VALID" if st.get("valid") else st.get("why_invalid")})
    if steps:
        frame = pd.DataFrame(steps)
        frame = frame.drop(columns=[c for c in frame if frame[c].isna().all()])  # goodput without a bound
        out += [Heading(3, "Load steps"), Table(frame, floatfmt=".4g", md_rows=MD_ROWS)]
    if notes:
        out.append(Para("Shorter than MLPerf's rules: " + "; ".join(sorted(notes)) + "."))
    return out


def cheapest_way_to_serve(ctx: ReportContext) -> list:
    spec = ctx.doc.get("run", {}).get("spec", {})
    prices, target = spec.get("prices"), spec.get("target_rate")
    costs = cost_frame(ctx.frame, prices, target)
    if costs.empty or (not prices and not (ctx.frame["scenario"] != "batch").any()):
        return []
    best, lines = cheapest(costs, ctx.baseline)
    shown = best.drop(columns=[c for c in ("usd_per_hour", "usd_per_million", "kwh_per_million", "hosts_for_target")
                               if best[c].isna().all()])
    out: list = [Heading(2, "Cheapest way to serve it"),
                 Para("Per pool: the VALID configuration with the lowest cost per million items (without a price, the "
                      "highest sustained rate); where a pool has server or offline cells, among those alone, whose "
                      "load steps held the run's bounds; an item is an inference, or for generate cells a generated token "
                      "(the unit column). Cost per million = USD per hour / (items/s x 3600) x 10^6, from the rate "
                      "served under load where the cell was a server or offline cell, else from its throughput; energy "
                      "per million from the GPU's energy counter or the CPU's RAPL counter"
                      + (f"; hosts_for_target: hosts of the pool for {target:g} requests/s" if target else "") + "."
                      + ("" if prices else " No --price was given: costs are not shown.")),
                 Table(shown, floatfmt=".4g", md_rows=MD_ROWS)]
    if costs["kwh_per_million"].isna().any():
        out.append(Para("kwh_per_million: not measured where the host exposes no energy counter (no NVML energy, no RAPL)."))
    if lines:
        out.append(Bullets(lines, md_items=MD_ROWS))
    return out


def hardware(ctx: ReportContext) -> list:
    frame = ctx.frame
    out = [Heading(2, "How close to the hardware"),
           Para("FLOPs per forward counted by torch's FlopCounterMode outside the timed window; TFLOP/s = FLOPs / mean "
                "latency; peak_measured = the device's best square-GEMM rate in the cell's dtype, measured by the worker; "
                "peak_spec = the GPU's spec-sheet dense rate where known; GB/s = weight bytes / mean latency against the "
                "measured copy bandwidth; FLOP/byte = FLOPs / weight bytes."),
           Table(efficiency_table(frame), floatfmt=".4g", md_rows=MD_ROWS)]
    moved = frame[frame["peak_spread_pct"] > UNSTABLE_PCT]
    if len(moved):
        where = sorted({f"{display_name(p)} {d} ({s:.0f}%)" for p, d, s in
                        zip(moved["pool"], moved["dtype"], moved["peak_spread_pct"])})
        out.append(Para(f"Unstable ceiling: the measured GEMM peak of {', '.join(where)} moved more than {UNSTABLE_PCT:.0f}% "
                        "between its rounds (peak_spread_%), so its % of peak is approximate."))
    return out


def details(ctx: ReportContext) -> list:
    """Distribution, energy and validity per cell, prefill and decode, lower precision, INVALID reasons."""
    frame = ctx.frame
    out: list = [Heading(2, "Details"), Heading(3, "Latency distribution, tokens/s, energy and validity")]
    detail = detail_table(frame)
    out.append(Table(detail, floatfmt=".4g", md_rows=MD_ROWS) if len(detail) else Para("No cell was measured successfully."))
    by_phase = generation_table(frame)
    if by_phase is not None:
        out += [Heading(3, "Generation: prefill and decode"), Table(by_phase, floatfmt=".4g", md_rows=MD_ROWS)]
    by_dtype = dtype_table(frame)
    if by_dtype is not None:
        out += [Heading(3, "Lower precision against fp32"), Table(by_dtype, md_rows=MD_ROWS)]
    invalid = frame[frame["valid"] == False]  # noqa: E712 (pandas column of objects)
    if len(invalid):
        out.append(Bullets([f"INVALID {r.cell_id}: {r.invalid_reason}" for r in invalid.itertuples()], md_items=MD_ROWS))
    return out


def failed_cells(ctx: ReportContext) -> list:
    failed = ctx.frame[ctx.frame["status"] != "ok"]
    if not len(failed):
        return [Heading(3, "Failed cells"), Para("None: every cell was measured.")]
    return [Heading(3, "Failed cells"),
            Table(failed[[*AXIS_HEADERS, "error_type", "error", "host"]].rename(columns={**AXIS_HEADERS, "error_type": "kind"}),
                  floatfmt=".4g", md_rows=MD_ROWS)]


def missing_cells(ctx: ReportContext) -> list:
    missing = ctx.doc.get("missing") or []
    return [Heading(3, "Missing cells"), Bullets([f"{m['cell_id']} ({m['state']})" for m in missing], md_items=MD_ROWS)] \
        if missing else []


def cells_by_host(ctx: ReportContext) -> list:
    hosts = ctx.frame.groupby(["pool", "host", "worker"], dropna=False).size().reset_index(name="cells")
    return [Heading(3, "Cells by host"), Table(hosts, floatfmt="g")]


def how_measured(ctx: ReportContext) -> list:
    return [Heading(3, "How it was measured"), Bullets(method_lines(ctx.doc))]


def method_lines(doc: dict) -> list[str]:
    rules = doc.get("run", {}).get("spec", {}).get("rules", {})
    methods: dict[str, str] = {}
    for rec in doc["cells"]:
        for name, t in (rec.get("trackers") or {}).items():
            how = t.get("power_method") or t.get("method") or t.get("energy_method")
            if t.get("available") and not how:
                how = "measured"  # a tracker of an older worker that did not name its method
            if how:  # one cell that measured it names how, whatever the others said
                methods[name] = how
            else:
                methods.setdefault(name, f"not measured: {t.get('reason') or 'no reason given'}")
    lines = [
        f"Warm-up: {rules.get('warmup')} calls excluded after the cold first call; timing stops when both "
        f"{rules.get('min_iterations')} iterations and {rules.get('min_time')} s are reached"
        + (f", and then when the 95% interval of the mean latency is within ±{rules['precision']:g}% of it (--precision; "
           "VALID rests on that interval instead of the CV)" if rules.get("precision") else "")
        + f" (at most {rules.get('max_time')} s).",
        "Latency: CUDA events read after one synchronize on GPUs, perf_counter_ns on CPUs; throughput_mean = batch size / mean latency.",
        f"Validity: INVALID when fewer iterations than asked, latency CV above {CV_THRESHOLD:.0%}, a tracker the device "
        "should have failed (a missing GPU power reading does not count), the GPU was throttled by heat, the outputs left "
        f"the fp32 eager reference (top-1 or token agreement below {DEFAULT_AGREEMENT:.0%}), or another worker measured "
        "on the same host at the same time.",
        basis_note_of_run(doc),
        allocator_line(doc),
        "gpu_memory_mb_max: torch.cuda.max_memory_reserved over the cell; cpu_memory_mb_max: peak process RSS over the cell; "
        f"both in {metric('cpu_memory_mb_max').unit} (2^20 bytes), under the seed report's column names.",
    ]
    lines += [f"{name}: {m}" for name, m in sorted(methods.items())]
    return lines


def allocator_line(doc: dict) -> str:
    """How the measuring processes' C allocator was set (bench_workers/cell/allocator.py)."""
    states = {(a.get("allocator") or "", a.get("reason") or "") if isinstance(a, dict) else ("", "")
              for a in (rec.get("allocator") for rec in doc["cells"] if rec.get("status") == "ok") if a is not None}
    declared = sorted(name for name, reason in states if name)
    others = sorted(reason for name, reason in states if not name and reason)
    if not states:
        return "C allocator: not recorded (records of an older worker)."
    text = (f"C allocator: {', '.join(declared)} with fixed thresholds (mmap 32 MiB, trim 256 MiB) in every measuring "
            "process, so no cell's speed depends on what ran before it" if declared else "C allocator: as the system has it")
    return text + (f"; elsewhere: {'; '.join(others)}." if others else ".")


def basis_note_of_run(doc: dict) -> str:
    repeats = doc.get("run", {}).get("spec", {}).get("repeats") or 1
    if repeats > 1:
        return (f"Repeats: each cell measured {repeats} times, repeat k of every cell before repeat k+1 of any; the tables "
                "show the mean of a cell's repeats, and a combined cell is VALID when every repeat is.")
    return "Repeats: each cell measured once (--repeats N measures each N times, spread through the sweep)."


def plots(ctx: ReportContext) -> list:
    return [Heading(2, "Plots"), *ctx.images] if ctx.images else []


# The report, in order. A new section is one function above and one name here.
SECTIONS = (
    title_and_summary, system_information, model_information, sweep_summary, performance_comparison, conclusion,
    speedups_with_intervals, hosts_of_one_pool, fastest_way, best_vs_best_section, serving, cheapest_way_to_serve, hardware, details, failed_cells, missing_cells, cells_by_host, how_measured,
    plots,
)


def build(doc: dict, frame: pd.DataFrame, images: list[Image] | None = None, tables: dict | None = None,
          boot: dict | None = None, records_frame: pd.DataFrame | None = None) -> Document:
    """The report's blocks, in the seed's sections and then ours; ``tables`` are the comparison
    tables when the caller has them already. ``frame``: a row per record (its repeats are
    combined here) or already combined, with ``boot`` its bootstrap means (combined.py)."""
    records = None
    if "repeats" not in frame.columns:
        records = frame
        frame, boot = combine_repeats(frame, doc)
    ctx = report_context(doc, frame, images, tables, boot or {}, records if records is not None else records_frame)
    d = Document()
    for section in SECTIONS:
        d.add(*section(ctx))
    return d

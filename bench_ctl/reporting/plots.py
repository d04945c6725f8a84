"""PNG plots made with matplotlib on the headless Agg backend."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bench_protocol.spec import COMBO_AXES

from .labels import column_prefix, display_name

MAX_LINES = 12  # lines on one plot; beyond, sequence lengths fold into their median
MARKED_POINTS = 40  # a line with more points is drawn without markers (they would hide it, and cost time)


def _series(frame: pd.DataFrame, metric: str):
    """One line per pool and combination of the other axes (sequence length, dtype, variant);
    when that makes more than MAX_LINES lines, one per pool, dtype, variant and task, at the
    median over sequence lengths of each batch size: a plot stays readable and fast to draw
    whatever the sweep."""
    ok = frame[(frame["status"] == "ok") & frame[metric].notna()]
    axes = list(COMBO_AXES)
    folded = None
    if ok.groupby(["pool", *axes], sort=False).ngroups > MAX_LINES and ok["seq_len"].nunique() > 1:
        folded = ok["seq_len"].nunique()
        axes.remove("seq_len")
        ok = (ok.assign(invalid=ok["valid"] == False)  # noqa: E712 (object column)
              .groupby(["pool", *axes, "batch_size"], sort=False)
              .agg(**{metric: (metric, "median"), "invalid": ("invalid", "any")}).reset_index()
              .assign(valid=lambda f: ~f["invalid"]))
    varying = [a for a in axes if ok[a].nunique() > 1]
    for key, grp in ok.groupby(["pool", *axes], sort=False):
        values = dict(zip(["pool", *axes], key))
        label = display_name(values["pool"]) + "".join(f" {'s' if a == 'seq_len' else ''}{values[a]}" for a in varying)
        if folded:
            label += f" (median of {folded} seq lens)"
        yield key, label, grp.sort_values("batch_size")


MAX_TICKS = 10  # batch-size labels on an axis, however many batch sizes were measured


def batch_ticks(batches) -> list[float]:
    """The measured batch sizes when they are few; else powers of two across their range."""
    batches = sorted(float(b) for b in batches)
    if len(batches) <= MAX_TICKS:
        return batches
    lo, hi = int(np.floor(np.log2(batches[0]))), int(np.ceil(np.log2(batches[-1])))
    step = max(1, -(-(hi - lo) // (MAX_TICKS - 1)))
    return [2.0**e for e in range(lo, hi + 1, step)]


def make_plots(frame: pd.DataFrame, pools: list[str], baseline: str, out_dir: Path) -> list[tuple[str, str]]:
    """Write the plots; return (title, filename) for each written."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    plt = _FigureMaker()
    written: list[tuple[str, str]] = []
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    ticks = batch_ticks(frame["batch_size"].dropna().unique())
    invalid_shown = set()

    def batch_axis(ax) -> None:
        """Batch sizes as plain numbers on a log2 axis: at most MAX_TICKS labels, whatever the sweep."""
        ax.set_xscale("log", base=2)
        ax.set_xticks(ticks)
        ax.xaxis.set_major_formatter(plain)
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("batch size")

    def log_y(ax) -> None:
        """A log y axis labelled at 1-2-5 steps only, so labels never run into each other."""
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0), numticks=8))
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(NullFormatter())

    def save(fig, name: str, title: str) -> None:
        # Fixed margins: tight_layout measures every label (a large share of a plot's time).
        fig.subplots_adjust(left=0.11, right=0.97, bottom=0.13, top=0.91, wspace=0.3)
        fig.savefig(out_dir / name, dpi=110)
        written.append((title, name))

    def plot_metric(metric: str, ylabel: str, name: str, title: str, log: bool) -> None:
        series = [(label, g) for _, label, g in _series(frame, metric)]
        if not series:
            return
        fig, ax = plt.subplots(figsize=(7, 4.2))
        for label, g in series:
            ax.plot(g["batch_size"], g[metric], marker="o" if len(g) <= MARKED_POINTS else None, label=label)
            bad = g[g["valid"] == False]  # noqa: E712 (object column)
            if len(bad):  # INVALID cells: a red cross over the point
                ax.scatter(bad["batch_size"], bad[metric], marker="x", s=80, color="red", zorder=4,
                           label="INVALID" if name not in invalid_shown else None)
                invalid_shown.add(name)
        batch_axis(ax)
        if log:
            log_y(ax)
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7 if len(series) > 6 else None)
        save(fig, name, title)

    plot_metric("latency_ms_mean", "mean latency (ms, log)", "latency.png", "Latency vs batch size", True)
    plot_metric("throughput_mean", "items / s", "throughput.png", "Throughput vs batch size", False)
    plot_metric("cpu_memory_mb_max", "peak RSS (MiB)", "cpu_memory.png", "CPU memory vs batch size", False)
    plot_metric("gpu_memory_mb_max", "GPU memory reserved (MiB)", "gpu_memory.png", "GPU memory vs batch size", False)
    plot_metric("gpu_avg_power_w", "average power (W)", "gpu_power.png", "GPU power vs batch size", False)
    plot_metric("ttft_ms_mean", "time to first token (ms, log)", "ttft.png", "Prefill: time to first token vs batch size", True)
    plot_metric("decode_tokens_per_s", "tokens / s per sequence", "decode_tokens_per_s.png",
                "Decode: tokens/s per sequence vs batch size", False)

    speedup(frame, baseline, plt, batch_axis, save)
    roofline(frame, pools, plt, save)
    latency_vs_rate(frame.attrs.get("serving_steps") or [], plt, log_y, save)
    cost_bars(frame, frame.attrs.get("prices"), plt, save)
    return written


def latency_vs_rate(steps: list[dict], plt, log_y, save) -> None:
    """p50 and p99 against the offered rate, a line pair per server cell, the bound dashed, the
    highest rate within it (the knee) ringed. Generate cells: their TTFT p99 and TPOT p99 beside
    it, each against its own bound."""
    if not steps:
        return
    data = pd.DataFrame(steps).sort_values("offered_rate")
    tokens = "ttft_p99_ms" in data and data["ttft_p99_ms"].notna().any()
    fig, axes = plt.subplots(1, 3 if tokens else 1, figsize=(15 if tokens else 7, 4.2))
    axes = list(axes) if tokens else [axes]
    panels = [(axes[0], "p99_ms", "slo_p99_ms", "latency per request (ms, log)", "p99")]
    if tokens:
        panels += [(axes[1], "ttft_p99_ms", "slo_ttft_ms", "time to first token p99 (ms, log)", "TTFT p99"),
                   (axes[2], "tpot_p99_ms", "slo_tpot_ms", "time per output token p99 (ms, log)", "TPOT p99")]
    for ax, col, bound, ylabel, what in panels:
        for cell, g in data.groupby("cell", sort=False):
            g = g[g[col].notna()]
            if g.empty:
                continue
            line = ax.plot(g["offered_rate"], g[col], marker="o", label=f"{cell} {what}")[0]
            if col == "p99_ms":
                ax.plot(g["offered_rate"], g["p50_ms"], marker=".", linestyle=":", color=line.get_color(), label=f"{cell} p50")
            fits = g[g["valid"]]
            if len(fits):
                knee = fits.loc[fits["offered_rate"].idxmax()]
                ax.scatter([knee["offered_rate"]], [knee[col]], s=160, facecolors="none", edgecolors=line.get_color(),
                           zorder=5)
        if bound in data:
            for slo in sorted(set(data[bound].dropna())):
                ax.axhline(slo, color="red", linestyle="--", linewidth=1, label=f"{what} bound {slo:g} ms")
        log_y(ax)
        ax.set_xlabel("offered requests / s")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    axes[0].set_title("Latency vs offered rate (ringed: the highest rate within the bound)")
    save(fig, "latency_vs_rate.png", "Latency vs offered rate")


def cost_bars(frame: pd.DataFrame, prices, plt, save) -> None:
    """USD per million items of each pool's cheapest VALID configuration."""
    if not prices:
        return
    from .cost import cheapest, cost_frame

    best, _ = cheapest(cost_frame(frame, prices, None), frame["pool"].iloc[0] if len(frame) else "")
    best = best[best["usd_per_million"].notna()]
    if best.empty:
        return
    fig, ax = plt.subplots(figsize=(7, 4.2))
    labels = [f"{display_name(p)}\n{c.split(':', 1)[1]}" for p, c in zip(best["pool"], best["cell"])]
    ax.bar(labels, best["usd_per_million"])
    units = sorted(set(best["unit"]))
    ax.set_ylabel("USD per million " + (units[0] + "s" if len(units) == 1 else "items"))
    ax.set_title("Cost per million: each pool's cheapest VALID configuration")
    ax.grid(True, axis="y", alpha=0.3)
    save(fig, "cost_per_million.png", "Cost per million")


class _FigureMaker:
    """``subplots`` as pyplot has it, on bare Agg figures: no pyplot (a third of matplotlib's
    import time), no global figure registry to close."""

    def __init__(self) -> None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        self._figure, self._canvas = Figure, FigureCanvasAgg

    def subplots(self, nrows: int = 1, ncols: int = 1, figsize=None, **kw):
        fig = self._figure(figsize=figsize)
        self._canvas(fig)
        return fig, fig.subplots(nrows, ncols, **kw)

    def close(self, fig) -> None:
        pass


def warm() -> None:
    """Import what drawing needs (a forked plotting process does this while it waits for data)."""
    _FigureMaker()
    import matplotlib.ticker  # noqa: F401


def speedup(frame: pd.DataFrame, baseline: str, plt, batch_axis, save) -> None:
    """Throughput of every other pool over the baseline's, per batch size."""
    ok = frame[(frame["status"] == "ok") & (frame["pool"] != baseline)]
    index = [*COMBO_AXES, "batch_size"]
    base_cells = frame[(frame["status"] == "ok") & (frame["pool"] == baseline)].set_index(index)
    base = base_cells["throughput_mean"]
    aligned = pd.MultiIndex.from_frame(ok[index])
    # A ratio is as trustworthy as the less trustworthy of its two cells.
    base_invalid = (base_cells["valid"] == False).reindex(aligned).fillna(False).to_numpy()  # noqa: E712
    ratios = ok.assign(speedup=(ok.set_index(index)["throughput_mean"] / base).reindex(aligned).to_numpy(),
                       valid=ok["valid"].where(~base_invalid, False))
    series = list(_series(ratios, "speedup"))
    if not series:
        return
    fig, ax = plt.subplots(figsize=(7, 4.2))
    crossed = False
    for _, label, g in series:
        ax.plot(g["batch_size"], g["speedup"], marker="o" if len(g) <= MARKED_POINTS else None, label=f"{label} / {display_name(baseline)}")
        bad = g[g["valid"] == False]  # noqa: E712 (object column)
        if len(bad):  # INVALID on either side: a red cross over the point
            ax.scatter(bad["batch_size"], bad["speedup"], marker="x", s=80, color="red", zorder=4,
                       label=None if crossed else "INVALID")
            crossed = True
    ax.axhline(1.0, color="grey", lw=0.8, ls="--")
    batch_axis(ax)
    ax.set_ylabel(f"throughput speedup over {column_prefix(baseline)} (x)")
    ax.set_title("Speedup vs batch size")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7 if len(series) > 6 else None)
    save(fig, "speedup.png", "Speedup vs batch size")


def roofline(frame: pd.DataFrame, pools: list[str], plt, save) -> None:
    """Per pool, log-log: the measured compute ceilings (one per dtype) and the measured bandwidth
    line, and one point per cell at (FLOP per weight byte, achieved TFLOP/s)."""
    ok = frame[(frame["status"] == "ok") & frame["tflops_achieved"].notna() & frame["arithmetic_intensity"].notna()]
    shown = [p for p in pools if p in set(ok["pool"])]
    if not shown:
        return
    fig, axes = plt.subplots(1, len(shown), figsize=(6.2 * len(shown), 4.4), squeeze=False)
    for ax, pool in zip(axes[0], shown):
        cells = ok[ok["pool"] == pool]
        lo = min(cells["arithmetic_intensity"].min() / 4, 1.0)
        hi = max(cells["arithmetic_intensity"].max() * 4, 1e3)
        xs = np.geomspace(lo, hi, 64)
        bandwidth = cells["bandwidth_gbps_measured"].max()
        for dtype, peak in cells.groupby("dtype")["peak_tflops_measured"].max().dropna().items():
            roof = np.minimum(peak, bandwidth * xs / 1e3) if bandwidth == bandwidth else np.full_like(xs, peak)
            ax.plot(xs, roof, lw=1.5, label=f"ceiling {dtype}: {peak:.3g} TFLOP/s, {bandwidth:.3g} GB/s")
        for (dtype, variant), g in cells.groupby(["dtype", "variant"], sort=False):
            ax.scatter(g["arithmetic_intensity"], g["tflops_achieved"], zorder=3, label=f"{dtype} {variant}")
        invalid = cells[cells["valid"] == False]  # noqa: E712 (object column)
        if len(invalid):
            ax.scatter(invalid["arithmetic_intensity"], invalid["tflops_achieved"], zorder=4, marker="x", color="red",
                       label="INVALID")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("arithmetic intensity (FLOP per weight byte)")
        ax.set_ylabel("TFLOP/s")
        ax.set_title(f"Roofline: {display_name(pool)}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    save(fig, "roofline.png", "Roofline per pool")


def trend_plot(cells: pd.DataFrame, path: Path, title: str) -> None:
    """Latency and throughput over time, a line per (host fingerprint, cell coordinates); a
    dashed line where the torch or GPU driver version of a fingerprint changed."""
    import datetime as dt

    from bench_protocol.spec import COMBO_AXES

    plt = _FigureMaker()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    cells = cells.sort_values("created")
    when = cells["created"].map(lambda t: dt.datetime.fromtimestamp(t, dt.timezone.utc))
    cells = cells.assign(when=when)
    crossed = False
    for key, g in cells.groupby(["host", "fingerprint_id", "batch_size", *COMBO_AXES], sort=False, dropna=False):
        axes = dict(zip(COMBO_AXES, key[3:]))
        label = (f"{key[0]} ({str(key[1])[:8]}) b{int(key[2])} s{int(axes['seq_len'])} {axes['dtype']} {axes['variant']}"
                 + (f" {axes['task']}" if axes.get("task", "classify") != "classify" else ""))
        top.plot(g["when"], g["latency_ms_mean"], marker="o", label=label)
        bottom.plot(g["when"], g["throughput_mean"], marker="o", label=label)
        bad = g[(g["valid"] == 0) | (g["valid"] == False)]  # noqa: E712 (the history keeps 1.0 / 0.0)
        if len(bad):  # INVALID cells: a red cross over the point
            for ax, metric in ((top, "latency_ms_mean"), (bottom, "throughput_mean")):
                ax.scatter(bad["when"], bad[metric], marker="x", s=80, color="red", zorder=4,
                           label=None if crossed or ax is bottom else "INVALID")
            crossed = True
    versions = (cells["torch"].fillna("") + " / " + cells["gpu_driver"].fillna("-"))
    changed = cells[versions.ne(versions.shift()) & versions.shift().notna()]
    for _, row in changed.iterrows():
        for ax in (top, bottom):
            ax.axvline(row["when"], color="grey", ls="--", lw=0.8)
        top.annotate(f"torch {row['torch']}", (row["when"], top.get_ylim()[1]), fontsize=7, rotation=90, va="top")
    top.set_ylabel("mean latency (ms)")
    bottom.set_ylabel("items / s")
    top.set_title(f"Trend: {title}")
    for ax in (top, bottom):
        ax.grid(True, alpha=0.3)
    top.legend(fontsize=7)
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=110)

"""PNG plots made with matplotlib on the headless Agg backend."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .labels import column_prefix, display_name


def _series(frame: pd.DataFrame):
    ok = frame[frame["status"] == "ok"]
    multi = ok[["seq_len", "dtype"]].drop_duplicates().shape[0] > 1
    for (pool, seq, dtype), grp in ok.groupby(["pool", "seq_len", "dtype"], sort=False):
        label = display_name(pool) + (f" s{seq} {dtype}" if multi else "")
        yield (pool, seq, dtype), label, grp.sort_values("batch_size")


def make_plots(frame: pd.DataFrame, pools: list[str], baseline: str, out_dir: Path) -> list[tuple[str, str]]:
    """Write the plots; return (title, filename) for each written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from matplotlib.ticker import FuncFormatter, NullFormatter

    written: list[tuple[str, str]] = []
    batches = sorted(frame["batch_size"].dropna().unique())
    plain = FuncFormatter(lambda v, _: f"{v:g}")

    def batch_axis(ax) -> None:
        """Batch sizes as plain numbers at the measured points, on a log2 axis."""
        ax.set_xscale("log", base=2)
        ax.set_xticks(batches)
        ax.xaxis.set_major_formatter(plain)
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("batch size")

    def save(fig, name: str, title: str) -> None:
        fig.tight_layout()
        fig.savefig(out_dir / name, dpi=110)
        plt.close(fig)
        written.append((title, name))

    def plot_metric(metric: str, ylabel: str, name: str, title: str, log: bool) -> None:
        series = [(label, g) for _, label, g in _series(frame) if g[metric].notna().any()]
        if not series:
            return
        fig, ax = plt.subplots(figsize=(7, 4.2))
        for label, g in series:
            ax.plot(g["batch_size"], g[metric], marker="o", label=label)
        batch_axis(ax)
        if log:
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(plain)
            ax.yaxis.set_minor_formatter(plain)
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        save(fig, name, title)

    plot_metric("latency_ms_mean", "mean latency (ms, log)", "latency.png", "Latency vs batch size", True)
    plot_metric("throughput_mean", "items / s", "throughput.png", "Throughput vs batch size", False)
    plot_metric("cpu_memory_mb_max", "peak RSS (MB)", "cpu_memory.png", "CPU memory vs batch size", False)
    plot_metric("gpu_memory_mb_max", "GPU memory (MB)", "gpu_memory.png", "GPU memory vs batch size", False)
    plot_metric("gpu_avg_power_w", "average power (W)", "gpu_power.png", "GPU power vs batch size", False)

    # Speedup of every pool over the baseline, by throughput.
    ok = frame[frame["status"] == "ok"]
    base = ok[ok["pool"] == baseline].set_index(["seq_len", "dtype", "batch_size"])["throughput_mean"]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    drew = False
    for (pool, seq, dtype), label, g in _series(frame):
        if pool == baseline:
            continue
        s = g.set_index(["seq_len", "dtype", "batch_size"])["throughput_mean"] / base
        s = s.dropna()
        if len(s):
            ax.plot(s.index.get_level_values("batch_size"), s.values, marker="o", label=f"{label} / {display_name(baseline)}")
            drew = True
    if drew:
        ax.axhline(1.0, color="grey", lw=0.8, ls="--")
        batch_axis(ax)
        ax.set_ylabel(f"throughput speedup over {column_prefix(baseline)} (x)")
        ax.set_title("Speedup vs batch size")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        save(fig, "speedup.png", "Speedup vs batch size")
    else:
        plt.close(fig)
    return written

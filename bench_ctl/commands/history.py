"""history, history trend: what the results history holds, and how a cell moved over time."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from bench_protocol.errors import SpecError

from ..options import app

history_app = typer.Typer(no_args_is_help=False, invoke_without_command=True,
                          help="Runs kept in the results history ($BENCHCTL_HISTORY, default ~/.local/share/benchctl/history.db).")
app.add_typer(history_app, name="history")

Model = Annotated[Optional[str], typer.Option("--model", help="only runs of this model")]
Pool = Annotated[Optional[str], typer.Option("--pool", help="only runs that measured this pool")]


def _when(epoch) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(float(epoch))) if epoch == epoch and epoch is not None else ""


@history_app.callback()
def history(
    ctx: typer.Context,
    model: Model = None,
    pool: Pool = None,
    since: Annotated[Optional[str], typer.Option("--since", help="a date (2026-11-01) or an age (7d, 12h)")] = None,
    limit: Annotated[int, typer.Option("--limit", help="at most this many runs, newest first")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of a table")] = False,
):
    """List the runs in the history: date, model, pools, cells, hosts."""
    if ctx.invoked_subcommand is not None:
        return
    from ..history.database import History, parse_since

    if limit <= 0:
        raise SpecError(f"--limit must be positive, got {limit}")
    runs = History().runs(model=model, pool=pool, since=parse_since(since), limit=limit)
    if as_json:
        for row in runs.to_dict("records"):
            typer.echo(json.dumps({**row, "created_utc": _when(row["created"])}, default=str))
        return
    if runs.empty:
        typer.echo("no runs in the history" + (" match" if model or pool or since else ""))
        return
    runs["date (UTC)"] = runs["created"].map(_when)
    typer.echo(runs[["date (UTC)", "run_id", "model", "pools", "cells", "ok", "hosts"]].to_markdown(index=False))


def _step_lines(cells) -> list[str]:
    """'Steps: ...' under the trend table: per series, each step and what changed at it."""
    from bench_protocol.spec import COMBO_AXES

    from ..history.steps import series_steps

    key = ["batch_size", *COMBO_AXES]
    steps = series_steps(cells, key)
    head = ("Steps (a level of the mean latency that moved and held, over runs oldest first; "
            "bench_ctl/history/steps.py):")
    if steps.empty:
        return ["", head, "- none: no series moved to a new level"]
    lines = ["", head]
    for _, st in steps.iterrows():
        where = f"b{int(st['batch_size'])} s{int(st['seq_len'])} {st['dtype']} {st['variant']} {st['task']} {st['scenario']}"
        lines.append(f"- {where}: from run {st['run_id']} ({_when(st['created'])}) {st['before_ms']:.4g} → "
                     f"{st['after_ms']:.4g} ms ({st['change_pct']:+.1f}%); what changed: {st['what_changed']}")
    return lines


@history_app.command()
def trend(
    model: Annotated[str, typer.Option("--model", help="the model (as its records name it)")],
    pool: Annotated[str, typer.Option("--pool", help="the pool")],
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", help="only this batch size")] = None,
    dtype: Annotated[Optional[str], typer.Option("--dtype", help="only this dtype")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="folder for trend.png")] = Path("."),
):
    """A cell's latency and throughput over time, per host fingerprint; the steps in each series
    (a level that moved and held) with what changed in the fingerprint; trend.png marks where
    torch or the GPU driver changed."""
    from ..history.database import History
    from ..reporting.document import markdown_table
    from ..reporting.outdir import check_out_dir, make_out_dir
    from ..reporting.plots import trend_plot

    check_out_dir(out)
    cells = History().cells(model=model, pool=pool, batch_size=batch_size, dtype=dtype)
    cells = cells[cells["status"] == "ok"]
    if cells.empty:
        raise SpecError(f"the history has no measured cell of model {model} on pool {pool}"
                        + (f" at batch size {batch_size}" if batch_size else "") + (f" in {dtype}" if dtype else ""))
    cells = cells.assign(**{"date (UTC)": cells["created"].map(_when), "fingerprint": cells["fingerprint_id"]})
    cols = ["date (UTC)", "run_id", "host", "fingerprint", "batch_size", "seq_len", "dtype", "variant", "task",
            "latency_ms_mean", "throughput_mean", "torch", "gpu_driver"]
    typer.echo(markdown_table(cells[cols]))
    for line in _step_lines(cells):
        typer.echo(line)
    path = make_out_dir(out) / "trend.png"
    trend_plot(cells, path, f"{model} on {pool}")
    typer.echo(f"plot: {path}")

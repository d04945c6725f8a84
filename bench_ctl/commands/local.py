"""run, report, compare: the commands that need no broker."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from bench_protocol.errors import SpecError
from bench_protocol.numeric import check_number
from bench_protocol.spec import RunSpec, check_torch_device

from ..options import NoHistory, app, echo_err, spec_options


@app.command()
@spec_options(devices="cpu", batch_sizes="1,8")
def run(
    spec: RunSpec,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="output directory (default results/RUN_ID)")] = None,
    no_history: NoHistory = False,
    threads: Annotated[Optional[int], typer.Option("--threads", help="torch threads for every cell (default: torch's choice)")] = None,
):
    """Measure every cell here, in this process, with no broker; write results and the report."""
    from bench_ctl.history.database import finish_run
    from bench_ctl.runs.embedded import run_here

    for device in spec.pools:
        check_torch_device(device)
    if spec.hosts_per_pool > 1:
        raise SpecError("--hosts-per-pool spreads a pool's cells over its hosts: it is for `benchctl submit`; "
                        "`run` measures on this host alone")
    if threads is not None:
        check_number(threads, "--threads", 1, 4096, integer=True)
    written, doc = run_here(spec, out or Path("results") / spec.run_id, threads)
    typer.echo(f"report: {written['report.md']}")
    typer.echo(f"html:   {written['report.html']}")
    typer.echo(f"data:   {written['results.json']}")
    finish_run(doc, not no_history)  # last: the history's line, or why the run is not in it


@app.command()
def report(
    results: Annotated[Path, typer.Argument(help="a results.json written by run or collect")],
    out: Annotated[Path, typer.Option("--out", "-o", help="output directory")] = Path("report"),
    latency_budget_ms: Annotated[Optional[float], typer.Option("--latency-budget-ms", help="p99 budget for the fastest way (overrides the run's)")] = None,
    price: Annotated[Optional[str], typer.Option("--price", help="USD per hour per pool (cpu=0.40,cuda=3.20 or a TOML file): overrides the run's")] = None,
    target_rate: Annotated[Optional[float], typer.Option("--target-rate", help="requests/s to serve (overrides the run's)")] = None,
    no_history: NoHistory = False,
):
    """Re-render every report file from saved records."""
    from bench_ctl.reporting.outdir import check_out_dir
    from bench_ctl.reporting.render import render_all
    from bench_protocol.records import load_results

    if latency_budget_ms is not None and not latency_budget_ms > 0:
        raise SpecError(f"latency budget must be a positive number of milliseconds, got {latency_budget_ms:g}")
    if latency_budget_ms is not None:
        check_number(latency_budget_ms, "--latency-budget-ms", 0, 7 * 86400e3, lo_open=True)
    doc = load_results(results)
    spec = doc.setdefault("run", {}).setdefault("spec", {})
    if latency_budget_ms is not None:
        spec["latency_budget_ms"] = latency_budget_ms
    if price is not None:
        from bench_protocol.spec import check_prices, parse_prices

        pools = spec.get("pools") or sorted({r.get("pool") for r in doc.get("cells", []) if r.get("pool")})
        spec["prices"] = check_prices(parse_prices(price), pools)
    if target_rate is not None:
        spec["target_rate"] = check_number(target_rate, "--target-rate", 0, 1e12, lo_open=True)
    check_out_dir(out)
    written = render_all(doc, out)
    typer.echo(f"report: {written['report.md']}")
    from bench_ctl.history.database import finish_run

    finish_run(doc, not no_history, strict=False)  # last: the history's line, or why the run is not in it


@app.command()
def compare(
    old: Annotated[str, typer.Argument(help="baseline results.json (with --against history: the run, a results.json or a run id in the history)")],
    new: Annotated[Optional[Path], typer.Argument(help="candidate results.json")] = None,
    against: Annotated[Optional[str], typer.Option("--against", help="'history': the run against the median of its last runs on the same host")] = None,
    last: Annotated[int, typer.Option("--last", help="with --against history: how many past runs")] = 5,
    fail_on_regression: Annotated[Optional[float], typer.Option("--fail-on-regression", help="exit 1 if a cell is slower by more than PCT percent, beyond noise")] = None,
):
    """Per-cell change in latency and throughput between two runs, or a run against its history."""
    from bench_ctl.reporting.compare import compare as do_compare
    from bench_ctl.reporting.compare import regressions
    from bench_ctl.reporting.document import markdown_table
    from bench_protocol.records import load_results

    if fail_on_regression is not None and not fail_on_regression >= 0:
        raise SpecError("--fail-on-regression must be a non-negative percentage")
    if fail_on_regression is not None:
        check_number(fail_on_regression, "--fail-on-regression", 0, 1e6)
    if against is not None:
        from bench_ctl.history.regression import compare_with_history

        if against != "history":
            raise SpecError(f"--against takes 'history', got {against!r}")
        if new is not None:
            raise SpecError("with --against history, give one run (a results.json or a run id)")
        if last <= 0:
            raise SpecError(f"--last must be positive, got {last}")
        table = compare_with_history(old, last)
    elif new is None:
        raise SpecError("compare needs two results files, or one run and --against history")
    else:
        table = do_compare(load_results(old), load_results(new))
    if table.empty:
        raise SpecError("the two runs share no measured cell")
    typer.echo(markdown_table(table))
    if fail_on_regression is not None:
        bad = regressions(table, fail_on_regression)
        if len(bad):
            echo_err(f"{len(bad)} cell(s) regressed by more than {fail_on_regression:g}% beyond noise (each cell's "
                     "test is in its row: a bootstrap 95% interval of the ratio of median latencies whose lower end "
                     "clears the threshold, or the noise rule where raw latencies are too few)")
            raise typer.Exit(1)

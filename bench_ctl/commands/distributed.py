"""submit, status, collect, workers, runs, cancel: the commands that talk to Redis.

They import Celery only when they send; reading state needs Redis alone.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from bench_protocol.errors import BenchError, CorruptRecord, RunNotFound, SpecError
from bench_protocol.numeric import check_number
from bench_protocol.records import SETTLED, CellState
from bench_protocol.spec import RunSpec, check_run_id

from ..options import DEFAULT_KEEP_DAYS, Broker, KeepDays, NoHistory, Store, app, spec_options

Timeout = Annotated[float, typer.Option("--timeout", help="seconds to wait at most")]
Json = Annotated[bool, typer.Option("--json", help="JSON (a line per item) instead of text")]


class Incomplete(BenchError):
    exit_code = 5


MAX_WAIT_S = 30 * 86400.0  # the longest --timeout: a month
MAX_KEEP_DAYS = 3650.0


def _check_waits(timeout: float, keep_days: float) -> None:
    """--timeout and --keep-days: finite, non-negative, not beyond their bounds."""
    check_number(timeout, "--timeout", 0, MAX_WAIT_S)
    check_number(keep_days, "--keep-days", 0, MAX_KEEP_DAYS)


def _store(broker: Optional[str], store: Optional[str] = None):
    """The store of this command's settings, resolved once (flags, environment, defaults)."""
    from bench_protocol.settings import Settings

    from ..runs.store import ControllerStore

    return ControllerStore(Settings.resolve(broker, store))


def _collect(store, run_id: str, out: Optional[Path], timeout: float, partial: bool, quiet: bool = False,
             history: bool = True, keep_days: float = DEFAULT_KEEP_DAYS) -> None:
    from ..reporting.outdir import check_out_dir
    from ..reporting.render import PlotProcess, render_all
    from ..runs.collect import wait
    from ..runs.progress import CellProgress

    store.run_meta(run_id)
    out = out or Path("results") / run_id
    check_out_dir(out)
    with CellProgress(f"run {run_id}", quiet) as progress:
        wait(store, run_id, timeout, progress.update)
    plotter = PlotProcess()  # imports matplotlib while the records are read
    try:
        doc = _gathered(store, run_id, timeout, partial)
        written = render_all(doc, out, plotter)
    finally:
        plotter.abandon()
    for m in doc["missing"]:
        typer.echo(f"missing: {m['cell_id']} ({m['state']}{': ' + m['error'] if m.get('error') else ''})", err=True)
    typer.echo(f"report: {written['report.md']}")  # the same three lines as `benchctl run`
    typer.echo(f"html:   {written['report.html']}")
    typer.echo(f"data:   {written['results.json']}")
    if keep_days > 0 and not any(m["state"] != CellState.CANCELLED for m in doc["missing"]):
        try:
            store.expire_run(run_id, keep_days * 86400)  # complete and collected: Redis keeps it keep_days more
        except BenchError as exc:  # the report is written; the history below still gets the run
            typer.echo(f"benchctl: warning: run {run_id}: its retention in Redis was not set: {exc}", err=True)
    from ..history.database import finish_run

    finish_run(doc, history)  # last: the history's line, or why the run is not in it


def _pools_of(cell_ids) -> list[str]:
    """The pools named by these cell ids (when the run's spec cannot be read)."""
    from bench_protocol.spec import parse_cell_id

    pools = set()
    for cell_id in cell_ids:
        try:
            pools.add(parse_cell_id(cell_id)["pool"])
        except SpecError:
            pass
    return sorted(pools)


def _gathered(store, run_id: str, timeout: float, partial: bool) -> dict:
    """The run's results document, or Incomplete when cells are missing (and not --partial)."""
    from ..runs.collect import gather

    doc = gather(store, run_id)
    pending = [m for m in doc["missing"] if m["state"] != CellState.CANCELLED]
    corrupt = [m for m in pending if m.get("error")]
    if corrupt and not partial:
        names = ", ".join(f"{m['cell_id']} ({m['error']})" for m in corrupt[:5])
        more = f" and {len(corrupt) - 5} more" if len(corrupt) > 5 else ""
        raise CorruptRecord(f"run {run_id}: the record of {len(corrupt)} cell(s) in Redis cannot be read or is gone: "
                            f"{names}{more} "
                            f"(`benchctl retry {run_id}` measures them again; or pass --partial to report the rest)")
    if pending and not partial:
        names = ", ".join(f"{m['cell_id']} ({m['state']})" for m in pending[:10])
        more = f" and {len(pending) - 10} more" if len(pending) > 10 else ""
        raise Incomplete(f"run {run_id}: {len(pending)} cell(s) not finished after {timeout:g}s: {names}{more} "
                         f"(wait longer; if their tasks were lost, `benchctl retry {run_id}` queues them again; "
                         "or pass --partial to report what is there)")
    if not doc["cells"]:
        cancelled = len(doc["missing"]) - len(pending)
        raise Incomplete(f"run {run_id}: no cell has finished" + (f" ({cancelled} cancelled)" if cancelled else ""))
    return doc


@app.command()
@spec_options(devices="cpu,cuda", batch_sizes="1,8,32")
def submit(
    spec: RunSpec,
    broker: Broker = None,
    store_url: Store = None,
    allow_missing: Annotated[bool, typer.Option("--allow-missing", help="queue even for pools with no live worker")] = False,
    wait_: Annotated[bool, typer.Option("--wait", help="show progress, then collect")] = False,
    timeout: Timeout = 3600.0,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="with --wait: output directory")] = None,
    no_history: NoHistory = False,
    keep_days: KeepDays = DEFAULT_KEEP_DAYS,
    json_: Annotated[bool, typer.Option("--json", help="print the run id and cells as JSON")] = False,
):
    """Queue one task per cell on its pool's workers; print the run id."""
    from ..reporting.outdir import check_out_dir
    from ..runs.submit import shared_hosts
    from ..runs.submit import submit as do_submit

    _check_waits(timeout, keep_days)
    if out is not None:
        check_out_dir(out)
    store = _store(broker, store_url)
    for warning in store.policy_warnings():
        typer.echo(f"benchctl: warning: {warning}", err=True)
    for host, pools in shared_hosts(store, spec.pools).items():
        typer.echo(f"benchctl: warning: pools {', '.join(pools)} share host {host}: cells measured there at the same "
                   "time disturb each other and are marked INVALID", err=True)
    from ..runs.submit import pools_without_workers

    waiting = pools_without_workers(store, spec.pools) if allow_missing else []
    # The run id goes out before the first task: a submit that stops part way has named its run.
    run_id = do_submit(store, spec, allow_missing, on_recorded=None if json_ else typer.echo)
    for pool in waiting:
        typer.echo(f"benchctl: warning: pool {pool} has no live worker: its cells wait in its queue until a "
                   f"bench-worker of that pool starts", err=True)
    if json_:
        typer.echo(json.dumps({"run_id": run_id, "cells": [c.cell_id for c in spec.cells()]}))
    if wait_:
        _collect(store, run_id, out, timeout, partial=False, history=not no_history, keep_days=keep_days)


@app.command()
def status(
    run_id: Annotated[str, typer.Argument(help="run id printed by submit")],
    broker: Broker = None,
    store_url: Store = None,
    as_json: Json = False,
):
    """Cells by state, progress, and which worker holds which cell."""
    from ..runs.collect import requeue_or_warn
    from ..runs.progress import counts, still_sending, summary, unsent

    check_run_id(run_id)
    store = _store(broker, store_url)
    meta = store.run_meta(run_id, lenient=True)
    if meta["spec_error"]:
        typer.echo(f"benchctl: warning: {meta['spec_error']}", err=True)
    for cell_id in requeue_or_warn(store, set()):
        typer.echo(f"queued again: {cell_id} (its worker's claim lapsed)", err=True)
    states = store.cell_states(run_id)
    if not states and meta.get("n_cells", "0") not in ("0", ""):
        typer.echo(f"benchctl: warning: run {run_id}: the states of its {meta['n_cells']} cells are gone from Redis "
                   "(it lost or evicted them)", err=True)
    pools = (meta["spec"] or {}).get("pools") or _pools_of(states)
    c = counts(states)
    done = sum(c.get(s, 0) for s in SETTLED)
    running = sorted(cid for cid, s in states.items() if s == CellState.RUNNING)
    half_sent = unsent(meta)
    if as_json:
        typer.echo(json.dumps({"run_id": run_id, "created": meta["created"], "pools": pools,
                               "cells": len(states), "done": done, "counts": c, "states": states,
                               "running": store.holders(running),
                               "status": "incomplete" if half_sent else meta.get("status"),
                               "spec_error": meta["spec_error"]}))
        return
    created = time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(meta['created'])) if meta["created"] == meta["created"] else "?"
    typer.echo(f"run {run_id}  created {created}  pools {','.join(pools)}")
    if half_sent:
        typer.echo(f"incomplete: sending stopped after {half_sent[0]} of {half_sent[1]} cells' tasks "
                   f"(`benchctl retry {run_id}` sends the rest)")
    elif still_sending(meta):
        typer.echo(f"sending: {meta.get('sent')} of {meta.get('n_cells')} cells' tasks sent so far")
    typer.echo(summary(states))
    for cid, worker in sorted(store.holders(running).items()):
        typer.echo(f"running  {cid}  on {worker}")


@app.command()
def collect(
    run_id: Annotated[str, typer.Argument(help="run id printed by submit")],
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="output directory (default results/RUN_ID)")] = None,
    timeout: Timeout = 300.0,
    partial: Annotated[bool, typer.Option("--partial", help="report the finished cells even if some are missing")] = False,
    no_history: NoHistory = False,
    keep_days: KeepDays = DEFAULT_KEEP_DAYS,
    broker: Broker = None,
    store_url: Store = None,
):
    """Wait for the run's cells (or the timeout), then write the report."""
    check_run_id(run_id)
    _check_waits(timeout, keep_days)
    _collect(_store(broker, store_url), run_id, out, timeout, partial, history=not no_history, keep_days=keep_days)


@app.command()
def workers(broker: Broker = None,
    store_url: Store = None, as_json: Json = False):
    """Live workers: name, pool, device, host, busy or idle."""
    rows = _store(broker, store_url).live_workers()
    if as_json:
        for w in rows:
            typer.echo(json.dumps(w))
        return
    if not rows:
        typer.echo("no live workers")
        return
    for w in rows:
        state = f"busy ({w['current']})" if w.get("current") else "idle"
        runs_on = f"\n    runtimes: {', '.join(w['runtimes'])}" if w.get("runtimes") else ""
        typer.echo(f"{w['name']}  pool={w['pool']}  device={w['device']}  host={w['hostname']}  {state}\n    {w['summary']}"
                   + runs_on)


@app.command()
def runs(limit: Annotated[int, typer.Option("--limit", help="how many (positive)")] = 20, broker: Broker = None,
         store_url: Store = None, as_json: Json = False,
         prune: Annotated[bool, typer.Option("--prune", help="delete the runs older than --keep-days, every key of each")] = False,
         keep_days: KeepDays = DEFAULT_KEEP_DAYS,
         force: Annotated[bool, typer.Option("--force", help="with --prune, delete unfinished runs too")] = False):
    """Recent runs, newest first; with --prune, delete the old ones from Redis."""
    from ..runs.progress import counts, unsent

    if limit <= 0:
        raise SpecError(f"--limit must be a positive number of runs, got {limit}")
    check_number(keep_days, "--keep-days", 0, MAX_KEEP_DAYS)
    store = _store(broker, store_url)
    if prune and keep_days == 0:  # one meaning everywhere: 0 keeps runs for ever (as on collect)
        raise SpecError("--keep-days 0 keeps runs for ever, so --prune would delete nothing: give the days to keep")
    if prune:
        deleted, dropped, skipped = store.prune_runs(time.time() - keep_days * 86400, force=force)
        for run_id in deleted:
            typer.echo(f"deleted: {run_id}")
        for run_id in skipped:
            typer.echo(f"kept: {run_id} (unfinished: cells still queued or running; --force deletes it)")
        typer.echo(f"pruned {len(deleted)} run(s) older than {keep_days:g} days"
                   + (f"; {len(dropped)} expired run(s) dropped from the index" if dropped else "")
                   + (f"; {len(skipped)} unfinished run(s) kept" if skipped else ""))
        return
    for run_id, created in store.recent_runs(limit):
        try:
            half_sent = unsent(store.run_meta(run_id, lenient=True))
        except RunNotFound:  # expired since it was listed
            continue
        c = counts(store.cell_states(run_id))
        if as_json:
            typer.echo(json.dumps({"run_id": run_id, "created": created, "counts": c,
                                   "incomplete": {"sent": half_sent[0], "cells": half_sent[1]} if half_sent else None}))
            continue
        typer.echo(f"{run_id}  {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(created))}  "
                   + " ".join(f"{k}={v}" for k, v in sorted(c.items()))
                   + (f"  incomplete: {half_sent[0]} of {half_sent[1]} cells' tasks sent" if half_sent else ""))


@app.command()
def retry(
    run_id: Annotated[str, typer.Argument(help="run id")],
    errors: Annotated[bool, typer.Option("--errors", help="also the cells whose record is an error")] = False,
    broker: Broker = None,
    store_url: Store = None,
):
    """Queue again the cells with no record and no live claim (and, with --errors, the failed ones)."""
    from ..runs.collect import retry as do_retry

    check_run_id(run_id)
    queued = do_retry(_store(broker, store_url), run_id, errors)
    for cell_id in queued:
        typer.echo(f"queued again: {cell_id}")
    typer.echo(f"run {run_id}: {len(queued)} cell(s) queued again")


@app.command()
def cancel(run_id: Annotated[str, typer.Argument(help="run id")], broker: Broker = None, store_url: Store = None):
    """Cancel the cells no worker has started; running cells finish."""
    check_run_id(run_id)
    store = _store(broker, store_url)
    store.run_meta(run_id, lenient=True)  # cancelling needs the cells, not the spec
    states = store.cell_states(run_id)
    n = store.cancel_queued(run_id, sorted(states))
    if n == 0 and all(s in SETTLED for s in store.cell_states(run_id).values()):
        typer.echo(f"run {run_id} has no cell left to cancel: every cell has finished or was cancelled")
        return
    store.set_run_status(run_id, "cancelled")
    typer.echo(f"cancelled {n} queued cell(s) of run {run_id}")

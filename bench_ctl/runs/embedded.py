"""``benchctl run``: the embedded path. The only controller module that reaches for torch, and
only when it is called (through bench_workers.cell.embedded)."""

from __future__ import annotations

import time
from pathlib import Path

from bench_protocol.errors import BenchError, OutputError
from bench_protocol.records import dumps, results_document
from bench_protocol.spec import CELL_AXES, RunSpec

from ..reporting.outdir import check_out_dir, make_out_dir, write_atomic

# The records of a run in progress, a JSON line each as it finishes (a run killed outright
# leaves them here); replaced by results.json when the run ends or is interrupted.
PARTIAL = "results.partial.jsonl"


def run_here(spec: RunSpec, out: Path, threads: int | None = None) -> tuple[dict[str, Path], dict]:
    """Measure, save, render: (the files written, the results document). ``threads``: torch's
    intra-op threads for every cell (as ``bench-worker --threads``)."""
    check_out_dir(out)
    try:  # torch itself too: the worker side imports it only when it measures
        import torch  # noqa: F401
        import transformers  # noqa: F401

        from bench_workers.cell.embedded import run_embedded
    except ImportError as exc:
        raise BenchError(f"benchctl run measures in this process and needs the worker extra ({exc.name or exc} is "
                         "missing): pip install 'benchctl[worker]'") from None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    created = time.time()
    cells = spec.cells()
    finished: list[dict] = []
    fingerprints: dict = {}
    partial = make_out_dir(out) / PARTIAL
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  transient=False) as progress:
        task = progress.add_task(f"run {spec.run_id}", total=len(cells))

        def on_cell(record: dict) -> None:
            status = "ok" if record["status"] == "ok" else f"error: {record['error']['message'][:60]}"
            where = " ".join(f"{prefix}{record[axis]}" for axis, prefix in CELL_AXES)
            progress.console.print(f"  {where}: {status}")
            progress.advance(task)
            finished.append(record)
            with open(partial, "a", encoding="utf-8") as fh:  # each record on disk as it finishes
                fh.write(dumps(record).replace("\n", " ") + "\n")

        try:
            records, _ = run_embedded(spec, on_cell, threads, fingerprints)
        except BaseException as exc:  # Ctrl-C (or a kill) mid-run: keep what finished, and say where
            if type(exc).__name__ not in ("Interrupted", "KeyboardInterrupt"):
                raise
            run = {"run_id": spec.run_id, "spec": spec.to_dict(), "created": created, "finished": time.time(),
                   "mode": "embedded", "status": "interrupted"}
            path = make_out_dir(out) / "results.json"
            write_atomic(path, dumps(results_document(run, finished, fingerprints)))
            partial.unlink(missing_ok=True)
            raise type(exc)(f"interrupted; the {len(finished)} finished record(s) of {len(cells)} are kept in {path} "
                            f"(benchctl report {path} renders them)") from None
    run = {"run_id": spec.run_id, "spec": spec.to_dict(), "created": created, "finished": time.time(),
           "mode": "embedded", "status": "finished"}
    doc = results_document(run, records, fingerprints)
    # The measurements are saved before anything is rendered: a rendering failure loses none.
    write_atomic(make_out_dir(out) / "results.json", dumps(doc))
    partial.unlink(missing_ok=True)
    try:
        from ..reporting.render import render_all

        return render_all(doc, out), doc
    except OutputError as exc:  # the records are on disk already: say so
        raise OutputError(f"{exc}; this run's records are saved in {out}/results.json "
                          f"(benchctl report {out}/results.json --out {out} renders them)") from None
    except ImportError as exc:
        raise BenchError(f"records saved in {out}/results.json, but the report needs {exc.name or exc}: install it and run "
                         f"benchctl report {out}/results.json --out {out}") from None

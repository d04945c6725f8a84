"""``benchctl run``: the embedded path. The only controller module that reaches for torch, and
only when it is called (through bench_workers.embedded)."""

from __future__ import annotations

import time
from pathlib import Path

from bench_protocol.errors import BenchError
from bench_protocol.records import dumps, results_document
from bench_protocol.spec import CELL_AXES, RunSpec

from .outdir import check_out_dir, make_out_dir, write_atomic


def run_here(spec: RunSpec, out: Path, threads: int | None = None) -> tuple[dict[str, Path], dict]:
    """Measure, save, render: (the files written, the results document). ``threads``: torch's
    intra-op threads for every cell (as ``bench-worker --threads``)."""
    check_out_dir(out)
    try:  # torch itself too: the worker side imports it only when it measures
        import torch  # noqa: F401
        import transformers  # noqa: F401

        from bench_workers.embedded import run_embedded
    except ImportError as exc:
        raise BenchError(f"benchctl run measures in this process and needs the worker extra ({exc.name or exc} is "
                         "missing): pip install 'benchctl[worker]'") from None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    created = time.time()
    cells = spec.cells()
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  transient=False) as progress:
        task = progress.add_task(f"run {spec.run_id}", total=len(cells))

        def on_cell(record: dict) -> None:
            status = "ok" if record["status"] == "ok" else f"error: {record['error']['message'][:60]}"
            where = " ".join(f"{prefix}{record[axis]}" for axis, prefix in CELL_AXES)
            progress.console.print(f"  {where}: {status}")
            progress.advance(task)

        records, fingerprints = run_embedded(spec, on_cell, threads)
    run = {"run_id": spec.run_id, "spec": spec.to_dict(), "created": created, "finished": time.time(),
           "mode": "embedded", "status": "finished"}
    doc = results_document(run, records, fingerprints)
    # The measurements are saved before anything is rendered: a rendering failure loses none.
    write_atomic(make_out_dir(out) / "results.json", dumps(doc))
    try:
        from .render import render_all

        return render_all(doc, out), doc
    except ImportError as exc:
        raise BenchError(f"records saved in {out}/results.json, but the report needs {exc.name or exc}: install it and run "
                         f"benchctl report {out}/results.json --out {out}") from None

"""Everything a run leaves on disk, rendered from its records: results.json, results.csv,
report.md, report.json, report.html (self-contained) and PNG plots.

Files are written into a staging folder first and moved into place at the end, so a failure
leaves no half-written report behind.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import tempfile
from pathlib import Path

from bench_protocol.records import dumps

from . import report
from .document import Heading, Image, to_html, to_markdown
from .frame import cells_frame
from .outdir import make_out_dir
from .tables import combo_key, comparison_tables

REPORT_SCHEMA = "benchctl.report"
REPORT_SCHEMA_VERSION = 2  # 2: comparison keys name every combination axis (s128_fp32_eager)


def _draw_plots(frame, pools: list[str], baseline: str, stage: Path) -> dict:
    try:
        from .plots import make_plots

        return {"plots": make_plots(frame, pools, baseline, stage)}
    except ImportError as exc:
        return {"note": f"plots skipped: {exc}"}


class _PlotsAside:
    """The plots drawn by a forked child while this process writes everything else (matplotlib's
    import and drawing are the larger part of rendering); in this process where fork is missing."""

    def __init__(self, frame, pools: list[str], baseline: str, stage: Path) -> None:
        self.pid = None
        if not hasattr(os, "fork"):
            self.result = _draw_plots(frame, pools, baseline, stage)
            return
        self.fd, w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:  # the child: draw, report, leave without running the parent's cleanup
            os.close(self.fd)
            try:
                result = _draw_plots(frame, pools, baseline, stage)
            except BaseException as exc:  # noqa: BLE001 (reported to the parent, which raises)
                result = {"error": f"{type(exc).__name__}: {exc}"}
            os.write(w, json.dumps(result).encode())
            os._exit(0)
        os.close(w)

    def wait(self) -> dict:
        if self.pid is None:
            return self.result
        with os.fdopen(self.fd, "rb") as r:
            data = r.read()
        os.waitpid(self.pid, 0)
        self.pid = None
        result = json.loads(data or b'{"error": "the plotting process ended without a word"}')
        if "error" in result:
            raise RuntimeError(f"drawing the plots failed: {result['error']}")
        return result

    def abandon(self) -> None:
        if self.pid is not None:
            try:
                os.kill(self.pid, 9)
                os.waitpid(self.pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
            self.pid = None


def render_all(doc: dict, out: str | Path) -> dict[str, Path]:
    out_dir = make_out_dir(out)
    frame = cells_frame(doc)
    pools = report.run_pools(doc)
    baseline = report.run_baseline(doc, pools)
    stage = Path(tempfile.mkdtemp(prefix=".benchctl-", dir=out_dir))
    aside = None
    try:
        aside = _PlotsAside(frame, pools, baseline, stage)
        (stage / "results.json").write_text(dumps(doc), encoding="utf-8")
        frame.to_csv(stage / "results.csv", index=False)
        tables = comparison_tables(frame, pools, baseline)
        document = report.build(doc, frame, None, tables)
        title = document.blocks[0].text
        drawn = aside.wait()
        images: list[Image] = []
        plot_note = drawn.get("note")
        for title_, name in drawn.get("plots", []):
            data = base64.b64encode((stage / name).read_bytes()).decode()
            images.append(Image(title_, name, f"data:image/png;base64,{data}"))
        if images:  # the report's last section, as report.build places it
            document.add(Heading(2, "Plots"), *images)
        (stage / "report.md").write_text(to_markdown(document), encoding="utf-8")
        (stage / "report.html").write_text(to_html(document, title), encoding="utf-8")
        report_doc = {
            "schema": REPORT_SCHEMA, "schema_version": REPORT_SCHEMA_VERSION,
            "title": title, "run": doc.get("run"), "pools": pools, "baseline": baseline,
            "model": report.model_info(doc),
            "comparison": {combo_key(c): json.loads(t.to_json(orient="records")) for c, t in tables.items()},
            "cells": json.loads(frame.to_json(orient="records")),
            "fingerprints": doc["fingerprints"], "missing": doc.get("missing", []),
            "plots": [i.filename for i in images], "notes": [plot_note] if plot_note else [],
        }
        (stage / "report.json").write_text(dumps(report_doc), encoding="utf-8")
        written = {}
        for path in sorted(stage.iterdir()):
            os.replace(path, out_dir / path.name)
            written[path.name] = out_dir / path.name
        return written
    finally:
        if aside is not None:
            aside.abandon()
        shutil.rmtree(stage, ignore_errors=True)

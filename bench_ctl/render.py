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
from .document import Image, to_html, to_markdown
from .frame import cells_frame
from .outdir import make_out_dir
from .tables import combo_key, comparison_tables

REPORT_SCHEMA = "benchctl.report"
REPORT_SCHEMA_VERSION = 2  # 2: comparison keys name every combination axis (s128_fp32_eager)


def render_all(doc: dict, out: str | Path) -> dict[str, Path]:
    out_dir = make_out_dir(out)
    frame = cells_frame(doc)
    pools = report.run_pools(doc)
    baseline = report.run_baseline(doc, pools)
    stage = Path(tempfile.mkdtemp(prefix=".benchctl-", dir=out_dir))
    try:
        images: list[Image] = []
        plot_note = None
        try:
            from .plots import make_plots

            for title, name in make_plots(frame, pools, baseline, stage):
                data = base64.b64encode((stage / name).read_bytes()).decode()
                images.append(Image(title, name, f"data:image/png;base64,{data}"))
        except ImportError as exc:
            plot_note = f"plots skipped: {exc}"
        tables = comparison_tables(frame, pools, baseline)
        document = report.build(doc, frame, images, tables)
        title = document.blocks[0].text
        (stage / "results.json").write_text(dumps(doc), encoding="utf-8")
        frame.to_csv(stage / "results.csv", index=False)
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
        shutil.rmtree(stage, ignore_errors=True)

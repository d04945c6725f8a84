"""Everything a run leaves on disk, rendered from its records: results.json, results.csv,
report.md, report.json, report.html (self-contained) and PNG plots.

Files are written into a staging folder first and moved into place at the end, so a failure
leaves no half-written report behind.
"""

from __future__ import annotations

import base64
import json
import os
import pickle
import shutil
import tempfile
from pathlib import Path

from bench_protocol.errors import OutputError
from bench_protocol.records import dumps

from . import report
from .combined import combine_repeats
from .document import Document, Heading, Image, to_html, to_markdown
from .frame import cells_frame
from .hosts import host_spread, pool_between
from .outdir import make_out_dir, write_atomic
from .tables import combo_cells, combo_key, comparison_tables, speedup_interval_rows

REPORT_SCHEMA = "benchctl.report"
REPORT_SCHEMA_VERSION = 2  # 2: comparison keys name every combination axis (s128_fp32_eager)


def _draw_plots(frame, pools: list[str], baseline: str, stage: Path) -> dict:
    try:
        from .plots import make_plots

        return {"plots": make_plots(frame, pools, baseline, stage)}
    except ImportError as exc:
        return {"note": f"plots skipped: {exc}"}


class PlotProcess:
    """The plots, drawn by a forked process while this one writes everything else (matplotlib's
    import and drawing are the larger part of rendering). Fork it early — `collect` does so
    before it reads the records — and it imports matplotlib meanwhile; ``draw`` hands it the
    frame (through a file in the staging folder: a pipe would block until the child reads).
    Where fork is missing, ``draw`` draws here."""

    def __init__(self) -> None:
        self.pid = None
        if not hasattr(os, "fork"):
            return
        go_r, self._go = os.pipe()
        self._result, done_w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:  # the child: warm up, wait for the frame, draw, report, leave
            os.close(self._go)
            os.close(self._result)
            result = {}
            try:
                try:
                    from .plots import warm

                    warm()
                except ImportError:
                    pass
                with os.fdopen(go_r, "rb") as r:
                    task = r.read()
                if task:
                    with open(task, "rb") as fh:
                        frame, pools, baseline, stage = pickle.load(fh)
                    result = _draw_plots(frame, pools, baseline, Path(stage))
            except BaseException as exc:  # noqa: BLE001 (reported to the parent, which raises)
                result = {"error": f"{type(exc).__name__}: {exc}",
                          "errno": exc.errno if isinstance(exc, OSError) else None,
                          "strerror": exc.strerror if isinstance(exc, OSError) else None}
            os.write(done_w, json.dumps(result).encode())
            os._exit(0)
        os.close(go_r)
        os.close(done_w)
        self.result = None

    def draw(self, frame, pools: list[str], baseline: str, stage: Path) -> None:
        if self.pid is None:
            self.result = _draw_plots(frame, pools, baseline, stage)
            return
        # A pickle between this process and its own fork, in a staging folder mkdtemp made private
        # (0700): nothing from the broker or another user is ever unpickled.
        task = stage / ".plot-task.pickle"
        with open(task, "wb") as fh:
            pickle.dump((frame, pools, baseline, str(stage)), fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.write(self._go, str(task).encode())
        os.close(self._go)
        self._go = None

    def wait(self) -> dict:
        if self.pid is not None:
            with os.fdopen(self._result, "rb") as r:
                data = r.read()
            os.waitpid(self.pid, 0)
            self.pid = None
            self.result = json.loads(data or b'{"error": "the plotting process ended without a word"}')
        if "error" in self.result:
            if self.result.get("errno"):  # the disk, not the drawing: the caller's one line
                raise OSError(self.result["errno"], self.result.get("strerror") or self.result["error"])
            raise RuntimeError(f"drawing the plots failed: {self.result['error']}")
        return self.result

    def abandon(self) -> None:
        """End the child if it is still there (an error or an interrupt on the way)."""
        if self.pid is None:
            return
        for fd in (self._go, self._result):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        try:
            os.kill(self.pid, 9)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        self.pid = None


STAGE_PREFIX = ".benchctl-"
# The names the last report wrote into its directory: the next one replaces them as a set
# (a stale ttft.png does not outlive a classify report) and leaves every other file alone.
MANIFEST = ".benchctl-manifest"


def remove_stale_stages(out_dir: Path) -> None:
    """Staging folders of writers that are gone (killed mid-write): their PID is in the name."""
    for path in out_dir.glob(f"{STAGE_PREFIX}*"):
        if not path.is_dir():
            continue
        pid = path.name[len(STAGE_PREFIX):].split("-", 1)[0]
        alive = False
        if pid.isdigit():
            try:
                os.kill(int(pid), 0)
                alive = True
            except ProcessLookupError:
                pass
            except PermissionError:
                alive = True
        if not alive:
            shutil.rmtree(path, ignore_errors=True)


def install(stage: Path, out_dir: Path) -> dict[str, Path]:
    """Move the staged files into place, then remove what the previous report wrote and this one
    did not; the manifest names this report's files."""
    manifest = out_dir / MANIFEST
    before = set(manifest.read_text(encoding="utf-8").split()) if manifest.is_file() else set()
    written = {}
    for path in sorted(stage.iterdir()):
        os.replace(path, out_dir / path.name)
        written[path.name] = out_dir / path.name
    for name in before - set(written):
        if "/" not in name and name != MANIFEST:
            (out_dir / name).unlink(missing_ok=True)
    write_atomic(manifest, "\n".join(sorted(written)) + "\n")
    return written


def serving_steps(doc: dict) -> list[dict]:
    """Every load step of every server cell: (pool, cell, offered rate, p50, p99, valid, bound;
    a generate cell's TTFT and TPOT p99 and their bounds)."""
    out = []
    for rec in doc["cells"]:
        info = rec.get("serving") or {}
        for st in info.get("steps") or []:
            if st.get("offered_rate") is not None:
                out.append({"pool": rec.get("pool"), "cell": rec["cell_id"].split(":", 1)[1],
                            "offered_rate": st["offered_rate"], "p50_ms": st.get("p50_ms"), "p99_ms": st.get("p99_ms"),
                            "valid": bool(st.get("valid")), "slo_p99_ms": info.get("slo_p99_ms"),
                            "ttft_p99_ms": st.get("ttft_p99_ms"), "tpot_p99_ms": st.get("tpot_p99_ms"),
                            "slo_ttft_ms": info.get("slo_ttft_ms"), "slo_tpot_ms": info.get("slo_tpot_ms")})
    return out


def render_all(doc: dict, out: str | Path, plotter: PlotProcess | None = None) -> dict[str, Path]:
    """Write every file of a report into ``out``; ``plotter``: a PlotProcess forked earlier."""
    out_dir = make_out_dir(out)
    plotter = plotter or PlotProcess()
    stage = None
    try:
        frame = cells_frame(doc)  # a row per record: every repeat, as results.csv and report.json keep them
        combined, boot = combine_repeats(frame, doc)  # a row per cell: what the tables and plots read
        pools = report.run_pools(doc)
        baseline = report.run_baseline(doc, pools)
        remove_stale_stages(out_dir)
        stage = Path(tempfile.mkdtemp(prefix=f"{STAGE_PREFIX}{os.getpid()}-", dir=out_dir))
        # What the serving plots read beside the frame: each server cell's load steps, the prices.
        combined.attrs["serving_steps"] = serving_steps(doc)
        combined.attrs["prices"] = doc.get("run", {}).get("spec", {}).get("prices")
        plotter.draw(combined, pools, baseline, stage)
        (stage / "results.json").write_text(dumps(doc), encoding="utf-8")
        frame.to_csv(stage / "results.csv", index=False)
        tables = comparison_tables(combined, pools, baseline)
        between = pool_between(host_spread(frame, doc.get("fingerprints") or {})[0])
        document = report.build(doc, combined, None, tables, boot, frame)
        title = document.blocks[0].text
        markdown = to_markdown(document)  # the plots' section is added after them
        drawn = plotter.wait()
        images: list[Image] = []
        plot_note = drawn.get("note")
        for title_, name in drawn.get("plots", []):
            data = base64.b64encode((stage / name).read_bytes()).decode()
            images.append(Image(title_, name, f"data:image/png;base64,{data}"))
        (stage / ".plot-task.pickle").unlink(missing_ok=True)
        if images:  # the report's last section, as report.build places it
            plots = Document([Heading(2, "Plots"), *images])
            document.add(*plots.blocks)
            markdown = markdown + "\n" + to_markdown(plots)
        (stage / "report.md").write_text(markdown, encoding="utf-8")
        (stage / "report.html").write_text(to_html(document, title), encoding="utf-8")
        report_doc = {
            "schema": REPORT_SCHEMA, "schema_version": REPORT_SCHEMA_VERSION,
            "title": title, "run": doc.get("run"), "pools": pools, "baseline": baseline,
            "model": report.model_info(doc),
            "comparison": {combo_key(c): json.loads(t.to_json(orient="records")) for c, t in tables.items()},
            "speedup_intervals": {combo_key(c): speedup_interval_rows(combo_cells(combined, c), pools, baseline, boot,
                                                                      between) for c in tables},
            "cells": json.loads(frame.to_json(orient="records")),
            "fingerprints": doc["fingerprints"], "missing": doc.get("missing", []),
            "plots": [i.filename for i in images], "notes": [plot_note] if plot_note else [],
        }
        (stage / "report.json").write_text(dumps(report_doc), encoding="utf-8")
        return install(stage, out_dir)
    except OSError as exc:  # a full disk, a quota, a file too large: the previous report stands
        raise OutputError(f"could not write the report in {out_dir}: {exc.strerror or exc}; nothing there was "
                          "changed (the previous report, if any, is intact)") from None
    finally:
        plotter.abandon()
        if stage is not None:
            shutil.rmtree(stage, ignore_errors=True)

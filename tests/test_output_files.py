"""A report directory on disk: replaced as a set, stale staging cleared, a full disk in one line."""

import copy
import os
import resource
import signal
import subprocess

from conftest import BIN, load_json, worker_env
from seed_records import seed_document

from bench_ctl.reporting.render import render_all


def _cpu_only(doc):
    doc = copy.deepcopy(doc)
    doc["cells"] = [c for c in doc["cells"] if c["pool"] == "cpu"]
    doc["run"]["spec"]["pools"] = ["cpu"]
    return doc


def test_a_report_replaces_the_previous_reports_files_and_leaves_others_alone(tmp_path):
    render_all(seed_document(), tmp_path)
    assert (tmp_path / "gpu_power.png").is_file()  # a GPU pool was in that report
    (tmp_path / "notes.txt").write_text("mine")
    dead = tmp_path / ".benchctl-999999999-abcd"  # a writer killed mid-report
    dead.mkdir()
    live = tmp_path / f".benchctl-{os.getpid()}-efgh"  # one still writing
    live.mkdir()
    written = render_all(_cpu_only(seed_document()), tmp_path)
    assert not (tmp_path / "gpu_power.png").exists() and not (tmp_path / "gpu_memory.png").exists()
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert not dead.exists() and live.exists()
    assert set(written) <= {p.name for p in tmp_path.iterdir()}


def test_a_full_disk_is_one_line_and_the_previous_report_stands(tmp_path):
    out = tmp_path / "out"
    render_all(seed_document(), out)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    src = tmp_path / "cpu.json"
    src.write_text(__import__("json").dumps(_cpu_only(seed_document())))

    def small_files():  # a disk that takes no file above 20 kB (the HTML, with its plots, is larger)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))

    res = subprocess.run([str(BIN / "benchctl"), "report", str(src), "--no-history", "--out", str(out)],
                         capture_output=True, text=True, env=worker_env(), timeout=300, preexec_fn=small_files)
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "Traceback" not in res.stderr, res.stderr
    assert "could not write the report" in res.stderr and "previous report" in res.stderr
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert after == before  # every file as it was, nothing half-written
    assert not [p for p in out.iterdir() if p.name.startswith(".benchctl-") and p.is_dir()]
    assert load_json(out / "results.json")["cells"][-1]["pool"] == "cuda"

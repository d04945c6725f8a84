"""`benchctl run`, `report` and `compare` through the real CLI, and the HTML in a real browser."""

import json
import shutil
import subprocess
import sys

import pytest
from conftest import benchctl, load_json

FAST = ["--warmup", "1", "--iterations", "5", "--min-time", "0.05"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, models_dir):
    out = tmp_path_factory.mktemp("run") / "out"
    res = benchctl("run", "--devices", "cpu", "--batch-sizes", "1,4", "--seq-lens", "16,32", "--dtypes", "fp32,bf16",
                   "--model", str(models_dir / "tiny"), *FAST, "--out", str(out))
    assert res.returncode == 0, res.stderr
    return out, res


def test_run_writes_every_output(tiny_run):
    out, res = tiny_run
    for name in ("results.json", "results.csv", "report.md", "report.json", "report.html", "latency.png",
                 "throughput.png", "cpu_memory.png"):
        assert (out / name).is_file(), name
    assert f"report: {out}/report.md" in res.stdout
    doc = load_json(out / "results.json")
    assert doc["schema_version"] == 1 and len(doc["cells"]) == 8
    for rec in doc["cells"]:
        assert rec["status"] == "ok"
        assert rec["fingerprint_id"] in doc["fingerprints"]
        assert rec["latencies_ms"] and rec["metrics"]["latency_ms"]["p99"] >= rec["metrics"]["latency_ms"]["median"]
    md = (out / "report.md").read_text()
    assert md.count("### Sequence length") == 4  # one table per (seq_len, dtype)
    report = load_json(out / "report.json")
    assert report["schema"] == "benchctl.report" and len(report["cells"]) == 8


def test_report_rerenders_from_saved_records(tiny_run, tmp_path):
    out, _ = tiny_run
    res = benchctl("report", str(out / "results.json"), "--out", str(tmp_path / "again"))
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "again" / "report.md").read_text() == (out / "report.md").read_text()


def test_compare_flags_regressions_beyond_noise(tiny_run, tmp_path):
    out, _ = tiny_run
    doc = load_json(out / "results.json")
    for rec in doc["cells"]:  # a steady run (a loaded machine may have measured a noisy one)
        rec["metrics"]["latency_ms"]["cv"] = 0.02
    (tmp_path / "old.json").write_text(json.dumps(doc))
    slower = json.loads(json.dumps(doc))
    for rec in slower["cells"]:
        rec["metrics"]["latency_ms"]["mean"] *= 2
        rec["metrics"]["throughput_mean"] /= 2
        rec["latencies_ms"] = [2 * v for v in rec["latencies_ms"]]
    (tmp_path / "new.json").write_text(json.dumps(slower))
    same = benchctl("compare", str(tmp_path / "old.json"), str(tmp_path / "old.json"), "--fail-on-regression", "5")
    assert same.returncode == 0 and "within noise" in same.stdout
    worse = benchctl("compare", str(tmp_path / "old.json"), str(tmp_path / "new.json"), "--fail-on-regression", "5")
    assert worse.returncode == 1 and "REGRESSION" in worse.stdout and "regressed" in worse.stderr


def test_default_model_runs_offline_with_seed_parameter_count(tmp_path):
    res = benchctl("run", "--devices", "cpu", "--batch-sizes", "1", "--seq-lens", "128", "--warmup", "0",
                   "--iterations", "2", "--min-time", "0", "--out", str(tmp_path / "d"))
    assert res.returncode == 0, res.stderr
    rec = load_json(tmp_path / "d" / "results.json")["cells"][0]
    assert rec["model"]["parameters"] == 66_955_010 and rec["model"]["weights"] == "random"
    assert "Parameters: 66,955,010" in (tmp_path / "d" / "report.md").read_text()


def test_controller_imports_no_torch():
    code = "import sys, bench_ctl.cli; assert 'torch' not in sys.modules and 'celery' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium package is not installed")
def test_html_report_renders_with_its_plots_in_headless_chromium(tiny_run, tmp_path):
    from matplotlib.image import imread

    out, _ = tiny_run
    shot = tmp_path / "shot.png"
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tmp_path / 'profile'}", "--hide-scrollbars", "--window-size=1280,9000",
                    f"--screenshot={shot}", (out / "report.html").as_uri()],
                   capture_output=True, timeout=120, check=False)
    assert shot.is_file(), "chromium wrote no screenshot"
    img = imread(shot)[..., :3]
    assert img.shape[0] >= 9000 * 0.9
    # Text rendered: dark pixels; plots rendered: matplotlib's first colour (#1f77b4) in quantity.
    dark = (img.sum(axis=2) < 0.6).mean()
    blue = ((abs(img[..., 0] - 0x1F / 255) < 0.06) & (abs(img[..., 1] - 0x77 / 255) < 0.06) & (abs(img[..., 2] - 0xB4 / 255) < 0.06)).sum()
    assert dark > 0.002, "no text on the page"
    assert blue > 500, "no plot lines on the page"


def test_lower_precision_is_compared_with_fp32(tiny_run):
    out, _ = tiny_run
    md = (out / "report.md").read_text()
    assert "### Lower precision against fp32" in md and "speedup_bf16_vs_fp32" in md


def test_run_takes_threads_as_workers_do(models_dir, tmp_path):
    out = tmp_path / "one-thread"
    res = benchctl("run", "--devices", "cpu", "--batch-sizes", "1", "--seq-lens", "16", "--model", str(models_dir / "tiny"),
                   *FAST, "--threads", "1", "--no-history", "--out", str(out))
    assert res.returncode == 0, res.stderr
    doc = load_json(out / "results.json")
    assert {c["torch_threads"] for c in doc["cells"]} == {1}
    assert {fp["torch_threads"] for fp in doc["fingerprints"].values()} == {1}
    bad = benchctl("run", "--devices", "cpu", "--threads", "0", "--out", str(tmp_path / "bad"))
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--threads" in bad.stderr
    assert not (tmp_path / "bad").exists()


def test_run_on_a_controller_only_install_is_one_line(tmp_path):
    """No torch importable (a shim stands for a controller-only install): one line naming the extra."""
    from conftest import worker_env

    shim = tmp_path / "no-torch"
    shim.mkdir()
    (shim / "torch.py").write_text("raise ModuleNotFoundError('No module named torch', name='torch')\n")
    res = benchctl("run", "--devices", "cpu", "--batch-sizes", "1", "--out", str(tmp_path / "out"),
                   env=worker_env(PYTHONPATH=str(shim)))
    assert res.returncode == 2 and "Traceback" not in res.stderr and res.stderr.count("\n") == 1
    assert "pip install 'benchctl[worker]'" in res.stderr and "torch is missing" in res.stderr
    assert not (tmp_path / "out").exists()


def test_an_interrupted_run_keeps_its_finished_records_where_it_says(models_dir, tmp_path):
    """SIGINT after the first cell: exit 130, the finished records in results.json, the file named."""
    import signal
    import time

    from conftest import BIN, worker_env

    out = tmp_path / "out"
    proc = subprocess.Popen([str(BIN / "benchctl"), "run", "--devices", "cpu", "--batch-sizes", "1,2,3,4,5,6,7,8",
                             "--seq-lens", "16", "--model", str(models_dir / "tiny"), "--warmup", "0", "--iterations", "3",
                             "--min-time", "1", "--no-history", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=worker_env())
    deadline = time.time() + 120
    partial = out / "results.partial.jsonl"
    while time.time() < deadline and not (partial.exists() and partial.read_text().strip()):
        time.sleep(0.2)  # the first record is on disk as soon as its cell finishes
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    kept = load_json(out / "results.json")
    n = len(kept["cells"])
    assert 1 <= n < 8 and kept["run"]["status"] == "interrupted"
    assert f"the {n} finished record(s) of 8 are kept in {out}/results.json" in err and "Traceback" not in err
    assert not partial.exists()
    again = benchctl("report", str(out / "results.json"), "--no-history", "--out", str(tmp_path / "again"))
    assert again.returncode == 0, again.stderr

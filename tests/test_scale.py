"""The controller at scale: compact records, reports of large sweeps, retention.

Timings are measured by benchmarks/scale.py, side by side; these tests assert sizes and forms."""

import json
import re
import shutil
import subprocess
import time

import numpy as np
import pytest
from conftest import benchctl, read_record
from seed_records import CPU_FP, GPU_FP, RUN_ID, cell

from bench_protocol import keys, record_codec
from bench_protocol.records import results_document
from bench_protocol.spec import CellSpec, parse_cell_id


def _record(pool="cpu", batch=8, seq=128, iterations=10, seed=0):
    rec = cell(pool, 449.57 / (8 if pool == "cuda" else 1), 17.83, 1671.68, fp="gpuhost0000" if pool == "cuda" else "cpuhost0000")
    cid = CellSpec(run_id=RUN_ID, pool=pool, batch_size=batch, seq_len=seq, dtype="fp32").cell_id
    lat = (rec["metrics"]["latency_ms"]["mean"] * np.random.default_rng(seed).lognormal(0, 0.05, iterations)).tolist()
    return dict(rec, cell_id=cid, batch_size=batch, seq_len=seq, latencies_ms=lat,
                phase_latencies_ms={"ttft_ms": lat[:5], "decode_ms": lat[:50]})


def test_a_compact_record_reads_back_to_float32_and_costs_under_4_kb(redis_server):
    rec = _record(iterations=1000)
    raw = record_codec.encode(rec)
    back = record_codec.decode(raw)
    assert np.array_equal(np.asarray(back["latencies_ms"], dtype=np.float32), np.asarray(rec["latencies_ms"], dtype=np.float32))
    for phase, values in rec["phase_latencies_ms"].items():
        assert np.array_equal(np.float32(back["phase_latencies_ms"][phase]), np.float32(values))
    assert {k: v for k, v in back.items() if "latencies" not in k} == {k: v for k, v in rec.items() if "latencies" not in k}
    # The shortest decimal of each float32: readable in results.json, not 17 digits.
    assert all(len(repr(v)) <= 12 for v in back["latencies_ms"])
    r = redis_server.client()
    r.set(keys.cell(rec["cell_id"]), raw)
    assert r.memory_usage(keys.cell(rec["cell_id"])) <= 4096
    assert read_record(r, rec["cell_id"]) == back
    assert record_codec.decode(json.dumps({"plain": 1}).encode()) == {"plain": 1}  # older plain-JSON records


def _large_doc(n_batches=500, seqs=10):
    cells = [_record(pool, b, s, iterations=3, seed=b) for pool in ("cpu", "cuda")
             for s in range(1, seqs + 1) for b in range(1, n_batches + 1)]
    spec = {"pools": ["cpu", "cuda"], "baseline": "cpu", "rules": {}}
    return results_document({"run_id": RUN_ID, "spec": spec}, cells, {"cpuhost0000": CPU_FP, "gpuhost0000": GPU_FP})


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def test_a_10000_cell_report_stays_readable(tmp_path):
    from bench_ctl.reporting.render import render_all

    doc = _large_doc()
    assert len(doc["cells"]) == 10_000
    written = render_all(doc, tmp_path / "out")
    md = written["report.md"].read_text()
    assert len(md.encode()) < 200 * 1024
    # The seed's sections and table form for the first combinations, then a pointer to the rest.
    assert "## Sweep summary" in md and "## Performance Comparison" in md and "## Conclusion" in md
    assert "### Sequence length 1, fp32" in md and "### Sequence length 4, fp32" in md
    assert "### Sequence length 5, fp32" not in md  # in report.html
    assert re.search(r"\|\s+batch_size\s+\|\s+cpu_latency_ms_mean", md) and "speedup_latency_ms_mean" in md
    assert "every row is in results.csv and report.html" in md
    assert "throughput speedup over CPU" in md  # the speedup range per pool
    assert len(json.loads(written["results.json"].read_text())["cells"]) == 10_000
    html = written["report.html"].read_text()
    assert html.count("<div class='paged'>") >= 10
    assert "<script src" not in html and "<link" not in html and "src='http" not in html  # nothing fetched
    if CHROMIUM:  # the paged tables draw in a real browser, a page at a time
        dom = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                              "--disable-background-networking", f"--user-data-dir={tmp_path / 'profile'}",
                              "--dump-dom", written["report.html"].as_uri()], capture_output=True, text=True, timeout=120)
        assert "rows 1\u2013100 of 1000" in dom.stdout, dom.stderr[-500:]


def test_plots_of_a_large_sweep_fold_their_lines(tmp_path):
    from bench_ctl.reporting.frame import cells_frame
    from bench_ctl.reporting.plots import MAX_LINES, _series

    frame = cells_frame(_large_doc(n_batches=40, seqs=10))
    series = list(_series(frame, "latency_ms_mean"))
    assert len(series) <= MAX_LINES and all("median of 10 seq lens" in label for _, label, _ in series)


def test_collect_gives_the_run_a_retention_and_runs_prune_deletes_old_runs(redis_server, tmp_path):
    r = redis_server.client()
    res = benchctl("submit", "--devices", "cpu", "--batch-sizes", "1,2", "--seq-lens", "16", "--allow-missing",
                   "--json", "--broker", redis_server.url)
    assert res.returncode == 0, res.stderr
    run = json.loads(res.stdout)
    for cid in run["cells"]:  # finished records, as a worker writes them
        rec = dict(_record(), cell_id=cid, **parse_cell_id(cid))
        r.set(keys.cell(cid), record_codec.encode(rec))
        r.hset(keys.run_cells(run["run_id"]), cid, "ok")
    col = benchctl("collect", run["run_id"], "--keep-days", "2", "--no-history", "--out", str(tmp_path / "out"),
                   "--broker", redis_server.url)
    assert col.returncode == 0, col.stderr
    for key in (keys.run(run["run_id"]), keys.run_cells(run["run_id"]), *map(keys.cell, run["cells"])):
        assert 2 * 86400 - 60 < r.ttl(key) <= 2 * 86400
    assert run["run_id"] in benchctl("runs", "--broker", redis_server.url).stdout
    kept = benchctl("runs", "--prune", "--keep-days", "1", "--broker", redis_server.url)
    assert kept.returncode == 0 and "pruned 0 run(s)" in kept.stdout
    forever = benchctl("runs", "--prune", "--keep-days", "0", "--broker", redis_server.url)  # 0: for ever, as on collect
    assert forever.returncode == 2 and "keeps runs for ever" in forever.stderr and r.exists(keys.run(run["run_id"]))
    time.sleep(0.2)
    pruned = benchctl("runs", "--prune", "--keep-days", "0.000001", "--broker", redis_server.url)  # older than 0.09 s
    assert pruned.returncode == 0 and f"deleted: {run['run_id']}" in pruned.stdout
    assert not r.exists(keys.run(run["run_id"])) and not any(r.exists(keys.cell(c)) for c in run["cells"])
    assert run["run_id"] not in benchctl("runs", "--broker", redis_server.url).stdout
    bad = benchctl("collect", run["run_id"], "--keep-days", "-1", "--broker", redis_server.url)
    assert bad.returncode == 2 and "--keep-days must be at least 0" in bad.stderr


@pytest.mark.parametrize("n", [3])
def test_plain_progress_is_a_few_lines_not_one_per_poll(n, redis_server, tmp_path):
    r = redis_server.client()
    res = benchctl("submit", "--devices", "cpu", "--batch-sizes", ",".join(map(str, range(1, n + 1))), "--seq-lens",
                   "16", "--allow-missing", "--json", "--broker", redis_server.url)
    run = json.loads(res.stdout)
    col = benchctl("collect", run["run_id"], "--timeout", "3", "--no-history", "--out", str(tmp_path / "o"),
                   "--broker", redis_server.url)
    assert col.returncode == 5
    progress = [line for line in col.stderr.splitlines() if line.startswith("[")]
    assert progress == [f"[------------------------------] 0/{n}  queued={n}"]  # one line while nothing changes
    assert r.hlen(keys.run_cells(run["run_id"])) == n

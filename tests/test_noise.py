"""Noise named where it comes from: a busy host, an unstable ceiling, INVALID cells kept out of
regression verdicts."""

import copy
import subprocess
import sys
import time

import pytest
from seed_records import seed_document

from bench_ctl.reporting.compare import INVALID, compare, regressions
from bench_ctl.reporting.frame import cells_frame
from bench_workers.trackers.host_load import HostLoadTracker


def test_a_busy_host_is_named_during_the_cell():
    """Another process spinning on a CPU while the cell's window is open: it took a large share
    of the CPUs this process may use, and the tracker says so."""
    burner = subprocess.Popen([sys.executable, "-c", "import time\nt=time.time()\nwhile time.time()-t<3: pass"])
    try:
        time.sleep(0.3)  # the burner is running
        tracker = HostLoadTracker()
        with tracker.track():
            time.sleep(1.0)
    finally:
        burner.kill()
        burner.wait()
    r = tracker.result()
    assert r["available"] and r["host_other_cpu_share"] >= 0.2, r  # one spinning core of at most a few
    assert "other processes took" in r["busy"]


@pytest.mark.fast
def test_a_spread_latency_on_a_busy_host_names_the_host_as_the_reason():
    doc = seed_document()
    cpu = next(c for c in doc["cells"] if c["pool"] == "cpu")
    cpu["metrics"]["latency_ms"]["cv"] = 0.4
    cpu["trackers"] = {"host_load": {"available": True, "busy": "other processes took 60% and steal 0% of the CPUs"}}
    reason = cells_frame(doc).set_index("pool").loc["cpu", "invalid_reason"]
    assert "latency CV 40.0% above 10%" in reason and "host busy: other processes took 60%" in reason


@pytest.mark.fast
def test_ceilings_are_the_best_of_spaced_rounds_with_their_spread():
    import torch

    from bench_workers.device.peaks import copy_bandwidth, gemm_peak, spread_pct

    g = gemm_peak(torch, torch.device("cpu"), "fp32", rounds=2)
    assert len(g["rounds_tflops"]) == 2 and g["tflops"] == max(g["rounds_tflops"]) and g["spread_pct"] >= 0
    c = copy_bandwidth(torch, torch.device("cpu"), rounds=2)
    assert c["gbps"] == max(c["rounds_gbps"])
    assert spread_pct([100.0, 80.0]) == pytest.approx(20.0) and spread_pct([5.0]) == 0.0


@pytest.mark.fast
def test_an_unstable_ceiling_is_flagged_where_percent_of_peak_is_shown():
    from bench_ctl.reporting import report
    from bench_ctl.reporting.document import to_markdown

    doc = seed_document()
    for c in doc["cells"]:
        c["metrics"].update(pct_peak_measured=40.0, peak_tflops_measured=1.0, peak_spread_pct=35.0 if c["pool"] == "cpu" else 2.0)
    md = to_markdown(report.build(doc, cells_frame(doc)))
    assert "Unstable ceiling: the measured GEMM peak of CPU fp32 (35%) moved more than 10%" in md
    assert "CUDA fp32" not in md.split("Unstable ceiling")[1].split("\n")[0]


@pytest.mark.fast
def test_invalid_cells_are_listed_apart_and_never_a_regression():
    old, new = seed_document(), seed_document()
    slow = next(c for c in new["cells"] if c["pool"] == "cpu")
    lat = slow["metrics"]["latency_ms"]
    lat.update(mean=lat["mean"] * 3, cv=0.5)  # three times slower, and too spread to trust
    table = compare(old, new)
    assert list(table["verdict"]) == ["within noise", INVALID]  # the judged cells first
    assert regressions(table, 10).empty
    trusted = copy.deepcopy(new)
    next(c for c in trusted["cells"] if c["pool"] == "cpu")["metrics"]["latency_ms"]["cv"] = 0.01
    assert len(regressions(compare(old, trusted), 10)) == 1  # the same slowdown, trusted, is one


class _Axes:
    """Records what a plot draws (matplotlib's Axes methods the plots call, as no-ops)."""

    def __init__(self, calls):
        self.calls = calls

    def scatter(self, x, y, **kw):
        self.calls.append(("scatter", list(x), list(y), kw.get("label")))

    def __getattr__(self, name):
        return lambda *a, **k: None


class _Plt:
    def __init__(self):
        self.calls = []

    def subplots(self, *a, **k):
        return None, _Axes(self.calls)


@pytest.mark.fast
def test_a_speedup_over_an_invalid_baseline_cell_is_crossed_out():
    from bench_ctl.reporting.plots import speedup

    doc = seed_document()
    next(c for c in doc["cells"] if c["pool"] == "cpu")["metrics"]["latency_ms"]["cv"] = 0.5  # baseline INVALID
    plt = _Plt()
    speedup(cells_frame(doc), "cpu", plt, lambda ax: None, lambda *a: None)
    crosses = [c for c in plt.calls if c[0] == "scatter"]
    assert len(crosses) == 1 and crosses[0][1] == [8] and crosses[0][3] == "INVALID"
    plt = _Plt()
    speedup(cells_frame(seed_document()), "cpu", plt, lambda ax: None, lambda *a: None)
    assert not [c for c in plt.calls if c[0] == "scatter"]


# -- regressions decided by a test on the raw latencies ---------------------------------------------


@pytest.mark.fast
def test_the_bootstrap_interval_covers_the_true_ratio_of_medians():
    """Lognormal latencies whose true median ratio is 1.2: a 95% interval should hold it in about
    95 of 100 seeded trials (at least 90)."""
    import numpy as np

    from bench_ctl.reporting.compare import median_ratio_interval

    rng = np.random.default_rng(7)
    covered = 0
    for trial in range(100):
        old = np.exp(rng.normal(np.log(10.0), 0.1, 40))
        new = np.exp(rng.normal(np.log(12.0), 0.1, 40))
        lo, hi = median_ratio_interval(old, new, rounds=1000, seed=trial)
        covered += lo <= 1.2 <= hi
    assert covered >= 90, covered
    assert median_ratio_interval([1.0, 2.0, 3.0], [1.0, 2.0, 3.0, 4.0, 5.0]) is None  # too few: the noise rule decides


@pytest.mark.fast
def test_compare_judges_by_the_raw_latencies_and_names_its_test():
    import numpy as np

    rng = np.random.default_rng(3)
    old, same, slower = seed_document(), seed_document(), seed_document()
    for doc, factor in ((old, 1.0), (same, 1.0), (slower, 1.3)):
        for rec in doc["cells"]:
            base = rec["metrics"]["latency_ms"]["mean"]
            rec["latencies_ms"] = list(factor * base * np.exp(rng.normal(0, 0.03, 50)))
            rec["metrics"]["latency_ms"]["mean"] = float(np.mean(rec["latencies_ms"]))
    table = compare(old, same)
    assert set(table["verdict"]) == {"within noise"} and set(table["test"]) == {"bootstrap 95% CI of the ratio of medians, and the noise rule"}
    assert regressions(table, 5).empty
    worse = compare(old, slower)
    assert set(worse["verdict"]) == {"REGRESSION"} and len(regressions(worse, 5)) == len(worse)
    assert regressions(worse, 50).empty  # the size matters as well as the significance
    # A record without raw latencies (an older results.json) falls back to the noise rule, and says so.
    assert set(compare(seed_document(), seed_document())["test"]) == {"noise rule (2x combined CV, no raw latencies)"}

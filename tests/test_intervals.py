"""Numbers with error bars: repeats spread through the sweep, a cell's repeats combined into one
mean with its 95% interval, every speedup with its interval, and the verdicts read from them."""

import copy

import numpy as np
import pytest
from seed_records import seed_document

from bench_ctl.reporting.combined import combine_repeats
from bench_ctl.reporting.document import to_markdown
from bench_ctl.reporting.fastest import fastest_ways
from bench_ctl.reporting.frame import cells_frame
from bench_ctl.reporting.intervals import mean_interval, ratio_interval, verdict
from bench_ctl.reporting.report import build
from bench_protocol.errors import SpecError
from bench_protocol.spec import CellSpec, RunSpec, parse_cell_id

pytestmark = pytest.mark.fast


def test_the_interval_of_a_ratio_covers_the_true_ratio_in_at_least_90_of_100_trials():
    rng = np.random.default_rng(7)
    covered = 0
    for _ in range(100):
        base = rng.lognormal(np.log(10), 0.2, 40)  # mean 10 * exp(0.02)
        other = rng.lognormal(np.log(4), 0.3, 25)  # mean 4 * exp(0.045)
        lo, hi = ratio_interval(base, other)
        true = (10 * np.exp(0.02)) / (4 * np.exp(0.045))
        covered += lo <= true <= hi
    assert covered >= 90, covered


def test_the_interval_of_a_mean_covers_the_true_mean_in_at_least_90_of_100_trials():
    rng = np.random.default_rng(11)
    covered = sum(lo <= 5.0 <= hi for lo, hi in (mean_interval(rng.normal(5.0, 1.0, 30)) for _ in range(100)))
    assert covered >= 90, covered


def test_verdicts_read_the_whole_interval():
    assert verdict((1.02, 1.10)) == "faster"
    assert verdict((0.80, 0.97)) == "slower"
    assert verdict((0.98, 1.05)) == "the same within noise"
    assert verdict(None) is None
    assert mean_interval([3.0]) is None and ratio_interval([1.0, 2.0], [5.0]) is None


def test_repeats_are_spread_through_the_sweep_and_named_in_the_cell_id():
    spec = RunSpec(pools=["cpu"], batch_sizes=[1, 8], repeats=3)
    cells = spec.cells()
    assert [(c.repeat, c.batch_size) for c in cells] == [(0, 1), (0, 8), (1, 1), (1, 8), (2, 1), (2, 8)]
    assert cells[3].cell_id.endswith(":b8:s128:fp32:eager:classify:n0:batch:r1")
    assert parse_cell_id(cells[3].cell_id)["repeat"] == 1
    assert spec.cell_of(cells[3].cell_id) == cells[3]
    assert spec.cell_of(cells[3].cell_id.replace(":r1", ":r3")) is None  # beyond the run's repeats
    for bad in (0, 101, True, 1.5):
        with pytest.raises(SpecError, match="repeats must be an integer from 1 to 100"):
            RunSpec(pools=["cpu"], batch_sizes=[1], repeats=bad)
    with pytest.raises(SpecError, match="repeat must be"):
        CellSpec(run_id=spec.run_id, pool="cpu", batch_size=1, seq_len=8, dtype="fp32", repeat=-1)


def _repeated(latencies: dict, invalid: tuple = ()) -> dict:
    """The seed's two cells, each measured once per latency given for its pool."""
    doc = seed_document()
    cells = []
    for rec in doc["cells"]:
        for r, lat in enumerate(latencies[rec["pool"]]):
            c = copy.deepcopy(rec)
            c["repeat"] = r
            c["cell_id"] = c["cell_id"].replace(":r0", f":r{r}")
            c["metrics"]["latency_ms"].update(mean=lat, median=lat, p99=lat)
            c["metrics"]["throughput_mean"] = 8 * 1000 / lat
            c["latencies_ms"] = [lat * f for f in (0.99, 1.0, 1.01)]
            if (rec["pool"], r) in invalid:
                c["metrics"]["latency_ms"]["cv"] = 0.5
            cells.append(c)
    doc["cells"] = cells
    return doc


def test_repeats_combine_into_one_mean_with_an_interval_over_repeats():
    doc = _repeated({"cpu": [440.0, 450.0, 460.0], "cuda": [16.0, 16.2, 16.1]}, invalid=(("cpu", 2),))
    frame = cells_frame(doc)
    assert len(frame) == 6 and sorted(frame["repeat"]) == [0, 0, 1, 1, 2, 2]
    combined, boot = combine_repeats(frame, doc)
    assert len(combined) == 2
    cpu = combined[combined["pool"] == "cpu"].iloc[0]
    assert cpu["repeats"] == 3 and cpu["latency_ms_mean"] == pytest.approx(450.0)
    assert cpu["interval_basis"] == "repeats" and 440 <= cpu["latency_ms_mean_lo"] < 450 < cpu["latency_ms_mean_hi"] <= 460
    assert not cpu["valid"] and cpu["invalid_reason"].startswith("repeat 2: latency CV 50.0%")
    assert set(boot) == set(combined["cell_id"])


def test_a_cell_measured_once_has_its_interval_over_iterations():
    doc = seed_document()
    combined, boot = combine_repeats(cells_frame(doc), doc)
    assert list(combined["repeats"]) == [1, 1] and set(combined["interval_basis"]) == {"iterations"}


def test_the_report_gives_every_speedup_its_interval_and_basis():
    doc = _repeated({"cpu": [440.0, 450.0, 460.0], "cuda": [16.0, 16.2, 16.1]})
    md = to_markdown(build(doc, cells_frame(doc)))
    assert "Speedups with 95% intervals" in md and "bootstrap over each cell's repeats (3 per cell" in md
    line = next(row for row in md.splitlines() if row.startswith("|") and "x (" in row)
    assert "27.9" in line and "faster" in line, line


def test_the_same_within_noise_when_the_interval_straddles_one():
    doc = _repeated({"cpu": [16.0, 17.5, 15.2], "cuda": [16.1, 15.4, 17.0]})
    md = to_markdown(build(doc, cells_frame(doc)))
    assert "the same within noise" in md


def test_the_fastest_way_ties_when_the_throughput_interval_straddles_one():
    """Two batch sizes of one pool whose throughputs overlap: no winner, whatever the margin."""
    doc = _repeated({"cpu": [100.0, 140.0, 120.0], "cuda": [16.0, 16.1, 16.2]})
    extra = [copy.deepcopy(c) for c in doc["cells"] if c["pool"] == "cpu"]
    for c, lat in zip(extra, (115.0, 135.0, 127.0)):  # batch 8 again under another batch size: 8 -> 8 items
        c["batch_size"], c["cell_id"] = 9, c["cell_id"].replace(":b8:", ":b9:")
        c["metrics"]["latency_ms"]["mean"] = lat
        c["metrics"]["throughput_mean"] = 9 * 1000 / lat
        c["latencies_ms"] = [lat] * 3
    doc["cells"] += extra
    frame, boot = combine_repeats(cells_frame(doc), doc)
    row = fastest_ways(frame, None, boot).set_index("pool").loc["cpu"]
    assert row["verdict"] == "ties with the runner-up within noise" and isinstance(row["interval"], str), row.to_dict()


def test_the_stop_rule_with_a_precision_waits_for_the_interval():
    from bench_workers.cell.stop_rule import StopRule

    rule = StopRule(min_iterations=5, min_time=0.0, max_time=10.0, precision_pct=2.0)
    assert not rule.done(4, 1.0, 0.5)  # the minimum first
    assert not rule.done(5, 1.0, None) and not rule.done(5, 1.0, 2.5)  # not yet that tight
    assert rule.done(5, 1.0, 1.9) and rule.done(5, 10.0, 9.0)  # tight enough, or max-time
    assert StopRule(5, 0.0, 10.0).done(5, 1.0, None)  # without a precision: the minimum alone


def test_a_half_width_from_few_iterations_uses_students_t():
    from bench_workers.cell.stats import ci95_pct

    assert ci95_pct([10.0]) is None
    # mean 10, sd 1, n 4: t(3) = 3.182 -> 3.182 * 1 / 2 / 10 = 15.9%
    assert ci95_pct([9.0, 9.0, 11.0, 11.0]) == pytest.approx(100 * 3.182 * (4 / 3) ** 0.5 / 2 / 10, rel=1e-3)


def test_with_a_precision_validity_rests_on_the_interval_not_the_cv():
    doc = seed_document()
    for rec, (cv, half) in zip(doc["cells"], ((0.30, 1.5), (0.02, 4.0))):
        rec["metrics"]["latency_ms"].update(cv=cv, ci95_pct=half)
        rec["rules"] = {"precision": 2.0}
    frame = cells_frame(doc).set_index("pool")
    assert frame.at["cpu", "valid"] == True  # noqa: E712 (a spread of 30% per iteration, the mean known to ±1.5%)
    assert frame.at["cuda", "valid"] == False  # noqa: E712
    assert "95% interval of the mean ±4.0%, wider than the ±2% asked (--precision)" in frame.at["cuda", "invalid_reason"]


def test_a_cell_with_a_precision_times_until_its_mean_is_that_tight(tiny_model):
    from bench_protocol.spec import MeasureRules, ModelRef
    from bench_workers.cell.measure import measure_cell

    # An idle host gets there in about 2 s; a loaded one may run out of max-time instead.
    rules = MeasureRules(warmup=1, min_iterations=3, min_time=0.0, max_time=10.0, precision=3.0)
    cell = CellSpec(run_id="20260101-000000-abcdef", pool="cpu", batch_size=1, seq_len=16, dtype="fp32",
                    model=ModelRef(model=str(tiny_model)), rules=rules)
    rec = measure_cell(cell, "cpu")
    lat = rec["metrics"]["latency_ms"]
    # Either the interval got that tight, or max-time ran out (a very busy host): never a stop short of both.
    assert lat["ci95_pct"] <= 3.0 or sum(rec["latencies_ms"]) / 1e3 >= 10.0 * 0.9, lat
    assert lat["n"] >= 3 and rec["rules"]["precision"] == 3.0


def test_compare_and_the_history_take_a_cell_s_repeats_as_one():
    from bench_ctl.history.regression import against_history
    from bench_ctl.reporting.compare import compare

    old = _repeated({"cpu": [440.0, 450.0, 460.0], "cuda": [16.0, 16.2, 16.1]})
    new = _repeated({"cpu": [540.0, 550.0, 560.0], "cuda": [16.1, 16.0, 16.2]})
    table = compare(old, new).set_index("pool")
    assert len(table) == 2 and "repeat" not in table.columns
    assert table.at["cpu", "latency_ms_mean_old"] == pytest.approx(450.0)
    assert table.at["cpu", "latency_change_pct"] == pytest.approx(100 * (550 / 450 - 1))
    past = cells_frame(old).assign(created=1.0, valid=1.0)
    judged = against_history(cells_frame(new), past, 5).set_index("pool")
    assert len(judged) == 2 and judged.at["cpu", "runs"] == 1
    assert judged.at["cpu", "latency_ms_mean_old"] == pytest.approx(450.0)


def _fleet(slow_host_factor: float = 1.25) -> dict:
    """The seed's CPU cell at batch sizes 1..4, each measured 3 times on each of three hosts of
    pool cpu; host c is slower by ``slow_host_factor`` and runs another CPU governor."""
    doc = seed_document()
    base = next(c for c in doc["cells"] if c["pool"] == "cpu")
    fps = {}
    rng = np.random.default_rng(5)
    cells = []
    for h, host in enumerate(("a", "b", "c")):
        fp_id = f"fp-{host}"
        fps[fp_id] = {**doc["fingerprints"]["cpuhost0000"], "fingerprint_id": fp_id, "hostname": host,
                      "cpu_governor": "powersave" if host == "c" else "performance"}
        for bs in (1, 2, 3, 4):
            for r in range(3):
                c = copy.deepcopy(base)
                lat = 50.0 * bs * (slow_host_factor if host == "c" else 1.0) * rng.lognormal(0, 0.02)
                c.update(batch_size=bs, repeat=3 * h + r, host=host, worker=f"w@{host}", fingerprint_id=fp_id)
                c["cell_id"] = c["cell_id"].replace(":b8:", f":b{bs}:").replace(":r0", f":r{3 * h + r}")
                c["metrics"]["latency_ms"]["mean"] = lat
                c["latencies_ms"] = [lat] * 3
                cells.append(c)
    doc["cells"], doc["fingerprints"] = cells, fps
    return doc


def test_hosts_of_one_pool_split_the_spread_and_name_the_outlier():
    from bench_ctl.reporting.hosts import host_spread

    doc = _fleet()
    pools, hosts = host_spread(cells_frame(doc), doc["fingerprints"])
    row = pools.set_index("pool").loc["cpu"]
    assert row["hosts"] == 3 and row["records"] == 36
    assert row["between_host_pct"] > 8 and row["within_host_pct"] < 4, row.to_dict()
    by_host = hosts.set_index("host")
    assert list(by_host["outlier"]) == ["", "", "OUTLIER"]
    assert by_host.at["c", "median_vs_pool_pct"] == pytest.approx(25, abs=4)
    assert "cpu_governor powersave vs performance" in by_host.at["c", "why"]
    md = to_markdown(build(doc, cells_frame(doc)))
    assert "## Hosts of one pool" in md and "OUTLIER" in md


def test_hosts_alike_are_no_outliers():
    from bench_ctl.reporting.hosts import host_spread

    doc = _fleet(slow_host_factor=1.0)
    pools, hosts = host_spread(cells_frame(doc), doc["fingerprints"])
    assert not (hosts["outlier"] == "OUTLIER").any() and pools["between_host_pct"].iloc[0] < 2
    assert host_spread(cells_frame(seed_document()), {})[0].empty  # one host per pool: no section


def test_the_precision_loop_reads_its_timer_only_between_calls():
    """A CUDA timer synchronises to read: the loop may read it only outside a call's start/stop
    (a fake timer that records the order of what happens, as a GPU's events would)."""
    from bench_workers.cell import measure
    from bench_workers.cell.stop_rule import StopRule

    class FakeTimer:
        def __init__(self):
            self.events, self.open = [], False

        def start(self):
            self.open = True

        def stop(self):
            self.open = False
            self.events.append("call")

        def read_ms(self):
            assert not self.open, "read inside a timed call"
            self.events.append("read")
            return [10.0 + 0.01 * (i % 3) for i in range(self.events.count("call"))]

    timer = FakeTimer()
    n, _ = measure._timed_loop(lambda: None, timer, [], StopRule(3, 0.0, 30.0, precision_pct=1.0), float("inf"), 60)
    assert n >= 3 and "read" in timer.events and timer.events[:3] == ["call"] * 3  # the minimum first, then a read

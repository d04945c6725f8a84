"""Steps in the history: a level that moved and held is found, and named with what changed in
the fingerprint of the first run after it; a flat noisy series has none."""

import copy

import numpy as np
import pytest
from conftest import benchctl, worker_env
from seed_records import seed_document

from bench_ctl.history.database import History
from bench_ctl.history.steps import find_steps


@pytest.mark.fast
def test_one_step_is_found_where_it_is():
    exact = 0
    for seed in range(50):
        rng = np.random.default_rng(seed)
        series = np.concatenate([rng.lognormal(np.log(10), 0.05, 15), rng.lognormal(np.log(12), 0.05, 10)])
        steps = find_steps(series)
        step = [s for s in steps if abs(s.index - 15) <= 3]
        assert len(step) == 1 and 10 <= step[0].change_pct <= 30, (seed, steps)  # the 20% step, in every series
        exact += len(steps) == 1 and steps[0].index == 15
    assert exact >= 40  # and mostly alone, at its very run


@pytest.mark.fast
def test_a_flat_noisy_series_has_no_step():
    false = sum(len(find_steps(np.random.default_rng(seed).lognormal(np.log(10), 0.05, 40))) for seed in range(100))
    assert false <= 2  # a 5% noise with no step: at most two false steps in 100 series
    assert find_steps([10.0, 30.0, 10.0, 10.0, 10.0]) == []  # one slow run is not a step
    assert find_steps([10.0, 12.0]) == []  # too short to tell


def _run(i: int, latency: float, torch: str) -> dict:
    doc = copy.deepcopy(seed_document())
    run_id = f"20250101-0000{i:02d}-5eed{i:02d}"
    old = doc["run"]["run_id"]
    doc["run"].update(run_id=run_id, created=1_800_000_000.0 + 3600 * i)
    fp = f"cpuhost{torch.replace('.', '')}"
    doc["fingerprints"] = {fp: {**doc["fingerprints"]["cpuhost0000"], "fingerprint_id": fp, "torch": torch}}
    doc["cells"] = [c for c in doc["cells"] if c["pool"] == "cpu"]
    for rec in doc["cells"]:
        rec.update(run_id=run_id, cell_id=rec["cell_id"].replace(old, run_id), fingerprint_id=fp)
        rec["metrics"]["latency_ms"]["mean"] = latency
    return doc


def test_history_trend_names_the_step_and_what_changed(tmp_path):
    url = str(tmp_path / "history.db")
    rng = np.random.default_rng(3)
    for i in range(12):  # a torch upgrade at run 7 makes the cell 20% slower
        slower = i >= 7
        History(url).append(_run(i, 450 * (1.2 if slower else 1.0) * rng.lognormal(0, 0.02), "2.6.0" if slower else "2.5.1"))
    res = benchctl("history", "trend", "--model", "distilbert-base-uncased-finetuned-sst-2-english", "--pool", "cpu",
                   "--out", str(tmp_path / "trend"), env=worker_env(BENCHCTL_HISTORY=url))
    assert res.returncode == 0, res.stderr
    steps = [line for line in res.stdout.splitlines() if line.startswith("- b8 ")]
    assert len(steps) == 1, res.stdout
    assert "from run 20250101-000007-5eed07" in steps[0] and "torch 2.5.1 → 2.6.0" in steps[0], steps[0]
    assert "(+1" in steps[0] or "(+2" in steps[0]

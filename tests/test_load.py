"""Load: 6 runs of 20 cells each, submitted at once against two workers."""

import threading

import pytest
from conftest import benchctl, load_json

from bench_protocol import keys

pytestmark = pytest.mark.slow

RUNS, CELLS = 6, 20  # concurrent submits of many cells each: enough to mix, were anything to mix them


def test_runs_submitted_at_once_complete_unmixed(redis_server, workers, tiny_model, tmp_path):
    r = redis_server.client()
    workers(redis_server.url, name="cpu-a@test", client=r)
    workers(redis_server.url, name="cpu-b@test", client=r)
    batches = ",".join(str(b) for b in range(1, CELLS + 1))
    run_ids: dict[int, str] = {}

    def go(i):
        res = benchctl("submit", "--devices", "cpu", "--batch-sizes", batches, "--seq-lens", "8", "--model", str(tiny_model),
                       "--warmup", "0", "--iterations", "1", "--min-time", "0", "--broker", redis_server.url)
        assert res.returncode == 0, res.stderr
        run_ids[i] = res.stdout.strip()

    threads = [threading.Thread(target=go, args=(i,)) for i in range(RUNS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(set(run_ids.values())) == RUNS

    seen_cells = set()
    for run_id in run_ids.values():
        res = benchctl("collect", run_id, "--broker", redis_server.url, "--timeout", "600", "--out", str(tmp_path / run_id),
                       timeout=700)
        assert res.returncode == 0, res.stderr
        doc = load_json(tmp_path / run_id / "results.json")
        cells = doc["cells"]
        assert len(cells) == CELLS and all(c["status"] == "ok" for c in cells)
        assert {c["run_id"] for c in cells} == {run_id}
        assert sorted(c["batch_size"] for c in cells) == list(range(1, CELLS + 1))
        seen_cells |= {c["cell_id"] for c in cells}
    assert len(seen_cells) == RUNS * CELLS
    assert sum(r.hlen(keys.run_cells(rid)) for rid in run_ids.values()) == RUNS * CELLS
    workers_used = {load_json(tmp_path / rid / "results.json")["cells"][0]["worker"] for rid in run_ids.values()}
    assert workers_used <= {"cpu-a@test", "cpu-b@test"}

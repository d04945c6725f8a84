"""Distributed runs on real parts: our own redis-server, bench-worker subprocesses, the CLI."""

import threading

import pandas as pd
from conftest import benchctl, cell_id, load_json, wait_for

from bench_protocol import keys

FAST = ["--warmup", "1", "--iterations", "3", "--min-time", "0"]


def _submit(url, model, *extra, out=None, pools="cpu,cpu-1t", batches="1,4"):
    args = ["submit", "--devices", pools, "--batch-sizes", batches, "--seq-lens", "16", "--model", str(model),
            *FAST, "--broker", url, *extra]
    if out is not None:
        args += ["--wait", "--timeout", "180", "--out", str(out)]
    return benchctl(*args, timeout=240)


def test_two_pools_end_to_end(deployment, workers, tiny_model, tmp_path):
    r = deployment.client()
    workers(deployment.url, device="cpu", queue="cpu", name="cpu-a@test", client=r)
    workers(deployment.url, device="cpu", queue="cpu-1t", name="cpu1t-a@test", extra=["--threads", "1", "--cpus", "0"],
            client=r)

    listed = benchctl("workers", "--broker", deployment.url)
    assert "cpu-a@test" in listed.stdout and "pool=cpu-1t" in listed.stdout and "idle" in listed.stdout

    res = _submit(deployment.url, tiny_model, out=tmp_path / "wait")
    assert res.returncode == 0, res.stderr
    run_id = res.stdout.splitlines()[0].strip()
    for line in ("report: ", "html:   ", "data:   "):  # the outputs, as `benchctl run` names them
        assert line in res.stdout

    col = benchctl("collect", run_id, "--broker", deployment.url, "--out", str(tmp_path / "out"), "--timeout", "60")
    assert col.returncode == 0, col.stderr
    doc = load_json(tmp_path / "out" / "results.json")
    assert len(doc["cells"]) == 4
    by_worker = {"cpu": "cpu-a@test", "cpu-1t": "cpu1t-a@test"}
    for rec in doc["cells"]:
        assert rec["status"] == "ok", rec
        assert rec["worker"] == by_worker[rec["pool"]]  # measured by a worker of its own pool
    pinned = [fp for fp in doc["fingerprints"].values() if fp["cpu_affinity"] == [0]]
    assert len(doc["fingerprints"]) == 2 and len(pinned) == 1 and pinned[0]["torch_threads"] == 1
    assert {c["torch_threads"] for c in doc["cells"] if c["pool"] == "cpu-1t"} == {1}
    md = (tmp_path / "out" / "report.md").read_text()
    assert "### CPU" in md and "### CPU-1T" in md
    assert "speedup_latency_ms_mean" in md and "cpu_1t_latency_ms_mean" in md
    csv = pd.read_csv(tmp_path / "out" / "results.csv")
    assert len(csv) == 4 and not csv.duplicated(["pool", "batch_size", "seq_len", "dtype"]).any()

    st = benchctl("status", run_id, "--broker", deployment.url)
    assert st.returncode == 0 and "ok=4" in st.stdout and "4/4" in st.stdout
    assert run_id in benchctl("runs", "--broker", deployment.url).stdout
    # The same, for scripts.
    import json

    st = json.loads(benchctl("status", run_id, "--broker", deployment.url, "--json").stdout)
    assert st["done"] == 4 and st["counts"] == {"ok": 4} and set(st["pools"]) == {"cpu", "cpu-1t"}
    runs = [json.loads(line) for line in benchctl("runs", "--broker", deployment.url, "--json").stdout.splitlines()]
    assert runs[0]["run_id"] == run_id and runs[0]["counts"] == {"ok": 4}
    live = [json.loads(line) for line in benchctl("workers", "--broker", deployment.url, "--json").stdout.splitlines()]
    assert {w["name"] for w in live} == {"cpu-a@test", "cpu1t-a@test"}
    # Cancelling a finished run changes nothing.
    cancel = benchctl("cancel", run_id, "--broker", deployment.url)
    assert cancel.returncode == 0 and "no cell left to cancel" in cancel.stdout
    assert r.hget(keys.run(run_id), "status") != "cancelled"


def test_submit_to_a_pool_without_a_live_worker_fails_in_one_line(deployment, workers, tiny_model):
    r = deployment.client()
    workers(deployment.url, device="cpu", queue="cpu", client=r)
    res = _submit(deployment.url, tiny_model, pools="cpu,cuda")
    assert res.returncode != 0
    assert res.stderr.strip().splitlines() == [res.stderr.strip()]
    assert "no live worker for pool cuda" in res.stderr
    assert not r.exists(keys.RUNS)  # nothing queued, no run recorded
    queued = _submit(deployment.url, tiny_model, "--allow-missing", pools="cpu,cuda")
    assert queued.returncode == 0 and deployment.queue_depth("cuda") == 2  # waiting for a GPU worker
    assert "pool cuda has no live worker: its cells wait in its queue" in queued.stderr  # said, not silent


def test_two_runs_at_once_do_not_mix(redis_server, workers, tiny_model, tmp_path):
    r = redis_server.client()
    workers(redis_server.url, device="cpu", queue="cpu", client=r)
    workers(redis_server.url, device="cpu", queue="cpu", client=r)
    results = {}

    def go(i):
        results[i] = _submit(redis_server.url, tiny_model, out=tmp_path / f"run{i}", pools="cpu", batches="1,2,3,4")

    threads = [threading.Thread(target=go, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    run_ids = set()
    for i in range(2):
        assert results[i].returncode == 0, results[i].stderr
        doc = load_json(tmp_path / f"run{i}" / "results.json")
        run_id = doc["run"]["run_id"]
        run_ids.add(run_id)
        assert len(doc["cells"]) == 4 and {c["run_id"] for c in doc["cells"]} == {run_id}
    assert len(run_ids) == 2
    # Both workers of the pool took cells.
    both = [load_json(tmp_path / f"run{i}" / "results.json")["cells"] for i in range(2)]
    assert len({c["worker"] for cells in both for c in cells}) == 2


def test_cancel_leaves_queued_cells_unmeasured(deployment, workers, tiny_model, tmp_path):
    r = deployment.client()
    res = _submit(deployment.url, tiny_model, "--allow-missing", pools="cpu")
    run_id = res.stdout.strip()
    cancel = benchctl("cancel", run_id, "--broker", deployment.url)
    assert cancel.returncode == 0 and "cancelled 2" in cancel.stdout
    w = workers(deployment.url, device="cpu", queue="cpu", client=r)
    wait_for(lambda: deployment.queue_depth("cpu") == 0, 60, "the queue to drain")
    wait_for(lambda: w.log.read_text().count("succeeded") >= 2, 60, "both deliveries to be handled")
    assert set(r.hvals(keys.run_cells(run_id))) == {"cancelled"}
    assert not r.exists(keys.cell(cell_id(run_id)))
    col = benchctl("collect", run_id, "--broker", deployment.url, "--timeout", "5", "--out", str(tmp_path / "c"))
    assert col.returncode != 0 and "no cell has finished" in col.stderr


def test_two_pools_on_one_host_overlap_and_are_marked_invalid(redis_server, workers, tiny_model, tmp_path):
    r = redis_server.client()
    workers(redis_server.url, device="cpu", queue="cpu", name="cpu-a@test", client=r)
    workers(redis_server.url, device="cpu", queue="cpu-1t", name="cpu1t-a@test", extra=["--threads", "1"], client=r)
    # One cell per pool, each timed for a second: both workers measure at once on this host.
    res = benchctl("submit", "--devices", "cpu,cpu-1t", "--batch-sizes", "1", "--seq-lens", "16", "--model",
                   str(tiny_model), "--warmup", "0", "--iterations", "3", "--min-time", "1", "--broker", redis_server.url,
                   "--wait", "--timeout", "120", "--out", str(tmp_path / "out"), timeout=180)
    assert res.returncode == 0, res.stderr
    assert "warning: pools cpu, cpu-1t share host" in res.stderr
    doc = load_json(tmp_path / "out" / "results.json")
    frame = pd.read_csv(tmp_path / "out" / "results.csv")
    assert len(doc["cells"]) == 2 and (frame["valid"] == False).all()  # noqa: E712
    assert frame["invalid_reason"].str.contains("while cpu").all()
    md = (tmp_path / "out" / "report.md").read_text()
    assert "All 2 measured cell(s) here are INVALID" in md and "faster than" not in md


def test_a_cuda_1_cell_killed_by_its_hard_limit_is_reported(redis_server, tmp_path):
    """A pool with a ':' in its name (cuda:1) through collect, for a cell that left only Celery's
    FAILURE behind (its hard time limit killed it): the id is parsed back in one place."""
    import json

    from bench_ctl.runs.store import ControllerStore
    from bench_protocol.settings import Settings
    from bench_protocol.spec import RunSpec

    spec = RunSpec(pools=["cuda:1"], batch_sizes=[8])
    cell = spec.cells()[0]
    store = ControllerStore(Settings.resolve(redis_server.url))
    store.create_run(spec.run_id, spec.to_dict(), [cell.cell_id])
    redis_server.client().set(f"celery-task-meta-{cell.cell_id}", json.dumps({
        "status": "FAILURE", "task_id": cell.cell_id,
        "result": {"exc_type": "TimeLimitExceeded", "exc_message": ["TimeLimitExceeded(915.0)"]}}))
    res = benchctl("collect", spec.run_id, "--broker", redis_server.url, "--timeout", "10", "--out", str(tmp_path / "out"))
    assert res.returncode == 6, res.stderr  # reported, but no cell was measured: not a success
    assert "Traceback" not in res.stderr
    rec = load_json(tmp_path / "out" / "results.json")["cells"][0]
    assert rec["pool"] == "cuda:1" and rec["batch_size"] == 8 and rec["variant"] == "eager"
    assert rec["error"]["type"] == "time_limit"
    assert "hard time limit exceeded" in (tmp_path / "out" / "report.md").read_text()


def test_celery_tooling_and_flower_see_the_cells(deployment, workers, tiny_model, tmp_path):
    """`celery -A bench_protocol.celery_app inspect` and Flower, configured from the environment."""
    import json
    import subprocess
    import time
    import urllib.request

    from conftest import BIN, free_port, worker_env

    r = deployment.client()
    workers(deployment.url, device="cpu", queue="cpu", name="cpu-a@test", client=r)
    env = worker_env(BENCHCTL_BROKER_URL=deployment.url, FLOWER_UNAUTHENTICATED_API="true")
    ping = subprocess.run([str(BIN / "celery"), "-A", "bench_protocol.celery_app", "inspect", "ping", "--timeout", "10"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert ping.returncode == 0 and "cpu-a@test" in ping.stdout and "pong" in ping.stdout, ping.stdout + ping.stderr
    port = free_port()
    flower = subprocess.Popen([str(BIN / "celery"), "-A", "bench_protocol.celery_app", "flower", f"--port={port}",
                               "--address=127.0.0.1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        def api(path):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as res:
                    return json.loads(res.read())
            except OSError:
                return None

        wait_for(lambda: api("/api/workers") is not None, 60, "Flower to answer")
        time.sleep(2)  # Flower subscribes to the event stream
        res = _submit(deployment.url, tiny_model, out=tmp_path / "out", pools="cpu")
        assert res.returncode == 0, res.stderr
        run_id = res.stdout.splitlines()[0].strip()

        def cells_seen():
            tasks = api("/api/tasks") or {}
            return {t for t, info in tasks.items() if t.startswith(run_id) and info.get("state") == "SUCCESS"}

        seen = wait_for(lambda: len(cells_seen()) == 2 and cells_seen(), 60, "Flower to list the run's cells")
        assert seen == set(r.hkeys(keys.run_cells(run_id)))
        info = api("/api/tasks")[sorted(seen)[0]]
        assert info["name"] == "benchctl.run_cell" and info["worker"] == "cpu-a@test" and info["runtime"] > 0
    finally:
        flower.terminate()
        flower.wait(10)

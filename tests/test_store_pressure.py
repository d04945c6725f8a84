"""The store under pressure, on real redis-server processes: every number checked, another
server on the store's port, a worker host without torch, corrupt keys, Redis at its memory
limit. Each fault costs one line and a non-zero exit, never a traceback, and loses nothing."""

import json

import pytest
from conftest import BIN, RedisServer, benchctl, read_record, tcp_server, worker_env
from conftest import cell_id as make_cell_id
from seed_records import CPU_FP
from seed_records import cell as seed_cell

from bench_protocol import keys

RUN_ID = "20260101-000000-abcdef"
NOWHERE = "redis://127.0.0.1:1/0"  # checks must refuse before any connection is tried


def one_line(res, code: int, *expected: str) -> str:
    """The command failed (or warned) with exactly one line on stderr (besides progress bars)
    that says ``expected``."""
    out = res.stdout + res.stderr
    assert "Traceback" not in out, out
    assert res.returncode == code, (res.returncode, out)
    lines = [line for line in res.stderr.strip().splitlines() if not line.startswith("[")]  # progress lines aside
    assert len(lines) == 1, res.stderr
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


def worker_cmd(*args: str, env: dict | None = None, timeout: float = 60):
    import subprocess

    return subprocess.run([str(BIN / "bench-worker"), *args], capture_output=True, text=True, timeout=timeout,
                          env=env or worker_env())


def submit(url: str, model, batches: str = "1,2", seqs: str = "16", *extra: str) -> str:
    res = benchctl("submit", "--devices", "cpu", "--batch-sizes", batches, "--seq-lens", seqs, "--model", str(model),
                   "--allow-missing", "--broker", url, *extra)
    assert res.returncode == 0, res.stderr
    return res.stdout.strip().splitlines()[0]


# -- 7: every number a user or the environment gives is checked -----------------------------

NUMBERS = [
    (["collect", RUN_ID, "--timeout", "nan", "--broker", NOWHERE], {}, "--timeout must be a finite number"),
    (["collect", RUN_ID, "--timeout", "inf", "--broker", NOWHERE], {}, "--timeout must be a finite number"),
    (["submit", "--wait", "--timeout", "1e99", "--broker", NOWHERE], {}, "--timeout must be at least 0 and at most"),
    (["runs", "--prune", "--keep-days", "nan", "--broker", NOWHERE], {}, "--keep-days must be a finite number"),
    (["run", "--max-time", "inf"], {}, "max-time must be a finite number"),
    (["run", "--time-limit", "nan"], {}, "time-limit must be a non-negative number of seconds"),
    (["report", "results.json", "--latency-budget-ms", "inf"], {}, "--latency-budget-ms must be a finite number"),
    (["workers", "--broker", NOWHERE], {"BENCHCTL_VISIBILITY_TIMEOUT": "abc"},
     "$BENCHCTL_VISIBILITY_TIMEOUT must be a number, got 'abc'"),
    (["status", RUN_ID, "--broker", NOWHERE], {"BENCHCTL_VISIBILITY_TIMEOUT": "nan"},
     "$BENCHCTL_VISIBILITY_TIMEOUT must be a finite number"),
    (["submit", "--broker", NOWHERE], {"BENCHCTL_CONSUMER_TIMEOUT": "5"}, "$BENCHCTL_CONSUMER_TIMEOUT must be above 30"),
]


@pytest.mark.parametrize("args,env,expected", NUMBERS, ids=[" ".join(c[0][:3]) + str(c[1]) for c in NUMBERS])
def test_every_number_is_checked_on_the_controller(args, env, expected, tmp_path):
    res = benchctl(*args, env=worker_env(**env), cwd=tmp_path, timeout=60)
    one_line(res, 2, expected)
    assert list(tmp_path.iterdir()) == []  # nothing written


@pytest.mark.parametrize("args,env,expected", [
    (["--threads", "0"], {}, "argument --threads: threads must be at least 1 and at most 4096, got 0"),
    (["--threads", "nan"], {}, "argument --threads: threads must be an integer, got 'nan'"),
    ([], {"BENCHCTL_VISIBILITY_TIMEOUT": "nan"}, "$BENCHCTL_VISIBILITY_TIMEOUT must be a finite number"),
    ([], {"BENCHCTL_VISIBILITY_TIMEOUT": "inf"}, "$BENCHCTL_VISIBILITY_TIMEOUT must be a finite number"),
], ids=["threads 0", "threads nan", "visibility nan", "visibility inf"])
def test_every_number_is_checked_on_the_worker(args, env, expected):
    res = worker_cmd("--device", "cpu", "--broker", NOWHERE, *args, env=worker_env(**env))
    line = one_line(res, 2, expected)
    assert line.startswith("bench-worker: error: ")


# -- 11: something else answers ---------------------------------------------------------------

@pytest.fixture
def impostor():
    """A tiny HTTP server on a free port: it answers every request with 400 Bad Request."""
    def serve(conn):
        with conn:
            try:
                while conn.recv(65536):
                    conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n")
            except OSError:
                pass

    with tcp_server(serve) as url:
        yield url


@pytest.mark.parametrize("args", [["workers"], ["runs"], ["status", RUN_ID], ["collect", RUN_ID, "--timeout", "1"],
                                  ["submit", "--devices", "cpu"], ["cancel", RUN_ID], ["retry", RUN_ID]],
                         ids=lambda a: a[0])
def test_a_server_that_is_not_redis_costs_one_line(args, impostor, tmp_path):
    res = benchctl(*args, "--broker", impostor, cwd=tmp_path, timeout=60)
    one_line(res, 3, "something other than Redis answers at redis://127.0.0.1:", "HTTP/1.1 400")


def test_a_worker_facing_a_server_that_is_not_redis_refuses_in_one_line(impostor):
    res = worker_cmd("--device", "cpu", "--broker", impostor)
    line = one_line(res, 3, "something other than Redis answers at")
    assert line.startswith("bench-worker: error: ")


def test_a_worker_without_torch_refuses_to_start(tmp_path):
    shim = tmp_path / "no-torch"
    shim.mkdir()
    (shim / "torch.py").write_text("raise ImportError(\"No module named 'torch'\")\n")
    res = worker_cmd("--device", "cpu", "--broker", NOWHERE, env=worker_env(PYTHONPATH=str(shim)))
    one_line(res, 2, "torch cannot be imported here", "pip install 'benchctl[worker]'")


# -- 12: corrupt keys ----------------------------------------------------------------------

def _record(run_id: str, batch: int) -> dict:
    rec = seed_cell("cpu", 10.0 * batch, 100.0 / batch, 100.0)
    return dict(rec, run_id=run_id, cell_id=make_cell_id(run_id, batch=batch), batch_size=batch, seq_len=16)


def test_a_corrupt_record_or_spec_is_named_and_the_rest_collected(redis_server, tiny_model, tmp_path):
    from bench_ctl.runs.store import ControllerStore
    from bench_protocol.settings import Settings

    url, r = redis_server.url, redis_server.client()
    run_id = submit(url, tiny_model)
    good, bad = make_cell_id(run_id, batch=1), make_cell_id(run_id, batch=2)
    store = ControllerStore(Settings.resolve(url))
    store.put_record(_record(run_id, 1))
    store.put_record(_record(run_id, 2))
    r.set(keys.fingerprint(CPU_FP["fingerprint_id"]), json.dumps(CPU_FP))
    r.set(keys.cell(bad), b"bcr1\xff\xfe\x00 not a record")  # garbage bytes under the record's key

    res = benchctl("collect", run_id, "--broker", url, "--out", str(tmp_path / "out"), "--timeout", "5", "--no-history")
    one_line(res, 2, f"run {run_id}: the record of 1 cell(s) in Redis cannot be read or is gone: {bad}", "--partial")
    assert not (tmp_path / "out").exists()

    res = benchctl("collect", run_id, "--broker", url, "--out", str(tmp_path / "out"), "--timeout", "5", "--partial",
                   "--no-history")
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
    assert f"missing: {bad} (corrupt record" in res.stderr  # named; the progress line is the other
    written = (tmp_path / "out" / "results.json").read_text()
    assert good in written and bad not in written.split('"missing"')[0] and (tmp_path / "out" / "report.md").exists()

    res = benchctl("status", run_id, "--broker", url)
    assert res.returncode == 0 and "Traceback" not in res.stderr and "ok=2" in res.stdout, res.stdout + res.stderr

    r.hset(keys.run(run_id), "spec", b"\xff\xfe{garbage")  # and now the run's spec
    res = benchctl("status", run_id, "--broker", url)
    one_line(res, 0, f"run {run_id}: its spec in Redis", "is unreadable")
    assert "ok=2" in res.stdout and "pools cpu" in res.stdout
    res = benchctl("collect", run_id, "--broker", url, "--out", str(tmp_path / "out2"), "--timeout", "5", "--partial")
    one_line(res, 2, f"run {run_id}: its spec in Redis", "the run cannot be reported")
    assert read_record(r, good)["cell_id"] == good  # nothing was deleted


# -- 2 (controller): Redis at its memory limit -----------------------------------------------

def test_redis_at_its_memory_limit_strands_nothing(redis_server, tiny_model, tmp_path):
    url, r = redis_server.url, redis_server.client()
    run_id = submit(url, tiny_model)
    lapsed = make_cell_id(run_id, batch=1)
    r.delete("cpu")  # the queue: count what is sent from here on
    # A dead worker's cell: running, claimed, its claim gone.
    r.hset(keys.run_cells(run_id), lapsed, "running")
    r.sadd(keys.CLAIMED, lapsed)
    r.config_set("maxmemory", "1")  # noeviction (the default): every write is refused

    res = benchctl("status", run_id, "--broker", url)
    one_line(res, 0, "not queued again yet", "at its memory limit")
    assert "running=1" in res.stdout
    assert r.hget(keys.run_cells(run_id), lapsed) == "running" and r.sismember(keys.CLAIMED, lapsed)
    assert r.llen("cpu") == 0  # not set back to queued: its task could not be sent

    for args in (["submit", "--devices", "cpu", "--seq-lens", "16", "--model", str(tiny_model), "--allow-missing"],
                 ["cancel", run_id],
                 ["retry", run_id]):
        one_line(benchctl(*args, "--broker", url), 3, f"Redis at {url} refused a write: it is at its memory limit")
    assert r.zcard(keys.RUNS) == 1  # the refused submit recorded nothing

    r.config_set("maxmemory", "0")
    res = benchctl("status", run_id, "--broker", url)
    assert res.returncode == 0 and f"queued again: {lapsed}" in res.stderr, res.stderr
    assert r.hget(keys.run_cells(run_id), lapsed) == "queued" and r.llen("cpu") == 1


def test_a_worker_keeps_its_measurement_while_redis_is_full(redis_server, workers, tiny_model, tmp_path):
    """The save is refused at the memory limit: the record goes to the worker's spool at once,
    the save is tried again with backoff, and lands once Redis has room; nothing is measured twice."""
    from conftest import wait_for

    url, r = redis_server.url, redis_server.client()
    cache = tmp_path / "worker-cache"
    w = workers(url, client=r, env=worker_env(BENCHCTL_CACHE_DIR=str(cache)))
    spool = cache / "spool" / w.name  # the worker's own folder
    run_id = submit(url, tiny_model, "1", "16", "--min-time", "3", "--iterations", "1", "--time-limit", "120")
    cid = make_cell_id(run_id, batch=1)
    wait_for(lambda: r.hget(keys.run_cells(run_id), cid) == "running", 90, "the cell to start")
    r.config_set("maxmemory", "1")  # noeviction: every write is refused from here on
    try:
        try:
            wait_for(lambda: list(spool.glob("*.json")), 90, "the record to be spooled")
        except AssertionError:
            print("\n".join(ln for ln in w.log.read_text().splitlines() if "connect" not in ln and not ln.startswith((" ", "Trace", "billiard"))))
            raise
        assert read_record(r, cid) is None and "at its memory limit" in w.log.read_text()
    finally:
        r.config_set("maxmemory", "0")
    rec = wait_for(lambda: read_record(r, cid), 30, "the spooled record to be saved")
    assert rec["status"] == "ok" and r.hget(keys.run_cells(run_id), cid) == "ok"
    wait_for(lambda: not list(spool.glob("*.json")), 10, "the spool to be emptied")
    assert w.log.read_text().count(f"cell {cid}: ok") == 1


def test_submit_stopped_mid_send_prints_the_run_and_how_far_it_got(tmp_path, tiny_model):
    from bench_protocol.recovery import PUBLISH_BATCH

    server = RedisServer(tmp_path / "redis").start()
    try:
        r = server.client()
        base = int(r.info("memory")["used_memory"])
        r.config_set("maxmemory", str(base + 6 * 1024 * 1024))  # room for the run's keys and a batch or two, not 5,000 messages
        res = benchctl("submit", "--devices", "cpu", "--batch-sizes", ",".join(map(str, range(1, 51))),
                       "--seq-lens", ",".join(map(str, range(1, 51))), "--dtypes", "fp32,bf16", "--model", str(tiny_model), "--allow-missing",
                       "--broker", server.url, timeout=120)
        line = one_line(res, 3, "is recorded, but sending stopped after", "of 5000 cells' tasks", "memory limit",
                        "benchctl retry")
        run_id = line.split("run ", 1)[1].split()[0]
        sent = int(line.split("sending stopped after ", 1)[1].split()[0])
        # Counted by whole batches: the batch that failed may have left part of itself queued.
        assert 0 < sent < 5000 and sent <= r.llen("cpu") <= sent + PUBLISH_BATCH, (sent, r.llen("cpu"))
        assert res.stdout == run_id + "\n"  # named before the first task went out
        res = benchctl("status", run_id, "--broker", server.url)
        assert f"incomplete: sending stopped after {sent} of 5000" in res.stdout, res.stdout

        # Once the store has room, retry sends exactly the tasks never sent: none twice.
        r.config_set("maxmemory", "0")
        res = benchctl("retry", run_id, "--broker", server.url, timeout=120)
        assert res.returncode == 0 and f"{5000 - sent} cell(s) queued again" in res.stdout, res.stdout + res.stderr
        queued = [json.loads(m)["headers"]["id"] for m in r.lrange("cpu", 0, -1)]
        assert len(set(queued)) == 5000 and len(queued) - 5000 <= PUBLISH_BATCH  # a second message is dropped unmeasured
        assert "incomplete" not in benchctl("status", run_id, "--broker", server.url).stdout
        assert r.hget(keys.run(run_id), "status") == "queued"
    finally:
        server.stop()


def test_a_killed_submit_leaves_its_run_marked_and_retry_completes_it(redis_server, tiny_model):
    """SIGKILL part way (no handler runs): the run id is out, the count of sent tasks stops
    moving, `status` calls the run incomplete once that count is stale, and `retry` sends the
    rest; every cell has its task, none more than the batch that may have gone out unrecorded."""
    import signal
    import subprocess
    import time

    from conftest import wait_for

    from bench_protocol.recovery import PUBLISH_BATCH

    url, r = redis_server.url, redis_server.client()
    proc = subprocess.Popen([str(BIN / "benchctl"), "submit", "--devices", "cpu", "--batch-sizes",
                             ",".join(map(str, range(1, 51))), "--seq-lens", ",".join(map(str, range(1, 51))),
                             "--dtypes", "fp32,bf16", "--model", str(tiny_model), "--allow-missing", "--broker", url],
                            stdout=subprocess.PIPE, text=True, env=worker_env())
    try:
        run_id = proc.stdout.readline().strip()  # before the first task
        r.execute_command("CLIENT", "PAUSE", "60000", "WRITE")  # sending stalls where it got to
        time.sleep(1)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        r.execute_command("CLIENT", "UNPAUSE")
        proc.kill()
    assert r.hget(keys.run(run_id), "status") == "sending"
    sent = int(r.hget(keys.run(run_id), "sent"))
    assert sent < 5000 and r.llen("cpu") - sent in range(0, PUBLISH_BATCH + 1), (sent, r.llen("cpu"))
    assert "sending:" in benchctl("status", run_id, "--broker", url).stdout  # a submit may be at it still
    r.hset(keys.run(run_id), "sent_at", time.time() - 120)  # the clock moves on: no submit is sending it
    res = benchctl("status", run_id, "--broker", url)
    assert f"incomplete: sending stopped after {sent} of 5000" in res.stdout, res.stdout
    res = benchctl("retry", run_id, "--broker", url, timeout=120)
    assert res.returncode == 0 and f"{5000 - sent} cell(s) queued again" in res.stdout, res.stdout + res.stderr
    queued = [json.loads(m)["headers"]["id"] for m in r.lrange("cpu", 0, -1)]
    assert len(set(queued)) == 5000 and len(queued) - 5000 <= PUBLISH_BATCH
    wait_for(lambda: r.hget(keys.run(run_id), "status") == "queued", 5, "the run to be marked sent")


def test_an_interrupted_submit_says_how_far_it_got_and_marks_its_run_at_once(redis_server, tiny_model):
    """Ctrl-C part way: one line naming the run, how many tasks went and `benchctl retry`; exit
    130; the run is incomplete at once (no wait for a stale count), and retry sends the rest."""
    import signal
    import subprocess
    import time

    from bench_protocol.recovery import PUBLISH_BATCH

    url, r = redis_server.url, redis_server.client()
    proc = subprocess.Popen([str(BIN / "benchctl"), "submit", "--devices", "cpu", "--batch-sizes",
                             ",".join(map(str, range(1, 51))), "--seq-lens", ",".join(map(str, range(1, 51))),
                             "--dtypes", "fp32,bf16", "--model", str(tiny_model), "--allow-missing", "--broker", url],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=worker_env())
    try:
        run_id = proc.stdout.readline().strip()  # before the first task
        r.execute_command("CLIENT", "PAUSE", "60000", "WRITE")  # sending stalls where it got to
        time.sleep(1)
        proc.send_signal(signal.SIGINT)
        time.sleep(1)
    finally:
        r.execute_command("CLIENT", "UNPAUSE")
    out, err = proc.communicate(timeout=60)
    last = err.strip().splitlines()[-1]
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert last.startswith(f"benchctl: error: interrupted: run {run_id} is recorded, but only ") \
        and f"benchctl retry {run_id}" in last, last
    sent = int(last.split("but only ", 1)[1].split()[0])
    assert 0 <= sent < 5000
    assert r.hget(keys.run(run_id), "status") == "incomplete" and int(r.hget(keys.run(run_id), "sent")) == sent
    assert f"incomplete: sending stopped after {sent} of 5000" in benchctl("status", run_id, "--broker", url).stdout
    res = benchctl("retry", run_id, "--broker", url, timeout=120)
    assert res.returncode == 0 and f"{5000 - sent} cell(s) queued again" in res.stdout, res.stdout + res.stderr
    queued = [json.loads(m)["headers"]["id"] for m in r.lrange("cpu", 0, -1)]
    assert len(set(queued)) == 5000 and len(queued) - 5000 <= PUBLISH_BATCH

# -- 1: Redis losing benchctl's keys is said, not hidden ---------------------------------------

def test_a_redis_that_lost_benchctls_keys_is_named_and_eviction_warned(redis_server, workers, tiny_model):
    from conftest import wait_for

    url, r = redis_server.url, redis_server.client()
    r.config_set("maxmemory-policy", "allkeys-lru")
    w = workers(url, client=r)
    assert "maxmemory-policy allkeys-lru" in w.log.read_text() and "persists nothing" in w.log.read_text()
    res = benchctl("submit", "--devices", "cpu-elsewhere", "--batch-sizes", "1", "--seq-lens", "16", "--model",
                   str(tiny_model), "--allow-missing", "--broker", url)
    assert "pool cpu-elsewhere has no live worker" in res.stderr.splitlines()[-1]  # --allow-missing says so
    res.stderr = "\n".join(res.stderr.splitlines()[:-1])
    one_line(res, 0, "benchctl: warning: Redis at", "has maxmemory-policy allkeys-lru", "noeviction")
    run_id = res.stdout.strip()

    redis_server.stop()  # a restart without persistence: every key is gone
    redis_server.start()
    wait_for(lambda: "lost benchctl's keys" in w.log.read_text(), 20, "the worker to say the store lost its keys")
    res = benchctl("status", run_id, "--broker", url)
    one_line(res, 2, f"no run {run_id} in Redis at", "Redis lost benchctl's keys before", "when a worker found them gone")


# -- 10: retention does not pull a run from under its workers ----------------------------------

def test_prune_keeps_a_run_still_measuring_and_a_forced_prune_leaves_no_key_behind(redis_server, workers, tiny_model):
    import time

    from conftest import wait_for

    url, r = redis_server.url, redis_server.client()
    w = workers(url, client=r)
    run_id = submit(url, tiny_model, "1,2", "16", "--min-time", "3", "--iterations", "1", "--time-limit", "120")
    running = make_cell_id(run_id, batch=1)
    wait_for(lambda: r.hget(keys.run_cells(run_id), running) == "running", 90, "the first cell to start")
    time.sleep(0.2)
    res = benchctl("runs", "--prune", "--keep-days", "0.000001", "--broker", url)
    assert res.returncode == 0 and f"kept: {run_id} (unfinished" in res.stdout and "pruned 0 run(s)" in res.stdout
    assert r.exists(keys.run(run_id))
    res = benchctl("runs", "--prune", "--keep-days", "0.000001", "--force", "--broker", url)
    assert res.returncode == 0 and f"deleted: {run_id}" in res.stdout
    # The measuring worker's save is refused without writing: no key of the run comes back.
    wait_for(lambda: f"cell {running}: save refused, its run is no longer in the store" in w.log.read_text(), 90,
             "the worker's save to be refused")
    time.sleep(1)  # the second cell's task, if taken, is refused at its claim
    left = [k for k in r.scan_iter(match="*") if run_id in k and r.ttl(k) == -1]
    assert left == [] and not r.exists(keys.cell(running))

"""What a worker trusts and what it refuses: JSON only, validated specs, no remote code, no
paths outside its models directory; passwords never shown; TLS and ACL users work."""

import json
import os
import shutil
import subprocess
import time

import pytest
from conftest import RedisServer, benchctl, cell_id, free_port, load_json, read_record, wait_for, worker_env

from bench_protocol import keys
from bench_protocol.errors import SpecError
from bench_protocol.spec import CellSpec, RunSpec

FAST = ["--warmup", "0", "--iterations", "2", "--min-time", "0", "--seq-lens", "16"]


class Boom:
    """Unpickling this runs a shell command: what a worker must never do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickled_message_is_refused_not_executed(redis_server, workers, tiny_model, tmp_path):
    from kombu import Connection

    r = redis_server.client()
    w = workers(redis_server.url, client=r)
    marker = tmp_path / "pwned"
    with Connection(redis_server.url) as conn:
        conn.Producer().publish([[Boom(marker)], {}, {}], exchange="", routing_key="cpu", serializer="pickle",
                                headers={"task": keys.TASK_RUN_CELL, "id": "pickled-1", "lang": "py"})
    wait_for(lambda: "untrusted content" in w.log.read_text() or "ContentDisallowed" in w.log.read_text(), 30,
             "the worker to refuse the pickle")
    time.sleep(1)
    assert not marker.exists()
    assert r.llen("cpu") == 0  # dropped, not left to poison the queue
    # The worker lives on and measures the next honest cell.
    res = benchctl("submit", "--devices", "cpu", "--batch-sizes", "1", "--model", str(tiny_model), *FAST, "--broker",
                   redis_server.url, "--wait", "--timeout", "60", "--out", str(tmp_path / "out"))
    assert res.returncode == 0, res.stderr


def test_spec_refuses_unknown_fields_like_trust_remote_code():
    good = {"run_id": "20260101-000000-abcdef", "pool": "cpu", "batch_size": 1, "seq_len": 8, "dtype": "fp32"}
    CellSpec.from_dict(good)
    with pytest.raises(SpecError, match="unknown fields: trust_remote_code"):
        CellSpec.from_dict(dict(good, trust_remote_code=True))
    with pytest.raises(SpecError):
        CellSpec.from_dict(dict(good, model={"model": "x", "trust_remote_code": True}))


def test_worker_refuses_crafted_tasks_and_foreign_paths(redis_server, workers, tiny_model, tmp_path):
    from bench_protocol.celery_app import make_app
    from bench_protocol.settings import Settings

    r = redis_server.client()
    workers(redis_server.url, client=r)
    app = make_app(Settings.resolve(redis_server.url))
    crafted = {"run_id": "20260101-000000-abcdef", "pool": "cpu", "batch_size": 1, "seq_len": 8, "dtype": "fp32",
               "model": {"model": str(tiny_model), "trust_remote_code": True}}
    res = app.send_task(keys.TASK_RUN_CELL, args=[crafted], task_id=cell_id("20260101-000000-abcdef", seq=8), queue="cpu")
    assert res.get(timeout=30)["status"] == "refused"
    not_a_run = dict(crafted, batch_size=2, model={"model": str(tiny_model)})
    res = app.send_task(keys.TASK_RUN_CELL, args=[not_a_run], task_id=cell_id("20260101-000000-abcdef", batch=2, seq=8), queue="cpu")
    assert res.get(timeout=30) == {"status": "refused", "reason": "cell not part of a submitted run"}
    app.close()
    assert not r.keys(keys.cell("*"))

    # A model path outside the worker's --models-dir, even through a symlink, is not loaded.
    outside = tmp_path / "elsewhere"
    shutil.copytree(tiny_model, outside)
    res = benchctl("submit", "--devices", "cpu", "--batch-sizes", "1", "--model", str(outside), *FAST, "--broker",
                   redis_server.url, "--wait", "--timeout", "60", "--out", str(tmp_path / "out"))
    assert res.returncode == 6, res.stderr  # its only cell failed: a run of which no cell was measured
    rec = load_json(tmp_path / "out" / "results.json")["cells"][0]
    assert rec["error"]["type"] == "invalid_spec" and "outside this worker's allowed models" in rec["error"]["message"]


def test_a_crafted_task_for_a_real_cell_is_never_measured_as_crafted(redis_server, workers, tiny_model, models_dir,
                                                                      tmp_path):
    """A task sent by hand with a real queued cell's id but another allowed model, random
    weights or one iteration: the worker checks it against the run's stored spec and saves a
    spec_mismatch error record (the report shows it); the cell sent as submitted is measured."""
    from bench_protocol.celery_app import make_app
    from bench_protocol.settings import Settings
    from bench_protocol.spec import RunSpec

    url, r = redis_server.url, redis_server.client()
    res = benchctl("submit", "--devices", "cpu", "--batch-sizes", "1,2,3,4", "--model", str(tiny_model), *FAST,
                   "--broker", url, "--allow-missing")
    assert res.returncode == 0, res.stderr
    run_id = res.stdout.strip().splitlines()[0]
    r.delete("cpu")  # the run's own messages are gone: only the tasks below reach the worker
    run = RunSpec.from_dict(json.loads(r.hget(keys.run(run_id), "spec")))
    honest, *victims = run.cells()
    other_model, random_weights, one_iteration = (c.to_dict() for c in victims)
    other_model["model"]["model"] = str(models_dir / "tiny-with-tokenizer")
    random_weights["model"]["weights"] = "random"
    one_iteration["rules"]["min_iterations"] = 1
    app = make_app(Settings.resolve(url))
    for payload in (honest.to_dict(), other_model, random_weights, one_iteration):
        cid = CellSpec.from_dict(payload).cell_id
        app.send_task(keys.TASK_RUN_CELL, args=[payload], task_id=cid, queue="cpu", routing_key="cpu")
    app.close()
    w = workers(url, client=r)

    res = benchctl("collect", run_id, "--broker", url, "--out", str(tmp_path / "out"), "--timeout", "90", "--no-history")
    assert res.returncode == 0, res.stderr
    cells = {c["batch_size"]: c for c in load_json(tmp_path / "out" / "results.json")["cells"]}
    assert cells[1]["status"] == "ok" and cells[1]["metrics"]  # the honest one, measured
    for batch, field in ((2, "model.model"), (3, "model.weights"), (4, "rules.min_iterations")):
        rec = cells[batch]
        assert rec["status"] == "error" and rec["error"]["type"] == "spec_mismatch", rec["error"]
        assert f"in {field};" in rec["error"]["message"] and run_id in rec["error"]["message"]
        assert not rec["metrics"] and not rec["latencies_ms"]  # never measured
    log = w.log.read_text()
    assert log.count("differs from run") == 3
    assert "spec_mismatch" in (tmp_path / "out" / "report.md").read_text()


@pytest.mark.fast
def test_a_run_spec_rebuilds_each_of_its_cells_by_id_and_names_the_differences():
    run = RunSpec(pools=["cpu", "cuda:1"], batch_sizes=[1, 8], seq_lens=[16, 32], dtypes=["fp32", "bf16"],
                  variants=["eager", "compile"], task="generate", new_tokens=4, run_id="20260101-000000-abcdef")
    cells = run.cells()
    assert all(run.cell_of(c.cell_id) == c for c in cells)
    other = RunSpec(pools=["cpu"], batch_sizes=[1], run_id="20260101-000000-abcdef")
    for foreign in (other.cells()[0].cell_id, cells[0].cell_id.replace(":b1:", ":b2:"),
                    cells[0].cell_id.replace(":b1:", ":b01:"), cells[0].cell_id.replace("20260101", "20260102"),
                    "not a cell id", cells[0].cell_id.replace(":b1:", ":bx:")):
        assert run.cell_of(foreign) is None, foreign
    crafted = CellSpec.from_dict(dict(cells[0].to_dict(), model={"model": "gpt2", "weights": "random"},
                                      rules=dict(cells[0].rules.__dict__, min_iterations=1)))
    assert crafted.differences(cells[0]) == ["model.model", "model.weights", "rules.min_iterations"]
    assert cells[0].differences(CellSpec.from_dict(cells[0].to_dict())) == []


def _secret_free(paths, secret):
    for p in paths:
        assert secret not in p.read_text(errors="replace"), f"{secret!r} leaked into {p}"


@pytest.mark.parametrize("mode", ["requirepass", "acl-user"])
def test_password_protected_redis_works_and_the_password_never_shows(mode, tmp_path, workers, tiny_model):
    secret = "Sup3r-Secret-pw"
    acl = ["--user", "default", "off", "--user", "bench", "on", f">{secret}", "~*", "&*", "+@all"]
    server = RedisServer(tmp_path / "redis", password=secret, **({} if mode == "requirepass" else
                                                                 {"username": "bench", "extra": acl})).start()
    url = server.url
    try:
        r = server.client()
        workers(url, client=r)
        res = benchctl("submit", "--devices", "cpu", "--batch-sizes", "1,2", "--model", str(tiny_model), *FAST,
                       "--broker", url, "--wait", "--timeout", "90", "--out", str(tmp_path / "out"))
        assert res.returncode == 0, res.stderr
        assert secret not in res.stdout + res.stderr
        out = tmp_path / "out"
        _secret_free([out / f for f in ("results.json", "report.md", "report.html", "report.json", "results.csv")], secret)
        _secret_free([w.log for w in workers.all], secret)
        for key in r.scan_iter(keys.PREFIX + "*"):
            if r.type(key) == "string":  # records are stored compressed: read them as records
                raw = r.get(key) if not key.startswith(keys.cell("")) or key.endswith(":claim") else \
                    json.dumps(read_record(r, key[len(keys.cell("")):]))
                assert secret not in raw
        wrong = url.replace(secret, "not-it")
        bad = benchctl("workers", "--broker", wrong)
        assert bad.returncode == 3 and "refused the credentials" in bad.stderr and "not-it" not in bad.stderr
    finally:
        for w in workers.all:
            w.stop()
        server.stop()


def _make_certs(d):
    def ossl(*a):
        subprocess.run(["openssl", *a], check=True, capture_output=True)

    ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", d / "ca.key", "-out", d / "ca.crt", "-days", "2",
         "-subj", "/CN=benchctl-test-ca")
    for name in ("server", "client"):
        ossl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", d / f"{name}.key", "-out", d / f"{name}.csr", "-subj",
             f"/CN={name}")
        (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
        ossl("x509", "-req", "-in", d / f"{name}.csr", "-CA", d / "ca.crt", "-CAkey", d / "ca.key", "-CAcreateserial",
             "-out", d / f"{name}.crt", "-days", "2", "-extfile", d / "ext.cnf")


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_tls_with_client_certificates(tmp_path, workers, tiny_model):
    certs = tmp_path / "certs"
    certs.mkdir()
    _make_certs(certs)
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
                             "--tls-cert-file", certs / "server.crt", "--tls-key-file", certs / "server.key",
                             "--tls-ca-cert-file", certs / "ca.crt", "--tls-auth-clients", "yes", "--save", "",
                             "--dir", tmp_path], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(1)
        if proc.poll() is not None:
            pytest.skip(f"this redis-server has no TLS support: {proc.stdout.read().strip()[:200]}")
        env = worker_env(BENCHCTL_REDIS_CA=certs / "ca.crt", BENCHCTL_REDIS_CERT=certs / "client.crt",
                         BENCHCTL_REDIS_KEY=certs / "client.key")
        url = f"rediss://127.0.0.1:{port}/0"
        from bench_protocol.broker import BrokerConfig

        os.environ.update({k: str(v) for k, v in env.items() if k.startswith("BENCHCTL_REDIS")})
        try:
            client = BrokerConfig.resolve(url).redis()
            wait_for(lambda: client.ping(), 20, "TLS redis")
        finally:
            for k in ("BENCHCTL_REDIS_CA", "BENCHCTL_REDIS_CERT", "BENCHCTL_REDIS_KEY"):
                os.environ.pop(k, None)
        workers(url, env=env, client=client)
        res = benchctl("submit", "--devices", "cpu", "--batch-sizes", "1", "--model", str(tiny_model), *FAST,
                       "--broker", url, "--wait", "--timeout", "60", "--out", str(tmp_path / "out"), env=env)
        assert res.returncode == 0, res.stderr
        assert load_json(tmp_path / "out" / "results.json")["cells"][0]["status"] == "ok"
        # Without the client certificate the server refuses us, in one line.
        plain = benchctl("workers", "--broker", url)
        assert plain.returncode == 3 and "cannot reach Redis" in plain.stderr
    finally:
        for w in workers.all:
            w.stop()
        proc.terminate()
        proc.wait(10)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_rabbitmq_over_tls_with_client_certificates(tmp_path, redis_server, workers, tiny_model):
    """amqps:// with a CA and a client certificate, on a RabbitMQ node of the test's own that
    accepts TLS only and requires a client certificate; the records in Redis."""
    from conftest import RabbitNode

    certs = tmp_path / "certs"
    certs.mkdir()
    _make_certs(certs)
    node = RabbitNode(tls={"ca": certs / "ca.crt", "cert": certs / "server.crt", "key": certs / "server.key"}).start()
    try:
        url = f"amqps://guest:guest@127.0.0.1:{node.port}/"
        env = worker_env(BENCHCTL_AMQP_CA=certs / "ca.crt", BENCHCTL_AMQP_CERT=certs / "client.crt",
                         BENCHCTL_AMQP_KEY=certs / "client.key", BENCHCTL_STORE_URL=redis_server.url)
        workers(url, env=env, client=redis_server.client())
        res = benchctl("submit", "--devices", "cpu", "--batch-sizes", "1", "--model", str(tiny_model), *FAST,
                       "--broker", url, "--wait", "--timeout", "60", "--out", str(tmp_path / "out"), env=env)
        assert res.returncode == 0, res.stderr
        assert load_json(tmp_path / "out" / "results.json")["cells"][0]["status"] == "ok"
        # Without the client certificate the node refuses us, in one line, and no run is recorded.
        runs_before = redis_server.client().zcard(keys.RUNS)
        plain = benchctl("submit", "--devices", "cpu", "--broker", url, "--store", redis_server.url,
                         env=worker_env(BENCHCTL_AMQP_CA=certs / "ca.crt"))
        assert plain.returncode == 3 and "cannot reach RabbitMQ at amqps://guest:***@127.0.0.1" in plain.stderr
        assert plain.stderr.strip().count("\n") == 0
        assert redis_server.client().zcard(keys.RUNS) == runs_before
    finally:
        for w in workers.all:
            w.stop()
        node.stop()

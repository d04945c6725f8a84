"""Bad input: one clear line, a non-zero exit, no traceback, nothing written."""

import json
import subprocess

import pytest
from conftest import BIN, RedisServer, benchctl, tcp_server

RUN_ID = "20260101-000000-abcdef"


def _files(tmp_path):
    (tmp_path / "not-json.json").write_text("{ this is not json")
    (tmp_path / "v99.json").write_text(json.dumps({"schema": "benchctl.results", "schema_version": 99, "cells": [], "fingerprints": {}}))
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "bad-types.json").write_text(json.dumps({"schema": "benchctl.results", "schema_version": 1, "fingerprints": {},
                                                          "cells": [{"cell_id": "x", "status": "ok", "metrics": "fast"}]}))
    (tmp_path / "empty-model").mkdir()


CASES = [
    # (id, args, what the one line must say)
    ("unknown device", ["run", "--devices", "tpu"], "unknown device 'tpu'"),
    ("malformed device", ["run", "--devices", "CPU!"], "unknown device or pool"),
    ("malformed batch", ["run", "--batch-sizes", "1,x"], "malformed batch size 'x'"),
    ("zero batch", ["run", "--batch-sizes", "0"], "batch size must be positive"),
    ("negative batch", ["run", "--batch-sizes", "-4"], "malformed batch size '-4'"),
    ("repeated batch", ["run", "--batch-sizes", "8,8"], "given twice"),
    ("malformed seq", ["run", "--seq-lens", "12a"], "malformed sequence length"),
    ("zero seq", ["run", "--seq-lens", "0"], "sequence length must be positive"),
    ("seq above model max", ["run", "--seq-lens", "1024"], "above the maximum 512"),
    ("unknown dtype", ["run", "--dtypes", "fp64"], "unknown dtype 'fp64'"),
    ("unknown variant", ["run", "--variants", "eager,fast"], "unknown variant 'fast'"),
    ("repeated variant", ["run", "--variants", "compile,compile"], "given twice"),
    ("non-positive latency budget", ["run", "--latency-budget-ms", "0"], "latency budget must be a positive number"),
    ("unknown task", ["run", "--task", "translate"], "unknown task 'translate'"),
    ("zero new tokens", ["run", "--task", "generate", "--new-tokens", "0"], "new tokens must be a positive integer"),
    ("prompt plus new tokens above model max", ["run", "--task", "generate", "--seq-lens", "1000", "--new-tokens", "32"],
     "prompt length 1000 plus 32 new tokens is above the maximum 1024 positions of model gpt2"),
    ("prompt plus new tokens above model max (submit)",
     ["submit", "--task", "generate", "--seq-lens", "1000", "--new-tokens", "32", "--broker", "{url}"],
     "plus 32 new tokens is above the maximum 1024"),
    ("runs limit zero", ["runs", "--limit", "0"], "--limit must be a positive number of runs, got 0"),
    ("runs limit negative", ["runs", "--limit", "-1"], "--limit must be a positive number of runs, got -1"),
    ("unknown weights", ["run", "--weights", "maybe"], "unknown weights"),
    ("zero iterations", ["run", "--iterations", "0"], "min-iterations must be a positive integer"),
    ("non-numeric iterations", ["run", "--iterations", "many"], "Invalid value for '--iterations'"),
    ("model dir without config", ["run", "--model", "{tmp}/empty-model"], "has no config.json"),
    ("missing model dir", ["run", "--model", "./no/such/dir"], "does not exist"),
    ("out is a file", ["run", "--out", "{tmp}/a-file"], "is a file"),
    ("out not writable", ["run", "--out", "/proc/benchctl-out"], "is not writable"),
    ("records not json", ["report", "{tmp}/not-json.json", "--out", "{tmp}/o"], "is not JSON"),
    ("records other schema", ["report", "{tmp}/v99.json", "--out", "{tmp}/o"], "schema version 99"),
    ("records missing", ["report", "{tmp}/nope.json", "--out", "{tmp}/o"], "does not exist"),
    ("malformed run id (status)", ["status", "not-a-run"], "malformed run id"),
    ("malformed run id (collect)", ["collect", "../../etc", "--broker", "{url}"], "malformed run id"),
    ("unknown run id", ["collect", RUN_ID, "--broker", "{url}", "--timeout", "1"], f"no run {RUN_ID}"),
    ("unknown run id (status)", ["status", RUN_ID, "--broker", "{url}"], f"no run {RUN_ID}"),
    ("unreachable broker", ["submit", "--devices", "cpu", "--broker", "redis://:s3cret-pw@127.0.0.1:1/0"],
     "cannot reach Redis at redis://:***@127.0.0.1:1/0"),
    ("wrong password", ["workers", "--broker", "{bad_auth_url}"], "refused the credentials"),
    ("unencoded @ in the password", ["workers", "--broker", "redis://:p@ss-word@127.0.0.1:1/0"],
     "has an '@' in its credentials: percent-encode it as %40"),
    ("database not a number", ["submit", "--devices", "cpu", "--broker", "redis://127.0.0.1:6379/notadb"],
     "names database 'notadb': a Redis database is a number"),
    ("records with a wrong type", ["report", "{tmp}/bad-types.json", "--out", "{tmp}/o"],
     "cell 1 of records file"),
    ("not a broker url", ["workers", "--broker", "http://example.invalid"],
     "is not a redis:// or rediss:// or amqp:// or amqps:// URL"),
    ("RabbitMQ without a store", ["workers", "--broker", "amqp://guest:s3cret-pw@127.0.0.1:5672/x"],
     "benchctl keeps its records in Redis, so name one with --store"),
    ("store not redis", ["workers", "--broker", "amqp://guest:s3cret-pw@127.0.0.1:1/x", "--store", "amqp://h/x"],
     "store URL 'amqp://h/x' is not a redis:// or rediss:// URL"),
    ("unreachable RabbitMQ", ["submit", "--devices", "cpu", "--allow-missing", "--broker",
                              "amqp://guest:s3cret-pw@127.0.0.1:1/x", "--store", "{url}"],
     "cannot reach RabbitMQ at amqp://guest:***@127.0.0.1:1/x"),
    ("compare bad percent", ["compare", "{tmp}/v99.json", "{tmp}/v99.json"], "schema version 99"),
]


@pytest.fixture(scope="module")
def auth_redis(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis-auth"), password="right-password").start()
    yield server
    server.stop()


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_one_line_nonzero_nothing_written(case, tmp_path, auth_redis):
    _, args, expected = case
    _files(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    bad_auth = auth_redis.url.replace("right-password", "wrong-password")
    args = [a.format(tmp=tmp_path, url=auth_redis.url, bad_auth_url=bad_auth) for a in args]
    res = benchctl(*args, cwd=tmp_path, timeout=120)
    assert res.returncode != 0
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert expected in lines[0], lines[0]
    assert "Traceback" not in res.stderr + res.stdout
    for secret in ("s3cret-pw", "wrong-password", "right-password", "ss-word"):
        assert secret not in res.stderr + res.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written, no results/ folder


def test_bare_benchctl_shows_help_and_no_empty_error(tmp_path):
    res = benchctl(cwd=tmp_path)
    assert "Usage: benchctl" in res.stdout + res.stderr and "benchctl: error:" not in res.stderr
    worker_help = subprocess.run([str(BIN / "bench-worker"), "--help"], capture_output=True, text=True, timeout=60)
    assert worker_help.returncode == 0 and "``" not in worker_help.stdout  # no raw reST markup
    version = benchctl("--version", cwd=tmp_path)
    assert version.returncode == 0 and version.stdout.startswith("benchctl ")


@pytest.fixture
def silent_server():
    """A TCP server that accepts connections and never answers: a hung Redis."""
    held = []  # connections kept open, never answered
    with tcp_server(held.append) as url:
        yield url
    for conn in held:
        conn.close()


@pytest.mark.parametrize("args", [["workers"], ["runs"], ["status", RUN_ID], ["collect", RUN_ID, "--timeout", "5"],
                                  ["submit", "--devices", "cpu"]], ids=lambda a: a[0])
def test_a_hung_broker_fails_fast_in_one_line(args, silent_server, tmp_path):
    import time

    t0 = time.monotonic()
    res = benchctl(*args, "--broker", silent_server, cwd=tmp_path, timeout=60)
    took = time.monotonic() - t0
    assert res.returncode == 3 and took < 10, (took, res.stderr)
    assert res.stderr.strip().count("\n") == 0 and "cannot reach Redis at redis://127.0.0.1" in res.stderr
    assert "Traceback" not in res.stderr


def test_a_hung_rabbitmq_fails_submit_fast_and_records_nothing(silent_server, redis_server, tmp_path):
    import time

    port = silent_server.rsplit(":", 1)[1].split("/")[0]
    t0 = time.monotonic()
    res = benchctl("submit", "--devices", "cpu", "--allow-missing", "--broker", f"amqp://guest:guest@127.0.0.1:{port}/x",
                   "--store", redis_server.url, cwd=tmp_path, timeout=60)
    took = time.monotonic() - t0
    assert res.returncode == 3 and took < 10, (took, res.stderr)
    assert res.stderr.strip().count("\n") == 0 and "cannot reach RabbitMQ at amqp://guest:***@127.0.0.1" in res.stderr
    assert redis_server.client().dbsize() == 0  # no run recorded: nothing half-written

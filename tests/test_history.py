"""The results history on real databases: SQLite in a temporary folder and our own PostgreSQL database."""

import json
import os
import sqlite3
import uuid

import pytest
from conftest import benchctl, load_json, worker_env

FAST = ["--warmup", "1", "--iterations", "3", "--min-time", "0", "--batch-sizes", "1,2", "--seq-lens", "16"]
PG_ADMIN = os.environ.get("BENCHCTL_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture
def sqlite_history(tmp_path):
    return str(tmp_path / "history.db")


@pytest.fixture
def postgres_history():
    """A database of our own on the machine's PostgreSQL, dropped afterwards."""
    import psycopg

    name = f"benchctl_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=10) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=10) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def cli(history, *args, timeout=300):
    return benchctl(*args, env=worker_env(BENCHCTL_HISTORY=history), timeout=timeout)


def listed(history, *extra):
    res = cli(history, "history", "--json", *extra)
    assert res.returncode == 0, res.stderr
    return [json.loads(line) for line in res.stdout.splitlines()]


def slower(src, dst, factor=2.0, run_id="20261201-000000-5l0wed"):
    """The same records, made slower on purpose (latency x factor), under a new run id, with the
    spread of a quiet host: a trusted number (an INVALID cell is never judged a regression)."""
    doc = load_json(src)
    doc["run"]["run_id"] = run_id
    doc["run"]["created"] += 60
    for rec in doc["cells"]:
        rec["run_id"] = run_id
        rec["cell_id"] = run_id + rec["cell_id"][len(rec["cell_id"].split(":")[0]):]
        if rec["status"] == "ok":
            rec["metrics"]["latency_ms"]["mean"] *= factor
            rec["metrics"]["latency_ms"]["cv"] = 0.01
            rec["metrics"]["throughput_mean"] /= factor
            rec["shortfall"] = None
            for tracker in rec.get("trackers", {}).values():
                tracker.pop("busy", None)
    dst.write_text(json.dumps(doc))
    return dst


def history_roundtrip(history, tiny_model, tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    for out in (first, second):
        res = cli(history, "run", "--devices", "cpu", "--model", str(tiny_model), *FAST, "--out", str(out))
        assert res.returncode == 0, res.stderr
    runs = listed(history)
    ids = {load_json(first / "results.json")["run"]["run_id"], load_json(second / "results.json")["run"]["run_id"]}
    assert {r["run_id"] for r in runs} == ids and all(r["cells"] == 2 and r["pools"] == "cpu" for r in runs)
    # Appending a run again (report re-renders it) keeps it once.
    again = cli(history, "report", str(first / "results.json"), "--out", str(tmp_path / "again"))
    assert again.returncode == 0, again.stderr
    assert sorted(r["run_id"] for r in listed(history)) == sorted(ids)
    assert len(listed(history, "--model", str(tiny_model), "--pool", "cpu", "--since", "1d")) == 2
    assert listed(history, "--model", "another/model") == []

    # A trusted copy of the newest run joins the history (an INVALID cell is no baseline: on a
    # loaded machine the tiny model's measured cells may be INVALID).
    baseline = slower(second / "results.json", tmp_path / "baseline.json", factor=1.0, run_id="20261201-000000-ba5e11")
    assert cli(history, "report", str(baseline), "--out", str(tmp_path / "baseline")).returncode == 0
    # A run made slower on purpose is flagged against the history; an unchanged rerun passes.
    # A hundred times slower than the newest run: beyond the noise of a tiny model's cells even
    # on a loaded machine (two runs there can differ tenfold, so the history's spread is left out).
    bad = cli(history, "compare", str(slower(second / "results.json", tmp_path / "slow.json", factor=100.0)),
              "--against", "history", "--last", "1", "--fail-on-regression", "10")
    assert bad.returncode == 1 and "REGRESSION" in bad.stdout and "regressed" in bad.stderr
    same = cli(history, "compare", str(slower(second / "results.json", tmp_path / "same.json", factor=1.0)),
               "--against", "history", "--last", "1", "--fail-on-regression", "10")
    assert same.returncode == 0, same.stdout + same.stderr
    assert "REGRESSION" not in same.stdout

    trend = cli(history, "history", "trend", "--model", str(tiny_model), "--pool", "cpu", "--batch-size", "2",
                "--out", str(tmp_path / "trend"))
    assert trend.returncode == 0, trend.stderr
    assert (tmp_path / "trend" / "trend.png").stat().st_size > 5_000
    assert trend.stdout.count("|") > 2 * 10  # a table row per run
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in trend.stdout.splitlines() if line.startswith("|")]
    for name, value in (("batch_size", "2"), ("seq_len", "16")):  # whole numbers, not 2.00 (the history keeps floats)
        assert {r[rows[0].index(name)] for r in rows[2:]} == {value}
    assert "nan" not in trend.stdout


def test_history_on_sqlite(sqlite_history, tiny_model, tmp_path):
    history_roundtrip(sqlite_history, tiny_model, tmp_path)


def test_history_on_postgresql(postgres_history, tiny_model, tmp_path):
    history_roundtrip(postgres_history, tiny_model, tmp_path)


def test_a_distributed_run_is_kept_once_collected(sqlite_history, redis_server, workers, tiny_model, tmp_path):
    r = redis_server.client()
    workers(redis_server.url, device="cpu", queue="cpu", client=r)
    res = cli(sqlite_history, "submit", "--devices", "cpu", "--model", str(tiny_model), *FAST, "--broker", redis_server.url,
              "--wait", "--timeout", "120", "--out", str(tmp_path / "out"))
    assert res.returncode == 0, res.stderr
    run_id = res.stdout.splitlines()[0].strip()
    col = cli(sqlite_history, "collect", run_id, "--broker", redis_server.url, "--out", str(tmp_path / "again"))
    assert col.returncode == 0, col.stderr
    runs = listed(sqlite_history)
    assert [r["run_id"] for r in runs] == [run_id] and runs[0]["mode"] == "distributed" and runs[0]["cells"] == 2


def test_no_history_keeps_nothing(sqlite_history, tiny_model, tmp_path):
    res = cli(sqlite_history, "run", "--devices", "cpu", "--model", str(tiny_model), *FAST, "--out", str(tmp_path / "o"),
              "--no-history")
    assert res.returncode == 0, res.stderr
    assert listed(sqlite_history) == []


def test_a_history_of_another_schema_version_is_refused_in_one_line(sqlite_history):
    with sqlite3.connect(sqlite_history) as db:
        db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
        db.execute("INSERT INTO meta VALUES ('schema_version', '99')")
    res = cli(sqlite_history, "history")
    assert res.returncode == 2 and res.stderr.strip().count("\n") == 0
    assert "has schema version 99; this benchctl reads version 1" in res.stderr and "Traceback" not in res.stderr

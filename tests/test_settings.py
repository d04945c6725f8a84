"""Settings from one place (bench_protocol/settings.py): resolved once from flags, the
environment and defaults, passed to the Celery app, the worker and the controller; `benchctl
config` shows them with their sources, passwords redacted; `celery -A bench_protocol.celery_app`
still finds its app."""

import importlib
import json
import subprocess

import pytest
from conftest import BIN, benchctl, worker_env

from bench_protocol.errors import BrokerError, SpecError
from bench_protocol.settings import Settings

ENV = ("BENCHCTL_BROKER_URL", "BENCHCTL_STORE_URL", "BENCHCTL_VISIBILITY_TIMEOUT", "BENCHCTL_CONSUMER_TIMEOUT",
       "BENCHCTL_CLAIM_TTL", "BENCHCTL_REDIS_CA", "BENCHCTL_REDIS_CERT", "BENCHCTL_REDIS_KEY")


@pytest.fixture
def clean_env(monkeypatch):
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.fast
def test_flags_win_over_the_environment_which_wins_over_the_defaults(clean_env):
    s = Settings.resolve()
    assert (s.broker.url, s.visibility_timeout, s.consumer_timeout) == ("redis://localhost:6379/0", 1200.0, 1800.0)
    assert s.sources["broker"] == s.sources["visibility_timeout"] == "default"
    clean_env.setenv("BENCHCTL_BROKER_URL", "redis://:env-secret@envhost:6379/0")
    clean_env.setenv("BENCHCTL_VISIBILITY_TIMEOUT", "600")
    s = Settings.resolve()
    assert (s.broker.url, s.visibility_timeout) == ("redis://:env-secret@envhost:6379/0", 600.0)
    assert (s.sources["broker"], s.sources["visibility_timeout"]) == ("$BENCHCTL_BROKER_URL", "$BENCHCTL_VISIBILITY_TIMEOUT")
    s = Settings.resolve("redis://flaghost:6379/1", "redis://storehost:6379/2")
    assert (s.broker.url, s.broker.store_url) == ("redis://flaghost:6379/1", "redis://storehost:6379/2")
    assert (s.sources["broker"], s.sources["store"]) == ("--broker", "--store")


@pytest.mark.fast
def test_a_workers_cell_death_limit_is_one_of_the_settings(clean_env):
    clean_env.delenv("BENCHCTL_MAX_CELL_DEATHS", raising=False)
    assert (Settings.resolve().max_cell_deaths, Settings.resolve().sources["max_cell_deaths"]) == (3, "default")
    clean_env.setenv("BENCHCTL_MAX_CELL_DEATHS", "5")
    assert Settings.resolve().described()["max_cell_deaths"]["value"] == 5
    clean_env.setenv("BENCHCTL_MAX_CELL_DEATHS", "2.5")
    with pytest.raises(SpecError, match=r"^\$BENCHCTL_MAX_CELL_DEATHS must be an integer"):
        Settings.resolve()


@pytest.mark.fast
def test_a_workers_claim_ttl_is_one_of_the_settings(clean_env):
    s = Settings.resolve()
    assert (s.claim_ttl, s.claim_refresh, s.sources["claim_ttl"]) == (20.0, 5.0, "default")
    clean_env.setenv("BENCHCTL_CLAIM_TTL", "6")
    s = Settings.resolve()
    assert (s.claim_ttl, s.claim_refresh, s.sources["claim_ttl"]) == (6.0, 1.5, "$BENCHCTL_CLAIM_TTL")
    assert s.described()["claim_ttl"]["value"] == 6.0
    for bad, expected in (("1", "at least 2"), ("soon", "must be a number"), ("3600", "at most 600")):
        clean_env.setenv("BENCHCTL_CLAIM_TTL", bad)
        with pytest.raises(SpecError, match=r"^\$BENCHCTL_CLAIM_TTL ") as err:
            Settings.resolve()
        assert expected in str(err.value)


def test_a_workers_claim_lives_as_long_as_its_setting_says(redis_server):
    """The worker's store claims and refreshes with the setting's TTL (a real Redis: the key's own TTL)."""
    from bench_protocol import keys
    from bench_workers.worker.record_store import RecordStore

    r = redis_server.client()
    r.hset(keys.run_cells("r1"), "r1-cell", "queued")
    store = RecordStore(r, claim_ttl=2.5)
    claim, holder, before = store.claim("r1", "r1-cell", "w1@test")
    assert claim and holder is None and before == "queued"
    assert 2000 < r.pttl(keys.cell_claim("r1-cell")) <= 2500
    with store.keep_claim("r1", "r1-cell", "w1@test", claim):
        import time

        time.sleep(4)  # past the TTL: the refreshes (every 0.625 s) keep it
        assert r.get(keys.cell_claim("r1-cell")) == claim
    time.sleep(3)  # no refresh: it lapses
    assert r.get(keys.cell_claim("r1-cell")) is None


@pytest.mark.fast
def test_the_time_limit_bound_follows_the_brokers_own_timeout(clean_env):
    clean_env.setenv("BENCHCTL_VISIBILITY_TIMEOUT", "300")
    clean_env.setenv("BENCHCTL_CONSUMER_TIMEOUT", "900")
    redis = Settings.resolve("redis://h:6379/0")
    rabbit = Settings.resolve("amqp://u:p@h:5672/v", "redis://h:6379/0")
    assert (redis.max_time_limit(), rabbit.max_time_limit()) == (270.0, 870.0)
    assert "BENCHCTL_VISIBILITY_TIMEOUT" in redis.redelivery_timeout()[1]
    assert "BENCHCTL_CONSUMER_TIMEOUT" in rabbit.redelivery_timeout()[1]


@pytest.mark.fast
@pytest.mark.parametrize("value, expected", [("abc", "must be a number, got 'abc'"), ("nan", "must be a finite number"),
                                             ("inf", "must be a finite number"), ("30", "must be above 30"),
                                             ("1e12", "at most 2592000")])
def test_a_bad_timeout_is_one_line_when_settings_are_resolved_not_on_import(clean_env, value, expected):
    clean_env.setenv("BENCHCTL_VISIBILITY_TIMEOUT", value)
    import bench_protocol.celery_app as celery_app

    importlib.reload(celery_app)  # importing reads no setting: nothing to fail
    with pytest.raises(SpecError) as err:
        Settings.resolve()
    assert str(err.value).startswith("$BENCHCTL_VISIBILITY_TIMEOUT ") and expected in str(err.value)


@pytest.mark.fast
def test_make_app_takes_its_timeouts_from_the_settings_it_is_given(clean_env):
    from bench_protocol.celery_app import make_app

    clean_env.setenv("BENCHCTL_VISIBILITY_TIMEOUT", "600")
    app = make_app(Settings.resolve("redis://h:6379/0"))
    assert app.conf.broker_transport_options["visibility_timeout"] == 600.0
    assert app.conf.result_backend_transport_options["visibility_timeout"] == 600.0
    assert app.conf.task_soft_time_limit == 570.0
    clean_env.setenv("BENCHCTL_VISIBILITY_TIMEOUT", "900")  # read once: an app made from those settings keeps them
    assert make_app(Settings.resolve("redis://h:6379/0")).conf.task_soft_time_limit == 870.0
    assert app.conf.task_soft_time_limit == 570.0


@pytest.mark.fast
def test_described_settings_redact_passwords_and_name_sources(clean_env):
    clean_env.setenv("BENCHCTL_CONSUMER_TIMEOUT", "3600")
    rows = Settings.resolve("amqp://bench:amqp-secret@h:5672/v", "redis://:redis-secret@h:6379/0").described()
    assert "secret" not in json.dumps(rows)
    assert rows["broker"] == {"value": "amqp://bench:***@h:5672/v", "source": "--broker", "help": rows["broker"]["help"]}
    assert rows["store"]["value"] == "redis://:***@h:6379/0"
    assert (rows["consumer_timeout"]["value"], rows["consumer_timeout"]["source"]) == (3600.0, "$BENCHCTL_CONSUMER_TIMEOUT")
    assert (rows["max_time_limit"]["value"], rows["max_time_limit"]["source"]) == (3570.0, "derived")


@pytest.mark.fast
def test_a_rabbitmq_broker_without_a_store_is_refused_in_one_line(clean_env):
    with pytest.raises(BrokerError, match="name one with --store"):
        Settings.resolve("amqp://u:p@h:5672/v")


# -- the command line ------------------------------------------------------------------------

def test_benchctl_config_prints_each_setting_with_its_source_and_no_password():
    env = worker_env(BENCHCTL_STORE_URL="redis://:store-secret@storehost:6379/3", BENCHCTL_VISIBILITY_TIMEOUT="900")
    env.pop("BENCHCTL_CONSUMER_TIMEOUT", None)
    res = benchctl("config", "--broker", "amqp://bench:amqp-secret@mq:5672/bench", env=env)
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
    assert "secret" not in res.stdout + res.stderr
    rows = {line.split()[0]: line.split()[1:] for line in res.stdout.splitlines()}
    assert rows["broker"] == ["amqp://bench:***@mq:5672/bench", "--broker"]
    assert rows["store"] == ["redis://:***@storehost:6379/3", "$BENCHCTL_STORE_URL"]
    assert rows["visibility_timeout"] == ["900", "$BENCHCTL_VISIBILITY_TIMEOUT"]
    assert rows["consumer_timeout"] == ["1800", "default"]
    assert rows["claim_ttl"] == ["20", "default"]
    assert rows["max_time_limit"] == ["1770", "derived"]  # RabbitMQ's timeout bounds the cells here
    assert rows["history"][1] == "$BENCHCTL_HISTORY"
    as_json = benchctl("config", "--json", "--broker", "amqp://bench:amqp-secret@mq:5672/bench", env=env)
    doc = json.loads(as_json.stdout)
    assert doc["visibility_timeout"] == {"value": 900.0, "source": "$BENCHCTL_VISIBILITY_TIMEOUT",
                                         "help": doc["visibility_timeout"]["help"]}
    assert "secret" not in as_json.stdout


def test_benchctl_config_refuses_a_bad_setting_in_one_line():
    res = benchctl("config", env=worker_env(BENCHCTL_CONSUMER_TIMEOUT="soon"))
    assert res.returncode == 2 and "Traceback" not in res.stderr and res.stdout == ""
    assert res.stderr.strip() == "benchctl: error: $BENCHCTL_CONSUMER_TIMEOUT must be a number, got 'soon'"


def test_submit_and_the_worker_bound_cells_by_the_same_resolved_timeout(redis_server):
    env = worker_env(BENCHCTL_VISIBILITY_TIMEOUT="300")
    res = benchctl("submit", "--devices", "cpu", "--time-limit", "280", "--broker", redis_server.url, env=env)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert "time limit 280s is above 270s: the visibility timeout (BENCHCTL_VISIBILITY_TIMEOUT)" in res.stderr
    assert redis_server.client().zcard("benchctl:v2:runs") == 0  # refused before anything was written


def test_celery_tooling_finds_the_app_made_from_the_environment():
    """`celery -A bench_protocol.celery_app` (inspect, Flower) resolves its settings from the
    environment, as every benchctl process does; `celery report` shows them without a server."""
    env = worker_env(BENCHCTL_BROKER_URL="redis://:tool-secret@127.0.0.1:1/0", BENCHCTL_VISIBILITY_TIMEOUT="600")
    res = subprocess.run([str(BIN / "celery"), "-A", "bench_protocol.celery_app", "report"], capture_output=True,
                         text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "tool-secret" not in res.stdout
    assert "'visibility_timeout': 600.0" in res.stdout and "task_soft_time_limit: 570.0" in res.stdout

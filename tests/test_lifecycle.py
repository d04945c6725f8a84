"""The cell lifecycle (bench_protocol/lifecycle.py) on a real redis-server: every move from
every state, the legal ones taken and the illegal ones refused with nothing written."""

import json

import pytest
from conftest import RedisServer

from bench_protocol import keys, lifecycle
from bench_protocol.errors import SpecError
from bench_protocol.lifecycle import CANCELLED, ERROR, FINISHED, MOVES, OK, OPEN, QUEUED, RUNNING, CellState

RUN = "20260101-000000-abcdef"
CELL = f"{RUN}:cpu:b1:s16:fp32:eager:classify:n0"
STATES = (None, *(s.value for s in CellState))  # None: a cell its run does not hold
TTL = 20


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def r(server):
    client = server.client()
    client.flushall()
    return client


def state(r) -> str | None:
    return r.hget(keys.run_cells(RUN), CELL)


def put(r, src: str | None, claim: str | None = None) -> None:
    """The cell in state ``src`` (None: absent), with ``claim`` on it when given."""
    if src is not None:
        r.hset(keys.run_cells(RUN), CELL, src)
    if claim:
        r.set(keys.cell_claim(CELL), claim, ex=TTL)
        r.sadd(keys.CLAIMED, CELL)


def claim(r, worker: str) -> tuple[str | None, str | None, str | None]:
    value = lifecycle.claim_value(worker)
    taken, holder, before = lifecycle.claim(r, RUN, CELL, worker, value, TTL)
    return (value if taken else None), holder, before


def save(r, worker: str, value: str, status: str = OK) -> bool:
    return lifecycle.save(r, RUN, CELL, worker, value, json.dumps({"cell_id": CELL, "status": status}), status)


# -- every move from every state, against the table -----------------------------------------

@pytest.mark.parametrize("src", STATES)
def test_claim_from_each_state(r, src):
    put(r, src)
    value, holder, before = claim(r, "w1")
    assert (value is not None) == (src in MOVES["claim"][0]) == lifecycle.allowed("claim", src, RUNNING)
    assert before == src and holder is None
    assert state(r) == (RUNNING if value else src)
    assert r.get(keys.cell_claim(CELL)) == value  # nothing written when refused
    assert r.sismember(keys.CLAIMED, CELL) == bool(value)
    assert r.get(keys.worker_current("w1")) == (CELL if value else None)


@pytest.mark.parametrize("src", STATES)
def test_save_from_each_state(r, src):
    value = lifecycle.claim_value("w1")
    put(r, src, value)
    saved = save(r, "w1", value)
    assert saved == lifecycle.allowed("save", src, OK) == (src == RUNNING)
    assert state(r) == (OK if saved else src)
    assert r.exists(keys.cell(CELL)) == saved
    assert r.exists(keys.cell_claim(CELL)) != saved  # a save lets go of the claim


@pytest.mark.parametrize("src", STATES)
def test_requeue_from_each_state(r, src):
    put(r, src)
    r.sadd(keys.CLAIMED, CELL)
    mine = lifecycle.claim_value(lifecycle.REQUEUER)
    held = lifecycle.hold_if_lapsed(r, RUN, CELL, mine, 30)
    assert held == lifecycle.allowed("requeue", src, QUEUED) == (src == RUNNING)
    assert r.sismember(keys.CLAIMED, CELL) == held  # a cell no longer running leaves the claimed set
    assert lifecycle.requeue(r, RUN, CELL, mine) == held
    assert state(r) == (QUEUED if held else src)
    assert not r.exists(keys.cell_claim(CELL)) and not r.sismember(keys.CLAIMED, CELL)


@pytest.mark.parametrize("src", STATES)
def test_cancel_from_each_state(r, src):
    put(r, src)
    n = lifecycle.cancel(r, RUN, [CELL])
    assert n == lifecycle.allowed("cancel", src, CANCELLED) == (src == QUEUED)
    assert state(r) == (CANCELLED if n else src)


@pytest.mark.parametrize("src", STATES)
def test_record_by_the_controller_from_each_state(r, src):
    put(r, src)
    written = lifecycle.record(r, RUN, CELL, json.dumps({"cell_id": CELL, "status": ERROR}), ERROR)
    assert written == lifecycle.allowed("record", src, ERROR) == (src in OPEN)
    assert state(r) == (ERROR if written else src)
    assert r.exists(keys.cell(CELL)) == written


@pytest.mark.parametrize("src", [s for s in STATES if s is not None and s != CANCELLED])
def test_retry_then_restore(r, src):
    """retry (a pipeline of the controller's): queued, the record and deaths removed; restore
    puts the cell back as it was."""
    put(r, src)
    r.set(keys.cell(CELL), "the old record")
    r.rpush(keys.cell_deaths(CELL), "{}")
    assert lifecycle.allowed("retry", src, QUEUED)
    pipe = r.pipeline()
    lifecycle.retry(pipe, RUN, [CELL])
    pipe.execute()
    assert state(r) == QUEUED and not r.exists(keys.cell(CELL)) and not r.exists(keys.cell_deaths(CELL))
    assert lifecycle.allowed("restore", QUEUED, src)
    pipe = r.pipeline()
    lifecycle.restore(pipe, RUN, {CELL: src}, {CELL: "the old record"})
    pipe.execute()
    assert state(r) == src and r.get(keys.cell(CELL)) == "the old record"


def test_submit_queues_new_cells(r):
    pipe = r.pipeline()
    lifecycle.submit(pipe, RUN, [CELL])
    pipe.execute()
    assert state(r) == QUEUED and lifecycle.allowed("submit", None, QUEUED)
    assert not lifecycle.allowed("submit", QUEUED, QUEUED)


# -- the illegal moves an actor can race into, by name ----------------------------------------

def test_a_save_after_cancel_is_refused(r):
    """A worker that holds a valid claim on a cell that was cancelled (say a retry queued it
    again under it, then a cancel) writes nothing."""
    put(r, QUEUED)
    value, _, _ = claim(r, "w1")
    r.hset(keys.run_cells(RUN), CELL, QUEUED)  # the controller's retry, racing the claim
    assert lifecycle.cancel(r, RUN, [CELL]) == 1
    assert not save(r, "w1", value)
    assert state(r) == CANCELLED and not r.exists(keys.cell(CELL))


def test_a_claim_of_a_finished_cell_is_refused(r):
    put(r, QUEUED)
    value, _, _ = claim(r, "w1")
    assert save(r, "w1", value, ERROR)
    again, holder, now = claim(r, "w2")
    assert again is None and holder is None and now == ERROR
    assert state(r) == ERROR and not r.exists(keys.cell_claim(CELL))


def test_a_claim_held_by_another_worker_is_refused_and_a_dead_childs_is_taken_over(r):
    put(r, QUEUED)
    first, _, _ = claim(r, "w1")
    assert claim(r, "w2") == (None, "w1", RUNNING)
    assert r.get(keys.cell_claim(CELL)) == first
    # The same worker again (its measuring child died holding the claim): a new token.
    second, holder, before = claim(r, "w1")
    assert second and second != first and holder is None and before == RUNNING
    assert not save(r, "w1", first)  # the dead child's token no longer saves
    assert save(r, "w1", second)


def test_a_save_after_the_cell_was_queued_again_is_refused(r):
    """A worker cut off past its claim's TTL: the cell is queued again; its late save is fenced."""
    put(r, QUEUED)
    value, _, _ = claim(r, "w1")
    r.delete(keys.cell_claim(CELL))  # lapsed
    mine = lifecycle.claim_value(lifecycle.REQUEUER)
    assert lifecycle.hold_if_lapsed(r, RUN, CELL, mine, 30)
    assert not save(r, "w1", value)  # held by the requeuer
    assert lifecycle.requeue(r, RUN, CELL, mine)
    assert not save(r, "w1", value)  # queued
    newer, _, _ = claim(r, "w2")
    assert not save(r, "w1", value) and save(r, "w2", newer)
    assert json.loads(r.get(keys.cell(CELL)))["status"] == OK


def test_a_lapsed_claim_saves_while_nobody_queued_the_cell_again(r):
    put(r, QUEUED)
    value, _, _ = claim(r, "w1")
    r.delete(keys.cell_claim(CELL))
    assert save(r, "w1", value) and state(r) == OK


def test_requeue_holds_only_a_lapsed_claim_and_never_queues_a_recorded_cell(r):
    put(r, QUEUED)
    claim(r, "w1")
    mine = lifecycle.claim_value(lifecycle.REQUEUER)
    assert not lifecycle.hold_if_lapsed(r, RUN, CELL, mine, 30)  # its worker is alive
    r.delete(keys.cell_claim(CELL))
    assert lifecycle.hold_if_lapsed(r, RUN, CELL, mine, 30)
    assert 29_000 < r.pttl(keys.cell_claim(CELL)) <= 30_000  # the hold lasts its seconds, no longer
    assert not lifecycle.hold_if_lapsed(r, RUN, CELL, lifecycle.claim_value(lifecycle.REQUEUER), 30)  # queued once
    # While its task is sent, the controller records the cell's outcome: it is not queued over it.
    assert lifecycle.record(r, RUN, CELL, json.dumps({"cell_id": CELL, "status": ERROR}), ERROR)
    assert not lifecycle.requeue(r, RUN, CELL, mine)
    assert state(r) == ERROR and not r.exists(keys.cell_claim(CELL)) and not r.sismember(keys.CLAIMED, CELL)


def test_release_lets_go_only_of_its_own_claim(r):
    put(r, QUEUED)
    value, _, _ = claim(r, "w1")
    assert not lifecycle.release(r, CELL, "w1|not-this-attempt", keys.worker_current("w1"))
    assert r.get(keys.cell_claim(CELL)) == value and r.exists(keys.worker_current("w1"))
    assert lifecycle.release(r, CELL, value, keys.worker_current("w1"))
    assert not r.exists(keys.cell_claim(CELL)) and not r.exists(keys.worker_current("w1"))
    assert state(r) == RUNNING  # lapsed: recovery queues it again


def test_refresh_keeps_its_own_claim_or_its_lapsed_one_only(r):
    put(r, QUEUED)
    value, _, _ = claim(r, "w1")
    r.expire(keys.cell_claim(CELL), 2)
    assert lifecycle.refresh(r, RUN, CELL, "w1", value, TTL) and r.ttl(keys.cell_claim(CELL)) > 2
    assert (TTL - 1) * 1000 < r.pttl(keys.cell_claim(CELL)) <= TTL * 1000  # seconds, as given
    assert (TTL - 1) * 1000 < r.pttl(keys.worker_current("w1")) <= TTL * 1000
    r.delete(keys.cell_claim(CELL))
    assert lifecycle.refresh(r, RUN, CELL, "w1", value, TTL) and r.get(keys.cell_claim(CELL)) == value
    other, _, _ = claim(r, "w1")  # a newer attempt of the same worker
    assert not lifecycle.refresh(r, RUN, CELL, "w1", value, TTL)
    assert r.get(keys.cell_claim(CELL)) == other
    r.delete(keys.cell_claim(CELL))
    r.hset(keys.run_cells(RUN), CELL, QUEUED)  # queued again by a requeue
    assert not lifecycle.refresh(r, RUN, CELL, "w1", value, TTL)  # queued again: not ours to refresh


def test_deaths_count_only_on_the_running_cell_the_worker_holds_and_a_save_clears_them(r):
    put(r, QUEUED)
    entry = {"status": "signal 9 (SIGKILL)", "signal": "SIGKILL", "host": "h1", "worker": "w1"}
    assert lifecycle.note_death(r, RUN, CELL, "w1", entry) == 0  # not claimed: not its death
    value, _, _ = claim(r, "w1")
    assert lifecycle.note_death(r, RUN, CELL, "w2", entry) == 0  # another worker's cell
    assert lifecycle.note_death(r, RUN, CELL, "w", entry) == 0  # a name that is only a prefix
    assert lifecycle.note_death(r, RUN, CELL, "w1", entry) == 1
    assert lifecycle.note_death(r, RUN, CELL, "w1", dict(entry, host="h2")) == 2
    assert 0 < r.ttl(keys.cell_deaths(CELL)) <= lifecycle.DEATHS_TTL
    assert [d["host"] for d in lifecycle.deaths(r, CELL)] == ["h1", "h2"]
    assert save(r, "w1", value, ERROR)
    assert lifecycle.deaths(r, CELL) == [] and not r.exists(keys.cell_deaths(CELL))


def test_a_save_with_a_status_that_is_not_finished_is_refused_before_redis(r):
    put(r, RUNNING)
    with pytest.raises(ValueError, match="status"):
        lifecycle.save(r, RUN, CELL, "w1", "w1|x", "{}", RUNNING)
    with pytest.raises(ValueError, match="status"):
        lifecycle.record(r, RUN, CELL, "{}", CANCELLED)
    assert state(r) == RUNNING


# -- the table itself -----------------------------------------------------------------------

@pytest.mark.fast
def test_the_table_and_the_sets():
    assert OPEN == (QUEUED, RUNNING) and FINISHED == (OK, ERROR) and lifecycle.SETTLED == (OK, ERROR, CANCELLED)
    assert set(OPEN) | set(lifecycle.SETTLED) == {s.value for s in CellState}
    assert CellState.QUEUED == "queued" and str(CellState.CANCELLED) == "cancelled"
    assert not lifecycle.allowed("save", CANCELLED, OK) and not lifecycle.allowed("claim", OK, RUNNING)
    assert not lifecycle.allowed("cancel", RUNNING, CANCELLED) and lifecycle.allowed("cancel", QUEUED, CANCELLED)
    assert not lifecycle.allowed("save", RUNNING, QUEUED)  # a save ends in a finished state only
    # The scripts test the table's source states: the claim's, for one.
    assert "state == 'queued' or state == 'running'" in lifecycle.CLAIM


@pytest.mark.fast
def test_max_cell_deaths_comes_from_the_environment_checked(monkeypatch):
    monkeypatch.delenv("BENCHCTL_MAX_CELL_DEATHS", raising=False)
    assert lifecycle.max_cell_deaths() == 3
    monkeypatch.setenv("BENCHCTL_MAX_CELL_DEATHS", "5")
    assert lifecycle.max_cell_deaths() == 5
    for bad in ("0", "abc", "nan", "2.5", "100000"):
        monkeypatch.setenv("BENCHCTL_MAX_CELL_DEATHS", bad)
        with pytest.raises(SpecError, match=r"\$BENCHCTL_MAX_CELL_DEATHS"):
            lifecycle.max_cell_deaths()


# -- --hosts-per-pool: a host takes at most its share of a cell's repeats -----------------------

def test_a_host_that_took_its_share_of_a_cells_repeats_is_refused_the_next(r):
    run = RUN
    cells = [f"{run}:cpu:b1:s16:fp32:eager:classify:n0:batch:r{i}" for i in range(3)]
    for c in cells:
        r.hset(keys.run_cells(run), c, QUEUED)

    def take(cell, worker, host, cap=1):
        value = lifecycle.claim_value(worker)
        taken, holder, _ = lifecycle.claim(r, run, cell, worker, value, TTL, host, cap)
        return value if taken else holder

    first = take(cells[0], "w-a", "host-a")
    assert first and first.startswith("w-a|")
    assert take(cells[1], "w-a", "host-a") == lifecycle.HOST_FULL  # its one repeat of the cell is taken
    assert take(cells[1], "w-a2", "host-a") == lifecycle.HOST_FULL  # any worker of that host
    assert r.hget(keys.run_cells(run), cells[1]) == QUEUED and not r.exists(keys.cell_claim(cells[1]))
    assert take(cells[1], "w-b", "host-b").startswith("w-b|")  # another host's worker takes it
    # The same worker taking over its own claim (its measuring process died) is not a second repeat.
    assert take(cells[0], "w-a", "host-a").startswith("w-a|")
    assert take(cells[2], "w-a", "host-a", cap=2).startswith("w-a|")  # a cap of 2: a second repeat is allowed
    assert r.hgetall(keys.run_hosts(run)) == {f"{run}:cpu:b1:s16:fp32:eager:classify:n0:batch|host-a": "2",
                                              f"{run}:cpu:b1:s16:fp32:eager:classify:n0:batch|host-b": "1"}
    # Without a cap (a run without --hosts-per-pool) nothing is counted.
    r.hset(keys.run_cells(run), "x:r0", QUEUED)
    assert take("x:r0", "w-a", "host-a", cap=0).startswith("w-a|") and not r.hexists(keys.run_hosts(run), "x|host-a")


def test_hosts_per_pool_sets_the_repeats_and_each_hosts_share():
    from bench_protocol.spec import RunSpec

    spec = RunSpec(pools=["cpu"], batch_sizes=[1], hosts_per_pool=2)
    assert spec.repeats == 2 and spec.host_cap == 1 and {c.host_cap for c in spec.cells()} == {1}
    assert spec.cell_of(spec.cells()[1].cell_id) == spec.cells()[1]
    assert RunSpec(pools=["cpu"], batch_sizes=[1], repeats=5, hosts_per_pool=2).host_cap == 3
    assert RunSpec(pools=["cpu"], batch_sizes=[1], repeats=3).host_cap == 0
    with pytest.raises(SpecError, match="--hosts-per-pool 3 needs at least as many repeats, got --repeats 2"):
        RunSpec(pools=["cpu"], batch_sizes=[1], repeats=2, hosts_per_pool=3)

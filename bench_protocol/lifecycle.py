"""A cell's lifecycle in its run: its states, the sets of them, the moves between them, and
every Redis script that makes a move, in one module (Celery's ``states.py`` is the model).
The worker (bench_workers/worker/record_store.py), the controller (bench_ctl/runs/store.py) and recovery
(bench_protocol/recovery.py) call the functions here; no other module writes a cell's state.

    submit ──► queued ──claim──► running ──save──► ok | error
                 │  ▲              │  ▲
                 │  └──requeue─────┘  └── claim again: a same-named worker whose measuring
                 │                        process died, or anyone once the claim lapsed
                 └──cancel──► cancelled
    queued | running ──record──► ok | error   the controller (a cell killed by its hard time limit)
    not cancelled ──retry──► queued           the controller (a lost task or record, retry --errors);
                                              a retry whose sending failed is restored

A move is one Lua step that checks the state (and the claim) and writes, so two actors never
both win, and a move that ``MOVES`` does not allow is refused: a save after cancel, a claim of
a finished cell, a cancel of a running one. The scripts are written from ``MOVES``, with the
states' values interpolated.

A claim (``cell:{id}:claim``, with a TTL the measuring worker refreshes) is "worker|token": the
name says who, the token which attempt; a save is fenced by it. Each time a worker's measuring
process dies on a cell (the OOM killer, a segfault) the worker appends to the cell's deaths
(``cell:{id}:deaths``); after ``max_cell_deaths()`` of them the cell's next delivery saves an
error record of type ``crashed`` instead of measuring it again.
"""

from __future__ import annotations

import json
import secrets
from enum import Enum

from . import keys
from .spec import base_cell_id


class CellState(str, Enum):
    """A cell's state in its run (a str: it is stored and compared as its value)."""

    QUEUED = "queued"
    RUNNING = "running"
    OK = "ok"
    ERROR = "error"
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value


QUEUED, RUNNING, OK, ERROR, CANCELLED = (s.value for s in CellState)

OPEN = (QUEUED, RUNNING)  # a worker may still measure it
FINISHED = (OK, ERROR)  # a record exists
SETTLED = (*FINISHED, CANCELLED)  # nothing more will happen to the cell

# Every move: (the states it starts from, the states it may end in). Any other is refused.
MOVES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "submit": ((), (QUEUED,)),  # a new cell
    "claim": (OPEN, (RUNNING,)),  # a worker takes it
    "save": ((RUNNING,), FINISHED),  # its record, fenced by the claim
    "requeue": ((RUNNING,), (QUEUED,)),  # its claim lapsed: its task sent again
    "cancel": ((QUEUED,), (CANCELLED,)),
    "record": (OPEN, FINISHED),  # the controller writes its outcome (Celery's FAILURE)
    "retry": ((QUEUED, RUNNING, OK, ERROR), (QUEUED,)),  # measured afresh, its record removed
    "restore": ((QUEUED,), (QUEUED, RUNNING, OK, ERROR)),  # a retry undone
}


def allowed(move: str, src: str | None, dst: str) -> bool:
    """Whether ``move`` may take a cell from state ``src`` (None: a new cell) to ``dst``."""
    sources, targets = MOVES[move]
    return (src is None if not sources else src in sources) and dst in targets


def _is(var: str, move: str) -> str:
    """A Lua test that ``var`` is one of ``move``'s source states."""
    return " or ".join(f"{var} == '{s}'" for s in MOVES[move][0])


# A worker names itself in its claim: "worker|token". Lua: is KEYS/ARGV value ``v`` ARGV[n]'s?
_HELD_BY = "(string.sub({v}, 1, string.len(ARGV[{n}]) + 1) == ARGV[{n}] .. '|')"

REQUEUER = "benchctl-requeue"  # the holder name of a requeue's own short claim
DEATHS_TTL = 7 * 86400  # a cell's deaths are forgotten a week after the last one
MAX_CELL_DEATHS = 3  # the default of max_cell_deaths()
MAX_CELL_DEATHS_LIMIT = 1000


def max_cell_deaths() -> int:
    """How many deaths of its measuring process a cell is given before it becomes a ``crashed``
    record: $BENCHCTL_MAX_CELL_DEATHS (a positive integer), else MAX_CELL_DEATHS."""
    from .numeric import env_number

    return env_number("BENCHCTL_MAX_CELL_DEATHS", MAX_CELL_DEATHS, 1, MAX_CELL_DEATHS_LIMIT, integer=True)


def claim_value(worker: str) -> str:
    return f"{worker}|{secrets.token_hex(8)}"


def holder_name(claim: str | bytes | None) -> str | None:
    if isinstance(claim, bytes):
        claim = claim.decode(errors="replace")
    return claim.split("|", 1)[0] if claim else None


def _text(value):
    return value.decode(errors="replace") if isinstance(value, bytes) else value


# -- the scripts ----------------------------------------------------------------------------
# claim. KEYS: claim, run cells, claimed set, worker's current, run hosts; ARGV: claim value,
# cell id, ttl ms, worker, "{cell id without its repeat}|{host}", the most repeats of a cell one
# host may take (0: any). {'taken', state before} | {'held', holder's claim} | {'closed', state
# or ''} | {'host_full', repeats this host took}. A claim left by this same worker (its
# measuring process died) is taken over, and counts no second time against its host.
CLAIM = f"""
local state = redis.call('HGET', KEYS[2], ARGV[2])
if not ({_is('state', 'claim')}) then return {{'closed', state or ''}} end
local held = redis.call('GET', KEYS[1])
local own = held and {_HELD_BY.format(v='held', n=4)}
if held and not own then return {{'held', held}} end
local cap = tonumber(ARGV[6] or '0')
if cap > 0 and not own then
  local took = tonumber(redis.call('HGET', KEYS[5], ARGV[5]) or '0')
  if took >= cap then return {{'host_full', tostring(took)}} end
  redis.call('HINCRBY', KEYS[5], ARGV[5], 1)
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
redis.call('HSET', KEYS[2], ARGV[2], '{RUNNING}')
redis.call('SADD', KEYS[3], ARGV[2])
redis.call('SET', KEYS[4], ARGV[2], 'PX', ARGV[3])
return {{'taken', state}}
"""
# Refresh: only our own claim, or our lapsed one while nobody queued the cell again.
# KEYS: claim, run cells, worker's current; ARGV: claim value, cell id, ttl ms.
REFRESH = f"""
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] or (not v and redis.call('HGET', KEYS[2], ARGV[2]) == '{RUNNING}') then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
  redis.call('SET', KEYS[3], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
"""
# save: written only while the cell runs and this attempt's claim holds it (or lapsed unclaimed).
# KEYS: claim, run cells, record, worker's current, claimed set, deaths; ARGV: claim value,
# cell id, record, status.
SAVE = f"""
local state = redis.call('HGET', KEYS[2], ARGV[2])
if not ({_is('state', 'save')}) then return 0 end
local v = redis.call('GET', KEYS[1])
if v and v ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[3], ARGV[3])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[4])
redis.call('DEL', KEYS[1], KEYS[4], KEYS[6])
redis.call('SREM', KEYS[5], ARGV[2])
return 1
"""
# Let go of a claim that is still ours. KEYS: claim, then any keys to delete with it; ARGV: claim value.
RELEASE_IF_HELD = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', unpack(KEYS)) return 1 end
return 0
"""
# requeue, step 1: hold a running cell whose claim lapsed, with a short claim of our own.
# KEYS: claim, run cells, claimed set; ARGV: our claim value, cell id, ttl ms. 1 when this call holds
# the lapsed running cell; a cell no longer running leaves the claimed set.
HOLD_IF_LAPSED = f"""
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local state = redis.call('HGET', KEYS[2], ARGV[2])
if not ({_is('state', 'requeue')}) then
  redis.call('SREM', KEYS[3], ARGV[2])
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return 1
"""
# requeue, step 2, once its task is sent: queued, if we still hold it and it still runs.
# KEYS: claim, run cells, claimed set; ARGV: our claim value, cell id.
QUEUED_IF_HELD = f"""
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[3], ARGV[2])
local state = redis.call('HGET', KEYS[2], ARGV[2])
if not ({_is('state', 'requeue')}) then return 0 end
redis.call('HSET', KEYS[2], ARGV[2], '{QUEUED}')
return 1
"""
# cancel: only the cells no worker has started. KEYS: run cells; ARGV: cell ids.
CANCEL = f"""
local n = 0
for i, cell in ipairs(ARGV) do
  local state = redis.call('HGET', KEYS[1], cell)
  if {_is('state', 'cancel')} then
    redis.call('HSET', KEYS[1], cell, '{CANCELLED}'); n = n + 1
  end
end
return n
"""
# record: the controller writes an open cell's outcome. KEYS: run cells, record; ARGV: cell id,
# record, status.
RECORD = f"""
local state = redis.call('HGET', KEYS[1], ARGV[1])
if not ({_is('state', 'record')}) then return 0 end
redis.call('SET', KEYS[2], ARGV[2])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
"""
# A death of the measuring process of ``worker`` on a running cell it holds: appended, with
# the deaths' TTL renewed; returns how many there are now (0: not counted).
# KEYS: claim, run cells, deaths; ARGV: worker, cell id, entry (JSON), ttl.
NOTE_DEATH = f"""
local held = redis.call('GET', KEYS[1])
if not held or not {_HELD_BY.format(v='held', n=1)} then return 0 end
if redis.call('HGET', KEYS[2], ARGV[2]) ~= '{RUNNING}' then return 0 end
local n = redis.call('RPUSH', KEYS[3], ARGV[3])
redis.call('EXPIRE', KEYS[3], ARGV[4])
return n
"""


# -- the moves ------------------------------------------------------------------------------
def submit(pipe, run_id: str, cell_ids) -> None:
    """New cells, queued (into ``pipe``: written with the run)."""
    pipe.hset(keys.run_cells(run_id), mapping={c: QUEUED for c in cell_ids})


HOST_FULL = "this host"  # the holder a claim names when the host took its share of a cell's repeats


def _ms(seconds: float) -> int:
    """A TTL in seconds as the milliseconds Redis's PX takes (at least 1)."""
    return max(1, round(seconds * 1000))


def claim(client, run_id: str, cell_id: str, worker: str, value: str, ttl: float, host: str = "",
          host_cap: int = 0) -> tuple[bool, str | None, str | None]:
    """Take an open cell for ``worker`` with the claim ``value``: (True, None, its state before);
    (False, the holder's name, its state) when another holds it, or (False, HOST_FULL, its state)
    when ``host`` already took ``host_cap`` of the cell's repeats (0: no cap); (False, None, its
    state) when the cell is not open (finished, cancelled, or gone: None)."""
    outcome, *detail = client.eval(CLAIM, 5, keys.cell_claim(cell_id), keys.run_cells(run_id), keys.CLAIMED,
                                   keys.worker_current(worker), keys.run_hosts(run_id), value, cell_id, _ms(ttl), worker,
                                   f"{base_cell_id(cell_id)}|{host}", int(host_cap))
    outcome, detail = _text(outcome), _text(detail[0]) if detail else None
    if outcome == "taken":
        return True, None, detail
    if outcome == "held":
        return False, holder_name(detail) or "another worker", RUNNING
    if outcome == "host_full":
        return False, HOST_FULL, QUEUED
    return False, None, detail or None


def refresh(client, run_id: str, cell_id: str, worker: str, value: str, ttl: float) -> bool:
    return bool(client.eval(REFRESH, 3, keys.cell_claim(cell_id), keys.run_cells(run_id), keys.worker_current(worker),
                            value, cell_id, _ms(ttl)))


def save(client, run_id: str, cell_id: str, worker: str, value: str, record: bytes | str, status: str) -> bool:
    """The cell's record (encoded) and its finished state, while the claim ``value`` holds the
    running cell; False (nothing written) otherwise."""
    if status not in FINISHED:
        raise ValueError(f"a saved record's status is one of {', '.join(FINISHED)}, not {status!r}")
    return bool(client.eval(SAVE, 6, keys.cell_claim(cell_id), keys.run_cells(run_id), keys.cell(cell_id),
                            keys.worker_current(worker), keys.CLAIMED, keys.cell_deaths(cell_id), value, cell_id,
                            record, status))


def release(client, cell_id: str, value: str, *also: str) -> bool:
    """Let go of the claim ``value`` (and delete ``also`` with it) if it still holds the cell."""
    return bool(client.eval(RELEASE_IF_HELD, 1 + len(also), keys.cell_claim(cell_id), *also, value))


def hold_if_lapsed(client, run_id: str, cell_id: str, value: str, ttl: float) -> bool:
    return bool(client.eval(HOLD_IF_LAPSED, 3, keys.cell_claim(cell_id), keys.run_cells(run_id), keys.CLAIMED,
                            value, cell_id, _ms(ttl)))


def requeue(client, run_id: str, cell_id: str, value: str) -> bool:
    """The held lapsed cell back to queued (its task sent)."""
    return bool(client.eval(QUEUED_IF_HELD, 3, keys.cell_claim(cell_id), keys.run_cells(run_id), keys.CLAIMED,
                            value, cell_id))


def cancel(client, run_id: str, cell_ids) -> int:
    """Cancel those of ``cell_ids`` that are queued; returns how many."""
    cell_ids = list(cell_ids)
    return int(client.eval(CANCEL, 1, keys.run_cells(run_id), *cell_ids)) if cell_ids else 0


def record(client, run_id: str, cell_id: str, encoded: bytes | str, status: str) -> bool:
    """The controller writes an open cell's record and state; False when the cell is not open."""
    if status not in FINISHED:
        raise ValueError(f"a record's status is one of {', '.join(FINISHED)}, not {status!r}")
    return bool(client.eval(RECORD, 2, keys.run_cells(run_id), keys.cell(cell_id), cell_id, encoded, status))


def retry(pipe, run_id: str, cell_ids) -> None:
    """Back to queued (into ``pipe``), their records and deaths removed: measured afresh."""
    cell_ids = list(cell_ids)
    if not cell_ids:
        return
    pipe.delete(*[keys.cell(c) for c in cell_ids], *[keys.cell_deaths(c) for c in cell_ids])
    pipe.hset(keys.run_cells(run_id), mapping={c: QUEUED for c in cell_ids})


def restore(pipe, run_id: str, states: dict[str, str], records: dict[str, bytes | str]) -> None:
    """Cells put back as they were before a retry (their state, and their encoded record)."""
    for cell_id, state in states.items():
        if cell_id in records:
            pipe.set(keys.cell(cell_id), records[cell_id])
        pipe.hset(keys.run_cells(run_id), cell_id, state)


def note_death(client, run_id: str, cell_id: str, worker: str, entry: dict, ttl: int = DEATHS_TTL) -> int:
    """Count a death of ``worker``'s measuring process on the running cell it holds; returns the
    cell's deaths so far, or 0 when the cell was not this worker's (nothing written)."""
    return int(client.eval(NOTE_DEATH, 3, keys.cell_claim(cell_id), keys.run_cells(run_id), keys.cell_deaths(cell_id),
                           worker, cell_id, json.dumps(entry, sort_keys=True), int(ttl)))


def deaths(client, cell_id: str) -> list[dict]:
    """The deaths of the cell's measuring processes, oldest first (unreadable entries skipped)."""
    out = []
    for raw in client.lrange(keys.cell_deaths(cell_id), 0, -1):
        try:
            entry = json.loads(raw)
        except ValueError:
            continue
        if isinstance(entry, dict):
            out.append(entry)
    return out


__all__ = ["CellState", "OPEN", "FINISHED", "SETTLED", "MOVES", "allowed", "max_cell_deaths", "claim", "refresh",
           "save", "release", "hold_if_lapsed", "requeue", "cancel", "record", "retry", "restore", "note_death",
           "deaths"]

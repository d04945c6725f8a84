"""The Redis key layout of benchctl's own records (the Celery broker keeps its own keys).

Every key starts with ``benchctl:v2:`` so a schema change never reads old keys by mistake
(v2: cell ids carry every axis of the spec, variant, task and new tokens included).

- ``run:{run_id}``           hash: spec (JSON), created, status, n_cells
- ``runs``                   sorted set: run ids by creation time
- ``run:{run_id}:cells``     hash: cell id -> state (queued | running | ok | error | cancelled)
- ``run:{run_id}:hosts``     hash: "{cell id without its repeat}|{host}" -> repeats of that cell
                             the host took (a run with --hosts-per-pool caps it)
- ``cell:{cell_id}``         string: the cell record, compact (bench_protocol/record_codec.py); one per coordinates
- ``cell:{cell_id}:claim``   string with TTL: the worker measuring the cell right now (or
                             ``benchctl-requeue`` while a lapsed cell is queued again)
- ``cell:{cell_id}:deaths``  list with TTL: each death of a measuring process on the cell (JSON:
                             signal, host, worker); a save removes it (bench_protocol/lifecycle.py)
- ``fp:{fingerprint_id}``    string: a host fingerprint (JSON)
- ``worker:{name}``          string with TTL: a live worker (JSON), set while its consumer consumes;
                             the heartbeat refreshes it
- ``worker:{name}:current``  string with TTL: the cell id that worker is measuring
- ``worker:{name}:owner``    string with TTL: the process holding that name (JSON: instance,
                             hostname, pid); a second live worker of the name refuses to start
- ``workers``                set: worker names ever registered (pruned on read)
- ``claimed``                set: cell ids claimed and not yet saved (where lapsed claims are looked for)
- ``store``                  hash: created, id — written at first use; its absence tells a Redis
                             that lost benchctl's keys (bench_protocol/durability.py)
"""

PREFIX = "benchctl:v2:"


def run(run_id: str) -> str:
    return f"{PREFIX}run:{run_id}"


RUNS = PREFIX + "runs"


def run_cells(run_id: str) -> str:
    return f"{PREFIX}run:{run_id}:cells"


def run_hosts(run_id: str) -> str:
    return f"{PREFIX}run:{run_id}:hosts"


def cell(cell_id: str) -> str:
    return f"{PREFIX}cell:{cell_id}"


def cell_claim(cell_id: str) -> str:
    return f"{PREFIX}cell:{cell_id}:claim"


def cell_deaths(cell_id: str) -> str:
    return f"{PREFIX}cell:{cell_id}:deaths"


def fingerprint(fp_id: str) -> str:
    return f"{PREFIX}fp:{fp_id}"


def worker(name: str) -> str:
    return f"{PREFIX}worker:{name}"


def worker_current(name: str) -> str:
    return f"{PREFIX}worker:{name}:current"


def worker_owner(name: str) -> str:
    return f"{PREFIX}worker:{name}:owner"


WORKERS = PREFIX + "workers"
CLAIMED = PREFIX + "claimed"
STORE = PREFIX + "store"

TASK_RUN_CELL = "benchctl.run_cell"

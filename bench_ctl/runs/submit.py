"""Submitting a run: validate, check each pool has a live worker, record the run, send one
task per cell (by name, routed to its pool's queue)."""

from __future__ import annotations

from bench_protocol.broker import ping_broker
from bench_protocol.celery_app import make_app
from bench_protocol.errors import BrokerError, NoLiveWorker, SendError, SpecError
from bench_protocol.recovery import send_cells
from bench_protocol.spec import RunSpec

from .store import ControllerStore


def pools_without_workers(store: ControllerStore, pools: list[str]) -> list[str]:
    live = {w["pool"] for w in store.live_workers()}
    return [p for p in pools if p not in live]


def variants_no_worker_runs(store: ControllerStore, spec: RunSpec) -> list[str]:
    """'pool: variant' for every variant of the run that no live worker of a pool lists among the
    runtimes it can run (workers from before runtimes were listed are taken to run PyTorch's)."""
    torch_runtimes = ["eager", "compile", "cudagraph"]
    can: dict[str, set[str]] = {}
    for w in store.live_workers():
        can.setdefault(w.get("pool"), set()).update(w.get("runtimes") or torch_runtimes)
    return [f"{pool}: {variant}" for pool in spec.pools if pool in can
            for variant in spec.variants if variant not in can[pool]]


def shared_hosts(store: ControllerStore, pools: list[str]) -> dict[str, list[str]]:
    """Hosts whose live workers serve more than one of ``pools``: their cells will overlap."""
    by_host: dict[str, set[str]] = {}
    for w in store.live_workers():
        if w.get("pool") in pools:
            by_host.setdefault(w.get("hostname") or "?", set()).add(w["pool"])
    return {host: sorted(ps) for host, ps in by_host.items() if len(ps) > 1}


def submit(store: ControllerStore, spec: RunSpec, allow_missing: bool = False, on_recorded=None) -> str:
    limit, setting = store.settings.max_time_limit(), store.settings.redelivery_timeout()[1]
    if spec.rules.time_limit > limit:
        raise SpecError(f"time limit {spec.rules.time_limit:g}s is above {limit:g}s: {setting} "
                        "must exceed every cell's hard time limit (raise it on the broker and every host)")
    missing = pools_without_workers(store, spec.pools)
    if missing and not allow_missing:
        raise NoLiveWorker(f"no live worker for pool{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                           "(start bench-worker there, or pass --allow-missing to queue anyway)")
    short = pools_short_of_hosts(store, spec) if spec.hosts_per_pool > 1 else []
    if short and not allow_missing:
        raise NoLiveWorker(f"--hosts-per-pool {spec.hosts_per_pool}: {'; '.join(short)} (start bench-worker on more "
                           "hosts there, or pass --allow-missing to queue anyway: the run waits for them)")
    unrunnable = variants_no_worker_runs(store, spec)
    if unrunnable:
        raise SpecError(f"no live worker can run {'; '.join(unrunnable)} (its library is not installed there: "
                        "pip install 'benchctl[ort]' or 'benchctl[openvino]' on the worker)")
    ping_broker(store.broker)  # before the run is recorded: an unreachable broker leaves nothing behind
    cells = spec.cells()
    store.create_run(spec.run_id, spec.to_dict(), [c.cell_id for c in cells])
    if on_recorded is not None:
        on_recorded(spec.run_id)  # before the first task: an interrupted submit has named its run
    send_run_cells(store, spec.run_id, cells, done_before=0)
    return spec.run_id


def pools_short_of_hosts(store: ControllerStore, spec: RunSpec) -> list[str]:
    """'pool cpu has 1 live host (vm-a)' for each pool with fewer live hosts than hosts_per_pool."""
    hosts: dict[str, set] = {}
    for w in store.live_workers():
        hosts.setdefault(w.get("pool"), set()).add(w.get("hostname"))
    out = []
    for pool in spec.pools:
        have = sorted(str(h) for h in hosts.get(pool, set()))
        if len(have) < spec.hosts_per_pool:
            out.append(f"pool {pool} has {len(have)} live host{'s' if len(have) != 1 else ''}"
                       + (f" ({', '.join(have)})" if have else ""))
    return out


def send_run_cells(store: ControllerStore, run_id: str, cells: list, done_before: int) -> None:
    """Send the tasks of ``cells``, the run's cells in spec order from index ``done_before``,
    counting in the run how far sending got; a failure or Ctrl-C part way marks the run
    incomplete and says how to send the rest (`benchctl retry`, which sends exactly those)."""
    app = make_app(store.settings, results=False)
    total, sent = done_before + len(cells), [done_before]

    def progress(n: int) -> None:
        sent[0] = done_before + n
        if sent[0] < total:  # the last count goes with the status, below
            _best_effort(lambda: store.note_sent(run_id, sent[0]))

    rest = f"`benchctl retry {run_id}` sends the cells never sent (a cell sent twice is measured once)"
    try:
        with app.producer_or_acquire() as producer:
            send_cells(app, cells, producer, progress)
    except SendError as exc:
        store.note_send_failed(run_id, done_before + exc.sent)  # best effort: the store may be what failed
        raise SendError(f"run {run_id} is recorded, but sending stopped after {done_before + exc.sent} of {total} "
                        f"cells' tasks: {exc}; once that is fixed, {rest}", exc.sent, exc.total) from None
    except BaseException as exc:  # Ctrl-C (or anything) part way: the run says how far it got
        store.note_send_failed(run_id, sent[0])
        if isinstance(exc, (Exception, SystemExit, GeneratorExit)):
            raise
        raise type(exc)(f"interrupted: run {run_id} is recorded, but only {sent[0]} of {total} cells' tasks were "
                        f"sent; {rest}") from None
    finally:
        app.close()
    try:
        store.note_sent(run_id, total, done=True)
    except BrokerError as exc:  # every task is sent: the run goes on; only its label is stale
        import sys

        print(f"benchctl: warning: run {run_id}: every task was sent, but its status could not be written: {exc}",
              file=sys.stderr)


def _best_effort(write) -> None:
    try:
        write()
    except BrokerError:
        pass  # the count lags; sending itself says whether the store is gone

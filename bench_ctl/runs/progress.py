"""Progress of a run's cells while `collect` or `submit --wait` waits: the same rich bar as
`run` (cells done, failed, elapsed, ETA) on a terminal; plain lines otherwise (a log, CI), one
when the counts change and at most one per PLAIN_EVERY seconds, so a 10,000-cell sweep does not
print 10,000 lines."""

from __future__ import annotations

import sys
import time

from bench_protocol.records import SETTLED, CellState

PLAIN_EVERY = 5.0
# A submit pipelines a thousand tasks per write, each in well under a second: a count of sent
# tasks that has not moved for this long belongs to a submit that is gone (killed, host down).
SEND_STALLED_AFTER = 60.0


def _bar(done: int, total: int, width: int = 30) -> str:
    filled = int(width * done / total) if total else width
    return "[" + "#" * filled + "-" * (width - filled) + f"] {done}/{total}"


def unsent(meta: dict, now: float | None = None) -> tuple[int, int] | None:
    """(sent, total) when some of a run's tasks were never sent and no submit is sending them
    any more (it failed, was interrupted or killed); None when every task went out or a submit
    is sending them now. Runs from before sending was counted have no ``sent``: all went out."""
    status, total = meta.get("status"), int(meta.get("n_cells") or 0)
    try:
        sent, at = int(meta.get("sent", total)), float(meta.get("sent_at") or 0)
    except ValueError:
        return None
    if sent >= total or status not in ("sending", "incomplete"):
        return None
    if status == "sending" and (now or time.time()) - at < SEND_STALLED_AFTER:
        return None
    return sent, total


def still_sending(meta: dict, now: float | None = None) -> bool:
    return meta.get("status") == "sending" and unsent(meta, now) is None


def counts(states: dict[str, str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for s in states.values():
        out[s] = out.get(s, 0) + 1
    return out


def summary(states: dict[str, str]) -> str:
    """'[####------] 4/10  ok=3 error=1 running=2 queued=4': what `status` prints too."""
    c = counts(states)
    done = sum(c.get(s, 0) for s in SETTLED)
    return _bar(done, len(states)) + "  " + " ".join(f"{k}={v}" for k, v in sorted(c.items()))


class CellProgress:
    """A context manager; call ``update(states)`` on every poll."""

    def __init__(self, description: str, quiet: bool = False, stream=None) -> None:
        self.description, self.quiet = description, quiet
        self.stream = stream or sys.stderr
        self.rich = None
        self._last_line, self._last_at = None, 0.0

    def __enter__(self) -> CellProgress:
        if not self.quiet and self.stream.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self.rich = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[detail]}"), TimeElapsedColumn(), TextColumn("ETA"),
                                 TimeRemainingColumn(), console=Console(file=self.stream), transient=False)
            self.rich.__enter__()
            self.task = self.rich.add_task(self.description, total=None, detail="")
        return self

    def update(self, states: dict[str, str]) -> None:
        if self.quiet:
            return
        c = counts(states)
        done = sum(c.get(s, 0) for s in SETTLED)
        if self.rich is not None:
            failed = c.get(CellState.ERROR.value, 0)
            detail = f"failed {failed}  running {c.get(CellState.RUNNING.value, 0)}"
            self.rich.update(self.task, total=len(states), completed=done, detail=detail)
            return
        line = summary(states)
        now = time.monotonic()
        finished = done == len(states)
        if line != self._last_line and (finished or now - self._last_at >= PLAIN_EVERY or self._last_line is None):
            print(line, file=self.stream, flush=True)
            self._last_line, self._last_at = line, now

    def __exit__(self, *exc) -> None:
        if self.rich is not None:
            self.rich.__exit__(*exc)

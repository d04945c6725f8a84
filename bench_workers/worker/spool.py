"""Finished measurements a worker could not save yet, kept on its local disk.

A record is spooled when the store refuses its save (Redis at its memory limit, or away): the
measurement outlives the task's time limit and the worker's restart. When the cell comes back
to this worker (its claim lapsed and it was queued again), the spooled record is saved instead
of measuring the cell a second time.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path


def spool_dir(worker: str) -> Path:
    """One folder per worker name: two workers of one host (cuda:0 and cuda:1, say) each save
    only what they measured themselves."""
    base = os.environ.get("BENCHCTL_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "benchctl")
    return Path(base) / "spool" / re.sub(r"[^A-Za-z0-9@._-]", "_", worker)


class Spool:
    def __init__(self, directory: Path) -> None:
        self.dir = directory

    def path(self, cell_id: str) -> Path:
        return self.dir / f"{cell_id.replace(':', '_')}.json"

    def put(self, record: dict) -> Path:
        """Write the record whole or not at all (a temporary file renamed into place)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        target = self.path(record["cell_id"])
        fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".spool-")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(record, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        return target

    def get(self, cell_id: str) -> dict | None:
        """The spooled record of ``cell_id``, or None (none, or a file that cannot be read)."""
        try:
            record = json.loads(self.path(cell_id).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) and record.get("cell_id") == cell_id else None

    def drop(self, cell_id: str) -> None:
        self.path(cell_id).unlink(missing_ok=True)

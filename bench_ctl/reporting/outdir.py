"""Output directories: checked before any work starts, files replaced atomically."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from bench_protocol.errors import OutputError


def check_out_dir(path: str | Path) -> Path:
    """Refuse a path that is a file or cannot be written, before anything is measured.

    The check is a real write (permission bits say little to root or on a read-only mount);
    whatever it creates it removes again.
    """
    out = Path(path).expanduser()
    if out.exists() and not out.is_dir():
        raise OutputError(f"output directory {out} is a file")
    existing = out
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"output directory {out} lies under a file ({existing})")
    created = [p for p in [out, *out.parents] if not p.exists()]
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".benchctl-probe-", dir=out)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputError(f"output directory {out} is not writable: {exc.strerror}") from None
    finally:
        for p in created:  # deepest first
            try:
                p.rmdir()
            except OSError:
                pass
    return out


def make_out_dir(path: str | Path) -> Path:
    out = check_out_dir(path)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create output directory {out}: {exc.strerror}") from None
    return out


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write to a temporary file beside ``path`` and rename it: readers never see half a file."""
    mode = "wb" if isinstance(data, bytes) else "w"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **({} if isinstance(data, bytes) else {"encoding": "utf-8"})) as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise

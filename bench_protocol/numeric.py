"""Every number a user or the environment gives, checked in one place: a flag's or an
environment variable's value that is not a number, not finite (nan, inf) or out of its range
is refused with one line (SpecError), on the controller and on the worker alike.
"""

from __future__ import annotations

import math
import os

from .errors import SpecError


def check_number(value, what: str, lo: float | None = None, hi: float | None = None, *, integer: bool = False,
                 lo_open: bool = False):
    """``value`` (a number or its text) if it is a finite number within [lo, hi] (lo excluded
    with ``lo_open``), as an int with ``integer``; else SpecError naming ``what``."""
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool):
        raise SpecError(f"{what} must be {kind}, got {value!r}")
    if isinstance(value, str):
        text = value.strip()
        try:
            value = int(text) if integer else float(text)
        except ValueError:
            raise SpecError(f"{what} must be {kind}, got {text!r}") from None
    if not isinstance(value, (int, float)):
        raise SpecError(f"{what} must be {kind}, got {value!r}")
    if not math.isfinite(value):
        raise SpecError(f"{what} must be a finite number, got {value!r}")
    if integer and value != int(value):
        raise SpecError(f"{what} must be an integer, got {value!r}")
    below = lo is not None and (value <= lo if lo_open else value < lo)
    if below or (hi is not None and value > hi):
        low = "" if lo is None else f"{'above' if lo_open else 'at least'} {_plain(lo)}"
        high = "" if hi is None else f"at most {_plain(hi)}"
        raise SpecError(f"{what} must be {' and '.join(p for p in (low, high) if p)}, got {_plain(value)}")
    return int(value) if integer else value


def _plain(x: float) -> str:
    """2592000, not 2.592e+06; 0.5 as 0.5."""
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else f"{x:g}"


def env_number(name: str, default: float, lo: float | None = None, hi: float | None = None, *,
               integer: bool = False, lo_open: bool = False):
    """The environment variable ``name`` checked as :func:`check_number` does; ``default`` when
    it is unset or empty."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    return check_number(text, f"${name}", lo, hi, integer=integer, lo_open=lo_open)


__all__ = ["check_number", "env_number"]

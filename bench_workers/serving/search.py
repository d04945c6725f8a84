"""The highest request rate a host serves within a p99 bound: rates are tried as load steps,
doubling or halving from a start until one fits and one does not, then bisected (geometric
mean) until the two are within PRECISION of each other or the time budget is spent. Every
step is a full LoadGen Server run, judged by its early-stopping estimate of p99."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

PRECISION = 1.1  # stop when the rate that fails is within 10% above the rate that fits
MAX_HALVINGS = 12


def search_rate(try_rate: Callable[[float], object], start: float, budget_s: float, step_s: Callable[[float], float],
                clock: Callable[[], float] = time.monotonic,
                confirm: Callable[[float], object] | None = None) -> tuple[object | None, object | None, list]:
    """(the fitting step of the highest rate, the failing step just above it, every step).
    ``try_rate(rate)`` returns a step with ``valid``; ``step_s(rate)`` is about one step's length
    at that rate, so a step is only started when it can end within ``budget_s``.

    Near the knee a p99 moves a lot between runs of the same rate; ``confirm(rate)`` (a longer
    step) is run at the rate found: if it fits it is the step reported, if not, it is the
    failing step and the next fitting rate below is confirmed in turn (within the budget)."""
    t_end = clock() + budget_s
    steps: list = []
    fit = fail = None

    def attempt(rate: float):
        nonlocal fit, fail
        step = try_rate(rate)
        steps.append(step)
        if step.valid and (fit is None or rate > fit.offered_rate):
            fit = step
        if not step.valid and (fail is None or rate < fail.offered_rate):
            fail = step
        return step

    def time_left(rate: float) -> bool:
        return clock() + step_s(rate) <= t_end or not steps  # the first step always runs

    rate = start
    # Bracket: up from a fitting rate, down from a failing one.
    while time_left(rate):
        step = attempt(rate)
        if fit is not None and fail is not None:
            break
        if step.valid:
            rate *= 2
        elif len(steps) > MAX_HALVINGS:
            break
        else:
            rate /= 2
    # Bisect between them.
    while fit is not None and fail is not None and fail.offered_rate > PRECISION * fit.offered_rate:
        rate = math.sqrt(fit.offered_rate * fail.offered_rate)
        if not time_left(rate):
            break
        attempt(rate)
    while confirm is not None and fit is not None and getattr(fit, "confirmed", False) is False:
        rate = fit.offered_rate
        if not (clock() + 2 * step_s(rate) <= t_end):
            break
        check = confirm(rate)
        steps.append(check)
        if check.valid:
            check.confirmed = True
            fit = check
            break
        fail = check
        below = [s for s in steps if s.valid and s.offered_rate < rate]
        fit = max(below, key=lambda s: s.offered_rate) if below else None
    return fit, fail, steps

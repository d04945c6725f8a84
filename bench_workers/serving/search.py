"""The highest request rate a host serves within a p99 bound: rates are tried as load steps,
doubling or halving from a start until one fits and one does not, then bisected (geometric
mean) until the two are within PRECISION of each other or the time budget is spent. Every
step is a full LoadGen Server run, judged by its early-stopping estimate of p99.

Near the knee a p99 grows with the length of the run (the longest busy period grows with it),
so a rate found by short steps is confirmed by a longer one: if that fails, every step at or
above its rate is overruled and the search goes on below it."""

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
    ``try_rate(rate)`` returns a step with ``valid`` and ``offered_rate``; ``step_s(rate)`` is
    about one step's length at that rate, so a step is only started when it can end within
    ``budget_s``; ``confirm(rate)``: a longer step (about twice ``step_s``), or None for none."""
    t_end = clock() + budget_s
    steps: list = []

    def lowest_fail():
        return min((s for s in steps if not s.valid), key=lambda s: s.offered_rate, default=None)

    def best_fit():
        """The highest fitting rate below every failing one: a rate that fit above one that
        failed (noise near the knee) is not trusted."""
        fail = lowest_fail()
        return max((s for s in steps if s.valid and (fail is None or s.offered_rate < fail.offered_rate)),
                   key=lambda s: (s.offered_rate, getattr(s, "confirmed", False)), default=None)

    def time_left(rate: float, factor: float = 1.0) -> bool:
        return clock() + factor * step_s(rate) <= t_end or not steps  # the first step always runs

    rate, halvings = start, 0
    while True:
        # Bracket: up from a fitting rate, down from a failing one.
        while (best_fit() is None or lowest_fail() is None) and time_left(rate) and halvings <= MAX_HALVINGS:
            step = try_rate(rate)
            steps.append(step)
            if step.valid:
                rate *= 2
            else:
                rate /= 2
                halvings += 1
        # Bisect between them.
        while (fit := best_fit()) is not None and (fail := lowest_fail()) is not None \
                and fail.offered_rate > PRECISION * fit.offered_rate:
            rate = math.sqrt(fit.offered_rate * fail.offered_rate)
            if not time_left(rate):
                break
            steps.append(try_rate(rate))
        fit = best_fit()
        if confirm is None or fit is None or getattr(fit, "confirmed", False) or not time_left(fit.offered_rate, 2):
            break
        check = confirm(fit.offered_rate)
        steps.append(check)
        if check.valid:
            check.confirmed = True
            break
        for s in steps:  # a longer run at this rate failed: no shorter one at or above it counts
            if s.valid and s.offered_rate >= check.offered_rate:
                s.overruled = True
        rate = check.offered_rate / 2
    fit = best_fit()
    return fit, (lowest_fail() if fit is not None else None), steps

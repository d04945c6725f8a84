"""When to stop timing: both a minimum iteration count and a minimum duration, capped by max_time."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StopRule:
    min_iterations: int
    min_time: float
    max_time: float

    def done(self, iterations: int, elapsed_s: float) -> bool:
        if elapsed_s >= self.max_time and iterations >= 1:
            return True
        return iterations >= self.min_iterations and elapsed_s >= self.min_time

    def shortfall(self, iterations: int, elapsed_s: float) -> str | None:
        """Why a finished loop falls short of the rule (it hit max_time), or None."""
        if iterations < self.min_iterations:
            return f"only {iterations} of {self.min_iterations} iterations within max-time {self.max_time:g}s"
        return None

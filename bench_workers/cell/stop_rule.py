"""When to stop timing: both a minimum iteration count and a minimum duration, capped by
max_time; with a precision asked, also until the 95% interval of the mean latency is that tight."""

from __future__ import annotations

from dataclasses import dataclass

# How often the loop reads its latencies to check the precision (a CUDA timer synchronises to
# read: between iterations, never inside one).
PRECISION_CHECK_S = 0.5


@dataclass(frozen=True)
class StopRule:
    min_iterations: int
    min_time: float
    max_time: float
    precision_pct: float = 0.0  # 0: off

    def minimum_met(self, iterations: int, elapsed_s: float) -> bool:
        return iterations >= self.min_iterations and elapsed_s >= self.min_time

    def done(self, iterations: int, elapsed_s: float, half_width_pct: float | None = None) -> bool:
        """``half_width_pct``: the latest 95% half-width of the mean, in % of it (None: unknown yet)."""
        if elapsed_s >= self.max_time and iterations >= 1:
            return True
        if not self.minimum_met(iterations, elapsed_s):
            return False
        return not self.precision_pct or (half_width_pct is not None and half_width_pct <= self.precision_pct)

    def shortfall(self, iterations: int, elapsed_s: float) -> str | None:
        """Why a finished loop falls short of the rule (it hit max_time), or None."""
        if iterations < self.min_iterations:
            return f"only {iterations} of {self.min_iterations} iterations within max-time {self.max_time:g}s"
        return None

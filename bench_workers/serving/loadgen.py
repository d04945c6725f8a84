"""One load step under MLPerf LoadGen: its Server scenario (Poisson arrivals at a target rate,
one request per query, a p99 bound judged with its early-stopping estimate) or its Offline
scenario (every request at once), against the worker's dynamic batcher. A generate request is
judged by its tokens (LoadGen's token latencies): its time to first token and its time per
output token after the first, each at p99 against its own bound.

LoadGen decides the arrivals (seeded: a step is repeatable) and the verdict (VALID/INVALID with
its reasons); the batcher measures each request's latency itself, so the record holds the
per-request numbers as well as LoadGen's. The step's minimum duration and query count are far
below MLPerf's (600 s, and 270,336 queries for Server): the record says so.
"""

from __future__ import annotations

import json
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..runtimes.base import RuntimeUnavailable
from .batcher import DynamicBatcher

MLPERF_MIN_DURATION_S = 600.0
# A p99 within a bound needs evidence: with none of its requests over the bound, LoadGen's
# early-stopping estimate of p99 holds from 459 requests. A step runs until it has that many;
# one with requests over the bound that still lacks evidence is run once more, longer.
MIN_QUERIES = 460
SEED = 20261204  # LoadGen's schedule, sample-index and QSL seeds: the same arrivals every run
SAMPLES = 1024  # the query sample library's size: indices only, the inputs are the cell's


class LoadGenMissing(RuntimeUnavailable):
    """A ``runtime_unavailable`` record naming what to install, never a crash."""


@dataclass
class Step:
    """What one load step measured."""

    scenario: str
    offered_rate: float | None  # Server: LoadGen's target; Offline: none
    duration_s: float
    latencies_ms: list[float]
    batches: list[int]
    first_waits_ms: list[float]
    arrivals: list[float]
    busy_s: float
    dropped: int
    loadgen: dict = field(default_factory=dict)  # LoadGen's result_* and early_stopping_* entries
    confirmed: bool = False  # a confirmation step (longer, at a rate the search found) that held
    role: str = "step"  # "step", or "confirmation"
    new_tokens: int = 0  # per generate request (0: a classify request)
    ttft_ms: list[float] = field(default_factory=list)  # per generate request, queueing included
    overruled: bool = False  # a longer step at this rate or below failed: this one does not count

    @property
    def valid(self) -> bool:
        return self.loadgen.get("result_validity") == "VALID" and not self.dropped and not self.overruled

    @property
    def completed_rate(self) -> float | None:
        return self.loadgen.get("result_completed_samples_per_sec") or self.loadgen.get("result_samples_per_second")

    def p99_ms(self, of: str = "latency") -> float | None:
        """LoadGen's p99 of the request ("latency"), of its first token ("ttft") or of its time
        per output token ("tpot")."""
        ns = self.loadgen.get(_P99_KEYS[of])
        return ns / 1e6 if ns is not None else None

    def tpot_ms(self) -> list[float]:
        """Per generate request: (completion - first token) / (new tokens - 1), as LoadGen counts it."""
        if self.new_tokens < 2:
            return []
        return [(lat - ft) / (self.new_tokens - 1) for lat, ft in zip(self.latencies_ms, self.ttft_ms)]

    def why_invalid(self) -> str | None:
        if self.valid:
            return None
        bound = "p99 of TTFT or TPOT above its bound" if self.new_tokens else "p99 above the bound"
        unmet = [what for key, what in (("result_perf_constraints_met", bound),
                                        ("result_min_duration_met", "too short"),
                                        ("result_min_queries_met", "too few queries"),
                                        ("early_stopping_met", "early stopping not met"))
                 if self.loadgen.get(key) is False]
        if self.dropped:
            unmet.append(f"{self.dropped} request(s) never served: the host could not keep up")
        if self.overruled:
            unmet.append("overruled: a longer confirmation step at this rate or below did not hold the bound")
        return ", ".join(unmet) or f"LoadGen: {self.loadgen.get('result_validity')}"


_P99_KEYS = {"latency": "result_99.00_percentile_latency_ns",
             "ttft": "result_first_token_99.00_percentile_latency_ns",
             "tpot": "result_time_per_output_token_99.00_percentile_ns"}
DAY_MS = 86400e3  # the bound of what is not bounded: it never binds


def _lg():
    try:
        import mlperf_loadgen
    except ImportError as exc:
        raise LoadGenMissing(f"server and offline cells need MLPerf LoadGen ({exc}): pip install 'benchctl[worker]'") from None
    return mlperf_loadgen


def step_length(duration_s: float, rate: float, queries: int = MIN_QUERIES) -> float:
    """How long a step at ``rate`` issues requests: its duration, or longer for ``queries``."""
    return max(duration_s, queries / rate)


def more_queries_needed(step: Step) -> int | None:
    """How many more requests LoadGen's early stopping asks for, where the bound held but the
    evidence fell short; None otherwise."""
    lg = step.loadgen
    if lg.get("early_stopping_met") is not False or lg.get("result_perf_constraints_met") is False:
        return None
    asked = [int(m.group(1)) for key in ("early_stopping_result", "early_stopping_ttft_result", "early_stopping_tpot_result")
             if (m := re.search(r"at least (\d+) more queries", str(lg.get(key, ""))))]
    return max(asked) if asked else None


def run_step(scenario: str, run_batch, *, max_batch: int, window_s: float, duration_s: float, rate: float,
             slo_ms: float | None, grace_s: float, queries: int = MIN_QUERIES, new_tokens: int = 0,
             slo_ttft_ms: float | None = None, slo_tpot_ms: float | None = None) -> Step:
    """Serve one step. ``rate``: Server's target requests/s, Offline's expected throughput (it
    sizes the one query). ``slo_ms``: the p99 bound (None: validity rests on duration and count).
    ``new_tokens``: a generate request's tokens (at least 2; ``run_batch(n, mark)`` marks the
    first), judged by ``slo_ttft_ms`` and ``slo_tpot_ms`` instead of ``slo_ms``. Requests still
    queued ``grace_s`` after the issuing ends are dropped."""
    lg = _lg()
    batcher: DynamicBatcher

    def issue(samples):
        batcher.submit([s.id for s in samples])

    def complete(ids):
        lg.QuerySamplesComplete([lg.QuerySampleResponse(i, 0, 0, *([new_tokens] if new_tokens else [])) for i in ids])

    def first_token(ids):
        lg.FirstTokenComplete([lg.QuerySampleResponse(i, 0, 0, 1) for i in ids])

    batcher = DynamicBatcher(run_batch, complete, max_batch, window_s, first_token=first_token if new_tokens else None)
    settings = lg.TestSettings()
    settings.mode = lg.TestMode.PerformanceOnly
    settings.scenario = lg.TestScenario.Server if scenario == "server" else lg.TestScenario.Offline
    settings.server_target_qps = float(rate)
    settings.offline_expected_qps = float(rate)
    # No bound: validity rests on the duration and the count (a bound of a day never binds).
    settings.server_target_latency_ns = int((slo_ms if slo_ms is not None else DAY_MS) * 1e6)
    settings.server_target_latency_percentile = 0.99
    if new_tokens:
        settings.use_token_latencies = True
        settings.ttft_latency = int((slo_ttft_ms if slo_ttft_ms is not None else DAY_MS) * 1e6)
        settings.tpot_latency = int((slo_tpot_ms if slo_tpot_ms is not None else DAY_MS) * 1e6)
    length = step_length(duration_s, rate, queries)
    settings.min_duration_ms = int(duration_s * 1e3)
    settings.max_duration_ms = int(length * 1.5 * 1e3) + 1000
    settings.min_query_count = queries
    for name in ("qsl_rng_seed", "sample_index_rng_seed", "schedule_rng_seed"):
        setattr(settings, name, SEED)
    with tempfile.TemporaryDirectory(prefix="benchctl-loadgen-") as out:
        logs = lg.LogSettings()
        logs.log_output.outdir = out
        logs.log_output.copy_summary_to_stdout = False
        logs.enable_trace = False
        sut = lg.ConstructSUT(issue, lambda: None)
        qsl = lg.ConstructQSL(SAMPLES, SAMPLES, lambda indices: None, lambda indices: None)
        t0 = time.perf_counter()
        batcher.start(deadline=t0 + length * 1.5 + 1 + grace_s)
        try:
            lg.StartTestWithLogSettings(sut, qsl, settings, logs)
        finally:
            lg.DestroyQSL(qsl)
            lg.DestroySUT(sut)
            elapsed = time.perf_counter() - t0
            batcher.stop(timeout=grace_s + 60)
        results = parse_detail_log(Path(out) / "mlperf_log_detail.txt")
    return Step(scenario, float(rate) if scenario == "server" else None, elapsed,
                [s * 1e3 for s in batcher.latencies_s], list(batcher.batches), [s * 1e3 for s in batcher.first_waits_s],
                [a - t0 for a in batcher.arrivals], batcher.busy_s, batcher.dropped, results, new_tokens=new_tokens,
                ttft_ms=[s * 1e3 for s in batcher.first_token_s])


_KEEP = ("result_", "early_stopping_", "effective_target_qps", "effective_min_duration_ms",
         "effective_min_query_count", "effective_target_latency_ns", "effective_samples_per_query")


def parse_detail_log(path: Path) -> dict:
    """LoadGen's verdict and statistics from its detail log (one ':::MLLOG {json}' per line)."""
    out: dict = {}
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return out
    for line in lines:
        if not line.startswith(":::MLLOG "):
            continue
        try:
            entry = json.loads(line[len(":::MLLOG "):])
        except ValueError:
            continue
        key = entry.get("key", "")
        if key.startswith(_KEEP):
            out[key] = entry.get("value")
    return out

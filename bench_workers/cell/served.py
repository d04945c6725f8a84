"""A server or offline cell: the model prepared for a few batch shapes, then served under
LoadGen's load through the dynamic batcher (bench_workers/serving/).

A batch of n requests runs at the smallest prepared shape that holds it (powers of two up to the
cell's batch size, which is the largest batch), padded: compiled, exported and captured
runtimes need fixed shapes, and servers that batch dynamically do the same. Half the capacity
of the largest batch, timed after warm-up, is where a search starts when no --rate is given.

A generate request gets exactly --new-tokens tokens; a batch of them runs as one ``generate``
(request-level batching) whose first token is reported as it exists, so each request has its
time to first token (queueing included) and its time per output token after it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import statistics
import time

from ..serving.loadgen import MIN_QUERIES, MLPERF_MIN_DURATION_S, Step, more_queries_needed, run_step, step_length
from ..serving.search import search_rate
from .stats import latency_stats

LATENCIES_KEPT = 20000  # per-request latencies in the record (a stride through them beyond this)
START_SHARE = 0.5  # of the largest batch's capacity: where a search without --rate starts


def buckets(max_batch: int) -> list[int]:
    """The batch shapes prepared: 1, 2, 4, ... below ``max_batch``, and ``max_batch``."""
    out, k = [], 1
    while k < max_batch:
        out.append(k)
        k *= 2
    return [*out, max_batch]


def bucket_for(n: int, shapes: list[int]) -> int:
    return next(k for k in shapes if k >= n)


@dataclasses.dataclass
class Prepared:
    runners: dict  # bucket -> Runner
    prepare_s: float | None
    capacity: float  # items/s of the largest batch after warm-up
    first_call_ms: float


def prepare(torch, runtime, ctx_for, cell, sync, check_deadline) -> Prepared:
    """A runner per bucket (``ctx_for(k)``: the prepare context at batch k), each called cold then
    warmed up; the largest one timed for the capacity estimate."""
    shapes = buckets(cell.batch_size)
    runners, prepare_s, first_call_ms = {}, None, None
    for k in shapes:
        runner = runtime.prepare(ctx_for(k))
        runners[k] = runner
        if runner.prepare_s is not None:
            prepare_s = (prepare_s or 0.0) + runner.prepare_s
        s = runner.sync or sync
        s()
        t0 = time.perf_counter()
        runner.call()
        s()
        if k == cell.batch_size:
            first_call_ms = (time.perf_counter() - t0) * 1e3
        for _ in range(cell.rules.warmup):
            runner.call()
        check_deadline()
    top = runners[cell.batch_size]
    s = top.sync or sync
    times = []
    for _ in range(max(3, min(cell.rules.min_iterations, 10))):
        s()
        t0 = time.perf_counter()
        top.call()
        s()
        times.append(time.perf_counter() - t0)
    return Prepared(runners, prepare_s, cell.batch_size / statistics.median(times), first_call_ms)


def bounded(cell) -> bool:
    """Whether a server cell has a latency bound, so its highest rate within it is searched."""
    return bounds_text(cell) is not None


def serve(torch, prepared: Prepared, cell, sync, side_trackers, budget_s: float, device_scope=contextlib.nullcontext,
          marks: dict | None = None) -> tuple[Step | None, Step | None, list, list]:
    """(the reported step, the failing step just above it (a search), every step, the reported
    step's trackers); ``device_scope()``: the cell's device made current on the batcher's thread;
    ``marks``: per bucket, a generate call's token marks (generation.StepMarks). A server cell
    with a bound (--slo-p99-ms; generate: --slo-ttft-ms, --slo-tpot-ms) searches its highest rate
    within it (from --rate, else from half the capacity of the largest batch); one with --rate alone
    serves that rate; an offline cell serves every request at once, sized by the capacity."""
    rules = cell.rules
    shapes = sorted(prepared.runners)
    marks = marks or {}
    padded = []

    def run_batch(n: int, first_token=None) -> None:  # on the batcher's thread: inference mode and the current device are per thread
        k = bucket_for(n, shapes)
        runner = prepared.runners[k]
        s = runner.sync or sync
        m = marks.get(k)
        if m is not None and first_token is not None:
            # The first token on the host, as a streaming server sends it: then it counts.
            m.on_first = lambda: (s(), first_token())
        try:
            with device_scope(), torch.inference_mode():
                runner.call()
            s()
        finally:
            if m is not None:
                m.on_first = None
                m.reset()
        padded.append(k - n)

    tracked: dict[int, list] = {}

    def step_at(rate: float, queries: int = MIN_QUERIES, seconds: float | None = None) -> Step:
        trackers = side_trackers()
        with contextlib.ExitStack() as stack:
            for t in trackers:
                stack.enter_context(t.track())
            step = run_step(cell.scenario, run_batch, max_batch=cell.batch_size, window_s=rules.batch_window_ms / 1e3,
                            duration_s=seconds or rules.serve_time, rate=rate, slo_ms=rules.slo_p99_ms,
                            grace_s=max(rules.serve_time, 2.0), queries=queries,
                            new_tokens=cell.new_tokens if cell.task == "generate" else 0,
                            slo_ttft_ms=rules.slo_ttft_ms, slo_tpot_ms=rules.slo_tpot_ms)
        tracked[id(step)] = trackers
        if seconds is not None:
            step.role = "confirmation"
        more = more_queries_needed(step)
        if more is not None and seconds is None and queries == MIN_QUERIES:  # inconclusive: once more, with the evidence asked for
            return step_at(rate, int((step.loadgen.get("result_query_count") or queries) + more * 1.2) + 10)
        return step

    if cell.scenario == "offline":
        step = step_at(prepared.capacity)
        return step, None, [step], tracked[id(step)]
    if not bounded(cell):
        step = step_at(rules.rate)
        return step, None, [step], tracked[id(step)]
    # The confirmation: twice the evidence of a search step.
    # Without --rate the search starts at half the capacity: at the capacity itself the queue grows
    # for as long as the step lasts (no bound holds there), and its drain makes it the longest step.
    fit, fail, steps = search_rate(step_at, rules.rate or START_SHARE * prepared.capacity, budget_s,
                                   lambda rate: 1.2 * step_length(rules.serve_time, rate) + 1,
                                   confirm=lambda rate: step_at(rate, 2 * MIN_QUERIES, 2 * rules.serve_time))
    chosen = fit or (min(steps, key=lambda s: s.offered_rate) if steps else None)
    return chosen, (fail if fit is not None else None), steps, tracked.get(id(chosen), [])


def bounds_text(cell) -> str | None:
    """The cell's latency bound in words, None without one."""
    rules = cell.rules
    if cell.task == "generate":
        parts = [f"{what} p99 within {v:g} ms" for what, v in (("TTFT", rules.slo_ttft_ms), ("TPOT", rules.slo_tpot_ms))
                 if v is not None]
        return " and ".join(parts) or None
    return f"p99 within {rules.slo_p99_ms:g} ms" if rules.slo_p99_ms is not None else None


def goodput(step: Step, rules) -> float | None:
    """Requests per second that met every bound of the cell (each request judged on its own:
    latency; generate: time to first token and time per output token); None without a bound."""
    if step.duration_s <= 0:
        return None
    if step.new_tokens:
        if rules.slo_ttft_ms is None and rules.slo_tpot_ms is None:
            return None
        good = sum(1 for ft, tp in zip(step.ttft_ms, step.tpot_ms())
                   if (rules.slo_ttft_ms is None or ft <= rules.slo_ttft_ms)
                   and (rules.slo_tpot_ms is None or tp <= rules.slo_tpot_ms))
    elif rules.slo_p99_ms is not None:
        good = sum(1 for lat in step.latencies_ms if lat <= rules.slo_p99_ms)
    else:
        return None
    return good / step.duration_s


def step_summary(step: Step, rules) -> dict:
    lat = latency_stats(step.latencies_ms)
    out = {"offered_rate": step.offered_rate, "role": step.role, "completed_rate": step.completed_rate,
           "p50_ms": lat.get("median"), "p99_ms": lat.get("p99"), "loadgen_p99_ms": step.p99_ms(),
           "requests": lat.get("n", 0), "dropped": step.dropped, "valid": step.valid, "why_invalid": step.why_invalid(),
           "duration_s": step.duration_s, "goodput": goodput(step, rules)}
    if step.new_tokens:
        out.update({"ttft_p99_ms": latency_stats(step.ttft_ms).get("p99"), "loadgen_ttft_p99_ms": step.p99_ms("ttft"),
                    "tpot_p99_ms": latency_stats(step.tpot_ms()).get("p99"), "loadgen_tpot_p99_ms": step.p99_ms("tpot")})
    return out


def served_metrics(step: Step, cell) -> dict:
    """The record's metrics of the reported step: per-request latency, rates, the batches formed;
    a generate cell's time to first token and time per output token per request (queueing in
    the first), and the tokens it generated per second."""
    lat = latency_stats(step.latencies_ms)
    n = lat.get("n", 0)
    rate = n / step.duration_s if step.duration_s > 0 and n else None
    served = step.completed_rate if step.valid else None
    batches = step.batches
    per_item_tokens = step.new_tokens or cell.seq_len  # generated, or processed by a forward pass
    out = {
        "latency_ms": lat,
        "throughput_mean": step.completed_rate or rate,
        "throughput_measured": rate,
        "tokens_per_s": (step.completed_rate or rate or 0) * per_item_tokens or None,
        "timed_items": n,
        "timed_elapsed_s": step.duration_s,
        "served_rate": served,
        "offered_rate": step.offered_rate,
        "goodput": goodput(step, cell.rules),
        "batch_formed_mean": statistics.fmean(batches) if batches else None,
        "batch_formed_max": max(batches) if batches else None,
        "batch_wait_ms_max": max(step.first_waits_ms) if step.first_waits_ms else None,
        "utilisation": step.busy_s / step.duration_s if step.duration_s > 0 else None,
    }
    if step.new_tokens:
        tpot = latency_stats(step.tpot_ms())
        mean_s = tpot["mean"] / 1e3 if tpot.get("n") else None
        out.update({"ttft_ms": latency_stats(step.ttft_ms), "decode_ms_per_token": tpot,
                    "decode_tokens_per_s": 1 / mean_s if mean_s else None, "decode_tokens_per_s_batch": None,
                    "new_tokens_per_call": step.new_tokens})
    return out


def serving_info(chosen: Step, fail: Step | None, steps: list, prepared: Prepared, cell) -> dict:
    rules = cell.rules
    hist: dict[str, int] = {}
    for b in chosen.batches:
        hist[str(b)] = hist.get(str(b), 0) + 1
    search = bounded(cell) and cell.scenario == "server"
    if chosen.valid:
        invalid = None
    elif search:
        invalid = (f"no rate tried held {bounds_text(cell)} (lowest tried {chosen.offered_rate:.3g}/s: "
                   f"{chosen.why_invalid()})")
    else:
        invalid = f"LoadGen: INVALID ({chosen.why_invalid()})"
    server = cell.scenario == "server"
    return {
        "scenario": cell.scenario, "max_batch": cell.batch_size, "batch_window_ms": rules.batch_window_ms,
        "buckets": sorted(prepared.runners), "slo_p99_ms": rules.slo_p99_ms if server else None,
        "slo_ttft_ms": rules.slo_ttft_ms if server else None, "slo_tpot_ms": rules.slo_tpot_ms if server else None,
        "bounds": bounds_text(cell) if server else None, "new_tokens": chosen.new_tokens,
        # A batch of generate requests runs together until each has its tokens (request-level
        # batching): a request that arrives meanwhile waits for the next batch.
        "batching": "request-level: a batch generates together; arrivals wait for the next" if chosen.new_tokens else "dynamic",
        "capacity_estimate": prepared.capacity, "searched": search,
        "reported": step_summary(chosen, rules), "above": step_summary(fail, rules) if fail is not None else None,
        "steps": [step_summary(s, rules) for s in steps], "batch_histogram": hist,
        "loadgen": chosen.loadgen, "invalid": invalid,
        "generator": "MLPerf LoadGen",
        "shorter_than_mlperf": rules.serve_time < MLPERF_MIN_DURATION_S,
        "note": (f"each load step ran at least {rules.serve_time:g} s and {MIN_QUERIES} requests; MLPerf's rules ask "
                 f"{MLPERF_MIN_DURATION_S:g} s" if rules.serve_time < MLPERF_MIN_DURATION_S else None),
    }


def kept_latencies(values: list[float]) -> list[float]:
    if len(values) <= LATENCIES_KEPT:
        return values
    stride = len(values) / LATENCIES_KEPT
    return [values[int(i * stride)] for i in range(LATENCIES_KEPT)]

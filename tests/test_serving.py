"""Serving under load: the batcher, LoadGen's arrivals, queueing, the SLO search, cost, and
server cells end to end (embedded and on two pools of real workers)."""

from __future__ import annotations

import math
import statistics
import time

import pandas as pd
import pytest
from conftest import benchctl, load_json

from bench_ctl.reporting.cost import cheapest, cost_frame, cost_per_million, hosts_needed
from bench_workers.serving.batcher import DynamicBatcher
from bench_workers.serving.loadgen import run_step
from bench_workers.serving.search import PRECISION, search_rate


def service(base_s: float, per_item_s: float):
    """A fake model: a batch of n takes base + n x per-item seconds."""
    return lambda n: time.sleep(base_s + per_item_s * n)


# -- the batcher ----------------------------------------------------------------------------------

@pytest.mark.fast
def test_batches_never_exceed_the_max_and_the_window_holds():
    done: list = []
    batcher = DynamicBatcher(service(0.004, 0.0005), done.extend, max_batch=4, window_s=0.010)
    batcher.start()
    for i in range(60):  # bursts and gaps: full batches and batches closed by the window
        batcher.submit([i])
        time.sleep(0.0 if i % 10 < 6 else 0.03)
    batcher.stop(timeout=30)
    assert sorted(done) == list(range(60)) and batcher.dropped == 0
    assert max(batcher.batches) == 4 and min(batcher.batches) >= 1 and sum(batcher.batches) == 60
    # A batch starts when it is full, when its oldest request has waited the window, or (the
    # model busy) as soon as the batch before it ends; never later than that, beyond scheduling slack.
    slack = 0.05
    for i, ((start, _), wait) in enumerate(zip(batcher.spans, batcher.first_waits_s)):
        oldest = start - wait
        previous_end = batcher.spans[i - 1][1] if i else 0.0
        assert start <= max(oldest + batcher.window_s, previous_end) + slack, (i, wait)
    assert all(lat >= 0 for lat in batcher.latencies_s)


@pytest.mark.fast
def test_a_failing_batch_completes_every_request_unserved_and_raises():
    done: list = []

    def boom(n):
        raise RuntimeError("model broke")

    batcher = DynamicBatcher(boom, done.extend, max_batch=4, window_s=0.001)
    batcher.start()
    batcher.submit([1, 2, 3])
    time.sleep(0.1)
    batcher.submit([4])
    with pytest.raises(RuntimeError, match="model broke"):
        batcher.stop(timeout=10)
    assert sorted(done) == [1, 2, 3, 4] and batcher.dropped == 4  # the load generator never waits for ever


# -- LoadGen's arrivals, and queueing in the latency ------------------------------------------------

def test_poisson_arrivals_have_the_asked_mean_rate():
    rate, duration = 300.0, 3.0
    step = run_step("server", service(0.001, 0.0001), max_batch=8, window_s=0.002, duration_s=duration, rate=rate,
                    slo_ms=None, grace_s=2)
    n = len(step.arrivals)
    span = step.arrivals[-1] - step.arrivals[0]
    measured = (n - 1) / span
    # The count of a Poisson process over T has sd sqrt(rate T): 4 sd either side.
    assert abs(measured - rate) <= 4 * math.sqrt(rate * span) / span, (measured, rate)
    gaps = [b - a for a, b in zip(step.arrivals, step.arrivals[1:])]
    cv = statistics.pstdev(gaps) / statistics.fmean(gaps)
    assert 0.8 < cv < 1.2, cv  # exponential gaps: CV 1 (a fixed schedule would give 0)
    assert step.valid and len(step.latencies_ms) == n


def test_a_rate_above_capacity_queues_p99_grows_with_the_run_and_is_invalid_under_a_bound():
    slow = service(0.020, 0.0)  # 4 per 20 ms at most: 200 requests/s
    short = run_step("server", slow, max_batch=4, window_s=0.001, duration_s=2.0, rate=300, slo_ms=200, grace_s=30)
    long = run_step("server", slow, max_batch=4, window_s=0.001, duration_s=4.0, rate=300, slo_ms=200, grace_s=30)
    p99 = [statistics.quantiles(s.latencies_ms, n=100)[98] for s in (short, long)]
    assert p99[1] > 1.4 * p99[0], p99  # the queue grows as long as the load lasts
    assert not short.valid and not long.valid and "p99 above the bound" in long.why_invalid()


def test_the_slo_search_finds_a_rate_that_fits_and_one_20_percent_above_does_not():
    model = service(0.004, 0.001)  # capacity at batch 8: 8 / 12 ms = 667/s
    slo = 40.0

    def step_at(rate):
        return run_step("server", model, max_batch=8, window_s=0.002, duration_s=0.5, rate=rate, slo_ms=slo, grace_s=5)

    fit, fail, steps = search_rate(step_at, 100.0, budget_s=120, step_s=lambda r: max(0.5, 460 / r) + 1)
    assert fit is not None and fail is not None and fit.valid and fit.p99_ms() <= slo
    assert fail.offered_rate <= PRECISION * fit.offered_rate * 1.001 and not fail.valid
    above = step_at(1.2 * fit.offered_rate)
    assert not above.valid, (fit.offered_rate, above.p99_ms())
    assert len(steps) >= 3 and all(s.offered_rate > 0 for s in steps)


# -- cost ------------------------------------------------------------------------------------------

def _frame(rows):
    base = {"status": "ok", "valid": True, "scenario": "server", "dtype": "fp32", "variant": "eager",
            "served_rate": None, "throughput_mean": None, "gpu_energy_j_per_sample": None, "cpu_energy_j_per_sample": None}
    return pd.DataFrame([{**base, **r} for r in rows])


@pytest.mark.fast
def test_cost_per_million_and_hosts_on_hand_made_cells():
    assert cost_per_million(3.6, 1000) == pytest.approx(1.0)  # $3.60/h at 1000/s: 3.6e6 items per $3.60
    assert cost_per_million(0.36, 10) == pytest.approx(10.0)
    assert hosts_needed(2500, 1000) == 3 and hosts_needed(2000, 1000) == 2
    frame = _frame([
        {"pool": "cpu", "cell_id": "R:cpu:b8", "batch_size": 8, "served_rate": 20.0, "throughput_mean": 30.0,
         "cpu_energy_j_per_sample": 3.6},
        {"pool": "cpu", "cell_id": "R:cpu:b1", "batch_size": 1, "served_rate": None, "throughput_mean": 10.0},
        {"pool": "cuda", "cell_id": "R:cuda:b8", "batch_size": 8, "served_rate": 2000.0},
        {"pool": "cuda", "cell_id": "R:cuda:b1", "batch_size": 1, "served_rate": 4000.0, "valid": False},
    ])
    costs = cost_frame(frame, {"cpu": 0.36, "cuda": 3.6}, 1000)
    assert len(costs) == 3  # the INVALID cell costs nothing: it is not counted
    b8 = costs[costs["cell"] == "cpu:b8"].iloc[0]
    assert b8["items_per_s"] == 20.0 and b8["from"] == "served under load"  # the SLO-bounded rate, not throughput
    assert b8["usd_per_million"] == pytest.approx(5.0) and b8["hosts_for_target"] == 50
    assert b8["kwh_per_million"] == pytest.approx(1.0)  # 3.6 J each: 3.6e6 J per million = 1 kWh
    best, lines = cheapest(costs, "cpu")
    assert list(best["cell"]) == ["cpu:b8", "cuda:b8"]
    assert "100x the rate" in lines[0] and "0.1x the cost per million (cheaper" in lines[0]


def test_an_unknown_pool_in_price_is_one_line(tmp_path):
    res = benchctl("run", "--devices", "cpu", "--price", "cuda=3.2", "--out", str(tmp_path / "o"))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines() == [
        "benchctl: error: a price is given for 'cuda', which is not a device of this run (cpu)"]
    prices = tmp_path / "prices.toml"
    prices.write_text("[prices]\ncpu = 'x'\n")
    res = benchctl("run", "--devices", "cpu", "--price", str(prices), "--out", str(tmp_path / "o"))
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1 and "price of cpu" in res.stderr
    res = benchctl("run", "--devices", "cpu", "--scenario", "server", "--out", str(tmp_path / "o"))
    assert res.returncode == 2 and "needs --rate" in res.stderr


# -- server cells end to end -----------------------------------------------------------------------

def test_a_server_cell_searches_its_rate_and_the_report_costs_it(tiny_model, tmp_path):
    prices = tmp_path / "prices.toml"
    prices.write_text("[prices]\ncpu = 0.40\n")
    out = tmp_path / "out"
    res = benchctl("run", "--devices", "cpu", "--batch-sizes", "4", "--seq-lens", "16", "--model", str(tiny_model),
                   "--scenario", "batch,server", "--slo-p99-ms", "250", "--serve-time", "1", "--max-time", "20",
                   "--warmup", "1", "--iterations", "3", "--min-time", "0", "--price", str(prices),
                   "--target-rate", "1000", "--out", str(out), "--no-history", timeout=400)
    assert res.returncode == 0, res.stderr
    doc = load_json(out / "results.json")
    by = {c["scenario"]: c for c in doc["cells"]}
    assert set(by) == {"batch", "server"} and by["server"]["cell_id"].endswith(":server:r0")
    info, m = by["server"]["serving"], by["server"]["metrics"]
    assert info["searched"] and info["generator"] == "MLPerf LoadGen" and info["shorter_than_mlperf"]
    if m["served_rate"] is not None:  # found: it fits, and the step above it does not
        assert info["reported"]["valid"] and info["reported"]["loadgen_p99_ms"] <= 250
        assert info["above"] is None or not info["above"]["valid"]
    assert 1 <= m["batch_formed_max"] <= 4 and set(info["buckets"]) == {1, 2, 4}
    assert len(by["server"]["latencies_ms"]) == info["reported"]["requests"]
    md = (out / "report.md").read_text()
    assert "## Serving under load" in md and "### Load steps" in md and "## Cheapest way to serve it" in md
    assert "hosts_for_target" in md and "usd_per_million" in md
    assert (out / "latency_vs_rate.png").stat().st_size > 0 and "latency_vs_rate.png" in md
    assert (out / "cost_per_million.png").exists() == ("cost_per_million.png" in md)
    csv = pd.read_csv(out / "results.csv")
    assert set(csv["scenario"]) == {"batch", "server"} and "served_rate" in csv.columns


def test_server_cells_on_two_pools_merge_into_one_report(redis_server, workers, tiny_model, tmp_path):
    r = redis_server.client()
    workers(redis_server.url, device="cpu", queue="cpu", name="cpu-a@test", client=r)
    workers(redis_server.url, device="cpu", queue="cpu-1t", name="cpu1t-a@test", extra=["--threads", "1"], client=r)
    res = benchctl("submit", "--devices", "cpu,cpu-1t", "--batch-sizes", "2", "--seq-lens", "16", "--model",
                   str(tiny_model), "--scenario", "server", "--rate", "40", "--serve-time", "1", "--warmup", "1",
                   "--price", "cpu=0.8,cpu-1t=0.4", "--broker", redis_server.url, "--wait", "--timeout", "300",
                   "--out", str(tmp_path / "out"), timeout=400)
    assert res.returncode == 0, res.stderr
    doc = load_json(tmp_path / "out" / "results.json")
    assert {c["pool"] for c in doc["cells"]} == {"cpu", "cpu-1t"}
    for rec in doc["cells"]:
        assert rec["status"] == "ok" and rec["scenario"] == "server", rec.get("error")
        assert rec["serving"]["reported"]["offered_rate"] == pytest.approx(40.0)
        assert rec["serving"]["reported"]["requests"] >= 460  # LoadGen's minimum count for p99 evidence
    md = (tmp_path / "out" / "report.md").read_text()
    assert "## Serving under load" in md and "### Load steps" in md
    assert "| cpu-1t:b2:s16:fp32:eager:classify:n0:server:r0 " in md and "| cpu:b2:s16:fp32:eager:classify:n0:server:r0 " in md
    # Both pools' workers share this one host: their cells overlapped, so neither is trusted
    # (and neither is costed) even though each load step was VALID by LoadGen.
    csv = pd.read_csv(tmp_path / "out" / "results.csv")
    assert set(csv["pool"]) == {"cpu", "cpu-1t"} and csv["invalid_reason"].str.contains("measured on host").all()


@pytest.mark.fast
def test_a_rate_that_fails_its_longer_confirmation_is_overruled_and_the_search_goes_below():
    from bench_workers.serving.loadgen import Step

    def step(rate, holds):
        s = Step("server", rate, 1.0, [1.0], [1], [0.0], [0.0], 0.1, 0, {"result_validity": "VALID" if holds else "INVALID"})
        return s

    # Short steps hold up to 10/s; longer ones only up to 7/s (the tail grows with the run).
    fit, fail, steps = search_rate(lambda r: step(r, r <= 10), 4.0, budget_s=1e9, step_s=lambda r: 1.0,
                                   confirm=lambda r: step(r, r <= 7))
    assert fit is not None and fit.confirmed and fit.offered_rate <= 7
    assert fail is not None and fail.offered_rate <= PRECISION * fit.offered_rate * 1.001
    assert all(not s.valid for s in steps if s.offered_rate > 7)  # every short step above 7/s was overruled
    assert any(s.overruled and "overruled" in s.why_invalid() for s in steps)


def test_batches_run_on_the_batcher_thread_inside_the_cells_device_scope():
    """On a GPU the current device is per thread: each batch enters the cell's device scope (a
    fake one here, with a fake torch whose inference mode is per thread as torch's is)."""
    import contextlib
    import threading
    import types

    from bench_protocol.spec import CellSpec, MeasureRules
    from bench_workers.cell import served
    from bench_workers.runtimes.base import Runner

    state = threading.local()
    seen = []

    @contextlib.contextmanager
    def scope():
        state.device = "cuda:1"
        try:
            yield
        finally:
            state.device = None

    def call():
        seen.append((threading.current_thread().name, getattr(state, "device", None), getattr(state, "inference", False)))

    @contextlib.contextmanager
    def inference_mode():
        state.inference = True
        try:
            yield
        finally:
            state.inference = False

    fake_torch = types.SimpleNamespace(inference_mode=inference_mode)
    prepared = served.Prepared({k: Runner(call) for k in (1, 2, 4)}, None, 400.0, 1.0)
    cell = CellSpec(run_id="20260101-000000-abcdef", pool="cuda:1", batch_size=4, seq_len=8, dtype="fp32",
                    scenario="server", rules=MeasureRules(rate=300.0, serve_time=0.5))
    chosen, _, steps, _ = served.serve(fake_torch, prepared, cell, lambda: None, list, 60, scope)
    assert chosen.valid and len(steps) == 1 and seen
    assert set(seen) == {("benchctl-batcher", "cuda:1", True)}


# -- generate requests under load: time to first token, time per output token, goodput ----------------

def token_service(first_s: float, rest_s: float):
    """A fake generator: a batch's first token after ``first_s``, the rest ``rest_s`` later."""
    def run(n, mark):
        time.sleep(first_s)
        mark()
        time.sleep(rest_s)
    return run


@pytest.mark.fast
def test_the_batcher_marks_each_batchs_first_token_for_all_its_requests():
    done, firsts = [], []
    batcher = DynamicBatcher(token_service(0.005, 0.010), done.extend, max_batch=4, window_s=0.002,
                             first_token=firsts.append)
    batcher.start()
    for i in range(20):
        batcher.submit([i])
        time.sleep(0.003)
    batcher.stop(timeout=30)
    assert sorted(done) == list(range(20)) and sorted(i for ids in firsts for i in ids) == list(range(20))
    assert [len(ids) for ids in firsts] == batcher.batches  # one first-token report per batch, all its requests
    assert len(batcher.first_token_s) == len(batcher.latencies_s) == 20
    # The first token comes before the completion, by the 10 ms the rest of the batch took.
    for ft, lat in zip(batcher.first_token_s, batcher.latencies_s):
        assert 0 < ft < lat and lat - ft >= 0.009


def test_loadgen_judges_generate_requests_by_their_ttft_and_tpot_and_agrees_with_the_worker():
    gen = token_service(0.003, 0.008)  # 5 tokens: TPOT = 8 ms / 4 = 2 ms at the least

    def step(tpot_bound):
        return run_step("server", gen, max_batch=4, window_s=0.002, duration_s=1.0, rate=100, slo_ms=None, grace_s=10,
                        new_tokens=5, slo_ttft_ms=200, slo_tpot_ms=tpot_bound)

    held, broken = step(20.0), step(1.0)
    assert held.valid and not broken.valid and "TTFT or TPOT" in broken.why_invalid()
    for s in (held, broken):
        assert len(s.ttft_ms) == len(s.latencies_ms) >= 460 and all(t > 0 for t in s.tpot_ms())
        ours = statistics.quantiles(s.ttft_ms, n=100)[98]
        # LoadGen times from its own issue to our FirstTokenComplete: the same request, a few
        # hundred microseconds apart at most (its threads); 15% or 2 ms, room for a busy host.
        assert abs(s.p99_ms("ttft") - ours) <= max(2.0, 0.15 * ours), (s.p99_ms("ttft"), ours)
        assert s.p99_ms("tpot") == pytest.approx(statistics.quantiles(s.tpot_ms(), n=100)[98], rel=0.15, abs=0.5)


@pytest.mark.fast
def test_goodput_counts_the_requests_that_met_every_bound():
    from bench_protocol.spec import MeasureRules
    from bench_workers.cell.served import goodput
    from bench_workers.serving.loadgen import Step

    # 4 requests over 2 s, 5 tokens each: latencies and first tokens (ms) -> TPOT = (lat - ttft) / 4.
    step = Step("server", 2.0, 2.0, [100.0, 100.0, 300.0, 60.0], [1], [0.0], [0.0], 0.1, 0, {}, new_tokens=5,
                ttft_ms=[20.0, 80.0, 40.0, 10.0])
    assert step.tpot_ms() == [20.0, 5.0, 65.0, 12.5]
    assert goodput(step, MeasureRules(slo_ttft_ms=50, slo_tpot_ms=30)) == pytest.approx(2 / 2.0)  # 1st, 4th
    assert goodput(step, MeasureRules(slo_ttft_ms=50)) == pytest.approx(3 / 2.0)  # TPOT unbounded
    assert goodput(step, MeasureRules(slo_tpot_ms=15)) == pytest.approx(2 / 2.0)  # 2nd, 4th
    assert goodput(step, MeasureRules(rate=2.0)) is None  # no bound: no goodput
    classify = Step("server", 2.0, 2.0, [100.0, 100.0, 300.0, 60.0], [1], [0.0], [0.0], 0.1, 0, {})
    assert goodput(classify, MeasureRules(slo_p99_ms=100)) == pytest.approx(3 / 2.0)


@pytest.mark.fast
def test_generate_cells_cost_per_million_tokens_and_the_cheapest_holds_the_bound():
    frame = _frame([
        {"pool": "cpu", "cell_id": "R:cpu:b4:batch", "batch_size": 4, "task": "generate", "new_tokens": 16,
         "scenario": "batch", "throughput_mean": 50.0, "cpu_energy_j_per_sample": 16.0},
        {"pool": "cpu", "cell_id": "R:cpu:b4:server", "batch_size": 4, "task": "generate", "new_tokens": 16,
         "served_rate": 10.0, "cpu_energy_j_per_sample": 32.0},
    ])
    costs = cost_frame(frame, {"cpu": 0.36}, 25)
    server = costs[costs["scenario"] == "server"].iloc[0]
    assert server["unit"] == "generated token" and server["items_per_s"] == 160.0  # 10 req/s x 16 tokens
    assert server["usd_per_million"] == pytest.approx(0.36 / (160 * 3600) * 1e6)
    assert server["kwh_per_million"] == pytest.approx(2.0 * 1e6 / 3.6e6)  # 32 J a request: 2 J a token
    assert server["hosts_for_target"] == 3  # 25 requests/s at 10 each: the target counts requests
    best, _ = cheapest(costs, "cpu")
    # The batch cell's throughput is cheaper per token but promises no latency: the served one wins.
    assert list(best["cell"]) == ["cpu:b4:server"]


def test_bounds_are_the_tasks_own_each_refusal_one_line(tmp_path, models_dir):
    gpt2, out = str(models_dir / "tiny-gpt2"), str(tmp_path / "o")
    cases = [
        (["--task", "generate", "--model", gpt2, "--slo-p99-ms", "100"], "bounded by --slo-ttft-ms and --slo-tpot-ms"),
        (["--slo-ttft-ms", "100"], "bound generate cells"),
        (["--task", "generate", "--model", gpt2, "--new-tokens", "1", "--slo-ttft-ms", "100"], "at least 2 new tokens"),
        (["--task", "generate", "--model", gpt2], "needs --rate"),
    ]
    for flags, words in cases:
        res = benchctl("run", "--devices", "cpu", "--scenario", "server", *flags, "--out", out, "--no-history")
        assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
        assert len(res.stderr.strip().splitlines()) == 1 and words in res.stderr, res.stderr
    assert not (tmp_path / "o").exists()


def test_a_generate_server_cell_searches_within_its_token_bounds(models_dir, tmp_path):
    out = tmp_path / "out"
    res = benchctl("run", "--devices", "cpu", "--batch-sizes", "4", "--seq-lens", "16", "--model",
                   str(models_dir / "tiny-gpt2"), "--task", "generate", "--new-tokens", "8", "--scenario", "server",
                   "--slo-ttft-ms", "60", "--slo-tpot-ms", "40", "--serve-time", "0.5", "--max-time", "12", "--warmup", "1",
                   "--price", "cpu=0.40", "--out", str(out), "--no-history", timeout=400)
    assert res.returncode == 0, res.stderr
    rec = load_json(out / "results.json")["cells"][0]
    assert rec["status"] == "ok" and rec["cell_id"].endswith(":generate:n8:server:r0"), rec.get("error")
    info, m = rec["serving"], rec["metrics"]
    assert info["searched"] and info["bounds"] == "TTFT p99 within 60 ms and TPOT p99 within 40 ms"
    assert info["new_tokens"] == 8 and info["batching"].startswith("request-level")
    for st in info["steps"]:  # every step judged by the tokens, measured by both sides
        assert st["ttft_p99_ms"] is not None and st["loadgen_ttft_p99_ms"] is not None and st["tpot_p99_ms"] is not None
        if st["valid"]:
            assert st["loadgen_ttft_p99_ms"] <= 60 and st["loadgen_tpot_p99_ms"] <= 40
    if m["served_rate"] is not None:
        assert info["reported"]["valid"] and (info["above"] is None or not info["above"]["valid"])
        assert 0 < m["goodput"] <= m["throughput_measured"] * 1.0001
        assert m["tokens_per_s"] == pytest.approx(m["throughput_mean"] * 8)
    assert m["ttft_ms"]["n"] == m["decode_ms_per_token"]["n"] == info["reported"]["requests"]
    assert m["accuracy_token_agreement"] == 1.0  # the served model is the model: greedy tokens agree
    md = (out / "report.md").read_text()
    assert "ttft_p99_ms" in md and "tpot_p99_ms" in md and "goodput_req_per_s" in md and "generated token" in md
    assert (out / "latency_vs_rate.png").stat().st_size > 0


def test_a_generate_batchs_first_token_is_synchronised_before_it_counts():
    """On a GPU the token exists when the device says so: the first-token hook synchronises the
    device first (a fake sync here, and fake token marks as generate's logits processor makes them)."""
    import contextlib
    import types

    from bench_protocol.spec import CellSpec, MeasureRules
    from bench_workers.cell import generation, served
    from bench_workers.runtimes.base import Runner

    events: list[str] = []
    marks = {k: generation.StepMarks(types.SimpleNamespace(), types.SimpleNamespace(type="cpu")) for k in (1, 2)}

    def runner(k):
        def call():
            marks[k].begin()
            for _ in range(3):  # three tokens
                time.sleep(0.001)
                events.append("token")
                marks[k].tick()
        return Runner(call)

    fake_torch = types.SimpleNamespace(inference_mode=contextlib.nullcontext)
    prepared = served.Prepared({k: runner(k) for k in (1, 2)}, None, 400.0, 1.0)
    cell = CellSpec(run_id="20260101-000000-abcdef", pool="cuda:0", batch_size=2, seq_len=8, dtype="fp32",
                    task="generate", new_tokens=3, scenario="server", rules=MeasureRules(rate=200.0, serve_time=0.5))
    chosen, _, _, _ = served.serve(fake_torch, prepared, cell, lambda: events.append("sync"), list, 60, marks=marks)
    assert chosen.valid and chosen.new_tokens == 3 and len(chosen.ttft_ms) == len(chosen.latencies_ms) >= 460
    # Each call: a token, then the sync of its first-token report, two more tokens, the sync at its end.
    assert "".join(events[:5]) == "tokensynctokentokensync", events[:5]
    assert events.count("sync") == 2 * events.count("token") // 3, (events.count("sync"), events.count("token"))
    assert all(m.calls == [] for m in marks.values())  # marks do not pile up over a load step
    assert all(lat - ft >= 1.5 for lat, ft in zip(chosen.latencies_ms, chosen.ttft_ms))  # two 1 ms tokens after the first

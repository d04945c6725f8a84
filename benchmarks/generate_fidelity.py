"""Generate fidelity: does timing each token through a logits processor change what is timed?

The harness (`measure_cell` of a generate cell: every tracker on, one mark per new token) and a
bare, untracked `model.generate(..., min_new_tokens=N, max_new_tokens=N)` timed end to end
with perf_counter, on the same model object and inputs, interleaved round by round in one
process. The bare decode rate is isolated without any hook: (N - 1) steps / (T(N) - T(1)),
where T(1) is a bare generate of one token (the prefill alone). Figures are medians over rounds
of the per-round ratios harness / bare, per batch size: within 0.95-1.05 the hook is invisible.

    .venv/bin/python benchmarks/generate_fidelity.py [--rounds 5] [--batch-sizes 1,4] [--seq-len 64] [--new-tokens 32]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from bench_protocol.spec import DEFAULT_GENERATIVE_MODEL, CellSpec, MeasureRules, ModelRef  # noqa: E402
from bench_workers.cell import inputs  # noqa: E402
from bench_workers.cell.measure import ModelCache, measure_cell  # noqa: E402


def harness(cache, model: str, batch: int, seq: int, new: int, iters: int) -> dict:
    rules = MeasureRules(warmup=1, min_iterations=iters, min_time=0, max_time=600)
    cell = CellSpec(run_id="20260101-000000-9e4e1d", pool="cpu", batch_size=batch, seq_len=seq, dtype="fp32",
                    task="generate", new_tokens=new, model=ModelRef(model=model), rules=rules)
    rec = measure_cell(cell, "cpu", cache=cache)
    if rec["status"] != "ok":
        sys.exit(f"harness cell failed: {rec['error']}")
    return rec["metrics"]


def bare_ms(model, feeds: dict, new: int, iters: int) -> float:
    """Median wall time of a plain greedy generate of exactly ``new`` tokens."""
    pad = model.config.eos_token_id or 0
    times = []
    with torch.inference_mode():
        model.generate(**feeds, do_sample=False, min_new_tokens=new, max_new_tokens=new, pad_token_id=pad)
        for _ in range(iters):
            t0 = time.perf_counter()
            model.generate(**feeds, do_sample=False, min_new_tokens=new, max_new_tokens=new, pad_token_id=pad)
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--batch-sizes", default="1,4")
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--model", default=DEFAULT_GENERATIVE_MODEL)
    args = p.parse_args()
    cache = ModelCache()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, model {args.model}, prompt {args.seq_len}, "
          f"{args.new_tokens} new tokens, {args.rounds} rounds x {args.iters} calls")
    for batch in (int(b) for b in args.batch_sizes.split(",")):
        decode_ratios, e2e_ratios, h_rates, b_rates = [], [], [], []
        for _ in range(args.rounds):
            m = harness(cache, args.model, batch, args.seq_len, args.new_tokens, args.iters)
            model = cache.loaded.model
            feeds = inputs.synthetic(torch, batch, args.seq_len, model.config.vocab_size, torch.device("cpu"))
            t_n = bare_ms(model, feeds, args.new_tokens, args.iters)
            t_1 = bare_ms(model, feeds, 1, args.iters)
            bare_rate = (args.new_tokens - 1) / ((t_n - t_1) / 1e3)
            h_rates.append(m["decode_tokens_per_s"])
            b_rates.append(bare_rate)
            decode_ratios.append(m["decode_tokens_per_s"] / bare_rate)
            e2e_ratios.append(m["latency_ms"]["median"] / t_n)
        print(f"batch {batch}: decode tokens/s per sequence: harness {statistics.median(h_rates):.1f}, bare "
              f"{statistics.median(b_rates):.1f}, median ratio {statistics.median(decode_ratios):.3f} "
              f"(min {min(decode_ratios):.3f}, max {max(decode_ratios):.3f}); end-to-end latency ratio "
              f"{statistics.median(e2e_ratios):.3f}")


if __name__ == "__main__":
    main()

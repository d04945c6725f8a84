"""False alarms and misses of `benchctl compare`'s regression test, on this machine.

Pairs of runs (``--pairs`` identical, as many slowed) of one cell of a small DistilBERT (built here, no download) are measured one after
the other in one process, as a user compares yesterday's run with today's. In each pair the
second run is either identical or made slower by a hook that sleeps before each forward call
for a fraction of the first run's median latency. Each pair goes through `compare` and
`regressions(table, PCT)` exactly as `benchctl compare --fail-on-regression PCT` does.

    .venv/bin/python benchmarks/false_alarms.py [--pairs 20] [--pct 5] [--slowdown 0.3] [--batch 4]

Prints, for identical pairs, how many were flagged (false alarms) and, for slowed pairs, how
many were caught, with each pair's change and interval.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
from bench_ctl.reporting.compare import compare, regressions  # noqa: E402
from bench_protocol.spec import CellSpec, MeasureRules, ModelRef  # noqa: E402
from bench_workers.cell.measure import ModelCache, measure_cell  # noqa: E402


def save_small_distilbert(directory: Path) -> Path:
    """A small DistilBERT (4 layers of 256): cells of a few milliseconds, steady enough to be
    VALID on a 2-core host, yet a whole study in a couple of minutes."""
    import torch
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    config = DistilBertConfig(vocab_size=1000, dim=256, n_layers=4, n_heads=4, hidden_dim=1024,
                              max_position_embeddings=128, num_labels=2)
    torch.manual_seed(0)
    DistilBertForSequenceClassification(config).save_pretrained(directory)
    return directory


def measure(cache: ModelCache, model_dir: Path, run_id: str, batch: int, rules: MeasureRules) -> dict:
    cell = CellSpec(run_id=run_id, pool="cpu", batch_size=batch, seq_len=64, dtype="fp32",
                    model=ModelRef(model=str(model_dir)), rules=rules)
    rec = measure_cell(cell, "cpu", cache=cache)
    if rec["status"] != "ok":
        sys.exit(f"cell failed: {rec['error']}")
    return rec


def doc_of(rec: dict) -> dict:
    return {"run": {"run_id": rec["run_id"]}, "cells": [rec], "fingerprints": {}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=20)
    ap.add_argument("--pct", type=float, default=5.0)
    ap.add_argument("--slowdown", type=float, default=0.3)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--min-time", type=float, default=1.0)
    args = ap.parse_args()

    rules = MeasureRules(warmup=3, min_iterations=30, min_time=args.min_time, max_time=30)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = save_small_distilbert(Path(tmp) / "small")
        cache = ModelCache()
        false_alarms = caught = 0
        for pair in range(2 * args.pairs):
            slowed = pair % 2 == 1  # identical and slowed pairs alternate, so drift hits both alike
            old = measure(cache, model_dir, f"20260101-000000-{pair:06x}", args.batch, rules)
            median_s = sorted(old["latencies_ms"])[len(old["latencies_ms"]) // 2] / 1000
            hook = None
            if slowed:
                hook = cache.loaded.model.register_forward_pre_hook(
                    lambda module, inputs, d=args.slowdown * median_s: time.sleep(d))
            try:
                new = measure(cache, model_dir, f"20260101-000001-{pair:06x}", args.batch, rules)
            finally:
                if hook is not None:
                    hook.remove()
            table = compare(doc_of(old), doc_of(new))
            flagged = not regressions(table, args.pct).empty
            row = table.iloc[0]
            if slowed:
                caught += flagged
            else:
                false_alarms += flagged
            print(f"pair {pair + 1:2d} {'slowed ' if slowed else 'same   '} change {row['latency_change_pct']:+6.1f}%  "
                  f"median ratio CI {row['median_ratio_ci']}  {row['verdict']:<12} {'FLAGGED' if flagged else ''}",
                  flush=True)
        same_n = slow_n = args.pairs
        print(f"\nidentical pairs flagged at {args.pct:g}%: {false_alarms} of {same_n}")
        print(f"pairs slowed by {100 * args.slowdown:.0f}% caught: {caught} of {slow_n}")


if __name__ == "__main__":
    main()

"""Each runtime as benchctl times it against a bare loop of the same runtime's own API, in one
process, interleaved, on the default model's architecture (random weights, bundled config):
the ratio of the harness's mean latency to the bare loop's should be within 0.95-1.05. Also
prints each cell's accuracy against the fp32 eager reference.

    .venv/bin/python benchmarks/runtimes.py --rounds 3 --batch-sizes 1,8
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_protocol.spec import CellSpec, MeasureRules, ModelRef  # noqa: E402
from bench_workers.cell import inputs  # noqa: E402
from bench_workers.cell.measure import ModelCache, measure_cell  # noqa: E402

RUN = "20260101-000000-beef00"
COMBOS = [("eager", "fp32"), ("eager", "int8"), ("ort", "fp32"), ("ort", "int8"), ("openvino", "fp32")]


def bare_call(torch, variant: str, dtype: str, model, feeds: dict):
    """The runtime's own API, as a user would call it, on the same model and inputs."""
    if variant == "eager" and dtype == "fp32":
        return lambda: model(**feeds)
    if variant == "eager" and dtype == "int8":
        q = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
        return lambda: q(**feeds)
    from bench_workers.runtimes.onnx_export import export, quantized

    path, _ = export(torch, model, feeds, "bare|" + variant, "fp32", torch.device("cpu"))
    numpy_feeds = {k: v.numpy() for k, v in feeds.items()}
    if variant == "ort":
        import onnxruntime as ort

        if dtype == "int8":
            path, _ = quantized(path)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = torch.get_num_threads()
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        return lambda: session.run(None, numpy_feeds)
    import openvino as ov

    core = ov.Core()
    m = core.read_model(str(path))
    m.reshape({k: list(v.shape) for k, v in feeds.items()})
    request = core.compile_model(m, "CPU", {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY",
                                             "INFERENCE_NUM_THREADS": torch.get_num_threads()}).create_infer_request()
    return lambda: request.infer(numpy_feeds)


def bare_mean_ms(call, iterations: int) -> float:
    for _ in range(2):
        call()
    times = []
    for _ in range(iterations):
        t0 = time.perf_counter_ns()
        call()
        times.append((time.perf_counter_ns() - t0) / 1e6)
    return statistics.fmean(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--batch-sizes", default="1,8")
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--iterations", type=int, default=10)
    args = p.parse_args()
    import torch

    from bench_workers.cell.models import load_model

    rules = MeasureRules(warmup=2, min_iterations=args.iterations, min_time=0, max_time=600)
    model = load_model(ModelRef(weights="random")).model.eval()
    cache = ModelCache()
    print(f"torch threads {torch.get_num_threads()}; {args.rounds} interleaved rounds; seq {args.seq_len}")
    print(f"{'runtime':9} {'dtype':5} {'batch':>5} {'benchctl ms':>12} {'bare ms':>10} {'ratio':>7}  accuracy")
    for batch in [int(b) for b in args.batch_sizes.split(",")]:
        feeds = inputs.synthetic(torch, batch, args.seq_len, model.config.vocab_size, torch.device("cpu"))
        for variant, dtype in COMBOS:
            cell = CellSpec(run_id=RUN, pool="cpu", batch_size=batch, seq_len=args.seq_len, dtype=dtype, variant=variant,
                            model=ModelRef(weights="random"), rules=rules)
            with torch.inference_mode():
                bare = bare_call(torch, variant, dtype, model, feeds)
                ratios, harness, plain, acc = [], [], [], None
                for _ in range(args.rounds):
                    rec = measure_cell(cell, "cpu", cache=cache)
                    if rec["status"] != "ok":
                        print(f"{variant:9} {dtype:5} {batch:5} error: {rec['error']['message']}")
                        break
                    h = rec["metrics"]["latency_ms"]["mean"]
                    b = bare_mean_ms(bare, args.iterations)
                    harness.append(h)
                    plain.append(b)
                    ratios.append(h / b)
                    acc = rec["accuracy"]
            if ratios:
                acc_text = f"top-1 {acc.get('top1_agreement'):.3f}, max |diff| {acc.get('max_abs_diff'):.2e}" if acc else ""
                print(f"{variant:9} {dtype:5} {batch:5} {statistics.median(harness):12.2f} {statistics.median(plain):10.2f} "
                      f"{statistics.median(ratios):7.3f}  {acc_text}", flush=True)


if __name__ == "__main__":
    main()

"""FLOPs, the device's ceilings, variants and the fastest way to run a model, on the tiny DistilBERT."""

import copy

import pytest
from conftest import benchctl, load_json
from seed_records import seed_document

from bench_ctl.reporting.document import to_markdown
from bench_ctl.reporting.fastest import fastest_ways
from bench_ctl.reporting.frame import cells_frame
from bench_ctl.reporting.report import build
from bench_protocol.errors import SpecError
from bench_protocol.spec import CellSpec, MeasureRules, ModelRef, RunSpec, parse_cell_id
from bench_workers.cell.embedded import run_embedded
from bench_workers.cell.measure import measure_cell
from bench_workers.device.spec_sheet import spec_peak

FAST = MeasureRules(warmup=1, min_iterations=5, min_time=0.05, max_time=10)
RUN = "20260101-000000-abcdef"


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def tiny_cell(model, **kw):
    base = dict(run_id=RUN, pool="cpu", batch_size=2, seq_len=16, dtype="fp32", model=ModelRef(model=str(model)), rules=FAST)
    return CellSpec(**{**base, **kw})


def distilbert_flops(batch, seq, dim, hidden, layers, labels):
    """Multiply-adds x 2: Q, K, V, O and the two FFN matmuls, QK^T and AV, then the head."""
    per_layer = 2 * batch * seq * (4 * dim * dim + 2 * dim * hidden) + 2 * 2 * batch * seq * seq * dim
    return layers * per_layer + 2 * batch * (dim * dim + dim * labels)


def test_flops_equal_the_analytic_count(tiny_model):
    rec = measure_cell(tiny_cell(tiny_model, batch_size=3, seq_len=16), "cpu")
    assert rec["status"] == "ok", rec["error"]
    m = rec["metrics"]
    expected = distilbert_flops(3, 16, dim=32, hidden=64, layers=2, labels=2)
    assert m["flops_per_forward"] == pytest.approx(expected, rel=0.05)
    assert m["flops_per_item"] == pytest.approx(m["flops_per_forward"] / 3)
    # Achieved compute and the ceilings it is held against, all in the record.
    assert m["tflops_achieved"] == pytest.approx(m["flops_per_forward"] / (m["latency_ms"]["mean"] / 1e3) / 1e12)
    assert m["peak_tflops_measured"] > 0 and rec["peaks"]["gemm_dtype"] == "fp32"
    assert m["pct_peak_measured"] == pytest.approx(100 * m["tflops_achieved"] / m["peak_tflops_measured"])
    assert 0 < m["pct_peak_measured"] < 100
    assert m["peak_tflops_spec"] is None and m["pct_peak_spec"] is None  # a CPU has no spec-sheet entry
    assert m["effective_gbps"] == pytest.approx(m["weight_bytes"] / (m["latency_ms"]["mean"] / 1e3) / 1e9)
    assert m["bandwidth_gbps_measured"] > 0
    assert m["arithmetic_intensity"] == pytest.approx(m["flops_per_forward"] / m["weight_bytes"])


def test_default_model_flops_match_flop_counter_mode():
    """The seed's shape: 86.98 GFLOP of linear layers, as FlopCounterMode counts them, plus the
    attention matmuls that torch counts on CUDA but has no formula for on the CPU kernel."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from bench_workers.cell import inputs
    from bench_workers.cell.flops import count_flops
    from bench_workers.cell.models import load_model

    model = load_model(ModelRef()).model.eval()
    feeds = inputs.synthetic(torch, 8, 128, 30522, torch.device("cpu"))
    plain = FlopCounterMode(display=False)
    with torch.inference_mode(), plain:
        model(**feeds)
    assert plain.get_total_flops() == 86_982_549_504
    attention = 6 * 2 * 2 * 8 * 128 * 128 * 768
    assert count_flops(torch, lambda: model(**feeds)) == 86_982_549_504 + attention


def test_compile_time_is_kept_out_of_the_timed_window(tiny_model):
    rec = measure_cell(tiny_cell(tiny_model, variant="compile"), "cpu")
    assert rec["status"] == "ok", rec["error"]
    assert parse_cell_id(rec["cell_id"])["variant"] == rec["variant"] == "compile"
    m = rec["metrics"]
    # Compiling takes seconds; no timed iteration came near it, and nothing recompiled.
    assert m["compile_s"] > 0.5
    assert max(rec["latencies_ms"]) < m["compile_s"] * 1e3 / 10
    assert m["recompilations"] == 0
    assert "torch.compile" in rec["variant_method"]
    eager = measure_cell(tiny_cell(tiny_model), "cpu")
    assert eager["metrics"]["compile_s"] is None
    assert eager["metrics"]["flops_per_forward"] == m["flops_per_forward"]  # same math, either way


def test_cudagraph_on_cpu_is_an_error_record_and_the_rest_completes(tiny_model):
    spec = RunSpec(pools=["cpu"], batch_sizes=[1, 2], seq_lens=[16], variants=["eager", "cudagraph"],
                   model=ModelRef(model=str(tiny_model)), rules=FAST)
    records, _ = run_embedded(spec)
    by_variant = {}
    for rec in records:
        by_variant.setdefault(rec["variant"], []).append(rec)
    assert [r["status"] for r in by_variant["eager"]] == ["ok", "ok"]
    for rec in by_variant["cudagraph"]:
        assert rec["status"] == "error" and rec["error"]["type"] == "unsupported_variant"
        assert "cudagraph needs a CUDA device" in rec["error"]["message"]


def test_variant_flows_through_ids_frame_and_tables(tiny_model, tmp_path):
    out = tmp_path / "out"
    res = benchctl("run", "--devices", "cpu", "--batch-sizes", "1,2", "--seq-lens", "16", "--variants", "eager,cudagraph",
                   "--model", str(tiny_model), "--warmup", "1", "--iterations", "5", "--min-time", "0.05", "--out", str(out))
    assert res.returncode == 0, res.stderr
    doc = load_json(out / "results.json")
    assert sorted(parse_cell_id(r["cell_id"])["variant"] for r in doc["cells"]) == ["cudagraph", "cudagraph", "eager", "eager"]
    csv = (out / "results.csv").read_text().splitlines()
    assert "variant" in csv[0].split(",") and "tflops_achieved" in csv[0].split(",")
    md = (out / "report.md").read_text()
    assert "### Sequence length 16, fp32, eager" in md and "### Sequence length 16, fp32, cudagraph" in md
    assert "## Fastest way to run it" in md and "## How close to the hardware" in md
    assert "unsupported_variant" in md
    assert "- Measured GEMM Peak: fp32" in md
    assert (out / "roofline.png").stat().st_size > 10_000
    assert "Roofline per pool" in (out / "report.html").read_text()
    # A budget no cell fits, given when re-rendering: nothing is recommended, and the report says why.
    again = benchctl("report", str(out / "results.json"), "--out", str(tmp_path / "again"), "--latency-budget-ms", "0.000001")
    assert again.returncode == 0, again.stderr
    md = (tmp_path / "again" / "report.md").read_text()
    assert "no VALID cell has p99 within 1e-06 ms" in md and "whose p99 latency fits 1e-06 ms" in md


def test_cell_ids_parse_back_with_a_colon_in_the_pool():
    cell = CellSpec(run_id=RUN, pool="cuda:1", batch_size=8, seq_len=128, dtype="bf16", variant="cudagraph")
    assert cell.cell_id == f"{RUN}:cuda:1:b8:s128:bf16:cudagraph:classify:n0:batch:r0"
    assert parse_cell_id(cell.cell_id) == {"run_id": RUN, **cell.coordinates()}
    with pytest.raises(SpecError):
        parse_cell_id(f"{RUN}:cpu:b8:s128")


def test_spec_sheet_knows_the_listed_gpus_and_guesses_none():
    assert spec_peak("NVIDIA H200", "bf16")["spec_tflops"] == pytest.approx(989.4)
    assert spec_peak("NVIDIA H100 80GB HBM3", "fp32")["spec_name"] == "NVIDIA H100 SXM5"
    assert spec_peak("NVIDIA A100-SXM4-80GB", "fp16")["spec_gbps"] == 2039.0
    for name in ("NVIDIA L4", "NVIDIA L40S", "NVIDIA A10G", "Tesla T4"):
        assert spec_peak(name, "fp16")["spec_tflops"] > 0, name
    assert spec_peak("Tesla T4", "bf16")["spec_tflops"] is None  # no bf16 on Turing
    assert spec_peak("Some Future GPU", "fp32") == {} and spec_peak(None, "fp32") == {}


def _variant_doc(cells):
    """Hand-made records of one CPU pool: (dtype, variant, batch, throughput, cv, p99, valid)."""
    doc = seed_document()
    template = doc["cells"][0]
    doc["cells"] = []
    for dtype, variant, batch, tput, cv, p99, valid in cells:
        rec = copy.deepcopy(template)
        lat = 1e3 * batch / tput
        rec.update(dtype=dtype, variant=variant, batch_size=batch,
                   cell_id=CellSpec(run_id=rec["run_id"], pool="cpu", batch_size=batch, seq_len=128, dtype=dtype,
                                    variant=variant).cell_id)
        rec["metrics"]["latency_ms"].update(mean=lat, median=lat, p99=p99, cv=cv)
        rec["metrics"]["throughput_mean"] = tput
        rec["shortfall"] = None if valid else "3 of 10 iterations"
        doc["cells"].append(rec)
    doc["run"]["spec"] = {"pools": ["cpu"], "baseline": "cpu"}
    return doc


def test_fastest_way_picks_the_highest_valid_throughput():
    doc = _variant_doc([
        ("fp32", "eager", 1, 10.0, 0.01, 110.0, True),
        ("fp32", "eager", 8, 40.0, 0.01, 210.0, True),
        ("bf16", "compile", 8, 90.0, 0.01, 95.0, True),
        ("bf16", "compile", 32, 500.0, 0.01, 70.0, False),  # fastest of all, but INVALID
        ("bf16", "eager", 8, 60.0, 0.01, 140.0, True),
    ])
    frame = cells_frame(doc)
    row = fastest_ways(frame).iloc[0]
    assert (row["dtype"], row["variant"], row["batch_size"]) == ("bf16", "compile", 8)
    assert row["verdict"] == "fastest" and row["runner_up"] == "bf16 eager at batch size 8"
    # With a p99 budget of 120 ms, bf16 eager (140 ms) and fp32 b8 (210 ms) are out: bf16 compile b8 still fits.
    row = fastest_ways(frame, budget_ms=100).iloc[0]
    assert (row["dtype"], row["variant"], row["batch_size"]) == ("bf16", "compile", 8) and row["verdict"] == "fastest (only candidate)"
    row = fastest_ways(frame, budget_ms=50).iloc[0]
    assert "no VALID cell has p99 within 50 ms" in row["verdict"]
    md = to_markdown(build(doc, frame))
    assert "the fastest way to run it is bf16 compile at batch size 8: 90.00 items/s" in md


def test_a_tie_within_noise_names_no_winner():
    # Two choices 2% apart, each with a 5% CV: within the noise (14%) of both.
    doc = _variant_doc([("fp32", "eager", 8, 51.0, 0.05, 170.0, True), ("fp32", "compile", 8, 50.0, 0.05, 170.0, True)])
    row = fastest_ways(cells_frame(doc)).iloc[0]
    assert row["verdict"] == "ties with the runner-up within noise"
    md = to_markdown(build(doc, cells_frame(doc)))
    assert "it ties with fp32 compile at batch size 8 within noise" in md


def test_two_equal_pools_read_the_same_within_noise():
    doc = seed_document()
    cpu = doc["cells"][0]
    twin = copy.deepcopy(cpu)
    twin.update(pool="cpu-core1", cell_id=cpu["cell_id"].replace(":cpu:", ":cpu-core1:"))
    twin["metrics"]["latency_ms"]["mean"] *= 1.003
    twin["metrics"]["throughput_mean"] /= 1.003
    cpu["pool"] = "cpu-core0"
    cpu["cell_id"] = cpu["cell_id"].replace(":cpu:", ":cpu-core0:")
    doc["cells"] = [cpu, twin]
    doc["run"]["spec"] = {"pools": ["cpu-core0", "cpu-core1"], "baseline": "cpu-core0"}
    md = to_markdown(build(doc, cells_frame(doc)))
    assert "**Latency**: CPU-CORE1 and CPU-CORE0 are the same within noise" in md
    assert "neither is recommended over the other" in md
    assert "ties with it within noise" in md
    assert "faster than" not in md


@pytest.mark.fast
def test_best_vs_best_compares_each_pools_fastest_stack_and_names_it():
    """A CPU's best stack (int8 on ONNX Runtime) against a GPU's (fp16 cudagraph), not eager
    against eager: the ratio and both stacks are in the line and in the report."""
    import copy

    from bench_ctl.reporting import report
    from bench_ctl.reporting.document import to_markdown
    from bench_ctl.reporting.fastest import best_vs_best

    doc = seed_document()
    for rec in list(doc["cells"]):
        fast = copy.deepcopy(rec)
        fast.update(variant="ort" if rec["pool"] == "cpu" else "cudagraph", dtype="int8" if rec["pool"] == "cpu" else "fp16",
                    cell_id=rec["cell_id"] + "-best")
        fast["metrics"]["throughput_mean"] *= 2
        fast["metrics"]["latency_ms"]["mean"] /= 2
        doc["cells"].append(fast)
    frame = cells_frame(doc)
    line = "Batch size 8: GPU on fp16 cudagraph runs 27.93x the throughput of CPU on int8 ort (995.9 vs 35.66 items/s)."
    assert best_vs_best(frame, "cpu") == [line]
    assert line in to_markdown(report.build(doc, frame))

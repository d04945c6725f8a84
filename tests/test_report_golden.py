"""The seed report is the contract: its table and sentences come out of records with its figures."""

import re
from pathlib import Path

from seed_records import seed_document

from bench_ctl.reporting.document import to_markdown
from bench_ctl.reporting.frame import cells_frame
from bench_ctl.reporting.report import build
from bench_ctl.reporting.tables import comparison_table

SEED = Path(__file__).resolve().parents[2] / "shared" / "reference" / "seed_report.md"
SEED_TABLE = """\
|   batch_size |   cpu_latency_ms_mean |   gpu_latency_ms_mean |   speedup_latency_ms_mean |   cpu_throughput_mean |   gpu_throughput_mean |   speedup_throughput_mean |   cpu_cpu_memory_mb_max |   gpu_cpu_memory_mb_max |   gpu_gpu_memory_mb_max |   gpu_gpu_avg_power_w |
|-------------:|----------------------:|----------------------:|--------------------------:|----------------------:|----------------------:|--------------------------:|------------------------:|------------------------:|------------------------:|----------------------:|
|         8.00 |                449.57 |                 16.10 |                     27.93 |                 17.83 |                497.94 |                     27.93 |                 1671.68 |                 1599.68 |                  746.88 |                216.24 |"""


def _seed_md() -> str:
    doc = seed_document()
    return to_markdown(build(doc, cells_frame(doc)))


def test_table_equals_seed_table():
    doc = seed_document()
    table = comparison_table(cells_frame(doc), ["cpu", "cuda"], "cpu")
    assert table.to_markdown(index=False, floatfmt=".2f") == SEED_TABLE
    assert table.to_markdown(index=False, floatfmt=".2f") in _seed_md()


def test_seed_file_table_matches_when_present():
    if SEED.is_file():  # the reference copy beside the repository
        assert SEED_TABLE in SEED.read_text()


def test_interpretation_sentences_carry_seed_numbers():
    md = _seed_md()
    for sentence in [
        "- **Latency**: GPU is on average 27.93x faster than CPU.\n  - The maximum speedup of 27.93x is achieved at batch size 8.",
        "- **Throughput**: GPU achieves on average 27.93x higher throughput than CPU.\n  - The maximum throughput improvement of 27.93x is achieved at batch size 8.",
        # MiB: what is measured; a batch size is a whole number (the seed printed 8.0)
        "- **Memory Usage**:\n  - Batch size 8: CPU 1671.68 MiB, GPU 746.88 MiB",
        "- **Power Consumption**:\n  - Batch size 8: GPU 216.24 W",
        "- **Recommendation**: For optimal performance, use batch size 8 on GPU.",
        "The GPU provides significant performance benefits with an average of 27.93x higher throughput compared to CPU execution. "
        "For production deployments, GPU is recommended for maximum performance.",
    ]:
        assert sentence in md


def test_sections_in_seed_order_and_gpu_host_listed():
    md = _seed_md()
    heads = re.findall(r"^#+ .*$", md, re.M)
    seed_heads = ["# DistilBERT Benchmark: CPU vs. GPU Comparison", "## Summary", "## System Information", "### CPU", "### GPU",
                  "## Model Information", "## Performance Comparison", "### Interpretation", "## Conclusion"]
    assert heads[: len(seed_heads)] == seed_heads
    assert "No GPU information available" not in md
    assert "- GPU: Tesla T4" in md and "- Driver: 550.54.15" in md and "- CUDA Version: 12.4" in md
    assert "- Parameters: 66,955,010" in md


def test_invalid_cells_drive_no_headline():
    """Every cell INVALID (CV 65%): the tables keep the numbers, no sentence draws on them."""
    doc = seed_document()
    for rec in doc["cells"]:
        rec["metrics"]["latency_ms"]["cv"] = 0.65
    md = to_markdown(build(doc, cells_frame(doc)))
    assert SEED_TABLE in md
    assert "27.93x" not in md and "recommended" not in md
    assert "All 2 measured cell(s) here are INVALID" in md
    assert "Every measured cell is INVALID (see Details): there is nothing to conclude or recommend." in md


def test_an_invalid_cell_does_not_drive_the_recommendation():
    import copy

    doc = seed_document()
    small = copy.deepcopy(doc["cells"][1])
    small.update(batch_size=1, cell_id=small["cell_id"].replace(":b8:", ":b1:"))
    small["metrics"]["throughput_mean"] = 100.0
    small["metrics"]["latency_ms"]["mean"] = 10.0
    doc["cells"].append(small)
    doc["cells"][1]["metrics"]["latency_ms"]["cv"] = 0.5  # the faster batch-8 GPU cell is INVALID
    md = to_markdown(build(doc, cells_frame(doc)))
    assert "- **Recommendation**: For optimal performance, use batch size 1 on GPU." in md
    assert "1 INVALID cell(s) are left out of these sentences" in md


def test_plots_bound_their_ticks_and_draw_invalid_cells(tmp_path):
    from bench_ctl.reporting.plots import MAX_TICKS, batch_ticks, make_plots

    assert batch_ticks([1, 8]) == [1.0, 8.0]
    ticks = batch_ticks(range(1, 4097))
    assert len(ticks) <= MAX_TICKS and ticks[0] == 1 and ticks[-1] >= 4096
    doc = seed_document()
    doc["cells"][0]["metrics"]["latency_ms"]["cv"] = 0.5  # INVALID: drawn with a red cross
    written = dict((name, title) for title, name in make_plots(cells_frame(doc), ["cpu", "cuda"], "cpu", tmp_path))
    assert {"latency.png", "throughput.png", "speedup.png"} <= set(written)
    assert all((tmp_path / name).stat().st_size > 5_000 for name in written)

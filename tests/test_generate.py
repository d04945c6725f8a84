"""Generate cells on a tiny GPT-2 saved by a fixture: prefill and decode measured apart."""

import pytest
from conftest import benchctl, load_json

from bench_protocol.errors import SpecError
from bench_protocol.spec import CellSpec, MeasureRules, ModelRef, parse_cell_id
from bench_workers.cell.measure import measure_cell

RUN = "20260101-000000-abcdef"
FAST = ["--warmup", "1", "--iterations", "3", "--min-time", "0"]


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def gen_cell(models_dir, new_tokens=8, **kw):
    base = dict(run_id=RUN, pool="cpu", batch_size=2, seq_len=16, dtype="fp32", task="generate", new_tokens=new_tokens,
                model=ModelRef(model=str(models_dir / "tiny-gpt2")),
                rules=MeasureRules(warmup=1, min_iterations=4, min_time=0.05, max_time=10))
    return CellSpec(**{**base, **kw})


def test_each_timed_call_is_one_prefill_and_n_minus_one_decode_steps(models_dir):
    rec = measure_cell(gen_cell(models_dir, new_tokens=8), "cpu")
    assert rec["status"] == "ok", rec["error"]
    m, calls = rec["metrics"], rec["metrics"]["latency_ms"]["n"]
    # N = 8 new tokens: the first from the prefill, then 7 decode steps, in every timed call.
    assert m["decode_steps_per_call"] == [7] and m["new_tokens_per_call"] == 8
    assert m["ttft_ms"]["n"] == calls and len(rec["phase_latencies_ms"]["ttft_ms"]) == calls
    assert m["decode_ms_per_token"]["n"] == 7 * calls == len(rec["phase_latencies_ms"]["decode_ms"])
    # The phases are apart and together make up the call: prefill + steps never exceed the whole.
    parts = m["ttft_ms"]["mean"] + 7 * m["decode_ms_per_token"]["mean"]
    assert parts <= m["latency_ms"]["mean"] and parts > 0.7 * m["latency_ms"]["mean"]
    assert m["decode_tokens_per_s"] == pytest.approx(1e3 / m["decode_ms_per_token"]["mean"])
    assert m["decode_tokens_per_s_batch"] == pytest.approx(2 * m["decode_tokens_per_s"])
    assert m["tokens_per_s"] == pytest.approx(2 * 8 / (m["latency_ms"]["mean"] / 1e3))  # generated tokens
    assert m["flops_per_forward"] > 0 and m["cpu_memory_mb_max"] > 10
    assert parse_cell_id(rec["cell_id"])["new_tokens"] == 8 and rec["task"] == "generate"


def test_default_generative_model_runs_offline_from_its_bundled_config():
    from bench_workers.cell.models import load_model

    loaded = load_model(ModelRef(model="gpt2"), task="generate")
    assert loaded.weights == "random" and loaded.source == "bundled config.json"
    assert type(loaded.model).__name__ == "GPT2LMHeadModel"
    assert loaded.info("gpt2")["parameters"] == 124_439_808


def test_generate_cells_refuse_variants_they_cannot_run(models_dir):
    rec = measure_cell(gen_cell(models_dir, variant="compile"), "cpu")
    assert rec["status"] == "error" and rec["error"]["type"] == "unsupported_variant"


def test_a_classifier_cannot_generate(tiny_model):
    rec = measure_cell(CellSpec(run_id=RUN, pool="cpu", batch_size=1, seq_len=8, dtype="fp32", task="generate", new_tokens=2,
                                model=ModelRef(model=str(tiny_model))), "cpu")
    assert rec["status"] == "error" and "cannot generate" in rec["error"]["message"]


def test_cell_coordinates_are_consistent():
    with pytest.raises(SpecError, match="generates no tokens"):
        CellSpec(run_id=RUN, pool="cpu", batch_size=1, seq_len=8, dtype="fp32", new_tokens=4)
    with pytest.raises(SpecError, match="new tokens must be a positive integer"):
        CellSpec(run_id=RUN, pool="cpu", batch_size=1, seq_len=8, dtype="fp32", task="generate", new_tokens=0)


def test_run_of_a_causal_lm_generates_and_reports_both_phases(models_dir, tmp_path):
    out = tmp_path / "out"
    # --task auto (the default): the tiny GPT-2 is a causal LM, so its cells generate.
    res = benchctl("run", "--devices", "cpu", "--batch-sizes", "1,2", "--seq-lens", "8", "--new-tokens", "6",
                   "--model", str(models_dir / "tiny-gpt2"), *FAST, "--out", str(out))
    assert res.returncode == 0, res.stderr
    doc = load_json(out / "results.json")
    assert {(r["task"], r["new_tokens"], r["status"]) for r in doc["cells"]} == {("generate", 6, "ok")}
    md = (out / "report.md").read_text()
    assert "### Prefill (time to first token)" in md and "### Decode (per generated token)" in md
    assert "cpu_ttft_ms_mean" in md and "cpu_decode_ms_per_token_mean" in md and "cpu_decode_tokens_per_s" in md
    assert "### Generation: prefill and decode" in md
    assert (out / "ttft.png").is_file() and (out / "decode_tokens_per_s.png").is_file()
    csv = (out / "results.csv").read_text().splitlines()[0].split(",")
    assert {"task", "new_tokens", "ttft_ms_mean", "decode_ms_per_token_p99", "decode_tokens_per_s"} <= set(csv)


def test_distributed_generate_cells_on_two_pools_merge_into_both_tables(redis_server, workers, models_dir, tmp_path):
    r = redis_server.client()
    workers(redis_server.url, device="cpu", queue="cpu", name="cpu-a@test", client=r)
    workers(redis_server.url, device="cpu", queue="cpu-1t", name="cpu1t-a@test", extra=["--threads", "1"], client=r)
    res = benchctl("submit", "--devices", "cpu,cpu-1t", "--task", "generate", "--batch-sizes", "1,2", "--seq-lens", "8",
                   "--new-tokens", "4", "--model", str(models_dir / "tiny-gpt2"), *FAST, "--broker", redis_server.url,
                   "--wait", "--timeout", "180", "--out", str(tmp_path / "out"), timeout=240)
    assert res.returncode == 0, res.stderr
    doc = load_json(tmp_path / "out" / "results.json")
    assert len(doc["cells"]) == 4 and all(c["status"] == "ok" and c["task"] == "generate" for c in doc["cells"])
    md = (tmp_path / "out" / "report.md").read_text()
    for column in ("cpu_ttft_ms_mean", "cpu_1t_ttft_ms_mean", "speedup_ttft_ms_mean",
                   "cpu_decode_tokens_per_s", "cpu_1t_decode_tokens_per_s", "speedup_decode_tokens_per_s"):
        assert column in md, column
    # Two pools on one host measure at the same time: those cells are INVALID and drive no
    # sentence; the phase sentences themselves are checked on hand-made records below.


def test_phase_sentences_compare_prefill_and_decode():
    from seed_records import seed_document

    from bench_ctl.reporting.document import to_markdown
    from bench_ctl.reporting.frame import cells_frame
    from bench_ctl.reporting.report import build

    doc = seed_document()
    for rec, ttft, step in zip(doc["cells"], (200.0, 20.0), (50.0, 5.0)):
        rec.update(task="generate", new_tokens=8)
        rec["metrics"]["ttft_ms"] = {"mean": ttft, "median": ttft, "p90": ttft, "p99": ttft, "std": 0.0}
        rec["metrics"]["decode_ms_per_token"] = {"mean": step, "median": step, "p90": step, "p99": step, "std": 0.0}
        rec["metrics"]["decode_tokens_per_s"] = 1e3 / step
    md = to_markdown(build(doc, cells_frame(doc)))
    assert "cpu_ttft_ms_mean" in md and "speedup_decode_tokens_per_s" in md
    assert "**Prefill**: GPU reaches the first token on average 10.00x sooner than CPU." in md
    assert "**Decode**: GPU generates on average 10.00x the tokens/s of CPU per sequence." in md


def test_records_carry_exactly_the_declared_metrics(models_dir, tiny_model):
    """bench_protocol.metrics is the one list of metric names: both kinds of cell write them all."""
    from bench_protocol.metrics import PHASE_STATS, PLAIN_METRICS

    gen = measure_cell(gen_cell(models_dir, new_tokens=3), "cpu")["metrics"]
    cls = measure_cell(CellSpec(run_id=RUN, pool="cpu", batch_size=1, seq_len=8, dtype="fp32",
                                model=ModelRef(model=str(tiny_model)),
                                rules=MeasureRules(warmup=0, min_iterations=2, min_time=0)), "cpu")["metrics"]
    from bench_protocol.metrics import METRICS

    generate_only = {"decode_tokens_per_s", "decode_tokens_per_s_batch", "gpu_energy_j_per_token",
                     "accuracy_token_agreement"}
    # Declared as only some cells' (a GPU's, a runtime's): a CPU cell may leave them out.
    optional = {m.name for m in METRICS if m.optional} - {"gpu_memory_mb_max", "gpu_avg_power_w"}
    assert set(PLAIN_METRICS) - generate_only - optional <= set(cls)
    assert (set(PLAIN_METRICS) - optional - {"accuracy_top1_agreement", "accuracy_max_abs_diff"}) | set(PHASE_STATS) <= set(gen)
    assert {"accuracy_top1_agreement", "accuracy_max_abs_diff"} <= set(cls) and "accuracy_token_agreement" in gen

"""Unit tests of the most branching functions: the run spec's validation, the report's
Interpretation and Conclusion, model loading. No server, no subprocess, no download."""

import copy

import pytest
from seed_records import seed_document

from bench_ctl.reporting.frame import cells_frame
from bench_ctl.reporting.report.interpretation import _interpretation, valid_interpretation
from bench_ctl.reporting.tables import comparison_table
from bench_protocol.errors import SpecError
from bench_protocol.spec import RunSpec

RUN = "20260101-000000-abcdef"


@pytest.mark.fast
@pytest.mark.parametrize("kwargs, message", [
    ({"pools": []}, "no devices given"),
    ({"pools": ["cpu", "cpu"]}, "a device is given twice"),
    ({"pools": ["CPU!"]}, "pool"),
    ({"batch_sizes": []}, "no batch size given"),
    ({"batch_sizes": [0]}, "batch size must be a positive integer"),
    ({"batch_sizes": [True]}, "batch size must be a positive integer"),
    ({"batch_sizes": [1 << 20]}, "above the limit"),
    ({"seq_lens": [-1]}, "sequence length must be a positive integer"),
    ({"dtypes": ["fp64"]}, "unknown dtype 'fp64'"),
    ({"dtypes": []}, "no dtype given"),
    ({"variants": []}, "no variant given"),
    ({"variants": ["tensorrt"]}, "unknown variant 'tensorrt'"),
    ({"task": "generate", "new_tokens": 0}, "new tokens"),
    ({"latency_budget_ms": 0}, "latency budget must be a positive number"),
    ({"latency_budget_ms": float("nan")}, "latency budget"),
    ({"baseline": "cuda"}, "baseline 'cuda' is not one of the devices cpu"),
    ({"run_id": "yesterday"}, "malformed run id"),
])
def test_a_run_spec_refuses_each_bad_field_in_one_line(kwargs, message):
    args = {"pools": ["cpu"], "batch_sizes": [1], "run_id": RUN, **kwargs}
    with pytest.raises(SpecError, match=message.replace("(", r"\(")) as err:
        RunSpec(**args)
    assert "\n" not in str(err.value)


@pytest.mark.fast
def test_a_run_spec_defaults_its_baseline_and_makes_every_cell():
    spec = RunSpec(pools=["cpu", "cuda"], batch_sizes=[1, 8], dtypes=["fp32", "int8"], variants=["eager", "ort"], run_id=RUN)
    assert spec.baseline == "cpu" and len(spec.cells()) == 2 * 2 * 2 * 2
    assert len({c.cell_id for c in spec.cells()}) == 16


def _doc(cpu_tput=17.83, gpu_tput=497.94, cv=0.01):
    doc = seed_document()
    for c in doc["cells"]:
        c["metrics"]["latency_ms"]["cv"] = cv
        c["metrics"]["throughput_mean"] = cpu_tput if c["pool"] == "cpu" else gpu_tput
        c["metrics"]["latency_ms"]["mean"] = 1e3 * 8 / c["metrics"]["throughput_mean"]
    return doc


def _conclude(doc, pools=("cpu", "cuda")):
    frame = cells_frame(doc)
    table = comparison_table(frame, list(pools), pools[0])
    return _interpretation(table, frame, list(pools), pools[0])


@pytest.mark.fast
def test_the_conclusion_recommends_the_faster_pool():
    items, conclusion = _conclude(_doc())
    assert "27.93x higher throughput" in conclusion and "GPU is recommended" in conclusion
    assert items[-1] == "**Recommendation**: For optimal performance, use batch size 8 on GPU."


@pytest.mark.fast
def test_the_conclusion_calls_a_tie_within_noise():
    _, conclusion = _conclude(_doc(cpu_tput=100.0, gpu_tput=100.5, cv=0.05))
    assert "reach the same throughput within noise" in conclusion and "neither is recommended" in conclusion


@pytest.mark.fast
def test_the_conclusion_says_when_the_other_pool_is_slower():
    _, conclusion = _conclude(_doc(cpu_tput=100.0, gpu_tput=40.0))
    assert "only 0.40x the throughput" in conclusion and "CPU is recommended" in conclusion


@pytest.mark.fast
def test_the_conclusion_of_a_single_pool_names_its_best_batch():
    doc = _doc()
    doc["cells"] = [c for c in doc["cells"] if c["pool"] == "cpu"]
    _, conclusion = _conclude(doc, pools=("cpu",))
    assert conclusion.startswith("Only CPU was measured") and "batch size 8" in conclusion


@pytest.mark.fast
def test_every_invalid_cell_leaves_nothing_to_conclude():
    doc = _doc(cv=0.5)
    frame = cells_frame(doc)
    table = comparison_table(frame, ["cpu", "cuda"], "cpu")
    items, conclusion = valid_interpretation(frame, ["cpu", "cuda"], "cpu", None, table, {})
    assert "All 2 measured cell(s) here are INVALID" in items[0] and "nothing to conclude" in conclusion


@pytest.mark.fast
def test_an_invalid_cell_is_left_out_of_the_sentences():
    doc = _doc()
    extra = copy.deepcopy(next(c for c in doc["cells"] if c["pool"] == "cuda"))
    extra.update(batch_size=16, cell_id=extra["cell_id"].replace(":b8:", ":b16:"))
    extra["metrics"]["latency_ms"]["cv"] = 0.5
    doc["cells"].append(extra)
    frame = cells_frame(doc)
    table = comparison_table(frame, ["cpu", "cuda"], "cpu")
    items, _ = valid_interpretation(frame, ["cpu", "cuda"], "cpu", None, table, {})
    assert items[-1] == "1 INVALID cell(s) are left out of these sentences (see Details)."


def test_model_loading_takes_weights_where_they_are_and_says_what_it_measured(models_dir, monkeypatch):
    from bench_protocol.spec import ModelRef
    from bench_workers.cell.models import ModelNotFound, WeightsUnavailable, load_model

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with_weights = load_model(ModelRef(model=str(models_dir / "tiny")), [models_dir])
    assert with_weights.weights == "pretrained" and with_weights.source == str(models_dir / "tiny")
    random = load_model(ModelRef(model=str(models_dir / "tiny"), weights="random"), [models_dir])
    assert random.weights == "random"
    again = load_model(ModelRef(model=str(models_dir / "tiny"), weights="random"), [models_dir])
    first = next(iter(random.model.state_dict().values()))
    assert (first == next(iter(again.model.state_dict().values()))).all()  # seeded: the same random weights
    config_only = load_model(ModelRef(model=str(models_dir / "tiny-config-only")), [models_dir])
    assert config_only.weights == "random" and "no weights" in config_only.warning
    with pytest.raises(WeightsUnavailable):
        load_model(ModelRef(model=str(models_dir / "tiny-config-only"), weights="pretrained"), [models_dir])
    with pytest.raises(ModelNotFound, match="no-such-org/no-such-model"):
        load_model(ModelRef(model="no-such-org/no-such-model"))
    bundled = load_model(ModelRef())  # the default model, offline: its bundled config, random weights
    assert bundled.weights == "random" and bundled.source == "bundled config.json"

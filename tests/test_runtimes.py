"""Runtimes as plug-ins (eager, compile, cudagraph, ONNX Runtime, OpenVINO), int8, and the
accuracy of every cell against its fp32 eager reference, on a tiny model saved by a fixture."""

import pytest

from bench_protocol import spec as spec_module
from bench_protocol.spec import CellSpec, MeasureRules, ModelRef
from bench_workers import runtimes
from bench_workers.cell.measure import ModelCache, measure_cell
from bench_workers.runtimes.base import Runner, Runtime

RUN = "20260101-000000-abcdef"
FAST = MeasureRules(warmup=1, min_iterations=3, min_time=0, max_time=10)


@pytest.fixture(autouse=True)
def isolated_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("BENCHCTL_CACHE_DIR", str(tmp_path / "cache"))


def cell(model, variant="eager", dtype="fp32", batch=2, **kw):
    return CellSpec(run_id=RUN, pool="cpu", batch_size=batch, seq_len=16, dtype=dtype, variant=variant,
                    model=ModelRef(model=str(model)), rules=FAST, **kw)


@pytest.mark.fast
def test_the_protocols_variant_names_are_the_registry():
    assert tuple(runtimes.REGISTRY) == spec_module.VARIANTS
    for name in runtimes.REGISTRY:
        assert runtimes.get(name).name == name


@pytest.mark.parametrize("variant, dtype", [("ort", "fp32"), ("ort", "int8"), ("openvino", "fp32"), ("eager", "int8")])
def test_each_runtime_measures_and_keeps_the_answers(tiny_model, variant, dtype):
    rec = measure_cell(cell(tiny_model, variant, dtype), "cpu")
    assert rec["status"] == "ok", rec["error"]
    assert rec["metrics"]["latency_ms"]["n"] >= 3
    acc = rec["accuracy"]
    assert acc["available"] and acc["top1_agreement"] == 1.0
    assert acc["max_abs_diff"] < (1e-4 if dtype == "fp32" else 0.05)
    if variant == "ort":
        assert rec["runtime"]["provider"] == "CPUExecutionProvider"
    if variant == "openvino":
        assert rec["runtime"]["precision"] == "f32"  # an fp32 cell runs at fp32, whatever the CPU's default


def test_an_export_is_made_once_and_its_time_reported_like_compile_time(tiny_model):
    cache = ModelCache()
    first = measure_cell(cell(tiny_model, "ort", batch=1), "cpu", cache=cache)
    second = measure_cell(cell(tiny_model, "ort", batch=4), "cpu", cache=cache)  # another batch: the same file
    assert first["runtime"]["export_s"] > 0 and second["runtime"]["export_s"] is None
    assert first["metrics"]["compile_s"] >= first["runtime"]["export_s"]


def test_unsupported_combinations_are_error_records_naming_why(tiny_model):
    cases = {("openvino", "int8"): "unsupported_dtype", ("compile", "int8"): "unsupported_dtype",
             ("ort", "bf16"): "unsupported_dtype"}
    for (variant, dtype), kind in cases.items():
        rec = measure_cell(cell(tiny_model, variant, dtype), "cpu")
        assert rec["status"] == "error" and rec["error"]["type"] == kind, (variant, dtype, rec["error"])
    gen = measure_cell(CellSpec(run_id=RUN, pool="cpu", batch_size=1, seq_len=8, dtype="fp32", variant="ort",
                                task="generate", new_tokens=2, model=ModelRef(model=str(tiny_model)), rules=FAST), "cpu")
    assert gen["error"]["type"] == "unsupported_variant" and "classify" in gen["error"]["message"]


def test_a_missing_runtime_library_is_an_error_record_naming_the_extra(tiny_model, monkeypatch):
    from bench_workers.runtimes.onnxruntime import OnnxRuntime

    monkeypatch.setattr(OnnxRuntime, "library", "no_such_onnxruntime_xyz")
    rec = measure_cell(cell(tiny_model, "ort"), "cpu")
    assert rec["error"]["type"] == "runtime_unavailable"
    assert "pip install 'benchctl[ort]'" in rec["error"]["message"]
    assert "ort" not in runtimes.installed()  # what the worker lists as runnable


@pytest.mark.fast
def test_onnx_runtime_falling_back_to_cpu_under_a_gpu_pool_is_an_error(tmp_path):
    """ORT given CUDA first on a host whose ORT lacks it runs on the CPU without a word: the
    provider it actually used decides, as on a GPU worker."""
    import onnxruntime as ort
    import torch

    from bench_workers.runtimes.onnxruntime import check_provider

    model = torch.nn.Linear(4, 2)
    path = tmp_path / "m.onnx"
    torch.onnx.export(model, (torch.ones(1, 4),), str(path), dynamo=False, input_names=["x"], output_names=["y"])
    session = ort.InferenceSession(str(path), providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    used = session.get_providers()
    if "CUDAExecutionProvider" in used:
        pytest.skip("this onnxruntime has a working CUDA provider")
    with pytest.raises(runtimes.RuntimeUnavailable, match="fell back to CPUExecutionProvider"):
        check_provider("cuda", used)
    check_provider("cpu", used)


class Noisy(Runtime):
    """A runtime that answers wrong: eager logits plus noise larger than the logits."""

    name = "noisy"

    def prepare(self, ctx):
        torch = ctx.torch
        gen = torch.Generator().manual_seed(0)

        def call():
            logits = ctx.eager().logits
            return logits + 10 * torch.randn(logits.shape, generator=gen)

        return Runner(call, method="eager plus noise")


@pytest.fixture
def noisy(monkeypatch):
    monkeypatch.setattr(spec_module, "VARIANTS", (*spec_module.VARIANTS, "noisy"))
    monkeypatch.setitem(runtimes.REGISTRY, "noisy", f"{__name__}:Noisy")


def test_a_runtime_that_changes_the_answers_is_caught(tiny_model, noisy):
    rec = measure_cell(cell(tiny_model, "noisy", batch=64), "cpu")
    assert rec["status"] == "ok"
    assert rec["accuracy"]["top1_agreement"] < 0.9 and rec["accuracy"]["max_abs_diff"] > 1
    from bench_protocol.accuracy import accuracy_problem

    assert "agree with the fp32 eager reference" in accuracy_problem(rec["accuracy"], None)


@pytest.mark.fast
def test_a_cell_below_the_accuracy_tolerance_is_invalid_and_never_the_fastest_way():
    """Two runtimes on one pool: the faster one changes the answers; the slower one is named."""
    import copy

    from seed_records import seed_document

    from bench_ctl.reporting.fastest import fastest_ways
    from bench_ctl.reporting.frame import cells_frame

    doc = seed_document()
    cpu = next(c for c in doc["cells"] if c["pool"] == "cpu")
    cpu["accuracy"] = {"available": True, "top1_agreement": 1.0, "max_abs_diff": 1e-6}
    fast = copy.deepcopy(cpu)
    fast.update(variant="noisy", cell_id=cpu["cell_id"].replace(":eager:", ":noisy:"))
    fast["accuracy"] = {"available": True, "top1_agreement": 0.62, "max_abs_diff": 3.1}
    fast["metrics"]["throughput_mean"] *= 3
    doc["cells"].append(fast)
    frame = cells_frame(doc)
    noisy = frame[frame["variant"] == "noisy"].iloc[0]
    assert noisy["valid"] == False and "62.0% of top-1 labels agree" in noisy["invalid_reason"]  # noqa: E712
    way = fastest_ways(frame)
    assert way[way["pool"] == "cpu"].iloc[0]["variant"] == "eager"


def test_submit_refuses_a_runtime_no_live_worker_of_the_pool_can_run(redis_server, workers, tiny_model):
    """A real worker lists the runtimes it can run; one registered as a host without ONNX Runtime
    would list only PyTorch's: submit refuses before anything is queued."""
    import json

    from conftest import benchctl

    from bench_protocol import keys

    r = redis_server.client()
    w = workers(redis_server.url, device="cpu", queue="cpu", name="cpu-rt@test", client=r)
    listed = [json.loads(line) for line in benchctl("workers", "--broker", redis_server.url, "--json").stdout.splitlines()]
    assert set(runtimes.installed()) <= set(listed[0]["runtimes"]) and "ort" in listed[0]["runtimes"]
    # The same worker as a host without ONNX Runtime would describe itself.
    info = json.loads(r.get(keys.worker(w.name)))
    r.set(keys.worker(w.name), json.dumps({**info, "runtimes": ["eager", "compile", "cudagraph"]}), ex=60)
    res = benchctl("submit", "--devices", "cpu", "--batch-sizes", "1", "--seq-lens", "16", "--variants", "eager,ort",
                   "--model", str(tiny_model), "--broker", redis_server.url)
    assert res.returncode == 2 and "no live worker can run cpu: ort" in res.stderr and "benchctl[ort]" in res.stderr
    assert "Traceback" not in res.stderr and r.zcard(keys.RUNS) == 0  # nothing recorded, nothing queued

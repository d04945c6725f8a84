"""``openvino``: Intel OpenVINO on a CPU, from the exported ONNX file, reshaped to the cell's
static shape.

The cell's dtype means what it says: OpenVINO's default inference precision on a CPU with AMX
or AVX512-BF16 is bf16 even for an fp32 model, so the precision is set (f32 for fp32 cells, bf16
for bf16 cells) and the precision the compiled model reports is recorded.
"""

from __future__ import annotations

from .base import PrepareContext, Runner, Runtime, RuntimeUnavailable

PRECISION = {"fp32": "f32", "bf16": "bf16"}


class OpenVino(Runtime):
    name = "openvino"
    library = "openvino"
    extra = "openvino"
    devices = ("cpu",)

    def check_dtype(self, torch, device, dtype: str) -> None:
        from ..cell.dtypes import UnsupportedDtype

        if dtype not in PRECISION:
            raise UnsupportedDtype(f"{dtype} on openvino is not measured (fp32 and bf16 only)")
        if dtype == "bf16":
            import openvino as ov

            caps = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
            if "BF16" not in caps:
                raise UnsupportedDtype(f"bf16 on openvino: this CPU has no native bf16 (capabilities: {', '.join(caps)})")

    def load_dtype(self, dtype: str) -> str:
        return "fp32"  # exported in fp32; the precision is OpenVINO's, set by its hint

    def prepare(self, ctx: PrepareContext) -> Runner:
        import time

        import openvino as ov

        from .onnx_export import export

        t0 = time.perf_counter()
        path, export_s = export(ctx.torch, ctx.model, ctx.feeds, ctx.model_key, "fp32", ctx.device)
        core = ov.Core()
        model = core.read_model(str(path))
        names = [i.get_any_name() for i in model.inputs]
        model.reshape({n: list(ctx.feeds[n].shape) for n in names})
        compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": PRECISION[ctx.cell.dtype],
                                                     "INFERENCE_NUM_THREADS": ctx.threads,
                                                     "PERFORMANCE_HINT": "LATENCY"})
        hint = compiled.get_property("INFERENCE_PRECISION_HINT")
        ran_at = hint.get_type_name() if hasattr(hint, "get_type_name") else str(hint)
        if ran_at != PRECISION[ctx.cell.dtype]:
            raise RuntimeUnavailable(f"OpenVINO ran at {ran_at}, not the cell's {ctx.cell.dtype}")
        request = compiled.create_infer_request()
        feeds = {n: ctx.feeds[n].cpu().numpy() for n in names}

        def call():
            return ctx.torch.from_numpy(request.infer(feeds)[0].copy())

        return Runner(call, time.perf_counter() - t0, f"OpenVINO {ov.__version__} on CPU at {ran_at}",
                      info={"precision": ran_at, "onnx": str(path), "openvino": ov.__version__, "export_s": export_s})

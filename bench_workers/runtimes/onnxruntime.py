"""``ort``: ONNX Runtime on its CPU or CUDA execution provider, from the exported ONNX file.

The provider that actually runs is read back from the session: ORT falls back to CPU without a
word when the CUDA provider cannot load, and a CPU number under a GPU pool is refused as an
error record. On a GPU the inputs and outputs are bound on the device (no host copies in the
window) and each call is timed by the wall clock around ``run_with_iobinding``, which returns
when ORT's own stream is done (torch's CUDA events would time torch's stream, not ORT's).
Threads: the cell's torch thread count.
"""

from __future__ import annotations

from .base import PrepareContext, Runner, Runtime, RuntimeUnavailable

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}


def check_provider(device_type: str, used: list[str]) -> None:
    """ORT runs on what it could load; the cell's device must be what it got."""
    wanted = PROVIDERS[device_type]
    if not used or used[0] != wanted:
        raise RuntimeUnavailable(f"ONNX Runtime fell back to {used[0] if used else 'nothing'} instead of {wanted} "
                                 f"(install onnxruntime-gpu matching this CUDA for a GPU pool)")


class OnnxRuntime(Runtime):
    name = "ort"
    library = "onnxruntime"
    extra = "ort"
    devices = ("cpu", "cuda")

    def check_dtype(self, torch, device, dtype: str) -> None:
        from ..cell.dtypes import UnsupportedDtype

        allowed = {"cpu": ("fp32", "int8"), "cuda": ("fp32", "fp16")}[device.type]
        if dtype not in allowed:
            raise UnsupportedDtype(f"{dtype} on ort runs on neither provider here ({device.type}: {', '.join(allowed)})")

    def prepare(self, ctx: PrepareContext) -> Runner:
        import time

        import onnxruntime as ort

        from .onnx_export import export, quantized

        t0 = time.perf_counter()
        path, export_s = export(ctx.torch, ctx.model, ctx.feeds, ctx.model_key, "fp32" if ctx.cell.dtype == "int8"
                                else ctx.cell.dtype, ctx.device)
        if ctx.cell.dtype == "int8":
            path, _ = quantized(path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = ctx.threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        wanted = PROVIDERS[ctx.device.type]
        providers = [(wanted, {"device_id": ctx.device.index or 0})] if ctx.device.type == "cuda" else [wanted]
        session = ort.InferenceSession(str(path), options, providers=providers)
        used = session.get_providers()
        check_provider(ctx.device.type, used)
        names = [i.name for i in session.get_inputs()]
        info = {"provider": used[0], "onnx": str(path), "onnxruntime": ort.__version__}
        if ctx.device.type == "cpu":
            feeds = {n: ctx.feeds[n].cpu().numpy() for n in names}

            def call():
                return ctx.torch.from_numpy(session.run(None, feeds)[0])
            return Runner(call, time.perf_counter() - t0, f"ONNX Runtime {ort.__version__}, {used[0]}",
                          info={**info, "export_s": export_s})
        binding = session.io_binding()
        for n in names:
            t = ctx.feeds[n].contiguous()
            binding.bind_input(n, "cuda", ctx.device.index or 0, _np_dtype(t), list(t.shape), t.data_ptr())
        binding.bind_output("logits", "cuda", ctx.device.index or 0)

        def call_gpu():
            session.run_with_iobinding(binding)
            return binding.get_outputs()[0]

        from ..cell.timers import CpuTimer

        return Runner(call_gpu, time.perf_counter() - t0, f"ONNX Runtime {ort.__version__}, {used[0]} (I/O bound on the GPU)",
                      timer=CpuTimer(), sync=lambda: None, torch_allocator=False, info={**info, "export_s": export_s})


def _np_dtype(t):
    import numpy as np

    return {"torch.int64": np.int64, "torch.int32": np.int32, "torch.float32": np.float32,
            "torch.float16": np.float16}[str(t.dtype)]

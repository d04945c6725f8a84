"""The model as an ONNX file, exported once per model, dtype and shape policy, and kept in the
worker's cache directory for the runtimes that read ONNX (ONNX Runtime, OpenVINO).

Batch and sequence axes are dynamic, so one file serves every cell of the model; the export
runs before the timed window and its seconds are reported as the cell's preparation time when
it happens. The file is written under a temporary name and renamed: a worker killed during an
export never leaves a half-file that a later cell would read.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

INPUTS = ("input_ids", "attention_mask")
OPSET = 17


def cache_dir() -> Path:
    base = os.environ.get("BENCHCTL_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "benchctl")
    return Path(base) / "onnx"


def _key(torch, model_key: str, dtype: str, device_type: str) -> str:
    import transformers

    text = "|".join([model_key, dtype, device_type, torch.__version__, transformers.__version__, str(OPSET)])
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def export(torch, model, feeds: dict, model_key: str, dtype: str, device) -> tuple[Path, float | None]:
    """(path of the ONNX file, seconds spent exporting, or None when it was cached)."""
    folder = cache_dir() / _key(torch, model_key, dtype, device.type)
    path = folder / "model.onnx"
    if path.is_file():
        return path, None
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f"model.onnx.{os.getpid()}.tmp"
    names = [n for n in INPUTS if n in feeds]
    args = tuple(feeds[n] for n in names)
    axes = {n: {0: "batch", 1: "sequence"} for n in names}
    axes["logits"] = {0: "batch"}
    t0 = time.perf_counter()
    with torch.inference_mode(False), torch.no_grad():
        try:  # the TorchScript exporter: seconds for an encoder, with plain dynamic axes
            torch.onnx.export(model, args, str(tmp), dynamo=False, input_names=names, output_names=["logits"],
                              dynamic_axes=axes, opset_version=OPSET)
        except Exception:  # a torch without it, or a model it cannot trace: the dynamo exporter
            batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence")
            torch.onnx.export(model, (), str(tmp), kwargs=dict(zip(names, args)), dynamo=True, external_data=False,
                              input_names=names, output_names=["logits"],
                              dynamic_shapes={n: {0: batch, 1: seq} for n in names})
    os.replace(tmp, path)
    return path, time.perf_counter() - t0


def quantized(path: Path) -> tuple[Path, float | None]:
    """ONNX Runtime's dynamic int8 quantisation of an exported file (weights int8, activations
    quantised per call), cached beside it."""
    out = path.with_name("model.int8.onnx")
    if out.is_file():
        return out, None
    from onnxruntime.quantization import QuantType, quantize_dynamic

    tmp = path.with_name(f"model.int8.onnx.{os.getpid()}.tmp")
    t0 = time.perf_counter()
    quantize_dynamic(str(path), str(tmp), weight_type=QuantType.QInt8)
    os.replace(tmp, out)
    return out, time.perf_counter() - t0

"""Spec-sheet peaks of the GPUs this code knows: dense tensor-core rates, no sparsity.

fp32 is the plain FP32 rate, not TF32: torch runs fp32 matmuls without TF32 unless asked
(``torch.backends.cuda.matmul.allow_tf32``), so the FP32 figure is the ceiling an fp32 cell
can reach. A GPU not in the table gets no spec-sheet peak, never a guess.

Sources (NVIDIA datasheets; "dense" = half of the "with sparsity" figure they print):
- H100 SXM5 and H100 PCIe: NVIDIA H100 Tensor Core GPU datasheet (2023).
- H200 SXM: NVIDIA H200 Tensor Core GPU datasheet (2024): same compute as H100 SXM, HBM3e.
- A100 SXM4 40/80 GB: NVIDIA A100 Tensor Core GPU datasheet (2021).
- L4: NVIDIA L4 Tensor Core GPU datasheet (2023).
- L40S: NVIDIA L40S GPU datasheet (2023).
- A10G: AWS EC2 G5 instance documentation and NVIDIA A10 datasheet (A10G is AWS's A10
  variant: 31.2 FP32 TFLOP/s, 125 FP16/BF16 tensor TFLOP/s, 600 GB/s).
- T4: NVIDIA T4 Tensor Core GPU datasheet (2019): FP16 mixed precision, no bf16.
"""

from __future__ import annotations

import re

# (pattern on the NVML/torch device name, label, {dtype: TFLOP/s}, memory bandwidth GB/s)
SPEC_PEAKS = [
    (r"H200", "NVIDIA H200 SXM", {"fp32": 67.0, "fp16": 989.4, "bf16": 989.4}, 4800.0),
    (r"H100.*PCIe", "NVIDIA H100 PCIe", {"fp32": 51.2, "fp16": 756.5, "bf16": 756.5}, 2000.0),
    (r"H100", "NVIDIA H100 SXM5", {"fp32": 66.9, "fp16": 989.4, "bf16": 989.4}, 3350.0),
    (r"A100.*80GB", "NVIDIA A100 SXM4 80GB", {"fp32": 19.5, "fp16": 312.0, "bf16": 312.0}, 2039.0),
    (r"A100", "NVIDIA A100 SXM4 40GB", {"fp32": 19.5, "fp16": 312.0, "bf16": 312.0}, 1555.0),
    (r"L40S", "NVIDIA L40S", {"fp32": 91.6, "fp16": 362.0, "bf16": 362.0}, 864.0),
    (r"\bL4\b", "NVIDIA L4", {"fp32": 30.3, "fp16": 121.0, "bf16": 121.0}, 300.0),
    (r"A10G", "NVIDIA A10G", {"fp32": 31.2, "fp16": 125.0, "bf16": 125.0}, 600.0),
    (r"\bT4\b", "NVIDIA T4", {"fp32": 8.1, "fp16": 65.0}, 320.0),
]


def spec_peak(device_name: str | None, dtype: str) -> dict:
    """{'spec_name', 'spec_tflops', 'spec_gbps'} for a known GPU (tflops None where the dtype has no
    rate on it); {} for anything else."""
    if not device_name:
        return {}
    for pattern, label, rates, gbps in SPEC_PEAKS:
        if re.search(pattern, device_name):
            return {"spec_name": label, "spec_tflops": rates.get(dtype), "spec_gbps": gbps}
    return {}

"""Spec-sheet peaks of the GPUs this code knows: dense tensor-core rates, no sparsity.

Entries are matched by the exact name NVML (and torch) report, never by a pattern: a pattern
takes an H200 NVL or a GH200 for an H200 SXM, an H100 NVL for an H100 SXM, an A100 80GB PCIe
for an SXM4, and a MIG slice ("… MIG 1g.10gb") for its whole GPU. A MIG slice has a fraction of
the GPU's compute, so it gets no spec-sheet peak.

fp32 is the plain FP32 rate, not TF32: torch runs fp32 matmuls without TF32 unless asked
(``torch.backends.cuda.matmul.allow_tf32``), so the FP32 figure is the ceiling an fp32 cell
can reach. A GPU not in the table gets no spec-sheet peak, never a guess.

Sources (NVIDIA datasheets; "dense" = half of the "with sparsity" figure they print):
- H100 SXM5, H100 PCIe and H100 NVL: NVIDIA H100 Tensor Core GPU datasheet (2023).
- H200 SXM and H200 NVL: NVIDIA H200 Tensor Core GPU datasheet (2024): HBM3e.
- A100 SXM4 and PCIe, 40/80 GB: NVIDIA A100 Tensor Core GPU datasheet (2021).
- L4: NVIDIA L4 Tensor Core GPU datasheet (2023).
- L40S: NVIDIA L40S GPU datasheet (2023).
- A10G: AWS EC2 G5 instance documentation and NVIDIA A10 datasheet (A10G is AWS's A10
  variant: 31.2 FP32 TFLOP/s, 125 FP16/BF16 tensor TFLOP/s, 600 GB/s).
- T4: NVIDIA T4 Tensor Core GPU datasheet (2019): FP16 mixed precision, no bf16.
"""

from __future__ import annotations

# The exact NVML device name -> (label, {dtype: TFLOP/s}, memory bandwidth GB/s)
SPEC_PEAKS = {
    "NVIDIA H200": ("NVIDIA H200 SXM", {"fp32": 67.0, "fp16": 989.4, "bf16": 989.4}, 4800.0),
    "NVIDIA H200 NVL": ("NVIDIA H200 NVL", {"fp32": 60.0, "fp16": 835.5, "bf16": 835.5}, 4800.0),
    "NVIDIA H100 80GB HBM3": ("NVIDIA H100 SXM5", {"fp32": 66.9, "fp16": 989.4, "bf16": 989.4}, 3350.0),
    "NVIDIA H100 PCIe": ("NVIDIA H100 PCIe", {"fp32": 51.2, "fp16": 756.5, "bf16": 756.5}, 2000.0),
    "NVIDIA H100 NVL": ("NVIDIA H100 NVL", {"fp32": 60.0, "fp16": 835.5, "bf16": 835.5}, 3900.0),
    "NVIDIA A100-SXM4-80GB": ("NVIDIA A100 SXM4 80GB", {"fp32": 19.5, "fp16": 312.0, "bf16": 312.0}, 2039.0),
    "NVIDIA A100-SXM4-40GB": ("NVIDIA A100 SXM4 40GB", {"fp32": 19.5, "fp16": 312.0, "bf16": 312.0}, 1555.0),
    "NVIDIA A100 80GB PCIe": ("NVIDIA A100 PCIe 80GB", {"fp32": 19.5, "fp16": 312.0, "bf16": 312.0}, 1935.0),
    "NVIDIA A100-PCIE-40GB": ("NVIDIA A100 PCIe 40GB", {"fp32": 19.5, "fp16": 312.0, "bf16": 312.0}, 1555.0),
    "NVIDIA L40S": ("NVIDIA L40S", {"fp32": 91.6, "fp16": 362.0, "bf16": 362.0}, 864.0),
    "NVIDIA L4": ("NVIDIA L4", {"fp32": 30.3, "fp16": 121.0, "bf16": 121.0}, 300.0),
    "NVIDIA A10G": ("NVIDIA A10G", {"fp32": 31.2, "fp16": 125.0, "bf16": 125.0}, 600.0),
    "Tesla T4": ("NVIDIA T4", {"fp32": 8.1, "fp16": 65.0}, 320.0),
}


def spec_peak(device_name: str | None, dtype: str) -> dict:
    """{'spec_name', 'spec_tflops', 'spec_gbps'} for a known GPU (tflops None where the dtype has no
    rate on it); {} for anything else, a MIG slice included."""
    entry = SPEC_PEAKS.get((device_name or "").strip())
    if entry is None:
        return {}
    label, rates, gbps = entry
    return {"spec_name": label, "spec_tflops": rates.get(dtype), "spec_gbps": gbps}

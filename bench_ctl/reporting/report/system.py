"""System Information: one subsection per pool and host, from the fingerprint of the host that
measured it (the seed's report took it from the wrong host), and the ceilings measured there."""

from __future__ import annotations

from ..document import Bullets, Heading, Para
from ..labels import display_name, is_gpu_pool

MIXED_KEYS = ("cpu_model", "logical_cores", "physical_cores", "memory_gb", "torch", "cuda_version", "gpus", "torch_threads", "platform")


def pool_fingerprints(doc: dict, pool: str) -> list[dict]:
    """The fingerprints of the hosts that measured a pool's cells, in order of first use."""
    seen: list[str] = []
    for rec in doc["cells"]:
        fid = rec.get("fingerprint_id")
        if rec.get("pool") == pool and fid and fid not in seen:
            seen.append(fid)
    return [doc["fingerprints"][f] for f in seen if f in doc["fingerprints"]]


def mixed_hardware(fps: list[dict]) -> bool:
    keyed = {tuple(str(fp.get(k)) for k in MIXED_KEYS) for fp in fps}
    return len(keyed) > 1


def _system_lines(fp: dict, gpu: bool) -> list[str]:
    lines = [f"Host: {fp.get('hostname')}", f"Platform: {fp.get('platform')}", f"Processor: {fp.get('processor')}",
             f"CPU Model: {fp.get('cpu_model')}", f"CPU Flags: {', '.join(fp.get('cpu_flags') or []) or 'none of note'}",
             f"CPU Count: {fp.get('logical_cores')}", f"Physical Cores: {fp.get('physical_cores')}",
             f"Memory: {fp.get('memory_gb')} GB", f"Python: {fp.get('python')}", f"PyTorch: {fp.get('torch')}",
             f"Transformers: {fp.get('transformers')}", f"Torch Threads: {fp.get('torch_threads')}"]
    if fp.get("cpu_affinity"):
        lines.append(f"CPU Affinity: {fp['cpu_affinity']}")
    if gpu:
        g = fp.get("gpu")
        if g:
            lines += [f"GPU: {g.get('name')}", f"GPU Count: {fp.get('gpu_count')}", f"GPU Memory: {g.get('memory_gb')} GB",
                      f"Driver: {fp.get('gpu_driver')}", f"CUDA Version: {fp.get('cuda_version') or fp.get('cuda_driver_version')}",
                      f"cuDNN: {fp.get('cudnn_version')}", f"Compute Capability: {g.get('compute_capability')}",
                      f"Power Limit: {g.get('power_limit_w')} W"]
        else:
            lines.append(f"GPU: not identified ({fp.get('gpu_reason', 'no NVML')})")
    lines.append(f"Fingerprint: {fp.get('fingerprint_id')}")
    return lines


def _peak_lines(doc: dict, pool: str, fingerprint_id: str | None) -> list[str]:
    """The ceilings the pool's worker measured on this host (and the spec sheet's, where known)."""
    gemm: dict[str, str] = {}
    copy, spec = None, None
    for rec in doc["cells"]:
        pk = rec.get("peaks") or {}
        if rec.get("pool") != pool or rec.get("fingerprint_id") != fingerprint_id or not pk.get("gemm_tflops"):
            continue
        gemm.setdefault(pk["gemm_dtype"], f"{pk['gemm_dtype']} {pk['gemm_tflops']:.3g} TFLOP/s (n={pk.get('gemm_size')})")
        copy = copy or pk.get("copy_gbps")
        if pk.get("spec_name"):
            spec = spec or f"{pk['spec_name']}, {pk.get('spec_gbps'):g} GB/s"
    lines = []
    if gemm:
        lines.append(f"Measured GEMM Peak: {', '.join(gemm.values())}")
    if copy:
        lines.append(f"Measured Copy Bandwidth: {copy:.3g} GB/s")
    if spec:
        lines.append(f"Spec-Sheet Peak: {spec}")
    return lines


def system_information(ctx) -> list:
    """One subsection per pool and host, from the fingerprint of the host that measured it."""
    doc, pools = ctx.doc, ctx.pools
    blocks: list = [Heading(2, "System Information")]
    warnings = []
    for pool in pools:
        fps = pool_fingerprints(doc, pool)
        if not fps:
            blocks += [Heading(3, display_name(pool)), Para("No fingerprint: no worker of this pool reported a measurement.")]
            continue
        for fp in fps:
            title = display_name(pool) if len(fps) == 1 else f"{display_name(pool)} ({fp.get('hostname')})"
            blocks += [Heading(3, title),
                       Bullets(_system_lines(fp, is_gpu_pool(pool)) + _peak_lines(doc, pool, fp.get("fingerprint_id")))]
        if mixed_hardware(fps):
            warnings.append(f"**Warning**: pool {pool} mixed hardware: its cells were measured on {len(fps)} different hosts "
                            f"({', '.join(fp.get('hostname', '?') for fp in fps)}); compare its cells with care.")
    return blocks + [Para(w) for w in warnings]

"""The embedded default: every cell of a run measured in this process, one after another,
with no broker. ``benchctl run`` calls this; pools are torch devices here."""

from __future__ import annotations

from bench_protocol.spec import RunSpec

from ..device.fingerprint import host_fingerprint
from .measure import ModelCache, measure_cell


def run_embedded(spec: RunSpec, on_cell=None, threads: int | None = None,
                 fingerprints: dict | None = None) -> tuple[list[dict], dict]:
    """Measure every cell; return (records, fingerprints by id). ``on_cell(record)`` after each;
    ``threads``: torch's intra-op threads (default: torch's choice); ``fingerprints``: a dict
    filled as hosts are fingerprinted (so an interrupted caller still has them)."""
    import torch

    if threads is not None:
        torch.set_num_threads(threads)

    fingerprints = {} if fingerprints is None else fingerprints
    records: list[dict] = []
    cache = ModelCache()
    fp_by_device: dict[str, dict] = {}
    for cell in spec.cells():
        device = cell.pool
        if device not in fp_by_device:
            fp = host_fingerprint(device, threads=torch.get_num_threads())
            fp_by_device[device] = fp
            fingerprints[fp["fingerprint_id"]] = fp
        fp = fp_by_device[device]
        record = measure_cell(cell, device, cache=cache, context={
            "fingerprint_id": fp["fingerprint_id"], "host": fp["hostname"], "worker": "embedded"})
        records.append(record)
        if on_cell is not None:
            on_cell(record)
    cache.clear()
    return records, fingerprints

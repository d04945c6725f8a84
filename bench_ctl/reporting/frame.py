"""Cell records -> one tidy DataFrame, a row per cell, with its validity flag and reason.

Validity follows MLPerf's VALID/INVALID idea: a cell is INVALID when it ran fewer iterations
than its rule asked, when its latencies spread too much to trust the mean, when a tracker
that its device should have could not measure, or when another worker measured a cell on the
same host at the same time (two pools on one host disturb each other).
"""

from __future__ import annotations

import pandas as pd

from bench_protocol.accuracy import accuracy_problem
from bench_protocol.metrics import METRICS
from bench_protocol.spec import AXES, AXIS_DEFAULTS, COMBO_AXES

from .labels import column_prefix, is_gpu_pool

CV_THRESHOLD = 0.10  # coefficient of variation above which a mean is not trusted

# The cell's coordinates and outcome, then one column per declared metric (bench_protocol/metrics.py).
CELL_COLUMNS = [
    "run_id", "cell_id", "label", "device", *AXES, "status", "error_type", "error",
    "valid", "invalid_reason", "host", "worker", "fingerprint_id", "weights",
]
COLUMNS = [*CELL_COLUMNS, *(m.name for m in METRICS)]


def overlapping(records: list[dict]) -> dict[str, str]:
    """Cells measured at the same time on one host by different workers disturb each other:
    cell id -> the reason, for every such cell (from the records' host, worker and times)."""
    by_host: dict[str, list[dict]] = {}
    for rec in records:
        if rec.get("status") == "ok" and rec.get("host") and rec.get("started_at") and rec.get("finished_at"):
            by_host.setdefault(rec["host"], []).append(rec)
    found: dict[str, str] = {}
    for host, recs in by_host.items():
        recs.sort(key=lambda r: r["started_at"])
        active: list[dict] = []  # cells still running when the next one starts
        for rec in recs:
            active = [a for a in active if a["finished_at"] > rec["started_at"]]
            for other in active:
                if other.get("worker") != rec.get("worker"):
                    for a, b in ((rec, other), (other, rec)):
                        found.setdefault(a["cell_id"], f"measured on host {host} while {b.get('worker')} measured "
                                                        f"{b['cell_id']} there")
            active.append(rec)
    return found


def _validity(rec: dict, overlaps: dict[str, str]) -> tuple[bool | None, str | None]:
    if rec.get("status") != "ok":
        return None, None
    reasons = []
    if rec.get("cell_id") in overlaps:
        reasons.append(overlaps[rec["cell_id"]])
    if rec.get("shortfall"):
        reasons.append(f"too few iterations: {rec['shortfall']}")
    lat = rec.get("metrics", {}).get("latency_ms", {})
    cv = lat.get("cv")
    busy = (rec.get("trackers", {}).get("host_load") or {}).get("busy")
    serving = rec.get("serving")
    if serving is not None:
        # A served cell's requests wait in a queue: their spread is what is measured, not noise.
        # Its validity is LoadGen's verdict (and whether every request was served).
        cv = None
        if serving.get("invalid"):
            reasons.append(serving["invalid"] + (f" (host busy: {busy})" if busy else ""))
    precision = (rec.get("rules") or {}).get("precision") or 0
    if precision and serving is None:
        # Asked to measure until the mean is known to ±precision%: validity rests on that interval;
        # the CV stays in the tables as the spread of single iterations.
        cv, half = None, lat.get("ci95_pct")
        if half is None or half > precision:
            reasons.append(f"95% interval of the mean ±{half if half is not None else float('nan'):.1f}%, wider than the "
                           f"±{precision:g}% asked (--precision) when max-time ran out"
                           + (f" (host busy: {busy})" if busy else ""))
    if cv is not None and cv > CV_THRESHOLD:
        # A spread with a busy host has its likely cause named.
        reasons.append(f"latency CV {cv:.1%} above {CV_THRESHOLD:.0%}" + (f" (host busy: {busy})" if busy else ""))
    trackers = rec.get("trackers", {})
    # Memory must be there; a GPU without a power reading (a MIG slice, many containers) keeps
    # its latency VALID and its power columns say "not measured" with the tracker's reason.
    needed = ["cpu_memory"] + (["gpu_memory"] if is_gpu_pool(rec.get("pool", "")) else [])
    for name in needed:
        t = trackers.get(name)
        if t is not None and not t.get("available"):
            reasons.append(f"{name} tracker failed: {t.get('reason')}")
    clocks = trackers.get("gpu_clocks") or {}
    if clocks.get("throttled"):
        reasons.append(f"GPU throttled during the cell ({', '.join(clocks.get('throttle_reasons') or [])})")
    problem = accuracy_problem(rec.get("accuracy"), (rec.get("rules") or {}).get("accuracy_tolerance"))
    if problem:
        reasons.append(problem)
    return (not reasons), ("; ".join(reasons) or None)


def cells_frame(doc: dict) -> pd.DataFrame:
    rows = []
    overlaps = overlapping(doc["cells"])
    for rec in doc["cells"]:
        m = rec.get("metrics") or {}
        err = rec.get("error") or {}
        valid, reason = _validity(rec, overlaps)
        rows.append({
            "run_id": rec.get("run_id"), "cell_id": rec.get("cell_id"),
            "label": column_prefix(rec.get("pool", "")), "device": rec.get("device"),
            **{axis: rec.get(axis, AXIS_DEFAULTS.get(axis)) for axis in AXES},
            "status": rec.get("status"), "error_type": err.get("type"), "error": err.get("message"),
            "valid": valid, "invalid_reason": reason,
            "host": rec.get("host"), "worker": rec.get("worker"), "fingerprint_id": rec.get("fingerprint_id"),
            "weights": (rec.get("model") or {}).get("weights"),
            **{metric.name: metric.read(m) for metric in METRICS},
        })
    frame = pd.DataFrame(rows, columns=COLUMNS)
    numeric = [m.name for m in METRICS]
    frame[numeric] = frame[numeric].apply(pd.to_numeric, errors="coerce").astype("float64")
    return frame.sort_values(["pool", *COMBO_AXES, "batch_size"], kind="stable").reset_index(drop=True)

"""Hosts of one pool: how much of a pool's spread is the host and how much the run, and which
host is off.

From the records of a pool measured by two or more hosts (repeats on several workers, or runs
that spread cells over a fleet): each measured record's mean latency relative to its cell's
mean over the pool, so cells of any size pool together. Between-host spread: the standard
deviation of the hosts' mean relative latencies with the part that within-host noise explains
taken out (one-way random effects, method of moments); within-host spread: the pooled standard
deviation of one host's repeats of a cell. A host is an outlier where its median relative
latency is beyond OUTLIER_PCT or beyond three robust standard deviations of the hosts' medians,
whichever is larger; the fingerprint fields in which it differs from the pool's usual host are
named.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench_protocol.spec import CELL_KEY as _CELL_KEY

CELL_KEY = list(_CELL_KEY)
OUTLIER_PCT = 10.0
# What may explain a host's difference (bench_workers/device/fingerprint.py).
FINGERPRINT_FIELDS = ("cpu_model", "cpu_governor", "logical_cores", "torch_threads", "torch", "transformers",
                      "gpu_driver", "cuda_version", "memory_gb")
GPU_FIELDS = ("name", "power_limit_w", "memory_gb")


def _relative(frame: pd.DataFrame) -> pd.DataFrame:
    ok = frame[(frame["status"] == "ok") & frame["latency_ms_mean"].notna() & frame["host"].notna()].copy()
    if ok.empty:
        return ok
    ok["rel"] = ok["latency_ms_mean"] / ok.groupby(CELL_KEY, dropna=False)["latency_ms_mean"].transform("mean")
    return ok


def _spreads(rel: pd.DataFrame) -> tuple[float, float]:
    """(between-host %, within-host %) of one pool's relative latencies."""
    groups = rel.groupby([*CELL_KEY, "host"], dropna=False)["rel"]
    dev = groups.transform(lambda s: s - s.mean())
    dof = len(rel) - groups.ngroups
    within_var = float((dev**2).sum() / dof) if dof > 0 else 0.0
    per_host = rel.groupby("host")["rel"]
    host_means, counts = per_host.mean(), per_host.count()
    if len(host_means) < 2:
        return 0.0, 100 * within_var**0.5
    between_var = max(0.0, float(host_means.var(ddof=1)) - within_var / float(counts.mean()))
    return 100 * between_var**0.5, 100 * within_var**0.5


def _differences(fp: dict, usual: dict) -> str:
    out = []
    for name in FINGERPRINT_FIELDS:
        if fp.get(name) != usual.get(name):
            out.append(f"{name} {fp.get(name)} vs {usual.get(name)}")
    gpu, ugpu = fp.get("gpu") or {}, usual.get("gpu") or {}
    for name in GPU_FIELDS:
        if gpu.get(name) != ugpu.get(name):
            out.append(f"gpu {name} {gpu.get(name)} vs {ugpu.get(name)}")
    return ", ".join(out) or "no fingerprint difference recorded"


def host_spread(frame: pd.DataFrame, fingerprints: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per pool: hosts, records, between- and within-host spread %; per host: its median latency
    relative to its pool's, and whether it is an outlier and why), for pools of two or more hosts."""
    rel = _relative(frame)
    pools, hosts = [], []
    for pool, p in rel.groupby("pool", sort=False) if len(rel) else []:
        if p["host"].nunique() < 2:
            continue
        between, within = _spreads(p)
        pools.append({"pool": pool, "hosts": p["host"].nunique(), "records": len(p),
                      "between_host_pct": between, "within_host_pct": within})
        medians = p.groupby("host")["rel"].median()
        mad = float((medians - medians.median()).abs().median()) * 1.4826
        bound = max(OUTLIER_PCT / 100, 3 * mad)
        usual_fp_id = p["fingerprint_id"].mode().iloc[0] if p["fingerprint_id"].notna().any() else None
        usual = fingerprints.get(usual_fp_id) or {}
        for host, med in medians.items():
            off = abs(med - medians.median()) > bound
            fp_id = p.loc[p["host"] == host, "fingerprint_id"].mode()
            fp = fingerprints.get(fp_id.iloc[0]) if len(fp_id) else None
            hosts.append({"pool": pool, "host": host, "records": int((p["host"] == host).sum()),
                          "median_vs_pool_pct": 100 * (med / medians.median() - 1),
                          "outlier": "OUTLIER" if off else "",
                          "why": _differences(fp or {}, usual) if off else ""})
    return pd.DataFrame(pools), pd.DataFrame(hosts)


def widened(interval: tuple[float, float] | None, ratio: float, between_pct: float) -> tuple[float, float] | None:
    """A speedup's interval widened by the between-host spread of the pools' hosts (in %,
    combined over the two pools): the spread one host's figure does not show."""
    if interval is None or not between_pct:
        return interval
    lo, hi = interval
    half = 1.96 * between_pct / 100 * ratio
    return lo - half, hi + half


def pool_between(pools: pd.DataFrame) -> dict[str, float]:
    return {} if pools.empty else dict(zip(pools["pool"], pools["between_host_pct"]))


def combine_between(a: float, b: float) -> float:
    return float(np.hypot(a, b))

"""What serving costs: USD and energy per million items, and the hosts a target rate needs.

cost per million = price per hour / (sustained items per second x 3600) x 10^6, where the
sustained rate is a server cell's highest rate within its p99 bound (served_rate) where there is
one, else the cell's throughput. A generate cell's item is a generated token: its rate is the
requests' rate times the tokens each makes, and its cost is per million generated tokens.
Energy per million comes from the GPU's energy counter and, on
CPU hosts, from RAPL where the host exposes it; "not measured" otherwise.
"""

from __future__ import annotations

import math

import pandas as pd

from .labels import display_name

J_PER_KWH = 3.6e6


def cost_per_million(price_per_hour: float, items_per_s: float) -> float | None:
    if not items_per_s or items_per_s <= 0 or price_per_hour is None:
        return None
    return price_per_hour / (items_per_s * 3600.0) * 1e6


def hosts_needed(target_rate: float | None, items_per_s: float | None) -> int | None:
    if not target_rate or not items_per_s or items_per_s <= 0:
        return None
    return math.ceil(target_rate / items_per_s - 1e-9)


def sustained(row) -> tuple[float | None, str]:
    """(items/s a host sustains in this cell, where the number comes from)."""
    served = row.get("served_rate")
    if served is not None and not pd.isna(served):
        return float(served), "served under load"
    thr = row.get("throughput_mean")
    return (float(thr), "throughput") if thr is not None and not pd.isna(thr) else (None, "")


def energy_kwh_per_million(row) -> float | None:
    for col in ("gpu_energy_j_per_sample", "cpu_energy_j_per_sample"):
        v = row.get(col)
        if v is not None and not pd.isna(v):
            return float(v) * 1e6 / J_PER_KWH
    return None


def cost_frame(frame: pd.DataFrame, prices: dict[str, float] | None, target_rate: float | None) -> pd.DataFrame:
    """Per VALID measured cell: its sustained rate, cost and energy per million, hosts for the target."""
    ok = frame[(frame["status"] == "ok") & (frame["valid"] == True)]  # noqa: E712 (object column)
    rows = []
    for _, row in ok.iterrows():
        rate, source = sustained(row)
        if rate is None:
            continue
        per, unit = tokens_per_request(row)
        kwh = energy_kwh_per_million(row)
        price = (prices or {}).get(row["pool"])
        rows.append({"pool": row["pool"], "cell": row["cell_id"].split(":", 1)[1], "scenario": row["scenario"],
                     "dtype": row["dtype"], "variant": row["variant"], "batch": row["batch_size"],
                     "items_per_s": rate * per, "unit": unit, "from": source, "usd_per_hour": price,
                     "usd_per_million": cost_per_million(price, rate * per) if price is not None else None,
                     "kwh_per_million": kwh / per if kwh is not None else None,
                     # the target is requests/s, whatever the unit of cost
                     "hosts_for_target": hosts_needed(target_rate, rate)})
    return pd.DataFrame(rows, columns=["pool", "cell", "scenario", "dtype", "variant", "batch", "items_per_s", "unit",
                                       "from", "usd_per_hour", "usd_per_million", "kwh_per_million", "hosts_for_target"])


def tokens_per_request(row) -> tuple[int, str]:
    """(items per request, their name): a generate cell is costed per generated token."""
    if row.get("task") == "generate" and row.get("new_tokens"):
        return int(row["new_tokens"]), "generated token"
    return 1, "inference"


def cheapest(costs: pd.DataFrame, baseline: str) -> tuple[pd.DataFrame, list[str]]:
    """Per pool its cheapest configuration (lowest USD per million; without a price, the highest
    rate), and sentences of cost ratio beside speedup against the baseline's cheapest. A pool
    with cells served under load is judged by those alone: a fixed batch's throughput promises
    no latency to a request, a VALID load step held the run's bound."""
    if costs.empty:
        return costs, []
    served = costs["from"] == "served under load"
    costs = costs[served | ~costs["pool"].isin(set(costs.loc[served, "pool"]))]
    ranked = costs.assign(_key=costs["usd_per_million"].where(costs["usd_per_million"].notna(), -costs["items_per_s"]))
    best = ranked.sort_values(["pool", "_key"]).groupby("pool", sort=False).head(1).drop(columns="_key")
    lines = []
    base = best[best["pool"] == baseline]
    if len(base):
        b = base.iloc[0]
        for _, row in best[best["pool"] != baseline].iterrows():
            speed = row["items_per_s"] / b["items_per_s"]
            text = f"{display_name(row['pool'])} ({row['cell']}) serves {speed:.3g}x the rate of {display_name(baseline)} ({b['cell']})"
            if row["usd_per_million"] is not None and b["usd_per_million"] is not None \
                    and not pd.isna(row["usd_per_million"]) and not pd.isna(b["usd_per_million"]):
                ratio = row["usd_per_million"] / b["usd_per_million"]
                text += (f" at {ratio:.3g}x the cost per million ({'cheaper' if ratio < 1 else 'dearer'}: "
                         f"${row['usd_per_million']:.4g} against ${b['usd_per_million']:.4g})")
            lines.append(text + ".")
    return best.reset_index(drop=True), lines

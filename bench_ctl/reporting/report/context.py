"""What every section of a report reads: the run's pools, baseline, budget and model, the tidy
frame, the comparison tables and the fastest ways, resolved once."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from ..document import Image
from ..fastest import fastest_ways
from ..labels import display_name, model_display
from ..tables import comparison_tables

# A sweep above LARGE_SWEEP cells is summarised in report.md: its first MD_COMBOS combinations
# keep the seed's tables (MD_ROWS rows each), the rest are in report.html and results.csv.
LARGE_SWEEP = 300
MD_COMBOS = 4
MD_ROWS = 40


def _fmt_bs(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _known(value) -> str:
    """A model figure, or 'unknown' where no measured cell reported it (never 'None')."""
    return "unknown" if value is None else str(value)


def run_pools(doc: dict) -> list[str]:
    spec = doc.get("run", {}).get("spec", {})
    pools = list(spec.get("pools") or [])
    for rec in doc["cells"]:
        if rec.get("pool") not in pools:
            pools.append(rec.get("pool"))
    return pools


def run_baseline(doc: dict, pools: list[str]) -> str:
    base = doc.get("run", {}).get("spec", {}).get("baseline")
    return base if base in pools else pools[0]


def run_budget(doc: dict) -> float | None:
    """The p99 latency budget (ms) the fastest way must fit, from the run's spec (or report's override)."""
    return doc.get("run", {}).get("spec", {}).get("latency_budget_ms")


def model_info(doc: dict) -> dict:
    for rec in doc["cells"]:
        if rec.get("status") == "ok" and rec.get("model"):
            return rec["model"]
    spec = doc.get("run", {}).get("spec", {})
    return {"model": (spec.get("model") or {}).get("model", "unknown")}


@dataclass
class ReportContext:
    doc: dict
    frame: pd.DataFrame
    pools: list[str]
    baseline: str
    budget: float | None
    info: dict
    name: str  # the model as the title names it
    combos: dict  # the comparison tables, by combination of the combo axes
    fastest: pd.DataFrame
    images: list[Image] | None = None
    boot: dict = field(default_factory=dict)  # bootstrap means of each cell's mean latency, by cell id
    records: pd.DataFrame | None = None  # a row per record (every repeat), where frame combines them
    memo: dict = field(default_factory=dict)  # what more than one section reads, made once

    @property
    def hosts(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Hosts of one pool (hosts.py): per pool and per host, from every record."""
        if "hosts" not in self.memo:
            from ..hosts import host_spread

            self.memo["hosts"] = host_spread(self.records if self.records is not None else self.frame,
                                             self.doc.get("fingerprints") or {})
        return self.memo["hosts"]

    @property
    def large(self) -> bool:
        return len(self.frame) > LARGE_SWEEP

    @property
    def names(self) -> list[str]:
        return [display_name(p) for p in self.pools]


def report_context(doc: dict, frame: pd.DataFrame, images: list[Image] | None = None,
                   tables: dict | None = None, boot: dict | None = None,
                   records: pd.DataFrame | None = None) -> ReportContext:
    pools = run_pools(doc)
    baseline = run_baseline(doc, pools)
    info = model_info(doc)
    budget = run_budget(doc)
    return ReportContext(doc, frame, pools, baseline, budget, info,
                         model_display(info.get("model_type"), info.get("model", "model")),
                         tables if tables is not None else comparison_tables(frame, pools, baseline),
                         fastest_ways(frame, budget, boot), images, boot or {}, records)

"""The results file: cell records and fingerprints, schema versioned.

``results.json`` = {"schema": "benchctl.results", "schema_version": 1, "run": {...},
"cells": [cell record, ...], "fingerprints": {id: fingerprint}}. A cell record holds its
coordinates, status ("ok" or "error"), error, metrics, raw latencies, fingerprint id, worker
and host. Readers refuse any other schema version instead of guessing.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from .errors import RecordsError
from .lifecycle import FINISHED, SETTLED, CellState  # noqa: F401  (the states live in lifecycle.py)
from .spec import AXES

SCHEMA = "benchctl.results"
SCHEMA_VERSION = 1


def error_record(cell: dict, kind: str, message: str, **extra) -> dict:
    """The record of a cell that could not be measured: its coordinates and why."""
    record = {
        "schema_version": SCHEMA_VERSION,
        "cell_id": cell["cell_id"],
        "run_id": cell["run_id"],
        **{axis: cell[axis] for axis in AXES},
        "status": "error",
        "error": {"type": kind, "message": message},
        "metrics": {},
        "latencies_ms": [],
    }
    record.update(extra)
    return record


def results_document(run: dict, cells: list[dict], fingerprints: dict) -> dict:
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "run": run,
        "cells": cells,
        "fingerprints": fingerprints,
    }


def _finite(obj):
    """JSON has no NaN: a metric that could not be measured is null, never a made-up number."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def _compact(obj) -> str:
    """JSON by the C encoder (indentation would force Python's slow one); the walk that turns
    NaN into null runs only when there is a NaN to turn."""
    try:
        return json.dumps(obj, separators=(",", ":"), allow_nan=False)
    except ValueError:
        return json.dumps(_finite(obj), separators=(",", ":"), allow_nan=False)


def dumps(obj) -> str:
    """A results or report document, readable and fast to write at any size: its top-level
    fields one per line, and each list of records (``cells``) one record per line."""
    if not isinstance(obj, dict):
        return _compact(obj) + "\n"
    lines = []
    for key, value in obj.items():
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            inner = ",\n    ".join(_compact(v) for v in value)
            lines.append(f"  {json.dumps(key)}: [\n    {inner}\n  ]")
        else:
            lines.append(f"  {json.dumps(key)}: {_compact(value)}")
    return "{\n" + ",\n".join(lines) + "\n}\n"


def load_results(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise RecordsError(f"records file {path} does not exist")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RecordsError(f"records file {path} is not JSON ({exc.__class__.__name__}: {exc})") from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise RecordsError(f"records file {path} is not a benchctl results file (no schema {SCHEMA!r})")
    if doc.get("schema_version") != SCHEMA_VERSION:
        raise RecordsError(
            f"records file {path} has schema version {doc.get('schema_version')!r}; this benchctl reads version {SCHEMA_VERSION}"
        )
    if not isinstance(doc.get("cells"), list) or not isinstance(doc.get("fingerprints"), dict):
        raise RecordsError(f"records file {path} lacks its cells or fingerprints")
    for i, rec in enumerate(doc["cells"], 1):
        problem = _bad_field(rec)
        if problem:
            raise RecordsError(f"cell {i} of records file {path}: {problem}")
    return doc


# The JSON type each field of a cell record must have, where it is present (None allowed).
_FIELD_TYPES = {"cell_id": str, "run_id": str, "pool": str, "status": str, "dtype": str, "variant": str, "task": str,
                "batch_size": int, "seq_len": int, "new_tokens": int, "scenario": str, "repeat": int, "allocator": dict, "metrics": dict, "error": dict, "model": dict,
                "trackers": dict, "latencies_ms": list, "peaks": dict, "fingerprint_id": str, "host": str, "worker": str}
_JSON_NAMES = {str: "a string", int: "an integer", dict: "an object", list: "a list"}


def _bad_field(rec) -> str | None:
    """The first field of a cell record with the wrong type, in words; None when all are right."""
    if not isinstance(rec, dict):
        return f"a cell record must be an object, got {type(rec).__name__}"
    for name, kind in _FIELD_TYPES.items():
        value = rec.get(name)
        if value is not None and (not isinstance(value, kind) or (kind is int and isinstance(value, bool))):
            return f"field {name!r} must be {_JSON_NAMES[kind]}, got {type(value).__name__}"
    if rec.get("status") not in (None, *FINISHED):
        return f"field 'status' must be one of {', '.join(FINISHED)}, got {rec.get('status')!r}"
    latency = (rec.get("metrics") or {}).get("latency_ms")
    if latency is not None and not isinstance(latency, dict):
        return f"field 'metrics.latency_ms' must be an object, got {type(latency).__name__}"
    return None

"""config: the settings this command line resolves, and where each value came from."""

from __future__ import annotations

import json
import os
from typing import Annotated

import typer

from ..options import Broker, Store, app


def resolved(broker: str | None = None, store: str | None = None) -> dict[str, dict]:
    """The deployment's settings (bench_protocol/settings.py) and the controller's history,
    each ``{"value", "source", "help"}``, passwords redacted."""
    from bench_protocol.settings import Settings

    from ..history.database import _safe, history_url

    rows = Settings.resolve(broker, store).described()
    rows["history"] = {"value": _safe(history_url()),
                       "source": "$BENCHCTL_HISTORY" if os.environ.get("BENCHCTL_HISTORY") else "default",
                       "help": "the results history: a SQLite file or a SQLAlchemy URL"}
    return rows


@app.command()
def config(broker: Broker = None, store_url: Store = None,
           as_json: Annotated[bool, typer.Option("--json", help="one JSON object: name -> value, source, help")] = False):
    """The resolved settings and where each came from (default, environment variable, flag); passwords redacted."""
    rows = resolved(broker, store_url)
    if as_json:
        typer.echo(json.dumps(rows))
        return
    width = max(len(name) for name in rows)
    shown = {name: "(none)" if row["value"] is None else f"{row['value']:g}" if isinstance(row["value"], float)
             else str(row["value"]) for name, row in rows.items()}
    value_width = max(len(v) for v in shown.values())
    for name, row in rows.items():
        typer.echo(f"{name:<{width}}  {shown[name]:<{value_width}}  {row['source']}")

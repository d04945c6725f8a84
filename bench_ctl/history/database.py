"""The results history: every finished run appended to a database, one row per cell.

SQLite by default (``~/.local/share/benchctl/history.db``), PostgreSQL for a team
(``BENCHCTL_HISTORY=postgresql://user@host/db``); any SQLAlchemy URL or a file path works.
Tables: ``meta`` (the schema version), ``runs`` (one row per run), ``cells`` (the tidy frame's
columns per cell, with the run's model and creation time and the host's software versions),
``fingerprints`` (one row per host fingerprint). Appending a run again replaces its rows,
so a run is never counted twice. A database of another schema version is refused.

The cells table has a column per declared metric (bench_protocol/metrics.py). A database made
by an older metric set is migrated on append: each missing column is added (nullable, so older
runs read as empty there). What cannot be migrated in place (a column of another type) is
refused with one line saying what to do.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pandas as pd

from bench_protocol.errors import BenchError
from bench_protocol.spec import AXIS_DEFAULTS, CELL_AXES

from ..reporting.frame import COLUMNS, cells_frame

SCHEMA_VERSION = 1
SCHEMA_LOCK_KEY = 0x62656E6368  # pg_advisory_xact_lock key of benchctl's schema changes ("bench")
DEFAULT_PATH = Path("~/.local/share/benchctl/history.db")
# Text columns of the frame; every other frame column is a number (``valid`` is 1, 0 or null).
# An axis is text where its cell-id token has no prefix (pool, dtype, variant, task, scenario).
TEXT_COLUMNS = {"run_id", "cell_id", "label", "device", "status", "error_type", "error",
                "invalid_reason", "host", "worker", "fingerprint_id", "weights"} | {a for a, prefix in CELL_AXES if not prefix}
# What the cells table adds to the frame: the run and the host's software.
RUN_COLUMNS = ["model", "created"]
# What changes a number without the model changing: kept per cell and per fingerprint (runtimes included).
VERSION_COLUMNS = ["torch", "transformers", "cuda_version", "gpu_driver", "gpu_name", "onnxruntime", "openvino"]


class HistoryError(BenchError):
    exit_code = 2


class NothingMeasured(BenchError):
    """A run of which no cell was measured: its report is written, the history does not keep it."""

    exit_code = 6


def history_url(url: str | None = None) -> str:
    """The database to use: ``url``, else $BENCHCTL_HISTORY, else the default SQLite file. A
    plain path means a SQLite file; postgresql:// uses the psycopg driver."""
    url = url or os.environ.get("BENCHCTL_HISTORY") or str(DEFAULT_PATH)
    if "://" not in url:
        return "sqlite:///" + str(Path(url).expanduser().resolve())
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def _safe(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "the history database"


def _tables(metadata):
    from sqlalchemy import Column, Float, Integer, String, Table, Text

    def typed(name):
        return Column(name, Text if name in TEXT_COLUMNS else Float, primary_key=name == "cell_id")

    Table("meta", metadata, Column("key", String(64), primary_key=True), Column("value", Text))
    Table("runs", metadata, Column("run_id", String(64), primary_key=True), Column("created", Float),
          Column("model", Text), Column("pools", Text), Column("cells", Integer), Column("ok", Integer),
          Column("hosts", Text), Column("mode", Text), Column("appended_at", Float))
    Table("fingerprints", metadata, Column("fingerprint_id", String(64), primary_key=True), Column("hostname", Text),
          *(Column(c, Text) for c in VERSION_COLUMNS), Column("cpu_model", Text), Column("data", Text))
    Table("cells", metadata, *(typed(c) for c in COLUMNS), Column("model", Text), Column("created", Float),
          *(Column(c, Text) for c in VERSION_COLUMNS))


class History:
    def __init__(self, url: str | None = None) -> None:
        from sqlalchemy import MetaData, create_engine

        self.url = history_url(url)
        if self.url.startswith("sqlite:///"):
            folder = Path(self.url[len("sqlite:///"):]).parent
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:  # a regular file where a folder should be, no right to make it
                raise HistoryError(f"history database {_safe(self.url)}: cannot make its folder {folder}: "
                                   f"{exc.strerror or exc}; point BENCHCTL_HISTORY elsewhere") from None
            args = {"timeout": 10}
        elif self.url.startswith("postgresql"):
            args = {"connect_timeout": 10}
        else:
            args = {}
        try:
            self.engine = create_engine(self.url, connect_args=args)
        except Exception as exc:  # an unknown dialect, a malformed URL
            raise HistoryError(f"history database {_safe(self.url)}: {str(exc).splitlines()[0]}") from None
        self.metadata = MetaData()
        _tables(self.metadata)
        self._guard(self._ensure_schema)

    def _guard(self, fn):
        from sqlalchemy.exc import SQLAlchemyError

        try:
            return fn()
        except SQLAlchemyError as exc:
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
            raise HistoryError(f"history database {_safe(self.url)}: {reason}") from None

    def _schema_lock(self, conn) -> None:
        """Serialise schema changes between benchctl processes on PostgreSQL (two first appends at
        once would both CREATE TABLE, and the loser's run be lost); SQLite's own write lock does it
        there once the transaction writes."""
        from sqlalchemy import text

        if self.engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK_KEY})

    def _ensure_schema(self) -> None:
        from sqlalchemy.exc import SQLAlchemyError

        try:
            self._ensure_schema_once()
        except SQLAlchemyError:
            # Another process made the tables between our look and our CREATE (SQLite): look again.
            self._ensure_schema_once()

    def _ensure_schema_once(self) -> None:
        from sqlalchemy import inspect, select

        meta = self.metadata.tables["meta"]
        with self.engine.begin() as conn:
            self._schema_lock(conn)
            existing = set(inspect(conn).get_table_names())
            if existing and "meta" not in existing:
                raise HistoryError(f"history database {_safe(self.url)} is not a benchctl history (no meta table)")
            if "meta" in existing:
                found = conn.execute(select(meta.c.value).where(meta.c.key == "schema_version")).scalar()
                if found != str(SCHEMA_VERSION):
                    raise HistoryError(f"history database {_safe(self.url)} has schema version {found}; "
                                       f"this benchctl reads version {SCHEMA_VERSION}: use the benchctl that wrote it, "
                                       "or point BENCHCTL_HISTORY at another database")
                return
            self.metadata.create_all(conn)
            conn.execute(meta.insert().values(key="schema_version", value=str(SCHEMA_VERSION)))

    # -- migrating --------------------------------------------------------------------------

    def _present(self, table: str) -> set[str]:
        """The columns ``table`` has in the database (fewer than declared in one made by an older benchctl)."""
        from sqlalchemy import inspect

        with self.engine.connect() as conn:
            return {c["name"] for c in inspect(conn).get_columns(table)}

    def _migrate(self) -> list[str]:
        """Give each table the columns this benchctl declares and a database made by an older
        metric set lacks: ALTER TABLE ... ADD COLUMN, nullable, one column a transaction, so a
        second benchctl migrating at the same time costs nothing. Returns the columns added."""
        from sqlalchemy import inspect, text

        with self.engine.begin() as conn:  # a table this benchctl has and the database lacks (checkfirst)
            self._schema_lock(conn)
            self.metadata.create_all(conn)
        with self.engine.connect() as conn:
            found = {t: {c["name"]: c["type"] for c in inspect(conn).get_columns(t)} for t in self.metadata.tables}
        missing = []
        for table in self.metadata.sorted_tables:
            for col in table.columns:
                have = found[table.name].get(col.name)
                if have is None:
                    missing.append((table, col))
                elif not _same_kind(have, col.type):
                    raise HistoryError(
                        f"history database {_safe(self.url)}: column {table.name}.{col.name} is {have}, this benchctl "
                        f"writes {col.type.compile(self.engine.dialect)}; it cannot be migrated in place: point "
                        "BENCHCTL_HISTORY at a new database (or move this one aside) and append the runs again")
        added = []
        quote = self.engine.dialect.identifier_preparer.quote
        for table, col in missing:
            if col.primary_key:
                raise HistoryError(f"history database {_safe(self.url)}: table {table.name} lacks its key column "
                                   f"{col.name}; point BENCHCTL_HISTORY at a new database (or move this one aside)")
            ddl = f"ALTER TABLE {quote(table.name)} ADD COLUMN {quote(col.name)} {col.type.compile(self.engine.dialect)}"
            try:
                with self.engine.begin() as conn:
                    self._schema_lock(conn)
                    if col.name in {c["name"] for c in inspect(conn).get_columns(table.name)}:
                        continue  # added meanwhile by another benchctl
                    conn.execute(text(ddl))
            except Exception as exc:  # noqa: BLE001 (a concurrent migration added it, or no right to)
                if col.name in self._present(table.name):
                    continue
                reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
                raise HistoryError(f"history database {_safe(self.url)}: cannot add column {table.name}.{col.name} "
                                   f"for this benchctl's metrics ({reason}); run it once as a user who may alter the "
                                   "table, or point BENCHCTL_HISTORY at another database") from None
            added.append(f"{table.name}.{col.name}")
        return added

    # -- writing ----------------------------------------------------------------------------

    def append(self, doc: dict) -> int:
        """Add (or replace) a finished run; returns the number of cells kept."""
        run = doc.get("run") or {}
        run_id = run.get("run_id")
        if not run_id:
            raise HistoryError("records without a run id cannot go into the history")
        frame = cells_frame(doc)
        fps = doc.get("fingerprints") or {}
        model = model_of(doc)
        created = run.get("created") or time.time()
        frame["valid"] = frame["valid"].map({True: 1.0, False: 0.0})
        frame["model"] = model
        frame["created"] = float(created)
        for col in VERSION_COLUMNS:
            frame[col] = frame["fingerprint_id"].map(lambda f, c=col: _fp_value(fps.get(f) or {}, c))
        self._guard(self._migrate)
        runs, cells, fp_table = (self.metadata.tables[t] for t in ("runs", "cells", "fingerprints"))
        run_row = {"run_id": run_id, "created": float(created), "model": model,
                   "pools": ",".join(dict.fromkeys(frame["pool"].dropna())), "cells": len(frame),
                   "ok": int((frame["status"] == "ok").sum()), "hosts": ",".join(dict.fromkeys(frame["host"].dropna())),
                   "mode": run.get("mode"), "appended_at": time.time()}

        def write():
            with self.engine.begin() as conn:
                conn.execute(cells.delete().where(cells.c.run_id == run_id))
                conn.execute(runs.delete().where(runs.c.run_id == run_id))
                conn.execute(runs.insert().values(**run_row))
                known = {r[0] for r in conn.execute(fp_table.select().with_only_columns(fp_table.c.fingerprint_id))}
                for fid, fp in fps.items():
                    if fid not in known:  # another append may add the same host meanwhile: first one wins
                        conn.execute(self._insert_new(fp_table).values(
                            fingerprint_id=fid, hostname=fp.get("hostname"), cpu_model=fp.get("cpu_model"),
                            data=json.dumps(fp, default=str), **{c: _fp_value(fp, c) for c in VERSION_COLUMNS}))
                if len(frame):
                    records = frame.astype(object).where(frame.notna(), None).to_dict("records")
                    conn.execute(cells.insert(), records)
            return len(frame)

        return self._guard(write)

    def _insert_new(self, table):
        """INSERT that leaves an existing row of the same key alone (ON CONFLICT DO NOTHING)."""
        name = self.engine.dialect.name
        if name in ("postgresql", "sqlite"):
            from importlib import import_module

            return import_module(f"sqlalchemy.dialects.{name}").insert(table).on_conflict_do_nothing()
        return table.insert()

    # -- reading ----------------------------------------------------------------------------

    def _select(self, table):
        """SELECT of a table's columns that the database has: one made by an older metric set reads
        (its newer columns empty) before any append migrates it."""
        from sqlalchemy import select

        present = self._guard(lambda: self._present(table.name))
        return select(*(c for c in table.columns if c.name in present))

    def _frame(self, table, query) -> pd.DataFrame:
        def read():
            with self.engine.connect() as conn:
                return pd.DataFrame([dict(row) for row in conn.execute(query).mappings()])

        frame = self._guard(read).reindex(columns=[c.name for c in table.columns])
        # A row appended before an axis existed was measured at its default (every cell was a
        # batch cell, measured once): it reads so, not empty.
        for axis, default in AXIS_DEFAULTS.items():
            if axis in frame and len(frame):
                frame[axis] = frame[axis].fillna(default)
        return frame

    def runs(self, model: str | None = None, pool: str | None = None, since: float | None = None,
             limit: int = 50) -> pd.DataFrame:
        runs = self.metadata.tables["runs"]
        query = self._select(runs).order_by(runs.c.created.desc())
        if model:
            query = query.where(runs.c.model == model)
        if since is not None:
            query = query.where(runs.c.created >= since)
        frame = self._frame(runs, query)
        if pool:
            frame = frame[frame["pools"].fillna("").str.split(",").map(lambda ps: pool in ps)]
        return frame.head(limit).reset_index(drop=True)

    def cells(self, model: str | None = None, pool: str | None = None, run_id: str | None = None,
              **axes) -> pd.DataFrame:
        """Cells of the history (oldest first), filtered by model, pool, run and any axis."""
        cells = self.metadata.tables["cells"]
        query = self._select(cells).order_by(cells.c.created, cells.c.cell_id)
        for name, value in (("model", model), ("pool", pool), ("run_id", run_id), *axes.items()):
            if value is None:
                continue
            match = cells.c[name] == value
            if name in AXIS_DEFAULTS and value == AXIS_DEFAULTS[name]:
                match = match | cells.c[name].is_(None)  # rows from before the axis existed
            query = query.where(match)
        return self._frame(cells, query)


def _same_kind(found, declared) -> bool:
    """Whether a column's type in the database holds what this benchctl writes: a number in a
    number column, text in a text column (a float column may be REAL, DOUBLE PRECISION, ...)."""
    from sqlalchemy import types

    for kind in (types.String, (types.Float, types.Numeric, types.Integer)):
        if isinstance(declared, kind):
            return isinstance(found, kind)
    return True


def model_of(doc: dict) -> str | None:
    for rec in doc.get("cells") or []:
        if (rec.get("model") or {}).get("model"):
            return rec["model"]["model"]
    return ((doc.get("run") or {}).get("spec") or {}).get("model", {}).get("model")


def _fp_value(fp: dict, column: str):
    if column == "gpu_name":
        return (fp.get("gpu") or {}).get("name")
    value = fp.get(column)
    return None if value is None else str(value)


def measured(doc: dict) -> bool:
    """Whether at least one cell of the run was measured (a record with status ok)."""
    return any(rec.get("status") == "ok" for rec in doc.get("cells") or [])


def keep_run(doc: dict, enabled: bool = True) -> str | None:
    """Append a finished run to the history; returns where it went, or None where it is not kept:
    a partial run, or a run of which no cell was measured. A history that cannot be written raises
    HistoryError, which :func:`finish_run` turns into the command's last line."""
    if not enabled or (doc.get("run") or {}).get("status") == "partial" or not measured(doc):
        return None
    try:
        history = History()
    except ImportError as exc:
        raise HistoryError(f"the history needs {exc.name or exc}, which is not installed") from None
    history.append(doc)
    return _safe(history.url)


def _nothing_measured(doc: dict, history: bool) -> str:
    run_id = (doc.get("run") or {}).get("run_id", "the run")
    cells = doc.get("cells") or []
    first = next((rec.get("error") or {} for rec in cells if rec.get("error")), {})
    message = str(first.get("message", "")).split("; ")[0]
    message = message if len(message) <= 120 else message[:119] + "…"
    why = f"; the first: {first.get('type', 'error')}: {message}" if first else ""
    return (f"run {run_id}: no cell was measured ({len(cells)} failed{why}); the report's Failed cells list them"
            + ("; the run is not added to the history" if history else ""))


def finish_run(doc: dict, history: bool = True, strict: bool = True) -> None:
    """The last lines of a command that wrote a run's report, after every report line: where the
    history keeps the run, or a warning saying why it could not (never lost among the lines above).
    A run of which no cell was measured stays out of the history and ends the command with
    NothingMeasured (a non-zero exit); with ``strict`` False (``report``, re-rendering saved
    records) with a warning instead."""
    import typer

    if not measured(doc):
        reason = _nothing_measured(doc, history)
        if strict:
            raise NothingMeasured(reason)
        typer.echo(f"benchctl: warning: {reason}", err=True)
        return
    try:
        kept = keep_run(doc, history)
    except HistoryError as exc:
        typer.echo(f"benchctl: warning: run not added to the history: {exc}", err=True)
        return
    if kept:
        typer.echo(f"history: {kept}")


def parse_since(text: str | None) -> float | None:
    """'2026-11-01' (UTC), '7d' or '12h' -> epoch seconds."""
    import datetime as dt
    import re

    if text is None:
        return None
    m = re.fullmatch(r"([0-9]+)([dh])", text.strip())
    if m:
        return time.time() - int(m.group(1)) * (86400 if m.group(2) == "d" else 3600)
    try:
        day = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise HistoryError(f"malformed --since {text!r}: use a date like 2026-11-01 or an age like 7d or 12h") from None
    if day.tzinfo is None:
        day = day.replace(tzinfo=dt.timezone.utc)
    return day.timestamp()

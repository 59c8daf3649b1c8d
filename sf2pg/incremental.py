"""Incremental windows: rows whose watermark lies in ``(low, high]``, merged by key.

``low`` is what the target already holds (the ledger's watermark, else ``MAX(target_watermark)``),
``high`` the source maximum observed when the window is planned. Both are in the partition key
(``inc_20250102T090000000000_20250103T120000000000``), so re-running a window reads the same rows.
A lookback margin re-reads a little below ``low`` to catch rows committed late with an older
watermark; the merge makes the overlap harmless. Comparisons happen in UTC (sessions are UTC).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from sf2pg.chunks import naive_utc, window_key
from sf2pg.config import TableSpec
from sf2pg.extract import find_column, where_clause
from sf2pg.identifiers import pg_name_for, sf_qualified, sf_quote
from sf2pg.typemap import SourceColumn


@dataclass(frozen=True)
class Window:
    """The next incremental load of a table, or why there is none."""

    low: dt.datetime | int | None
    high: dt.datetime | int | None
    source_rows: int

    @property
    def key(self) -> str:
        return window_key(self.low, self.high)  # type: ignore[arg-type]


def _normalise(value: Any) -> dt.datetime | int | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return naive_utc(value)
    if isinstance(value, dt.date):
        return dt.datetime.combine(value, dt.time())
    return int(value)


def source_high(sf_conn: Any, spec: TableSpec, column: SourceColumn) -> tuple[dt.datetime | int | None, int]:
    """The source's maximum watermark and row count: one cheap aggregate."""
    cur = sf_conn.cursor()
    try:
        high, rows = cur.execute(
            f"SELECT MAX({sf_quote(column.name)}), COUNT(*) "
            f"FROM {sf_qualified(spec.sf_database, spec.sf_schema, spec.sf_table)} "
            f"WHERE {where_clause(spec.source_filter)}"
        ).fetchone()
    finally:
        cur.close()
    return _normalise(high), int(rows)


def target_low(pg_conn: psycopg.Connection, spec: TableSpec, column: SourceColumn) -> dt.datetime | int | None:
    """What the target holds: the ledger's watermark, else MAX(target_watermark), else None."""
    row = None
    if pg_conn.execute("SELECT to_regclass('migration_status.table_state')").fetchone()[0]:
        row = pg_conn.execute(
            "SELECT watermark FROM migration_status.table_state WHERE target_schema = %s AND target_table = %s",
            (spec.pg_schema, spec.pg_table),
        ).fetchone()
    if row and row[0] is not None:
        return parse_watermark(row[0])
    target_col = spec.target_watermark or pg_name_for(column.name)
    exists = pg_conn.execute(
        "SELECT 1 FROM information_schema.columns WHERE table_schema = %s AND table_name = %s AND column_name = %s",
        (spec.pg_schema, spec.pg_table, target_col),
    ).fetchone()
    if not exists:
        return None
    value = pg_conn.execute(
        sql.SQL("SELECT MAX({}) FROM {}").format(
            sql.Identifier(target_col), sql.Identifier(spec.pg_schema, spec.pg_table)
        )
    ).fetchone()[0]
    return _normalise(value)


def next_window(sf_conn: Any, pg_conn: psycopg.Connection, spec: TableSpec, columns: list[SourceColumn]) -> Window:
    """The window to load next; ``high`` is None when the target is up to date or never loaded."""
    column = find_column(columns, spec.source_watermark, "watermark", f"{spec.config_path}.source_watermark")  # type: ignore[arg-type]
    high, rows = source_high(sf_conn, spec, column)
    low = target_low(pg_conn, spec, column)
    if high is None or low is None or high <= low:  # type: ignore[operator]
        return Window(low, None, rows)
    return Window(low, high, rows)


def watermark_text(value: dt.datetime | int) -> str:
    """How a watermark is kept in the ledger (text, so one column serves timestamps and integers)."""
    return naive_utc(value).isoformat() if isinstance(value, dt.datetime) else str(int(value))


def parse_watermark(text: str) -> dt.datetime | int:
    return int(text) if text.lstrip("-").isdigit() else naive_utc(dt.datetime.fromisoformat(text))

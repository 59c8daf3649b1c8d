"""Incremental windows: the rows whose watermark lies in ``[H - lookback, high]``, loaded after a full load.

``H`` is the table's settled watermark in the ledger: every source change whose watermark is <= H is
already in the target. A full load sets it, before its first read, to the source maximum it is about
to read past; a window raises it to its ``high`` when it commits. So the first window after a full
load starts where that load started reading, not at the newest row it happened to bring.

The lower bound is inclusive: rows committed late with a watermark equal to the last high (batch-
stamped loads, DATE watermarks) are read again rather than lost; the merge by key makes re-reading
harmless, and a keyless table replaces the window's watermark range instead. ``lookback`` re-reads a
margin below H for rows committed late with an older watermark (default: 15 minutes for timestamps,
1 day for dates, 0 for numbers). Rows whose watermark is NULL are never in a window: full loads and
chunk reloads carry them.

A window loads into the chunk partitions its rows fall in (``plan_window``): the partition set stays
the table's chunks, growing with the data, not with the number of syncs.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from sf2pg.config.identifiers import pg_column_match, sf_qualified, sf_quote
from sf2pg.config.model import TableSpec
from sf2pg.config.typemap import SourceColumn
from sf2pg.load import ledger
from sf2pg.load.indexes import load_holds_indexes, saved_key
from sf2pg.load.target import existing_columns
from sf2pg.plan.chunks import (
    INCREMENTAL_PREFIX,
    NULL_KEY,
    Chunk,
    Watermark,
    as_watermark,
    naive_utc,
    parse_watermark,
    watermark_text,
)
from sf2pg.source.statements import find_column, watermark_column, where_clause, window_predicate

__all__ = ["parse_watermark", "watermark_text"]  # kept here for callers that read watermarks with windows

DEFAULT_LOOKBACK = {"timestamp": 900, "date": 1, "number": 0}  # seconds, days, units
_WINDOW_FORMAT = "%Y%m%dT%H%M%S%f"


@dataclass(frozen=True)
class Window:
    """Rows with ``read_from <= watermark <= high``; ``low`` is the settled watermark it starts from."""

    low: Watermark
    high: Watermark
    read_from: Watermark
    source_rows: int | None = None  # the source's row count when the window was planned
    recent_hash: int | None = None  # and its recent-rows hash (``recent_rows_hash``)

    def as_chunk(self) -> Chunk:
        """The window as a chunk of the watermark axis, which is how a source stream selects it."""
        return Chunk(
            f"{INCREMENTAL_PREFIX}{_key_part(self.read_from)}_{_key_part(self.high)}", self.read_from, self.high
        )

    @property
    def tags(self) -> dict[str, str]:
        tags = {"sf2pg/window_low": watermark_text(self.low), "sf2pg/window_high": watermark_text(self.high)}
        if self.source_rows is not None:
            tags["sf2pg/source_rows"] = str(self.source_rows)
        if self.recent_hash is not None:
            tags["sf2pg/recent_hash"] = str(self.recent_hash)
        return tags


def _key_part(value: Watermark) -> str:
    return naive_utc(value).strftime(_WINDOW_FORMAT) if isinstance(value, dt.datetime) else f"{int(value):020d}"


def watermark_kind(column: SourceColumn) -> str:
    t = column.data_type.upper()
    if t.startswith("TIMESTAMP") or t == "DATETIME":
        return "timestamp"
    return "date" if t == "DATE" else "number"


def lookback_of(spec: TableSpec, column: SourceColumn) -> int:
    """The table's lookback, in the watermark's own unit (seconds, days, units)."""
    return DEFAULT_LOOKBACK[watermark_kind(column)] if spec.watermark_lookback is None else spec.watermark_lookback


def window(
    spec: TableSpec,
    column: SourceColumn,
    low: Watermark,
    high: Watermark,
    source_rows: int | None = None,
    recent_hash: int | None = None,
) -> Window:
    """The window from the settled watermark ``low`` to ``high``, with the table's lookback below ``low``."""
    margin = lookback_of(spec, column)
    if isinstance(low, dt.datetime):
        unit = dt.timedelta(days=1) if watermark_kind(column) == "date" else dt.timedelta(seconds=1)
        try:
            read_from = low - margin * unit
        except OverflowError:  # a lookback reaching before year 1
            read_from = dt.datetime.min
        return Window(low, high, read_from, source_rows, recent_hash)
    return Window(low, high, int(low) - margin, source_rows, recent_hash)


def window_from_tags(tags: dict[str, str], spec: TableSpec, column: SourceColumn) -> Window | None:
    """The window a run was asked to load (a sensor's or ``sf2pg sync``'s run), else None."""
    if "sf2pg/window_low" not in tags:
        return None
    rows = int(tags["sf2pg/source_rows"]) if "sf2pg/source_rows" in tags else None
    recent = int(tags["sf2pg/recent_hash"]) if "sf2pg/recent_hash" in tags else None
    low, high = parse_watermark(tags["sf2pg/window_low"]), parse_watermark(tags["sf2pg/window_high"])
    return window(spec, column, low, high, rows, recent)


# ---- reading the source ------------------------------------------------------------------------


def source_high(sf_conn: Any, spec: TableSpec, column: SourceColumn) -> tuple[Watermark | None, int, int | None]:
    """The source's maximum watermark, row count and recent-rows hash (``recent_rows_hash``): one
    statement, whose maximum and count Snowflake answers from metadata."""
    cur = sf_conn.cursor()
    try:
        high, rows, recent = cur.execute(
            f"SELECT {source_state_columns(spec, column)} FROM {source_from(spec)}"
        ).fetchone()
    finally:
        cur.close()
    return as_watermark(high), int(rows), None if recent is None else int(recent)


def source_from(spec: TableSpec) -> str:
    """The table's rows as a statement selects them: its name and its ``source_filter``."""
    return f"{sf_qualified(spec.sf_database, spec.sf_schema, spec.sf_table)} WHERE {where_clause(spec.source_filter)}"


def source_state_columns(spec: TableSpec, column: SourceColumn, suffix: str = "") -> str:
    """``MAX(watermark), COUNT(*)`` and the recent-rows hash, as select-list items over
    ``source_from(spec)``, named ``h``, ``n``, ``r`` plus ``suffix`` (the sensor puts every table's in
    one statement)."""
    return (
        f"MAX({sf_quote(column.name)}) AS h{suffix}, COUNT(*) AS n{suffix}, "
        f"{recent_rows_hash(spec, column)} AS r{suffix}"
    )


def recent_rows_hash(spec: TableSpec, column: SourceColumn) -> str:
    """A scalar subquery: ``HASH_AGG`` of every row (every column) whose watermark lies within the
    table's lookback of the source maximum.

    With the maximum and the count unchanged, a change committed late within the lookback (a row
    updated to a watermark at or below the maximum, a second change stamped with the same watermark, a
    delete and an insert that keep the count) changes this hash, so a sync knows the window must run
    again. Snowflake prunes it to the newest rows; the maximum it anchors on comes from metadata."""
    col = sf_quote(column.name)
    top = f"(SELECT MAX({col}) FROM {source_from(spec)})"
    margin = lookback_of(spec, column)
    kind = watermark_kind(column)
    anchor = (
        f"{top} - {margin}"
        if kind == "number"
        else f"DATEADD({'day' if kind == 'date' else 'second'}, {-margin}, {top})"
    )
    table = sf_qualified(spec.sf_database, spec.sf_schema, spec.sf_table)
    return f"(SELECT HASH_AGG(*) FROM {table} WHERE {where_clause(spec.source_filter, f'{col} >= {anchor}')})"


@dataclass(frozen=True)
class WindowShape:
    """Where a window's rows fall on the chunking column (one aggregate over the window)."""

    rows: int
    lowest: Any = None
    highest: Any = None
    null_rows: int = 0


def window_shape(
    sf_conn: Any, spec: TableSpec, watermark: SourceColumn, chunk_column: SourceColumn | None, win: Window
) -> WindowShape:
    predicate = window_predicate(watermark, win.as_chunk())
    table = sf_qualified(spec.sf_database, spec.sf_schema, spec.sf_table)
    where = where_clause(spec.source_filter, predicate)
    if chunk_column is None:
        query = f"SELECT COUNT(*) FROM {table} WHERE {where}"
    else:
        col = sf_quote(chunk_column.name)
        query = (
            f"SELECT COUNT(*), MIN({col}), MAX({col}), SUM(CASE WHEN {col} IS NULL THEN 1 ELSE 0 END) "
            f"FROM {table} WHERE {where}"
        )
    cur = sf_conn.cursor()
    try:
        row = cur.execute(query).fetchone()
    finally:
        cur.close()
    if chunk_column is None:
        return WindowShape(int(row[0]))
    return WindowShape(int(row[0]), row[1], row[2], int(row[3] or 0))


# ---- the target side ---------------------------------------------------------------------------


def target_column_name(existing: list[str], name: str) -> str | None:
    """A configured column name as the target spells it: exactly, else by the naming rule
    (``pg_column_match``: the mapped name, PostgreSQL's cut of a long one, or a unique case match)."""
    return name if name in existing else pg_column_match(existing, name)


def _target_columns(pg_conn: psycopg.Connection, spec: TableSpec) -> list[str]:
    return list(existing_columns(pg_conn, spec.pg_schema, spec.pg_table))


def legacy_floor(pg_conn: psycopg.Connection, spec: TableSpec, column: SourceColumn) -> Watermark | None:
    """``MAX`` of the target's watermark column, for a table an sf2pg before 0.2 loaded (its ledger kept
    no settled watermark): the best it is known to hold."""
    existing = _target_columns(pg_conn, spec)
    target = target_column_name(existing, spec.target_watermark or column.name)
    if target is None:
        return None
    query = sql.SQL("SELECT MAX({}) FROM {}").format(
        sql.Identifier(target), sql.Identifier(spec.pg_schema, spec.pg_table)
    )
    return as_watermark(pg_conn.execute(query).fetchone()[0])


# ---- the decision: what to load next -----------------------------------------------------------


@dataclass
class WindowPlan:
    """What the next incremental pass of a table loads, or why it loads nothing (``note``)."""

    window: Window | None = None
    touched: list[str] = field(default_factory=list)  # chunk keys the window's rows fall in
    new_chunks: list[Chunk] = field(default_factory=list)  # chunks planned for rows beyond the plan
    source_high: Watermark | None = None
    source_rows: int = 0
    note: str = ""
    loaded: bool = True  # False: the table was never loaded (run sf2pg migrate first)

    @property
    def tags(self) -> dict[str, str]:
        """The tags the window's run carries, whether the sensor or ``sf2pg sync`` asks for it."""
        assert self.window is not None
        return {**self.window.tags, "sf2pg/incremental": "true"}


def plan_window(
    sf_conn: Any,
    pg_conn: psycopg.Connection,
    spec: TableSpec,
    columns: list[SourceColumn],
    chunks: list[Chunk],
    observed: tuple[Watermark | None, int, int | None] | None = None,
) -> WindowPlan:
    """Decide the table's next window; the CLI's ``sync`` and the sensor both ask this.

    ``observed`` is the source's (max watermark, row count, recent-rows hash) if the caller already
    read them (the sensor reads every table of a source in one query). Nothing changed when the
    maximum is the settled watermark and the row count and the hash of the rows within the lookback
    are the ones seen when it was set: a changed count at an unchanged maximum means late rows or
    deletes, a changed hash a change committed late within the lookback. ``chunks`` are the table's known chunks; rows beyond them get new edge chunks, planned
    here with one aggregated query and recorded in the ledger.
    """
    from sf2pg.plan.planning import plan_edges

    column = watermark_column(columns, spec)
    high, rows, recent = observed if observed is not None else source_high(sf_conn, spec, column)
    settled, seen_rows, seen_recent = ledger.settled(pg_conn, spec.pg_schema, spec.pg_table)
    states = ledger.chunk_states(pg_conn, spec.pg_schema, spec.pg_table)
    if settled is None:
        floor = legacy_floor(pg_conn, spec, column) if "completed" in states.values() else None
        if floor is None:
            return WindowPlan(
                source_high=high, source_rows=rows, note="not loaded yet: run sf2pg migrate first", loaded=False
            )
        low: Watermark = floor
    else:
        low = parse_watermark(settled)
    if saved_key(pg_conn, spec.pg_schema, spec.pg_table) and load_holds_indexes(pg_conn, spec.pg_schema, spec.pg_table):
        return WindowPlan(source_high=high, source_rows=rows, note="its first load is still running: sync waits for it")
    # a saved key nobody holds is a first load that died: the window's run rebuilds the key, then merges
    if high is None:
        return WindowPlan(source_high=high, source_rows=rows, note="the source table is empty")
    unchanged = rows == seen_rows and recent is not None and recent == seen_recent
    if settled is not None and high <= low and unchanged:  # type: ignore[operator]
        return WindowPlan(source_high=high, source_rows=rows, note="up to date")
    win = window(spec, column, low, max(high, low), rows, recent)  # type: ignore[type-var]
    chunk_column = (
        find_column(columns, spec.chunking_column, "chunking", spec.config_path) if spec.chunking_column else None
    )
    shape = window_shape(sf_conn, spec, column, chunk_column, win)
    plan = WindowPlan(win, source_high=high, source_rows=rows)
    if shape.rows == 0:
        plan.note = "no changed rows"
        return plan
    if chunk_column is None:
        plan.touched = [c.key for c in chunks] or ["all"]
        return plan
    ranges = [c for c in chunks if c.is_range]
    lowest, highest = as_bound(shape.lowest), as_bound(shape.highest)
    if lowest is not None:
        plan.touched = [c.key for c in ranges if c.lower <= highest and c.upper > lowest]  # type: ignore[operator]
        covered = (min(c.lower for c in ranges), max(c.upper for c in ranges)) if ranges else None  # type: ignore[type-var]
        if covered is None or lowest < covered[0] or highest >= covered[1]:
            plan.new_chunks = plan_edges(sf_conn, spec, columns, chunks, rows)
    if shape.null_rows:
        if any(c.is_null for c in chunks):
            plan.touched.append(NULL_KEY)
        else:
            plan.new_chunks.append(Chunk(NULL_KEY, estimated_rows=shape.null_rows))
    if plan.new_chunks:
        ledger.record_plan(pg_conn, spec.pg_schema, spec.pg_table, plan.new_chunks)
    return plan


def window_range(spec: TableSpec, plan: WindowPlan, order: list[str]) -> tuple[str, str] | None:
    """The first and last partition (in ``order``, the table's partitions with the plan's new edge
    chunks among them) of the run that loads ``plan``'s window, or None when there is nothing to load.
    A window with no changed rows still runs when the table has delete detection; it is recorded on the
    table's newest chunk."""
    if plan.window is None:
        return None
    wanted = set(plan.touched) | {c.key for c in plan.new_chunks}
    positions = sorted(i for i, k in enumerate(order) if k in wanted)
    if not positions:
        chunk_keys = [i for i, k in enumerate(order) if not k.startswith(INCREMENTAL_PREFIX)]
        if spec.delete_detection != "keys" or not chunk_keys:
            return None
        positions = [chunk_keys[-1]]
    return order[positions[0]], order[positions[-1]]


def window_run_key(spec: TableSpec, plan: WindowPlan) -> str:
    """One run per table, window top, source row count and recent-rows hash: a sensor asks for each window once."""
    assert plan.window is not None
    return f"{spec.name}:{plan.window.tags['sf2pg/window_high']}:{plan.source_rows}:{plan.window.recent_hash}"


def as_bound(value: Any) -> Any:
    """A chunking value read from Snowflake, as chunk bounds hold it."""
    if isinstance(value, dt.datetime):
        return naive_utc(value)
    if isinstance(value, dt.date) or value is None:
        return value
    return int(value) if float(value).is_integer() else value

"""One chunk, one transaction: replace exactly the chunk's range and record it in the ledger.

Modes (recorded in the ledger):
- ``copy``: the range is empty in the target, so COPY straight into the table.
- ``merge``: COPY into a temporary staging table, delete the range's rows whose keys vanished from
  the source, then ``INSERT ... ON CONFLICT (keys) DO UPDATE`` (``DO NOTHING`` in insert-only mode).
- ``replace``: no uniqueness columns, so delete the range and COPY.
- ``copy->merge``: a direct COPY hit a key that lives in another range (a row whose chunking value
  changed); the chunk falls back to merge inside the same transaction.
- ``incremental``: a watermark window (``load_window``); merge by key without deleting anything (a
  keyless table replaces the window's watermark range instead), and advance the table's settled
  watermark in the same transaction.

When the table has a watermark, an update never replaces a target row whose watermark is newer than
the incoming one, whatever order loads commit in. Any failure rolls the whole transaction back: the
target keeps its previous state for the chunk.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import psycopg
import pyarrow as pa
from psycopg import sql

from sf2pg.errors import InputError
from sf2pg.load import ledger, locks
from sf2pg.load.copy import copy_batches
from sf2pg.load.target import TargetTable
from sf2pg.plan.chunks import Chunk, watermark_text

_STAGE = sql.Identifier("sf2pg_stage")


class RepeatedKeyError(InputError):
    """The source chunk holds one key twice: no load of it can succeed until the source (or the
    configured uniqueness_columns) changes."""


@dataclass
class ChunkResult:
    """What loading one chunk did."""

    key: str
    mode: str
    rows_copied: int = 0
    rows_inserted: int = 0
    rows_updated: int = 0
    rows_deleted: int = 0
    bytes_copied: int = 0
    seconds: float = 0.0
    fallback: str | None = None  # fallback tiers this load took, as recorded in the ledger


def is_timestamptz(pg_type: str) -> bool:
    """Whether a PostgreSQL type (either spelling) is ``timestamp with time zone``, whose bounds (naive UTC
    in a chunk) are bound as UTC."""
    return pg_type in ("timestamp with time zone", "timestamptz")


def pg_bound(value: Any, tz: bool) -> Any:
    """A chunk bound as PostgreSQL compares it: naive UTC made aware for a ``timestamptz`` column."""
    return value.replace(tzinfo=dt.UTC) if tz else value


def chunk_rows(col: sql.Composable, chunk: Chunk, tz: bool) -> tuple[sql.Composable, tuple]:
    """SQL and parameters selecting the chunk's rows by ``col``: the one place a chunk's PostgreSQL range
    predicate is written (loads, deletes and the checks' fingerprints all use it)."""
    if chunk.is_all:
        return sql.SQL("TRUE"), ()
    if chunk.is_null:
        return sql.SQL("{} IS NULL").format(col), ()
    lower, upper = pg_bound(chunk.lower, tz), pg_bound(chunk.upper, tz)
    if chunk.is_outside:
        return sql.SQL("({} < %s OR {} >= %s)").format(col, col), (lower, upper)
    return sql.SQL("{} >= %s AND {} < %s").format(col, col), (lower, upper)


def range_predicate(target: TargetTable, chunk: Chunk, table_alias: str | None = None) -> tuple[sql.Composable, tuple]:
    """SQL and parameters selecting the chunk's rows in the target."""
    if chunk.is_all:
        return sql.SQL("TRUE"), ()
    assert target.chunk_column is not None
    col = (
        sql.Identifier(table_alias, target.chunk_column.target)
        if table_alias
        else sql.Identifier(target.chunk_column.target)
    )
    return chunk_rows(col, chunk, is_timestamptz(target.chunk_column.load_type.pg_type))


def window_predicate(target: TargetTable, window: Chunk) -> tuple[sql.Composable, tuple]:
    """A window's rows on the target's watermark column: ``lower <= wm <= upper``."""
    assert target.watermark_column is not None
    col = sql.Identifier(target.watermark_column.target)
    low, high = window.lower, window.upper
    if is_timestamptz(target.watermark_column.load_type.pg_type):
        low, high = pg_bound(low, True), pg_bound(high, True)
    elif target.watermark_column.load_type.pg_type == "date" and isinstance(low, dt.datetime):
        low, high = low.date(), high.date()  # type: ignore[union-attr]
    return sql.SQL("{} >= %s AND {} <= %s").format(col, col), (low, high)


def load_chunk(
    conn: psycopg.Connection,
    target: TargetTable,
    chunk: Chunk,
    open_batches: Callable[[], Iterable[pa.RecordBatch]],
    *,
    insert_only: bool,
    run_id: str | None,
    source_query: str,
    fallback: str | None = None,
    read_watermark: str | None = None,
) -> ChunkResult:
    """Load one chunk in one transaction. ``open_batches`` starts a fresh source stream (a fallback may re-read).

    ``fallback`` notes tiers the caller already took (smaller batches), to be kept in the ledger;
    ``read_watermark`` is the table's source maximum the load measured before it read.
    """
    started_at = dt.datetime.now(dt.UTC)
    t0 = time.perf_counter()
    with conn.transaction(), conn.cursor() as cur:
        locks.xact_lock(conn, locks.chunk_key(target.schema, target.table, chunk.key))
        if _range_is_empty(cur, target, chunk):
            result = _copy_or_fall_back(conn, cur, target, chunk, open_batches, insert_only)
        elif target.has_unique_key:
            result = _merge(cur, target, chunk, open_batches(), insert_only, "merge")
        else:
            result = _replace(cur, target, chunk, open_batches())
        result.seconds = time.perf_counter() - t0
        result.fallback = "; ".join(n for n in (fallback, result.fallback) if n) or None
        ledger.record_chunk(
            conn,
            target.schema,
            target.table,
            ledger.ChunkRecord(
                key=chunk.key,
                lower_bound=None if chunk.lower is None else str(chunk.lower),
                upper_bound=None if chunk.upper is None else str(chunk.upper),
                mode=result.mode,
                rows_copied=result.rows_copied,
                rows_inserted=result.rows_inserted,
                rows_updated=result.rows_updated,
                rows_deleted=result.rows_deleted,
                bytes_copied=result.bytes_copied,
                started_at=started_at,
                duration_seconds=result.seconds,
                source_query=source_query,
                run_id=run_id,
                fallback=result.fallback,
                read_watermark=read_watermark,
                schema_version=target.schema_version,
            ),
        )
    return result


def load_window(
    conn: psycopg.Connection,
    target: TargetTable,
    window: Chunk,
    open_batches: Callable[[], Iterable[pa.RecordBatch]],
    *,
    low: str,
    source_rows: int | None,
    recent_hash: int | None,
    insert_only: bool,
    run_id: str | None,
) -> ChunkResult:
    """Load an incremental window in one transaction that holds the table's lease exclusively from
    before the Snowflake read to the commit: no chunk load is between its read and its commit
    meanwhile, so neither can overwrite what the other read later."""
    t0 = time.perf_counter()
    with conn.transaction(), conn.cursor() as cur:
        locks.hold_lease_exclusive(conn, target.schema, target.table)
        batches = open_batches()  # the read starts only now, under the lease
        if target.has_unique_key:
            result = _merge(cur, target, window, batches, insert_only, "incremental", delete_missing=False)
        else:  # append-only: the window's watermark range is replaced, so re-reading it never duplicates
            predicate, params = window_predicate(target, window)
            cur.execute(sql.SQL("DELETE FROM {} WHERE {}").format(target.ident, predicate), params)
            deleted = cur.rowcount
            rows, nbytes = copy_batches(cur, target.ident, target, batches)
            result = ChunkResult(window.key, "incremental", rows, rows, 0, deleted, nbytes)
        result.seconds = time.perf_counter() - t0
        high = watermark_text(window.upper)  # type: ignore[arg-type]
        ledger.advance_watermark(conn, target.schema, target.table, high, source_rows, recent_hash)
        ledger.record_window(
            conn,
            target.schema,
            target.table,
            ledger.WindowRecord(
                low=low,
                high=high,
                read_from=watermark_text(window.lower),  # type: ignore[arg-type]
                rows_copied=result.rows_copied,
                rows_inserted=result.rows_inserted,
                rows_updated=result.rows_updated,
                rows_deleted=result.rows_deleted,
                duration_seconds=result.seconds,
                run_id=run_id,
            ),
        )
    return result


def _range_is_empty(cur: psycopg.Cursor, target: TargetTable, chunk: Chunk) -> bool:
    """True when the ledger proves it (pristine table, chunk never loaded) or a probe finds no row."""
    conn = cur.connection
    if ledger.chunk_loaded(conn, target.schema, target.table, chunk.key):
        return False
    if ledger.is_pristine(conn, target.schema, target.table):
        return True
    predicate, params = range_predicate(target, chunk)
    query = sql.SQL("SELECT EXISTS (SELECT 1 FROM {} WHERE {})").format(target.ident, predicate)
    return not cur.execute(query, params).fetchone()[0]


def _copy_or_fall_back(
    conn: psycopg.Connection,
    cur: psycopg.Cursor,
    target: TargetTable,
    chunk: Chunk,
    open_batches: Callable[[], Iterable[pa.RecordBatch]],
    insert_only: bool,
) -> ChunkResult:
    try:
        with conn.transaction():  # a savepoint, so a duplicate key can fall back to merge
            rows, nbytes = copy_batches(cur, target.ident, target, open_batches())
        return ChunkResult(chunk.key, "copy", rows, rows, 0, 0, nbytes)
    except psycopg.errors.UniqueViolation:
        if not target.has_unique_key:
            raise
        result = _merge(cur, target, chunk, open_batches(), insert_only, "copy->merge")
        result.fallback = "COPY hit a duplicate key: merged by key instead"
        return result


def _replace(cur: psycopg.Cursor, target: TargetTable, chunk: Chunk, batches: Iterable[pa.RecordBatch]) -> ChunkResult:
    predicate, params = range_predicate(target, chunk)
    cur.execute(sql.SQL("DELETE FROM {} WHERE {}").format(target.ident, predicate), params)
    deleted = cur.rowcount
    rows, nbytes = copy_batches(cur, target.ident, target, batches)
    return ChunkResult(chunk.key, "replace", rows, rows, 0, deleted, nbytes)


def _merge(
    cur: psycopg.Cursor,
    target: TargetTable,
    chunk: Chunk,
    batches: Iterable[pa.RecordBatch],
    insert_only: bool,
    mode: str,
    delete_missing: bool = True,
) -> ChunkResult:
    cols = sql.SQL(", ").join(map(sql.Identifier, target.column_names))
    cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(_STAGE))
    cur.execute(
        sql.SQL("CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA").format(
            _STAGE, cols, target.ident
        )
    )
    rows, nbytes = copy_batches(cur, _STAGE, target, batches)
    cur.execute(sql.SQL("ANALYZE {}").format(_STAGE))
    repeated = _repeated_key(cur, target)
    if repeated:  # else the merge keeps one of them silently (an unchanged first copy is skipped)
        raise RepeatedKeyError(repeated)
    keys = [sql.Identifier(k) for k in target.key_columns]
    deleted = 0
    if delete_missing and not insert_only:
        predicate, params = range_predicate(target, chunk, "t")
        same_key = sql.SQL(" AND ").join(sql.SQL("s.{k} = t.{k}").format(k=k) for k in keys)
        cur.execute(
            sql.SQL("DELETE FROM {} AS t WHERE {} AND NOT EXISTS (SELECT 1 FROM {} AS s WHERE {})").format(
                target.ident, predicate, _STAGE, same_key
            ),
            params,
        )
        deleted = cur.rowcount
    others = [sql.Identifier(c) for c in target.column_names if c not in target.key_columns]
    if insert_only or not others:
        action = sql.SQL("DO NOTHING")
    else:
        # json has no equality operator: its values compare as their text
        as_text = {c.target for c in target.columns if c.load_type.pg_type == "json"}
        names = [c for c in target.column_names if c not in target.key_columns]
        cast = [sql.SQL("::text" if c in as_text else "") for c in names]
        changed = sql.SQL("({}) IS DISTINCT FROM ({})").format(
            sql.SQL(", ").join(sql.SQL("t.{}{}").format(c, k) for c, k in zip(others, cast, strict=True)),
            sql.SQL(", ").join(sql.SQL("EXCLUDED.{}{}").format(c, k) for c, k in zip(others, cast, strict=True)),
        )
        if target.watermark_column is not None:  # no stale write wins: never replace a newer row
            wm = sql.Identifier(target.watermark_column.target)
            changed = sql.SQL("{} AND (t.{} IS NULL OR EXCLUDED.{} IS NULL OR t.{} <= EXCLUDED.{})").format(
                changed, wm, wm, wm, wm
            )
        action = sql.SQL("DO UPDATE SET {} WHERE {}").format(
            sql.SQL(", ").join(sql.SQL("{c} = EXCLUDED.{c}").format(c=c) for c in others), changed
        )
    statement = sql.SQL(
        "WITH ins AS (INSERT INTO {} AS t ({}) SELECT {} FROM {} ON CONFLICT ({}) {} RETURNING (xmax = 0) AS fresh) "
        "SELECT COUNT(*) FILTER (WHERE fresh), COUNT(*) FILTER (WHERE NOT fresh) FROM ins"
    ).format(target.ident, cols, cols, _STAGE, sql.SQL(", ").join(keys), action)
    inserted, updated = cur.execute(statement).fetchone()
    cur.execute(sql.SQL("DROP TABLE {}").format(_STAGE))
    return ChunkResult(chunk.key, mode, rows, inserted, updated, deleted, nbytes)


def _repeated_key(cur: psycopg.Cursor, target: TargetTable) -> str | None:
    """Which key the source chunk holds twice, read from the staged rows (None: every key once)."""
    keys = sql.SQL(", ").join(map(sql.Identifier, target.key_columns))
    row = cur.execute(
        sql.SQL("SELECT {}, count(*) FROM {} GROUP BY {} HAVING count(*) > 1 LIMIT 1").format(keys, _STAGE, keys)
    ).fetchone()
    if row is None:
        return None
    shown = ", ".join(f"{name}={value!r}" for name, value in zip(target.key_columns, row[:-1], strict=True))
    return (
        f"the source holds key ({shown}) {row[-1]} times in this chunk, but uniqueness_columns "
        f"({', '.join(target.key_columns)}) must identify one row; fix the source or the config"
    )

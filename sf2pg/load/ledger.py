"""The ``migration_status`` ledger in each target database (DDL in ``sql/migration_status_schema.sql``)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg.rows import dict_row

DDL_PATH = Path(__file__).resolve().parents[1] / "sql" / "migration_status_schema.sql"
_LEDGER_LOCK = 0x5F2F6001  # serialises first-use creation across concurrent loaders


def ensure_ledger(conn: psycopg.Connection) -> None:
    """Create (or bring up to date) the ledger schema on first use; a no-op once it is current."""
    current = conn.execute(
        "SELECT 1 FROM information_schema.columns WHERE table_schema = 'migration_status' "
        "AND table_name = 'chunk_state' AND column_name = 'fallback'"
    ).fetchone()
    if current and conn.execute("SELECT to_regclass('migration_status.migration_table_status')").fetchone()[0]:
        return
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LEDGER_LOCK,))
        conn.execute(DDL_PATH.read_text())


def owner(conn: psycopg.Connection, schema: str, table: str) -> tuple[str, str] | None:
    """(source_name, source_table) the ledger says this target table is loaded from, if any."""
    row = conn.execute(
        "SELECT source_name, source_table FROM migration_status.table_state "
        "WHERE target_schema = %s AND target_table = %s",
        (schema, table),
    ).fetchone()
    return (row[0], row[1]) if row else None


def register_table(
    conn: psycopg.Connection,
    schema: str,
    table: str,
    source_name: str,
    source_table: str,
    total_chunks: int | None = None,
    pristine: bool | None = None,
) -> None:
    """Upsert the table's row; ``None`` leaves a field as it is."""
    conn.execute(
        """
        INSERT INTO migration_status.table_state
            (target_schema, target_table, source_name, source_table, total_chunks, pristine)
        VALUES (%s, %s, %s, %s, COALESCE(%s, 0), COALESCE(%s, false))
        ON CONFLICT (target_schema, target_table) DO UPDATE SET
            source_name = EXCLUDED.source_name,
            source_table = EXCLUDED.source_table,
            total_chunks = COALESCE(%s, table_state.total_chunks),
            pristine = COALESCE(%s, table_state.pristine),
            updated_at = now()
        """,
        (schema, table, source_name, source_table, total_chunks, pristine, total_chunks, pristine),
    )


def is_pristine(conn: psycopg.Connection, schema: str, table: str) -> bool:
    row = conn.execute(
        "SELECT pristine FROM migration_status.table_state WHERE target_schema = %s AND target_table = %s",
        (schema, table),
    ).fetchone()
    return bool(row and row[0])


def set_pristine(conn: psycopg.Connection, schema: str, table: str, pristine: bool) -> None:
    conn.execute(
        "UPDATE migration_status.table_state SET pristine = %s, updated_at = now() "
        "WHERE target_schema = %s AND target_table = %s",
        (pristine, schema, table),
    )


def forget_chunks(conn: psycopg.Connection, schema: str, table: str) -> None:
    conn.execute(
        "DELETE FROM migration_status.chunk_state WHERE target_schema = %s AND target_table = %s",
        (schema, table),
    )


def record_truncation(conn: psycopg.Connection, schema: str, table: str, run_id: str | None) -> None:
    """After TRUNCATE (same transaction): the table is empty, so every chunk is provably empty."""
    forget_chunks(conn, schema, table)
    conn.execute(
        "UPDATE migration_status.table_state SET pristine = true, truncated_at = now(), last_run_id = %s, "
        "updated_at = now() WHERE target_schema = %s AND target_table = %s",
        (run_id, schema, table),
    )


def advance_watermark(conn: psycopg.Connection, schema: str, table: str, value: str, newer: bool) -> None:
    """Record the table's watermark (inside the window's transaction); ``newer`` says it is ahead.

    An incremental load may land rows anywhere in the key space, so the table is no longer pristine.
    """
    conn.execute(
        "UPDATE migration_status.table_state SET watermark = CASE WHEN %s THEN %s ELSE watermark END, "
        "pristine = false, updated_at = now() WHERE target_schema = %s AND target_table = %s",
        (newer, value, schema, table),
    )


def watermark(conn: psycopg.Connection, schema: str, table: str) -> str | None:
    row = conn.execute(
        "SELECT watermark FROM migration_status.table_state WHERE target_schema = %s AND target_table = %s FOR UPDATE",
        (schema, table),
    ).fetchone()
    return row[0] if row else None


def chunk_loaded(conn: psycopg.Connection, schema: str, table: str, key: str) -> bool:
    """Whether a committed load of this chunk exists (it may have left rows)."""
    row = conn.execute(
        "SELECT 1 FROM migration_status.chunk_state WHERE target_schema = %s AND target_table = %s "
        "AND chunk_key = %s AND status = 'completed'",
        (schema, table, key),
    ).fetchone()
    return row is not None


def loaded_keys(conn: psycopg.Connection, schema: str, table: str) -> list[str]:
    rows = conn.execute(
        "SELECT chunk_key FROM migration_status.chunk_state WHERE target_schema = %s AND target_table = %s "
        "AND status = 'completed' ORDER BY chunk_key",
        (schema, table),
    ).fetchall()
    return [r[0] for r in rows]


def chunk_counts(conn: psycopg.Connection, schema: str, table: str) -> tuple[int, int]:
    """(loaded, failed) partitions of the table, as ``sf2pg status`` counts them."""
    row = conn.execute(
        "SELECT count(*) FILTER (WHERE status = 'completed'), count(*) FILTER (WHERE status = 'failed') "
        "FROM migration_status.chunk_state WHERE target_schema = %s AND target_table = %s",
        (schema, table),
    ).fetchone()
    return row[0], row[1]


@dataclass
class ChunkRecord:
    """What one chunk load did, as written to ``chunk_state``."""

    key: str
    lower_bound: str | None
    upper_bound: str | None
    mode: str
    rows_copied: int
    rows_inserted: int
    rows_updated: int
    rows_deleted: int
    bytes_copied: int
    started_at: dt.datetime
    duration_seconds: float
    source_query: str
    run_id: str | None
    fallback: str | None = None  # which fallback tiers the chunk needed, if any


def record_chunk(conn: psycopg.Connection, schema: str, table: str, rec: ChunkRecord) -> None:
    """Write the chunk's ledger row; call inside the chunk's own transaction."""
    conn.execute(
        """
        INSERT INTO migration_status.chunk_state AS c
            (target_schema, target_table, chunk_key, lower_bound, upper_bound, status, mode, rows_copied,
             rows_inserted, rows_updated, rows_deleted, bytes_copied, started_at, completed_at,
             duration_seconds, source_query, run_id, error, fallback)
        VALUES (%s, %s, %s, %s, %s, 'completed', %s, %s, %s, %s, %s, %s, %s, now(), %s, %s, %s, NULL, %s)
        ON CONFLICT (target_schema, target_table, chunk_key) DO UPDATE SET
            lower_bound = EXCLUDED.lower_bound, upper_bound = EXCLUDED.upper_bound, status = 'completed',
            mode = EXCLUDED.mode, rows_copied = EXCLUDED.rows_copied, rows_inserted = EXCLUDED.rows_inserted,
            rows_updated = EXCLUDED.rows_updated, rows_deleted = EXCLUDED.rows_deleted,
            bytes_copied = EXCLUDED.bytes_copied, attempts = c.attempts + 1, started_at = EXCLUDED.started_at,
            completed_at = now(), duration_seconds = EXCLUDED.duration_seconds,
            source_query = EXCLUDED.source_query, run_id = EXCLUDED.run_id, error = NULL,
            fallback = EXCLUDED.fallback
        """,
        (
            schema, table, rec.key, rec.lower_bound, rec.upper_bound, rec.mode, rec.rows_copied,
            rec.rows_inserted, rec.rows_updated, rec.rows_deleted, rec.bytes_copied, rec.started_at,
            rec.duration_seconds, rec.source_query, rec.run_id, rec.fallback,
        ),
    )  # fmt: skip


def record_failure(conn: psycopg.Connection, schema: str, table: str, key: str, error: str, run_id: str | None) -> None:
    """Note a failed attempt (own transaction, after the chunk's rollback). A completed row stays completed."""
    with conn.transaction():
        conn.execute(
            """
            INSERT INTO migration_status.chunk_state AS c
                (target_schema, target_table, chunk_key, status, error, run_id, completed_at)
            VALUES (%s, %s, %s, 'failed', %s, %s, now())
            ON CONFLICT (target_schema, target_table, chunk_key) DO UPDATE SET
                status = CASE WHEN c.status = 'completed' THEN c.status ELSE 'failed' END,
                error = EXCLUDED.error, attempts = c.attempts + 1, run_id = EXCLUDED.run_id
            """,
            (schema, table, key, error[:2000], run_id),
        )


def fail_emptied_chunk(
    conn: psycopg.Connection, schema: str, table: str, key: str, error: str, run_id: str | None
) -> None:
    """Mark a chunk failed whose rows were just deleted (call in the transaction that deletes them)."""
    conn.execute(
        "UPDATE migration_status.chunk_state SET status = 'failed', error = %s, run_id = %s, rows_copied = 0, "
        "rows_inserted = 0, rows_updated = 0, bytes_copied = 0, completed_at = now() "
        "WHERE target_schema = %s AND target_table = %s AND chunk_key = %s",
        (error[:2000], run_id, schema, table, key),
    )


def table_status(conn: psycopg.Connection) -> list[dict]:
    """Rows of ``migration_table_status`` (empty when the ledger does not exist yet)."""
    if not conn.execute("SELECT to_regclass('migration_status.migration_table_status')").fetchone()[0]:
        return []
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT * FROM migration_status.migration_table_status ORDER BY target_schema, target_table"
        ).fetchall()

"""The ``migration_status`` ledger in each target database (DDL in ``sql/migration_status_schema.sql``).

It holds a table's whole plan (every chunk with its bounds and state: planned, running, completed,
failed), the settled watermark that incremental sync starts from, and a row per committed window.
Chunk and window rows are written inside the transaction that writes their data.

Why one module: it is the ledger's one API (tables, the plan, chunk states, watermarks, columns and schema changes),
its sections following the ``migration_status`` tables they read and write.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from sf2pg.errors import InputError
from sf2pg.load import locks
from sf2pg.plan.chunks import Chunk, parse_watermark

DDL_PATH = Path(__file__).resolve().parents[1] / "sql" / "migration_status_schema.sql"


def ensure_ledger(conn: psycopg.Connection) -> None:
    """Create (or bring up to date) the ledger schema on first use; a no-op once it is current."""
    if is_current(conn):
        return
    with conn.transaction():
        locks.ledger_ddl_lock(conn)
        conn.execute(DDL_PATH.read_text())


def is_current(conn: psycopg.Connection) -> bool:
    """Whether this database's ledger exists and has every table and column of this version."""
    found = conn.execute(
        "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'migration_status' AND "
        "((table_name = 'chunk_state' AND column_name = 'schema_version') "
        "OR (table_name = 'table_state' AND column_name = 'recent_hash'))"
    ).fetchone()[0]
    return (
        found == 2 and conn.execute("SELECT to_regclass('migration_status.schema_changes')").fetchone()[0] is not None
    )


def exists(conn: psycopg.Connection) -> bool:
    """Whether this database has a ledger yet (reading commands do not create one)."""
    return conn.execute("SELECT to_regclass('migration_status.chunk_state')").fetchone()[0] is not None


# ---- tables ------------------------------------------------------------------------------------


class TableOwnedElsewhereError(InputError):
    """The target table is already loaded from another source table: two would overwrite each other."""


def claim_table(
    conn: psycopg.Connection, schema: str, table: str, source_name: str, source_table: str, where: str
) -> None:
    """Create the ledger if needed and register the table as loaded from ``source_table``, refusing a
    table another source already loads (``where`` names it in the error)."""
    ensure_ledger(conn)
    with conn.transaction():
        known = owner(conn, schema, table)
        if known and known != (source_name, source_table):
            raise TableOwnedElsewhereError(
                f"{where}: {conn.info.dbname}.{schema}.{table} is already loaded from {known[1]} by source "
                f"{known[0]!r}; two sources loading one table would overwrite each other's chunks (change "
                "`target`, or remove the other table's row from migration_status.table_state)"
            )
        register_table(conn, schema, table, source_name, source_table)


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


def reset_chunks(conn: psycopg.Connection, schema: str, table: str) -> None:
    """The table was (re)created or truncated: it holds nothing, so every chunk is planned again and
    nothing is settled."""
    conn.execute(
        "UPDATE migration_status.chunk_state SET status = 'planned', rows_copied = 0, rows_inserted = 0, "
        "rows_updated = 0, rows_deleted = 0, bytes_copied = 0, error = NULL, read_watermark = NULL, "
        "check_passed = NULL "
        "WHERE target_schema = %s AND target_table = %s",
        (schema, table),
    )
    conn.execute(
        "UPDATE migration_status.table_state SET watermark = NULL, watermark_at = NULL, source_rows = NULL, "
        "recent_hash = NULL, "
        "updated_at = now() "
        "WHERE target_schema = %s AND target_table = %s",
        (schema, table),
    )


def record_truncation(conn: psycopg.Connection, schema: str, table: str, run_id: str | None) -> None:
    """After TRUNCATE (same transaction): the table is empty, so every chunk is provably empty."""
    reset_chunks(conn, schema, table)
    conn.execute(
        "UPDATE migration_status.table_state SET pristine = true, truncated_at = now(), last_run_id = %s, "
        "updated_at = now() WHERE target_schema = %s AND target_table = %s",
        (run_id, schema, table),
    )


# ---- the plan ----------------------------------------------------------------------------------


def record_plan(conn: psycopg.Connection, schema: str, table: str, chunks: Sequence[Chunk]) -> None:
    """Keep every planned chunk in the ledger (new ones as ``planned``; known ones keep their state), so
    the plan survives whatever Dagster's instance remembers."""
    with conn.cursor() as cur:
        cur.executemany(
            """
            INSERT INTO migration_status.chunk_state AS c
                (target_schema, target_table, chunk_key, lower_bound, upper_bound, status, estimated_rows, planned_at,
                 attempts)
            VALUES (%s, %s, %s, %s, %s, 'planned', %s, now(), 0)
            ON CONFLICT (target_schema, target_table, chunk_key) DO UPDATE SET
                estimated_rows = EXCLUDED.estimated_rows,
                lower_bound = COALESCE(c.lower_bound, EXCLUDED.lower_bound),
                upper_bound = COALESCE(c.upper_bound, EXCLUDED.upper_bound),
                planned_at = COALESCE(c.planned_at, EXCLUDED.planned_at)
            """,
            [(schema, table, c.key, _bound(c.lower), _bound(c.upper), c.estimated_rows) for c in chunks],
        )


def _bound(value: object) -> str | None:
    return None if value is None else str(value)


def chunk_states(conn: psycopg.Connection, schema: str, table: str) -> dict[str, str]:
    """Every chunk the ledger knows for the table and its state (planned, running, completed, failed)."""
    if not exists(conn):
        return {}
    rows = conn.execute(
        "SELECT chunk_key, status FROM migration_status.chunk_state WHERE target_schema = %s AND target_table = %s",
        (schema, table),
    ).fetchall()
    return dict(rows)


def mark_running(conn: psycopg.Connection, schema: str, table: str, key: str, run_id: str | None) -> None:
    """A chunk that is not loaded yet starts loading (a completed one stays completed while it reloads:
    its rows stay whole until the reload commits, and its ``run_id`` stays the run that committed
    them, so a retry of the reloading run's step does not take it for one of its own commits)."""
    conn.execute(
        """
        INSERT INTO migration_status.chunk_state AS c (target_schema, target_table, chunk_key, status, run_id, attempts)
        VALUES (%s, %s, %s, 'running', %s, 0)
        ON CONFLICT (target_schema, target_table, chunk_key) DO UPDATE SET
            status = CASE WHEN c.status = 'completed' THEN c.status ELSE 'running' END,
            run_id = CASE WHEN c.status = 'completed' THEN c.run_id ELSE EXCLUDED.run_id END
        """,
        (schema, table, key, run_id),
    )


def completed_by_run(conn: psycopg.Connection, schema: str, table: str, run_id: str) -> set[str]:
    """Chunks this run already committed (a retry of the run's step leaves them alone)."""
    rows = conn.execute(
        "SELECT chunk_key FROM migration_status.chunk_state WHERE target_schema = %s AND target_table = %s "
        "AND status = 'completed' AND run_id = %s",
        (schema, table, run_id),
    ).fetchall()
    return {r[0] for r in rows}


def to_load(conn: psycopg.Connection, schema: str, table: str) -> set[str]:
    """Chunks a resumed migration loads: not completed; completed but found different from the source by
    their last check (after the source or the config is fixed, a plain re-run reloads just those); or
    not reloaded yet by a ``--reload`` that was interrupted."""
    rows = conn.execute(
        "SELECT chunk_key FROM migration_status.chunk_state WHERE target_schema = %s AND target_table = %s "
        "AND (status <> 'completed' OR check_passed = false OR reload_pending)",
        (schema, table),
    ).fetchall()
    return {r[0] for r in rows}


def request_reload(conn: psycopg.Connection, schema: str, table: str) -> None:
    """``sf2pg migrate --reload``: every chunk is to be loaded again, and stays so until it is, so that
    an interrupted reload resumes where it stopped."""
    conn.execute(
        "UPDATE migration_status.chunk_state SET reload_pending = true WHERE target_schema = %s AND target_table = %s",
        (schema, table),
    )


def record_checks(conn: psycopg.Connection, schema: str, table: str, verdicts: dict[str, bool]) -> None:
    """Keep each chunk's latest fingerprint verdict (a ledger that does not exist yet is left alone)."""
    if not verdicts or not exists(conn):
        return
    with conn.cursor() as cur:
        cur.executemany(
            "UPDATE migration_status.chunk_state SET check_passed = %s, checked_at = now() "
            "WHERE target_schema = %s AND target_table = %s AND chunk_key = %s",
            [(passed, schema, table, key) for key, passed in verdicts.items()],
        )


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


def completed_chunks(conn: psycopg.Connection, schema: str, table: str) -> list[tuple]:
    """(chunk key, mode, rows copied, completed at, run id) of every loaded chunk, for the Dagster layer
    to report as materializations."""
    return conn.execute(
        "SELECT chunk_key, mode, rows_copied, completed_at, run_id FROM migration_status.chunk_state "
        "WHERE target_schema = %s AND target_table = %s AND status = 'completed'",
        (schema, table),
    ).fetchall()


def chunk_counts(conn: psycopg.Connection, schema: str, table: str) -> tuple[int, int]:
    """(loaded, failed) partitions of the table, as ``sf2pg status`` counts them."""
    row = conn.execute(
        "SELECT count(*) FILTER (WHERE status = 'completed'), count(*) FILTER (WHERE status = 'failed') "
        "FROM migration_status.chunk_state WHERE target_schema = %s AND target_table = %s",
        (schema, table),
    ).fetchone()
    return row[0], row[1]


# ---- the settled watermark ---------------------------------------------------------------------


def record_planned_watermark(conn: psycopg.Connection, schema: str, table: str, value: str | None) -> None:
    """The source's maximum watermark read before the plan's distribution query (see the DDL)."""
    conn.execute(
        "UPDATE migration_status.table_state SET planned_watermark = %s, updated_at = now() "
        "WHERE target_schema = %s AND target_table = %s",
        (value, schema, table),
    )


def planned_watermark(conn: psycopg.Connection, schema: str, table: str) -> str | None:
    row = conn.execute(
        "SELECT planned_watermark FROM migration_status.table_state WHERE target_schema = %s AND target_table = %s",
        (schema, table),
    ).fetchone()
    return row[0] if row else None


def settled_watermark(conn: psycopg.Connection, schema: str, table: str) -> str | None:
    """The table's settled watermark H (see the DDL), or None before any load recorded one."""
    return settled(conn, schema, table)[0]


def settled(conn: psycopg.Connection, schema: str, table: str) -> tuple[str | None, int | None, int | None]:
    """(settled watermark, the source's row count and recent-rows hash seen when it was set); all None
    before any load."""
    if not exists(conn):
        return None, None, None
    row = conn.execute(
        "SELECT watermark, source_rows, recent_hash FROM migration_status.table_state "
        "WHERE target_schema = %s AND target_table = %s",
        (schema, table),
    ).fetchone()
    return (row[0], row[1], row[2]) if row else (None, None, None)


def start_load(
    conn: psycopg.Connection,
    schema: str,
    table: str,
    read_from: str,
    source_rows: int | None = None,
    floor: str | None = None,
    recent_hash: int | None = None,
) -> str:
    """Before a load's first Snowflake read: the settled watermark may not be above ``read_from`` (the
    source maximum now), since this load's reads reflect the source from here on; a table without one
    starts at ``read_from``, or at ``floor`` when that is lower (what an older ledger's loads are known
    to hold). Returns the settled watermark."""
    with conn.transaction():
        row = conn.execute(
            "SELECT watermark FROM migration_status.table_state WHERE target_schema = %s AND target_table = %s "
            "FOR UPDATE",
            (schema, table),
        ).fetchone()
        current = row[0] if row else None
        if current is None:
            new = floor if floor is not None and parse_watermark(floor) < parse_watermark(read_from) else read_from
        elif parse_watermark(read_from) < parse_watermark(current):
            new = read_from  # the source's maximum went down (its newest rows were deleted)
        else:
            return current
        _set_watermark(conn, schema, table, new, source_rows, recent_hash)
        return new


def advance_watermark(
    conn: psycopg.Connection, schema: str, table: str, high: str, source_rows: int | None, recent_hash: int | None
) -> None:
    """A window that read every change up to ``high`` commits (call inside its transaction). Windows
    may commit out of order, so the watermark only moves up."""
    row = conn.execute(
        "SELECT watermark FROM migration_status.table_state WHERE target_schema = %s AND target_table = %s FOR UPDATE",
        (schema, table),
    ).fetchone()
    current = row[0] if row else None
    if current is None or parse_watermark(current) <= parse_watermark(high):
        _set_watermark(conn, schema, table, high, source_rows, recent_hash)
    # every row up to high is in the target now, those beyond the plan too (the window planned edge
    # chunks for them), so a later chunk load need not settle below it (``start_load``'s cap)
    planned = planned_watermark(conn, schema, table)
    if planned is not None and parse_watermark(planned) < parse_watermark(high):
        record_planned_watermark(conn, schema, table, high)
    # an incremental load may land rows anywhere in the key space: no range is provably empty now
    conn.execute(
        "UPDATE migration_status.table_state SET pristine = false, updated_at = now() "
        "WHERE target_schema = %s AND target_table = %s",
        (schema, table),
    )


def _set_watermark(
    conn: psycopg.Connection, schema: str, table: str, value: str, source_rows: int | None, recent_hash: int | None
) -> None:
    conn.execute(
        "UPDATE migration_status.table_state SET watermark = %s, source_rows = %s, recent_hash = %s, "
        "watermark_at = now(), updated_at = now() WHERE target_schema = %s AND target_table = %s",
        (value, source_rows, recent_hash, schema, table),
    )


# ---- chunk and window rows ---------------------------------------------------------------------


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
    read_watermark: str | None = None  # the table's source maximum before the load read (None: no watermark)
    schema_version: int | None = None  # the table's schema_version the load wrote the chunk's columns at


def record_chunk(conn: psycopg.Connection, schema: str, table: str, rec: ChunkRecord) -> None:
    """Write the chunk's ledger row; call inside the chunk's own transaction."""
    conn.execute(
        """
        INSERT INTO migration_status.chunk_state AS c
            (target_schema, target_table, chunk_key, lower_bound, upper_bound, status, mode, rows_copied,
             rows_inserted, rows_updated, rows_deleted, bytes_copied, started_at, completed_at,
             duration_seconds, source_query, run_id, error, fallback, read_watermark, schema_version)
        VALUES (%s, %s, %s, %s, %s, 'completed', %s, %s, %s, %s, %s, %s, %s, now(), %s, %s, %s, NULL, %s, %s, %s)
        ON CONFLICT (target_schema, target_table, chunk_key) DO UPDATE SET
            lower_bound = EXCLUDED.lower_bound, upper_bound = EXCLUDED.upper_bound, status = 'completed',
            mode = EXCLUDED.mode, rows_copied = EXCLUDED.rows_copied, rows_inserted = EXCLUDED.rows_inserted,
            rows_updated = EXCLUDED.rows_updated, rows_deleted = EXCLUDED.rows_deleted,
            bytes_copied = EXCLUDED.bytes_copied, attempts = c.attempts + 1, started_at = EXCLUDED.started_at,
            completed_at = now(), duration_seconds = EXCLUDED.duration_seconds,
            source_query = EXCLUDED.source_query, run_id = EXCLUDED.run_id, error = NULL,
            fallback = EXCLUDED.fallback, read_watermark = EXCLUDED.read_watermark, check_passed = NULL,
            reload_pending = false, schema_version = EXCLUDED.schema_version
        """,
        (
            schema, table, rec.key, rec.lower_bound, rec.upper_bound, rec.mode, rec.rows_copied,
            rec.rows_inserted, rec.rows_updated, rec.rows_deleted, rec.bytes_copied, rec.started_at,
            rec.duration_seconds, rec.source_query, rec.run_id, rec.fallback, rec.read_watermark,
            rec.schema_version,
        ),
    )  # fmt: skip


def record_failure(conn: psycopg.Connection, schema: str, table: str, key: str, error: str, run_id: str | None) -> None:
    """Note a failed attempt (own transaction, after the chunk's rollback). A completed row stays completed,
    with the ``run_id`` of the run that committed its rows (see ``mark_running``)."""
    with conn.transaction():
        conn.execute(
            """
            INSERT INTO migration_status.chunk_state AS c
                (target_schema, target_table, chunk_key, status, error, run_id, completed_at)
            VALUES (%s, %s, %s, 'failed', %s, %s, now())
            ON CONFLICT (target_schema, target_table, chunk_key) DO UPDATE SET
                status = CASE WHEN c.status = 'completed' THEN c.status ELSE 'failed' END,
                error = EXCLUDED.error, attempts = c.attempts + 1,
                run_id = CASE WHEN c.status = 'completed' THEN c.run_id ELSE EXCLUDED.run_id END
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


@dataclass
class WindowRecord:
    """What one incremental window did, as written to ``window_state``."""

    low: str
    high: str
    read_from: str
    rows_copied: int
    rows_inserted: int
    rows_updated: int
    rows_deleted: int
    duration_seconds: float
    run_id: str | None


def record_window(conn: psycopg.Connection, schema: str, table: str, rec: WindowRecord) -> None:
    """Write the window's row (inside its transaction, next to the watermark it advances)."""
    conn.execute(
        "INSERT INTO migration_status.window_state (target_schema, target_table, low, high, read_from, rows_copied, "
        "rows_inserted, rows_updated, rows_deleted, duration_seconds, run_id) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            schema, table, rec.low, rec.high, rec.read_from, rec.rows_copied, rec.rows_inserted,
            rec.rows_updated, rec.rows_deleted, rec.duration_seconds, rec.run_id,
        ),
    )  # fmt: skip


def table_status(conn: psycopg.Connection) -> list[dict]:
    """Rows of ``migration_table_status`` (empty when the ledger does not exist yet)."""
    if not conn.execute("SELECT to_regclass('migration_status.migration_table_status')").fetchone()[0]:
        return []
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT * FROM migration_status.migration_table_status ORDER BY target_schema, target_table"
        ).fetchall()


# ---- the source's columns and the changes made to the target's --------------------------------


def source_columns(conn: psycopg.Connection, schema: str, table: str) -> tuple[list[dict] | None, int]:
    """(the source's columns as the table's last load saw them, the table's schema_version); (None, 0)
    before any load recorded them."""
    if not is_current(conn):
        return None, 0
    row = conn.execute(
        "SELECT source_columns, schema_version FROM migration_status.table_state "
        "WHERE target_schema = %s AND target_table = %s",
        (schema, table),
    ).fetchone()
    return (row[0], row[1]) if row else (None, 0)


def record_source_columns(conn: psycopg.Connection, schema: str, table: str, columns: list[dict], version: int) -> None:
    """Keep the columns this load saw and the schema_version it left (in the transaction that changed them)."""
    conn.execute(
        "UPDATE migration_status.table_state SET source_columns = %s, schema_version = %s, updated_at = now() "
        "WHERE target_schema = %s AND target_table = %s",
        (Jsonb(columns), version, schema, table),
    )


def record_schema_changes(
    conn: psycopg.Connection, schema: str, table: str, version: int, changes: Sequence, run_id: str | None
) -> None:
    """One row per change (``sf2pg.load.drift.SchemaChange``); an ignored change already noted is not
    noted again (it is seen at every load until the source or the config changes)."""
    for c in changes:
        conn.execute(
            """
            INSERT INTO migration_status.schema_changes
                (target_schema, target_table, version, source_column, target_column, change, applied, type_before,
                 type_after, detail, run_id)
            SELECT %(schema)s, %(table)s, %(version)s, %(column)s, %(target)s, %(kind)s, %(applied)s, %(before)s,
                   %(after)s, %(detail)s, %(run_id)s
            WHERE %(applied)s OR NOT EXISTS (
                SELECT 1 FROM migration_status.schema_changes
                WHERE target_schema = %(schema)s AND target_table = %(table)s AND source_column = %(column)s
                  AND change = %(kind)s AND NOT applied AND type_after IS NOT DISTINCT FROM %(after)s
            )
            """,
            {
                "schema": schema, "table": table, "version": version, "column": c.column, "target": c.target,
                "kind": c.kind, "applied": c.applied, "before": c.before, "after": c.after, "detail": c.detail,
                "run_id": run_id,
            },
        )  # fmt: skip


def schema_changes(conn: psycopg.Connection, schema: str, table: str) -> list[dict]:
    """Every recorded change of the table's columns, oldest first (empty without a ledger)."""
    if not is_current(conn):
        return []
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT version, source_column, target_column, change, applied, type_before, type_after, detail, run_id, "
            "changed_at FROM migration_status.schema_changes WHERE target_schema = %s AND target_table = %s "
            "ORDER BY changed_at, version, source_column",
            (schema, table),
        ).fetchall()


def chunks_to_backfill(conn: psycopg.Connection, schema: str, table: str) -> dict[str, list[str]]:
    """Loaded chunks that predate a column added to the target, each with those target columns: their
    rows that have not changed since hold NULL there, whatever Snowflake holds, until the chunk is
    reloaded (``sf2pg migrate`` does). The checks compare those columns knowing this."""
    if not is_current(conn):
        return {}
    rows = conn.execute(
        """
        SELECT c.chunk_key, array_agg(DISTINCT s.target_column ORDER BY s.target_column)
        FROM migration_status.chunk_state c
        JOIN migration_status.schema_changes s USING (target_schema, target_table)
        WHERE c.target_schema = %s AND c.target_table = %s AND c.status = 'completed'
          AND s.change = 'added' AND s.applied AND s.version > COALESCE(c.schema_version, 0)
        GROUP BY c.chunk_key
        """,
        (schema, table),
    ).fetchall()
    return {key: list(columns) for key, columns in rows}


def record_column_ranges(conn: psycopg.Connection, schema: str, table: str, ranges: dict) -> None:
    """Keep the planner's MIN and MAX per column (as text: 38 digits do not fit a JSON number)."""
    kept = {name: [None if v is None else str(v) for v in pair] for name, pair in ranges.items()}
    conn.execute(
        "UPDATE migration_status.table_state SET column_ranges = COALESCE(column_ranges, '{}'::jsonb) || %s, "
        "updated_at = now() WHERE target_schema = %s AND target_table = %s",
        (Jsonb(kept), schema, table),
    )


def column_ranges(conn: psycopg.Connection, schema: str, table: str) -> dict[str, tuple]:
    """The MIN and MAX per column the last full plan read (empty when none did)."""
    if not is_current(conn):
        return {}
    row = conn.execute(
        "SELECT column_ranges FROM migration_status.table_state WHERE target_schema = %s AND target_table = %s",
        (schema, table),
    ).fetchone()
    if not row or not row[0]:
        return {}
    return {name: tuple(None if v is None else int(decimal.Decimal(v)) for v in pair) for name, pair in row[0].items()}

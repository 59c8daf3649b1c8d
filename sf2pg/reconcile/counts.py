"""Whole-table row counts of source and target, and a table's verification (counts plus every chunk's fingerprint)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import psycopg
from psycopg import sql

from sf2pg.config.identifiers import sf_qualified
from sf2pg.config.model import TableSpec
from sf2pg.config.typemap import SourceColumn
from sf2pg.load import locks
from sf2pg.plan.chunks import Chunk
from sf2pg.reconcile.fingerprints import Settled, fingerprint_chunks, read_watermark, settled_boundary
from sf2pg.reconcile.verdicts import RowCount, TableVerdict
from sf2pg.source.statements import watermark_column, where_clause

# ---- whole-table counts --------------------------------------------------------------------------


def count_rows(sf_conn: Any, pg_conn: psycopg.Connection, spec: TableSpec) -> tuple[int, int]:
    """(source rows with source_filter, target rows): plain counts, for summaries."""
    cur = sf_conn.cursor()
    try:
        source = cur.execute(
            f"SELECT COUNT(*) FROM {sf_qualified(spec.sf_database, spec.sf_schema, spec.sf_table)} "
            f"WHERE {where_clause(spec.source_filter)}"
        ).fetchone()[0]
    finally:
        cur.close()
    target = pg_conn.execute(
        sql.SQL("SELECT COUNT(*) FROM {}").format(sql.Identifier(spec.pg_schema, spec.pg_table))
    ).fetchone()[0]
    return int(source), int(target)


def compare_counts(
    sf_conn: Any, pg_conn: psycopg.Connection, spec: TableSpec, columns: Callable[[], list[SourceColumn]]
) -> RowCount:
    """Whole-table counts under the lease. With the ledger's watermark H, the source's settled rows
    and rows past H are counted in one statement; the target may hold anything in between.
    ``columns`` describes the source table, asked only when H is set."""
    with pg_conn.transaction():
        locks.hold_lease_exclusive(pg_conn, spec.pg_schema, spec.pg_table)
        column = watermark_column(columns(), spec) if read_watermark(pg_conn, spec) is not None else None
        watermark = settled_boundary(sf_conn, pg_conn, spec, column) if column is not None else None
        table = sf_qualified(spec.sf_database, spec.sf_schema, spec.sf_table)
        if watermark is None:
            query = f"SELECT COUNT(*), 0 FROM {table} WHERE {where_clause(spec.source_filter)}"
            settled = None
        else:
            settled = Settled(watermark, column, None, True)
            query = (
                f"SELECT COUNT(CASE WHEN {settled.sf()} THEN 1 END), COUNT(CASE WHEN {settled.sf(moving=True)} THEN 1 END) "
                f"FROM {table} WHERE {where_clause(spec.source_filter)}"
            )
        cur = sf_conn.cursor()
        try:
            source, moving = cur.execute(query).fetchone()
        finally:
            cur.close()
        target = pg_conn.execute(
            sql.SQL("SELECT COUNT(*) FROM {}").format(sql.Identifier(spec.pg_schema, spec.pg_table))
        ).fetchone()[0]
    deletes = settled is not None and spec.delete_detection == "keys"
    return RowCount(int(source), int(target), int(moving), settled.text if settled else None, deletes)


def verify_table(
    sf_conn: Any, pg_conn: psycopg.Connection, spec: TableSpec, columns: list[SourceColumn], chunks: Sequence[Chunk]
) -> TableVerdict:
    """Row counts for the whole table plus a fingerprint per chunk."""
    counts = compare_counts(sf_conn, pg_conn, spec, lambda: columns)
    verdicts, queries = fingerprint_chunks(sf_conn, pg_conn, spec, columns, chunks)
    return TableVerdict(
        spec.name,
        counts.source_rows,
        counts.target_rows,
        verdicts,
        queries + 1,
        counts.moving_rows,
        counts.watermark,
        counts.deletes_pending,
    )

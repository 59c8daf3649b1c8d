"""A settled server before each timed run, so no run pays for the one before it."""

from __future__ import annotations

import time
from collections.abc import Iterable

import psycopg
from psycopg import sql


def settle(database: str, drop_schemas: Iterable[str] = (), vacuum_tables: Iterable[str] = ()) -> None:
    """Earlier runs' tables dropped or vacuumed (autovacuum would otherwise work through a fresh
    million-row table during a later run), dirty pages flushed, and no autovacuum worker running.

    ``vacuum_tables`` are ``schema.table`` names; a table that does not exist is passed over."""
    with psycopg.connect(dbname=database, autocommit=True) as conn:
        for schema in drop_schemas:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
        for name in vacuum_tables:
            schema, _, table = name.partition(".")
            if conn.execute("SELECT to_regclass(%s)", (sql.Identifier(schema, table).as_string(conn),)).fetchone()[0]:
                conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(sql.Identifier(schema, table)))
        conn.execute("CHECKPOINT")
        deadline = time.monotonic() + 30
        query = "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'"
        while conn.execute(query).fetchone()[0] and time.monotonic() < deadline:
            time.sleep(0.2)

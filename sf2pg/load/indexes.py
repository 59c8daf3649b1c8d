"""Secondary indexes off during a bulk load, rebuilt after from definitions kept in the ledger.

Primary keys and unique indexes stay: merges need them, and they guard exactness.
"""

from __future__ import annotations

import psycopg
from psycopg import sql


def drop_secondary_indexes(conn: psycopg.Connection, schema: str, table: str, run_id: str | None) -> list[str]:
    """Save then drop the table's non-unique indexes in one transaction; returns their names."""
    with conn.transaction():
        rows = conn.execute(
            """
            SELECT ic.relname, pg_get_indexdef(ic.oid)
            FROM pg_index x
            JOIN pg_class ic ON ic.oid = x.indexrelid
            JOIN pg_class tc ON tc.oid = x.indrelid
            JOIN pg_namespace n ON n.oid = tc.relnamespace
            WHERE n.nspname = %s AND tc.relname = %s AND NOT x.indisunique AND NOT x.indisprimary
              AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = ic.oid)
            ORDER BY ic.relname
            """,
            (schema, table),
        ).fetchall()
        for name, definition in rows:
            conn.execute(
                "INSERT INTO migration_status.saved_indexes (target_schema, target_table, index_name, definition, run_id) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (schema, table, name, definition, run_id),
            )
            conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(schema, name)))
    return [name for name, _ in rows]


def restore_indexes(conn: psycopg.Connection, schema: str | None = None, table: str | None = None) -> list[str]:
    """Rebuild saved indexes (all, or one table's), each in its own transaction; returns their names."""
    rows = conn.execute(
        "SELECT target_schema, target_table, index_name, definition FROM migration_status.saved_indexes "
        "WHERE (%s::text IS NULL OR target_schema = %s) AND (%s::text IS NULL OR target_table = %s) "
        "ORDER BY saved_at, index_name",
        (schema, schema, table, table),
    ).fetchall()
    rebuilt = []
    for s, t, name, definition in rows:
        with conn.transaction():
            exists = conn.execute("SELECT to_regclass(%s)", (sql.Identifier(s, name).as_string(conn),)).fetchone()[0]
            if not exists:
                conn.execute(definition)
                rebuilt.append(name)
            conn.execute(
                "DELETE FROM migration_status.saved_indexes "
                "WHERE target_schema = %s AND target_table = %s AND index_name = %s",
                (s, t, name),
            )
    return rebuilt

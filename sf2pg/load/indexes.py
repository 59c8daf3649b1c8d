"""Secondary indexes off during a bulk load, rebuilt after from definitions kept in the ledger.

Unique indexes stay: merges need them, and they guard exactness. So does the primary key, except
during a table's first load, when nothing can be merged yet (see ``keys.py``).

An index of a partitioned table is a tree: the parent's index and one attached index per partition.
Dropping the parent's drops them all, and ``pg_get_indexdef`` gives the parent ``ON ONLY``, which on
its own would come back invalid with no partition indexed. So the whole tree is saved as one script
that creates every index under its own name and attaches each to its parent, deepest first: the
parent is valid again once its last partition is attached.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from sf2pg.load import locks


def drop_secondary_indexes(
    conn: psycopg.Connection, schema: str, table: str, run_id: str | None, primary_key: bool = False
) -> list[str]:
    """Save then drop the table's non-unique indexes (and, with ``primary_key``, its primary key) in one
    transaction; returns their names."""
    with conn.transaction():
        found = conn.execute(
            """
            SELECT ic.relname, pg_get_indexdef(ic.oid), ic.oid, ic.relkind = 'I'
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
        rows = [
            (name, _index_tree(conn, oid) if partitioned else definition)
            for name, definition, oid, partitioned in found
        ]
        keys = conn.execute(_PRIMARY_KEY, (schema, table)).fetchall() if primary_key else []
        for name, definition in keys + rows:
            conn.execute(
                "INSERT INTO migration_status.saved_indexes (target_schema, target_table, index_name, definition, run_id) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (schema, table, name, definition, run_id),
            )
        for name, _ in keys:
            conn.execute(
                sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(sql.Identifier(schema, table), sql.Identifier(name))
            )
        for name, _ in rows:
            conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(schema, name)))
    return [name for name, _ in keys + rows]


def _index_tree(conn: psycopg.Connection, index_oid: int) -> str:
    """The statements that rebuild a partitioned index with every partition's index, attached."""
    tree = conn.execute(
        """
        SELECT t.level, pg_get_indexdef(t.relid), format('%%I.%%I', n.nspname, c.relname),
               CASE WHEN p.oid IS NOT NULL THEN format('%%I.%%I', pn.nspname, p.relname) END
        FROM pg_partition_tree(%s::regclass) t
        JOIN pg_class c ON c.oid = t.relid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_class p ON p.oid = t.parentrelid
        LEFT JOIN pg_namespace pn ON pn.oid = p.relnamespace
        ORDER BY t.level, c.relname
        """,
        (index_oid,),
    ).fetchall()
    creates = [definition for _, definition, _, _ in tree]
    attaches = [
        f"ALTER INDEX {parent} ATTACH PARTITION {index}"
        for level, _, index, parent in sorted(tree, key=lambda r: -r[0])
        if level > 0
    ]
    return ";\n".join(creates + attaches)


# the primary key's name and the statement that adds it back (its NOT NULLs stay when it is dropped)
_PRIMARY_KEY = """
    SELECT c.conname, format('ALTER TABLE %%I.%%I ADD CONSTRAINT %%I %%s', n.nspname, t.relname, c.conname,
                             pg_get_constraintdef(c.oid))
    FROM pg_constraint c
    JOIN pg_class t ON t.oid = c.conrelid
    JOIN pg_namespace n ON n.oid = t.relnamespace
    WHERE n.nspname = %s AND t.relname = %s AND c.contype = 'p'
"""


# A saved primary key is told from a saved index by its statement (ALTER TABLE ... ADD CONSTRAINT).
_IS_KEY = "definition LIKE 'ALTER TABLE %%'"


def saved_key(conn: psycopg.Connection, schema: str, table: str) -> bool:
    """True while a primary key dropped for a first load waits to be rebuilt (the load may have died)."""
    if not conn.execute("SELECT to_regclass('migration_status.saved_indexes')").fetchone()[0]:
        return False
    return conn.execute(
        "SELECT EXISTS (SELECT 1 FROM migration_status.saved_indexes WHERE target_schema = %s "
        f"AND target_table = %s AND {_IS_KEY})",
        (schema, table),
    ).fetchone()[0]


def saved_any(conn: psycopg.Connection, schema: str, table: str) -> bool:
    """True while any index (or key) a full load dropped waits to be rebuilt (the load may have died)."""
    if not conn.execute("SELECT to_regclass('migration_status.saved_indexes')").fetchone()[0]:
        return False
    return conn.execute(
        "SELECT EXISTS (SELECT 1 FROM migration_status.saved_indexes WHERE target_schema = %s AND target_table = %s)",
        (schema, table),
    ).fetchone()[0]


def restore_indexes(conn: psycopg.Connection, schema: str | None = None, table: str | None = None) -> list[str]:
    """Rebuild saved indexes (all, or one table's), each in its own transaction; returns their names.

    A table's primary key comes back before its other indexes. Raises ``UniqueViolation`` if the rows
    hold a key twice (``keys.rebuild`` deals with that); what was not rebuilt stays saved."""
    rows = conn.execute(
        "SELECT target_schema, target_table, index_name, definition FROM migration_status.saved_indexes "
        "WHERE (%s::text IS NULL OR target_schema = %s) AND (%s::text IS NULL OR target_table = %s) "
        f"ORDER BY saved_at, NOT ({_IS_KEY}), index_name",
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


def lock_indexes(conn: psycopg.Connection, schema: str, table: str) -> bool:
    """Claim the table's indexes for this session (a load about to drop or rebuild them); False if
    another session holds them. Released by ``unlock_indexes`` or when the session ends (a crash too)."""
    return locks.try_lock(conn, locks.indexes_key(schema, table))


def unlock_indexes(conn: psycopg.Connection, schema: str, table: str) -> None:
    locks.unlock(conn, locks.indexes_key(schema, table))


def load_holds_indexes(conn: psycopg.Connection, schema: str, table: str) -> bool:
    """Whether a load is running that holds the table's indexes away (a saved key without one is a
    load that died: the next load rebuilds it before it merges)."""
    if not lock_indexes(conn, schema, table):
        return True
    unlock_indexes(conn, schema, table)
    return False

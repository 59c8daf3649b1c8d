"""Every PostgreSQL advisory lock sf2pg takes, by name, in one place.

Locks are keyed by text (``hashtextextended``), so a name says what it guards:

- ``table``: preparing or truncating a target table (transaction lock).
- ``chunk``: one chunk's transaction; two loads of one chunk never interleave (transaction lock).
- ``indexes``: the load that holds a table's indexes away (session lock; a crash releases it).
- ``lease``: who may write a table from a Snowflake read. Chunk loads hold it *shared* from before
  their source read until their commit, so the chunks of one or several loads run in parallel;
  incremental windows, delete detection and checks hold it *exclusive* over their read and their
  commit. So a write that read Snowflake earlier can never commit after one that read later.
- ``read``: one chunk's source read to its commit, across runs (session lock), so two runs loading
  the same chunk commit in the order they read.
- the ledger's DDL: creating or upgrading ``migration_status`` on first use (transaction lock; keyed by
  the number it has always had, so loaders of earlier versions still exclude it).
"""

from __future__ import annotations

import psycopg

LEDGER_DDL_KEY = 0x5F2F6001


def table_key(schema: str, table: str) -> str:
    return f"sf2pg:{schema}.{table}"


def chunk_key(schema: str, table: str, chunk: str) -> str:
    return f"sf2pg:{schema}.{table}:{chunk}"


def indexes_key(schema: str, table: str) -> str:
    return f"sf2pg-indexes:{schema}.{table}"


def lease_key(schema: str, table: str) -> str:
    return f"sf2pg-lease:{schema}.{table}"


def read_key(schema: str, table: str, chunk: str) -> str:
    return f"sf2pg-read:{schema}.{table}:{chunk}"


def xact_lock(conn: psycopg.Connection, key: str, shared: bool = False) -> None:
    """Wait for the lock; it is released when the current transaction ends."""
    function = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
    conn.execute(f"SELECT {function}(hashtextextended(%s, 0))", (key,))


def try_lock(conn: psycopg.Connection, key: str, shared: bool = False) -> bool:
    """Take a session lock if it is free now; never waits (so a caller can poll without blocking a
    connection other threads need). PostgreSQL also refuses it while a conflicting request waits,
    so a waiting exclusive lease is not starved by a stream of shared ones."""
    function = "pg_try_advisory_lock_shared" if shared else "pg_try_advisory_lock"
    return conn.execute(f"SELECT {function}(hashtextextended(%s, 0))", (key,)).fetchone()[0]


def unlock(conn: psycopg.Connection, key: str, shared: bool = False) -> None:
    """Release one hold of a session lock (no-op on a closed connection: the server released it)."""
    if conn.closed or conn.broken:
        return
    function = "pg_advisory_unlock_shared" if shared else "pg_advisory_unlock"
    conn.execute(f"SELECT {function}(hashtextextended(%s, 0))", (key,))


def hold_lease_exclusive(conn: psycopg.Connection, schema: str, table: str) -> None:
    """Inside a transaction: wait until no chunk load of the table is between its read and its commit,
    and keep new ones from reading until this transaction ends."""
    xact_lock(conn, lease_key(schema, table))


def ledger_ddl_lock(conn: psycopg.Connection) -> None:
    """Inside a transaction: serialise the ledger's creation across concurrent loaders."""
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (LEDGER_DDL_KEY,))

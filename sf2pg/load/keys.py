"""A table's primary key during its first load: dropped while the empty table fills, rebuilt after.

Keeping a btree up to date row by row costs more than the COPY itself (1M rows here: 0.5 s of COPY
without the key, 1.6 s with it; 0.4 s to build it afterwards), so a full load into a table that holds
nothing yet saves and drops its key like the secondary indexes, and rebuilds it when the chunks are
in. Nothing can be merged into such a table, so nothing needs the key meanwhile.

Without the key, COPY cannot notice a key that arrives twice (the source repeats it, or a row moved
between chunks while they were read); the rebuild notices instead. Then every chunk holding such a
key is emptied and marked failed in one transaction, the key is built, and the run fails naming
those chunks: the table is again whole chunks only, and re-running them merges by key.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from sf2pg.chunks import ChunkingType, parse_chunk_key
from sf2pg.load import indexes, ledger
from sf2pg.load.chunk import range_predicate
from sf2pg.load.target import TargetTable


def can_defer(conn: psycopg.Connection, target: TargetTable) -> bool:
    """True for a keyed table that sf2pg created (or truncated) and no chunk has loaded into yet."""
    if not target.has_unique_key or not ledger.is_pristine(conn, target.schema, target.table):
        return False
    if ledger.chunk_counts(conn, target.schema, target.table)[0]:
        return False
    return not conn.execute(sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(target.ident)).fetchone()[0]


def rebuild(
    conn: psycopg.Connection, target: TargetTable, chunking: ChunkingType | None, run_id: str | None
) -> tuple[list[str], dict[str, str]]:
    """Rebuild the table's saved key and indexes; returns (rebuilt names, failed chunk -> why).

    Chunks are failed only when the rows hold a key twice; see the module docstring."""
    try:
        return indexes.restore_indexes(conn, target.schema, target.table), {}
    except psycopg.errors.UniqueViolation as exc:
        failed = _empty_chunks_with_repeated_keys(conn, target, chunking, run_id, exc)
    return indexes.restore_indexes(conn, target.schema, target.table), failed


def _empty_chunks_with_repeated_keys(
    conn: psycopg.Connection,
    target: TargetTable,
    chunking: ChunkingType | None,
    run_id: str | None,
    exc: psycopg.errors.UniqueViolation,
) -> dict[str, str]:
    keys = sql.SQL(", ").join(map(sql.Identifier, target.key_columns))
    aliased = sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(k)) for k in target.key_columns)
    detail = (exc.diag.message_detail or str(exc)).strip()
    message = (
        f"the key ({', '.join(target.key_columns)}) arrived more than once during the table's first load "
        f"({detail}); this chunk's rows were removed. Re-run it: a row that moved between chunks merges by key "
        "then; a key the source itself repeats fails again (check uniqueness_columns)"
    )
    failed: dict[str, str] = {}
    with conn.transaction():
        conn.execute(sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(target.ident))
        conn.execute(
            sql.SQL(
                "CREATE TEMP TABLE sf2pg_repeated_keys ON COMMIT DROP AS SELECT {} FROM {} GROUP BY {} HAVING count(*) > 1"
            ).format(keys, target.ident, keys)
        )
        for key in ledger.loaded_keys(conn, target.schema, target.table):
            chunk = parse_chunk_key(chunking, key)
            if chunk.is_incremental:  # windows merge by key: none loads while the key is away
                continue
            predicate, params = range_predicate(target, chunk, "t")
            hit = conn.execute(
                sql.SQL(
                    "SELECT EXISTS (SELECT 1 FROM {} AS t WHERE {} AND ({}) IN (SELECT {} FROM sf2pg_repeated_keys))"
                ).format(target.ident, predicate, aliased, keys),
                params,
            ).fetchone()[0]
            if hit:
                conn.execute(sql.SQL("DELETE FROM {} AS t WHERE {}").format(target.ident, predicate), params)
                ledger.fail_emptied_chunk(conn, target.schema, target.table, key, message, run_id)
                failed[key] = message
    return failed

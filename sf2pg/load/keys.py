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

from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from sf2pg.config.model import TableSpec
from sf2pg.config.typemap import SourceColumn
from sf2pg.load import indexes, ledger
from sf2pg.load.chunk import range_predicate
from sf2pg.load.postgres import Connects
from sf2pg.load.target import ColumnRules, TargetTable, prepare_target
from sf2pg.plan.chunks import ChunkingType, parse_chunk_key


def can_defer(conn: psycopg.Connection, target: TargetTable) -> bool:
    """True for a keyed table that sf2pg created (or truncated) and no chunk has loaded into yet."""
    if not target.has_unique_key or not ledger.is_pristine(conn, target.schema, target.table):
        return False
    if ledger.chunk_counts(conn, target.schema, target.table)[0]:
        return False
    return not conn.execute(sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(target.ident)).fetchone()[0]


@dataclass
class Rebuilt:
    """What rebuilding a table's saved key and indexes did."""

    names: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # chunk emptied -> why
    permanent: set[str] = field(default_factory=set)  # of those, chunks whose source repeats a key itself


def rebuild(
    conn: psycopg.Connection, target: TargetTable, chunking: ChunkingType | None, run_id: str | None
) -> Rebuilt:
    """Rebuild the table's saved key and indexes.

    Chunks are failed only when the rows hold a key twice; see the module docstring. A chunk whose own
    rows repeat a key cannot load until the source changes (permanent); a key repeated across chunks is
    a row that moved while they were read, which a retry merges."""
    try:
        return Rebuilt(indexes.restore_indexes(conn, target.schema, target.table))
    except psycopg.errors.UniqueViolation as exc:
        failed, permanent = _empty_chunks_with_repeated_keys(conn, target, chunking, run_id, exc)
    return Rebuilt(indexes.restore_indexes(conn, target.schema, target.table), failed, permanent)


def _empty_chunks_with_repeated_keys(
    conn: psycopg.Connection,
    target: TargetTable,
    chunking: ChunkingType | None,
    run_id: str | None,
    exc: psycopg.errors.UniqueViolation,
) -> tuple[dict[str, str], set[str]]:
    keys = sql.SQL(", ").join(map(sql.Identifier, target.key_columns))
    aliased = sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(k)) for k in target.key_columns)
    detail = (exc.diag.message_detail or str(exc)).strip()
    message = (
        f"the key ({', '.join(target.key_columns)}) arrived more than once during the table's first load "
        f"({detail}); this chunk's rows were removed. Re-run it: a row that moved between chunks merges by key "
        "then; a key the source itself repeats fails again (check uniqueness_columns)"
    )
    failed: dict[str, str] = {}
    permanent: set[str] = set()
    within = (
        "the source holds key ({}) more than once inside this chunk ({}), but uniqueness_columns must identify "
        "one row; this chunk's rows were removed. Fix the source or the config, then re-run it"
    )
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
                repeats = conn.execute(
                    sql.SQL("SELECT {} FROM {} AS t WHERE {} GROUP BY {} HAVING count(*) > 1 LIMIT 1").format(
                        aliased, target.ident, predicate, aliased
                    ),
                    params,
                ).fetchone()
                why = message
                if repeats:
                    shown = ", ".join(f"{c}={v!r}" for c, v in zip(target.key_columns, repeats, strict=True))
                    why = within.format(", ".join(target.key_columns), shown)
                    permanent.add(key)
                conn.execute(sql.SQL("DELETE FROM {} AS t WHERE {}").format(target.ident, predicate), params)
                ledger.fail_emptied_chunk(conn, target.schema, target.table, key, why, run_id)
                failed[key] = why
    return failed, permanent


def rebuild_after_interrupted_load(
    postgres: Connects, spec: TableSpec, source_columns: Callable[[], list[SourceColumn]]
) -> None:
    """A full load killed after its last chunk but before it rebuilt what it dropped leaves nothing to
    resume; rebuild its indexes (and key) now. A key it received twice empties and fails the chunks
    holding it (``rebuild``), which the resumed migration then loads. ``source_columns`` is asked
    only when something was left dropped."""
    with postgres.get_connection(spec.pg_database) as conn:
        if not indexes.saved_any(conn, spec.pg_schema, spec.pg_table):
            return
    columns = source_columns()
    with postgres.get_connection(spec.pg_database) as conn:
        where = f"table {spec.name} ({spec.config_path})"
        target = prepare_target(
            conn, spec.pg_schema, spec.pg_table, columns, spec.uniqueness_columns, spec.chunking_column, where,
            rules=ColumnRules.of(spec), keys_only=True,
        )  # fmt: skip
        if not indexes.lock_indexes(conn, spec.pg_schema, spec.pg_table):
            return  # a load of the table is running: it rebuilds them when it ends
        try:
            rebuild(conn, target, spec.chunking_type, None)
        finally:
            indexes.unlock_indexes(conn, spec.pg_schema, spec.pg_table)

"""Delete detection: remove target rows whose keys vanished from the source.

Watermark windows only ever see rows that changed, never rows that were deleted; this pass compares
key sets instead, chunk by chunk and then beyond every chunk (rows below or above the plan, and NULL
chunking values when the plan has no NULL chunk), so the whole key range is covered. For each part,
the source's keys are copied into a temporary table and target rows without a match are deleted in
one transaction that holds the table's lease exclusively from before the source read to the commit
(so no load commits in between), unless that would remove more than ``delete_max_ratio`` of the
part's rows: then nothing is deleted and the pass fails loudly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable

import psycopg
import pyarrow as pa
from psycopg import sql

from sf2pg.config.model import TableSpec
from sf2pg.errors import InputError
from sf2pg.load import locks
from sf2pg.load.chunk import range_predicate
from sf2pg.load.conform import conform
from sf2pg.load.copy import copy_batches
from sf2pg.load.target import TargetTable
from sf2pg.plan.chunks import NULL_KEY, OUTSIDE_KEY, Chunk
from sf2pg.source.extract import ChunkSource

_KEYS = sql.Identifier("sf2pg_source_keys")


class DeleteGuardError(InputError):
    """Delete detection would remove more of a chunk than the configured share; nothing was deleted."""


def key_target(target: TargetTable) -> TargetTable:
    """The target narrowed to its key columns (for copying source keys)."""
    return dataclasses.replace(target, columns=[c for c in target.columns if c.target in target.key_columns])


def parts(chunks: list[Chunk]) -> list[Chunk]:
    """The table's chunks, plus what lies beyond them, so every target row is in exactly one part."""
    ranges = sorted((c for c in chunks if c.is_range), key=lambda c: c.lower)  # type: ignore[arg-type,return-value]
    if any(c.is_all for c in chunks) or not ranges:
        return [c for c in chunks if c.is_all or c.is_null] or [Chunk("all")]
    out = [*ranges, Chunk(OUTSIDE_KEY, ranges[0].lower, max(c.upper for c in ranges))]  # type: ignore[type-var]
    return [*out, Chunk(NULL_KEY)]


def detect_deletes(
    conn: psycopg.Connection,
    target: TargetTable,
    chunks: list[Chunk],
    source: ChunkSource,
    spec: TableSpec,
    where: str,
) -> int:
    """Delete the target rows whose keys are gone from the source, part by part; returns how many."""
    keys = key_target(target)
    key_sources = [c.source for c in keys.columns]
    deleted = 0
    for part in parts(chunks):
        deleted += delete_vanished(
            conn,
            target,
            part,
            lambda part=part: conform(source.open(part, key_sources), keys, spec.batch_size, "fail", where),
            spec.delete_max_ratio,
            f"{where}, chunk {part.key}",
        )
    return deleted


def delete_vanished(
    conn: psycopg.Connection,
    target: TargetTable,
    chunk: Chunk,
    source_keys: Callable[[], Iterable[pa.RecordBatch]],
    max_ratio: float,
    where: str,
) -> int:
    """Delete the chunk's target rows whose keys are not among ``source_keys()`` (read under the lease);
    returns how many."""
    keys = key_target(target)
    names = sql.SQL(", ").join(map(sql.Identifier, keys.column_names))
    with conn.transaction(), conn.cursor() as cur:
        locks.hold_lease_exclusive(conn, target.schema, target.table)
        locks.xact_lock(conn, locks.chunk_key(target.schema, target.table, chunk.key))
        cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(_KEYS))
        cur.execute(
            sql.SQL("CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA").format(
                _KEYS, names, target.ident
            )
        )
        copy_batches(cur, _KEYS, keys, source_keys())
        cur.execute(sql.SQL("ANALYZE {}").format(_KEYS))
        predicate, params = range_predicate(target, chunk, "t")
        same_key = sql.SQL(" AND ").join(
            sql.SQL("s.{k} = t.{k}").format(k=sql.Identifier(k)) for k in keys.column_names
        )
        vanished = sql.SQL("{} AND NOT EXISTS (SELECT 1 FROM {} AS s WHERE {})").format(predicate, _KEYS, same_key)
        total, doomed = cur.execute(
            sql.SQL("SELECT COUNT(*), COUNT(*) FILTER (WHERE {}) FROM {} AS t WHERE {}").format(
                vanished, target.ident, predicate
            ),
            params + params,
        ).fetchone()
        if doomed and doomed > max_ratio * total:
            raise DeleteGuardError(
                f"{where}: delete detection would remove {doomed} of {total} rows "
                f"({100 * doomed / total:.0f}%), more than delete_max_ratio {max_ratio:g}; nothing was deleted"
            )
        if doomed:
            cur.execute(sql.SQL("DELETE FROM {} AS t WHERE {}").format(target.ident, vanished), params)
            cur.execute(
                "UPDATE migration_status.chunk_state SET rows_deleted = rows_deleted + %s "
                "WHERE target_schema = %s AND target_table = %s AND chunk_key = %s",
                (doomed, target.schema, target.table, chunk.key),
            )
        return int(doomed)

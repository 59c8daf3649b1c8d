"""What one run of a table loads, described from Snowflake before any row moves, and what it did.

The Dagster asset body (``sf2pg.dagster.assets``) and the CLI's own runs (``sf2pg.run.runners``) both describe a
run here, so they load identically.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sf2pg.config.model import TableSpec
from sf2pg.load.table import TableLoad, TableLoadSummary
from sf2pg.plan.chunks import INCREMENTAL_PREFIX, parse_chunk_key, watermark_text
from sf2pg.plan.incremental import source_high, window_from_tags
from sf2pg.plan.planning import source_columns
from sf2pg.source.extract import SnowflakeChunkSource
from sf2pg.source.statements import find_column, watermark_column


def describe_load(
    spec: TableSpec,
    snowflake: Any,
    keys: list[str],
    every: list[str],
    tags: Mapping[str, str],
    run_id: str | None,
    confirm_truncate: bool = False,
) -> TableLoad:
    """A lazy load of the run's chunks ``keys`` (of the table's partitions ``every``); ``tags`` may carry
    a sync window. ``snowflake`` is anything with ``get_connection()``.

    For a table with a watermark it first reads the source's maximum: the load's reads all come after
    it, so the first sync after this load starts there (see ``sf2pg.plan.incremental``)."""
    with snowflake.get_connection() as conn:
        columns = source_columns(conn, spec)
        watermark = watermark_column(columns, spec) if spec.source_watermark else None
        start_high, start_rows, start_recent = source_high(conn, spec, watermark) if watermark else (None, None, None)
    every = [k for k in every if not k.startswith(INCREMENTAL_PREFIX)]
    window = window_from_tags(dict(tags), spec, watermark) if watermark else None
    return TableLoad(
        spec=spec,
        chunks=[parse_chunk_key(spec.chunking_type, k) for k in keys],
        source_columns=columns,
        source=SnowflakeChunkSource(
            snowflake,
            spec.sf_database,
            spec.sf_schema,
            spec.sf_table,
            find_column(columns, spec.chunking_column, "chunking", spec.config_path) if spec.chunking_column else None,
            spec.source_filter,
            watermark,
            max_queries=spec.parallel_threads,
            tag={"run_id": run_id} if run_id else None,
        ),
        full_load=window is None and bool(every) and set(keys) >= set(every),
        total_chunks=len(every) or None,
        confirm_truncate=confirm_truncate,
        run_id=run_id,
        window=window,
        start_watermark=None if start_high is None else watermark_text(start_high),
        start_rows=start_rows,
        start_recent_hash=start_recent,
        table_chunks=[parse_chunk_key(spec.chunking_type, k) for k in every],
    )


def load_totals(obj: TableLoad, summary: TableLoadSummary) -> dict[str, Any]:
    """The run's totals as plain values (a sync's window included): the CLI prints them, the IO manager
    turns them into materialization metadata."""
    results = summary.results + ([summary.window] if summary.window else [])
    rows = sum(r.rows_copied for r in results)
    modes: dict[str, int] = {}
    for r in results:
        modes[r.mode] = modes.get(r.mode, 0) + 1
    totals: dict[str, Any] = {
        "rows": rows,
        "bytes": sum(r.bytes_copied for r in results),
        "duration_s": round(summary.seconds, 3),
        "rows_per_s": round(rows / summary.seconds, 1) if summary.seconds else 0.0,
        "chunks": len(summary.results),
        "mode": ", ".join(f"{m}: {n}" for m, n in sorted(modes.items())) or "none",
        "rows_inserted": sum(r.rows_inserted for r in results),
        "rows_updated": sum(r.rows_updated for r in results),
        "rows_deleted": sum(r.rows_deleted for r in results) + summary.rows_deleted_missing,
        "chunk_bounds": chunk_bounds(obj.chunks),
        "target": f"{obj.spec.pg_database}.{obj.spec.pg_schema}.{obj.spec.pg_table}",
        "created_table": summary.created_table,
        "truncated": summary.truncated,
        "fallbacks": sum(1 for r in summary.results if r.fallback),
        "table_chunks_loaded": summary.table_chunks[0],
        "table_chunks_failed": summary.table_chunks[1],
    }
    if obj.total_chunks:
        totals["table_chunks_missing"] = max(obj.total_chunks - summary.table_chunks[0], 0)
    if obj.window is not None:
        totals["window"] = f"{watermark_text(obj.window.read_from)} .. {watermark_text(obj.window.high)}"
    if summary.rows_deleted_missing:
        totals["rows_deleted_by_delete_detection"] = summary.rows_deleted_missing
    if summary.skipped_source_columns:
        totals["skipped_source_columns"] = ", ".join(summary.skipped_source_columns)
    if summary.unfilled_target_columns:
        totals["unfilled_target_columns"] = ", ".join(summary.unfilled_target_columns)
    if summary.schema_changes:
        totals["schema_changes"] = "\n".join(f"- {c}" for c in summary.schema_changes)
    if summary.indexes_rebuilt:
        totals["indexes_rebuilt"] = ", ".join(summary.indexes_rebuilt)
        totals["index_rebuild_s"] = round(summary.index_seconds, 3)
    return totals


def chunk_bounds(chunks: list) -> str:
    """``lower .. upper`` over range chunks, plus ``null``/``all`` when present."""
    ranges = [c for c in chunks if c.is_range]
    parts = [f"{min(c.lower for c in ranges)} .. {max(c.upper for c in ranges)}"] if ranges else []
    parts += [c.key for c in chunks if not c.is_range]
    return ", ".join(parts)

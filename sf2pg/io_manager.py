"""The COPY IO manager: receives a lazy ``TableLoad`` and streams it into PostgreSQL.

Dagster's ``DbIOManager`` wants a whole partition in memory and deletes with ``IN (keys)``
predicates; here each chunk streams in bounded memory and replaces exactly its own range.
"""

from __future__ import annotations

from dataclasses import dataclass

from dagster import AssetMaterialization, ConfigurableIOManager, Failure, InputContext, MetadataValue, OutputContext
from pydantic import Field

from sf2pg import progress
from sf2pg.assets import column_schema
from sf2pg.chunks import Chunk, watermark_text
from sf2pg.load.chunk import ChunkResult
from sf2pg.load.table import ChunkLoadError, TableLoad, TableLoadSummary, load_table
from sf2pg.resources import PostgresResource
from sf2pg.retries import retried_on_failure


@dataclass(frozen=True)
class PostgresTableRef:
    """What a downstream asset receives: where the copy lives."""

    database: str
    schema: str
    table: str


def chunk_bounds(chunks: list[Chunk]) -> str:
    """``lower .. upper`` over range chunks, plus ``null``/``all`` when present."""
    ranges = [c for c in chunks if c.is_range]
    parts = [f"{min(c.lower for c in ranges)} .. {max(c.upper for c in ranges)}"] if ranges else []  # type: ignore[type-var]
    parts += [c.key for c in chunks if not c.is_range]
    return ", ".join(parts)


class PostgresCopyIOManager(ConfigurableIOManager):
    """Loads table chunks with binary COPY, one transaction per chunk."""

    postgres: PostgresResource = Field(default_factory=PostgresResource)

    def handle_output(self, context: OutputContext, obj: TableLoad) -> None:
        with retried_on_failure(context.step_context.previous_attempt_count):
            self._load(context, obj)

    def _load(self, context: OutputContext, obj: TableLoad) -> None:
        progress.table_started(obj.spec.name)
        try:
            summary = load_table(obj, self.postgres, on_chunk=progress.reporter(obj.spec.name), logger=context.log)
        except ChunkLoadError as exc:
            if exc.summary is not None:  # what committed is materialized, so the UI shows exactly what is missing
                for result in exc.summary.results:
                    context.log_event(
                        AssetMaterialization(
                            asset_key=context.asset_key,
                            partition=result.key,
                            metadata=chunk_metadata(result, _chunk(obj, result.key)),
                        )
                    )
            if exc.permanent:
                raise Failure(str(exc), allow_retries=False) from None
            raise
        context.add_output_metadata(run_metadata(obj, summary))  # the run's totals, on every partition
        if context.has_asset_partitions:
            by_key = {r.key: r for r in summary.results}
            for chunk in obj.chunks:  # each partition's own numbers, so the UI plots chunk by chunk
                result = by_key.get(chunk.key)
                own = chunk_metadata(result, chunk) if result else kept_metadata(obj, chunk, summary)
                context.step_context.add_asset_metadata(own, partition_key=chunk.key)

    def load_input(self, context: InputContext) -> PostgresTableRef:
        database, schema, table = context.upstream_output.definition_metadata["sf2pg/target"].value
        return PostgresTableRef(database, schema, table)


def _chunk(obj: TableLoad, key: str) -> Chunk | None:
    return next((c for c in obj.chunks if c.key == key), None)


def run_metadata(obj: TableLoad, summary: TableLoadSummary) -> dict:
    """The run's totals (a sync's window included)."""
    results = summary.results + ([summary.window] if summary.window else [])
    rows = sum(r.rows_copied for r in results)
    modes: dict[str, int] = {}
    for r in results:
        modes[r.mode] = modes.get(r.mode, 0) + 1
    metadata = {
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
        "target": MetadataValue.text(f"{obj.spec.pg_database}.{obj.spec.pg_schema}.{obj.spec.pg_table}"),
        "created_table": summary.created_table,
        "truncated": summary.truncated,
        "fallbacks": sum(1 for r in summary.results if r.fallback),
        "table_chunks_loaded": summary.table_chunks[0],
        "table_chunks_failed": summary.table_chunks[1],
    }
    if obj.total_chunks:
        metadata["table_chunks_missing"] = max(obj.total_chunks - summary.table_chunks[0], 0)
    if obj.window is not None:
        metadata["window"] = f"{watermark_text(obj.window.read_from)} .. {watermark_text(obj.window.high)}"
    if summary.rows_deleted_missing:
        metadata["rows_deleted_by_delete_detection"] = summary.rows_deleted_missing
    if len(obj.chunks) == 1 and not obj.window:
        query = obj.source.query_text(obj.chunks[0], obj.source_columns)
        metadata["source_query"] = MetadataValue.md(f"```sql\n{query}\n```")
    if summary.skipped_source_columns:
        metadata["skipped_source_columns"] = ", ".join(summary.skipped_source_columns)
    if summary.unfilled_target_columns:
        metadata["unfilled_target_columns"] = ", ".join(summary.unfilled_target_columns)
    if summary.schema_changes:
        metadata["schema_changes"] = MetadataValue.md("\n".join(f"- {c}" for c in summary.schema_changes))
    if summary.target_columns:
        metadata["dagster/column_schema"] = column_schema(summary.target_columns)
    if summary.indexes_rebuilt:
        metadata["indexes_rebuilt"] = ", ".join(summary.indexes_rebuilt)
        metadata["index_rebuild_s"] = round(summary.index_seconds, 3)
    return metadata


def chunk_metadata(result: ChunkResult, chunk: Chunk | None = None) -> dict:
    """One chunk's numbers; they override the run's totals on that partition's materialization."""
    metadata = {
        "rows": result.rows_copied,
        "bytes": result.bytes_copied,
        "duration_s": round(result.seconds, 3),
        "rows_per_s": round(result.rows_copied / result.seconds, 1) if result.seconds else 0.0,
        "chunks": 1,
        "mode": f"{result.mode}: 1",
        "rows_inserted": result.rows_inserted,
        "rows_updated": result.rows_updated,
        "rows_deleted": result.rows_deleted,
        "fallbacks": int(bool(result.fallback)),
    }
    if chunk is not None:
        metadata["chunk_bounds"] = chunk_bounds([chunk])
    if result.fallback:
        metadata["fallback"] = result.fallback
    return metadata


def kept_metadata(obj: TableLoad, chunk: Chunk, summary: TableLoadSummary) -> dict:
    """A partition of a sync run that was loaded before: the window kept it current."""
    mode = "kept current by the window" if obj.window else "already loaded by this run"
    metadata: dict = {"rows": 0, "bytes": 0, "chunks": 0, "mode": mode, "rows_inserted": 0, "rows_updated": 0}
    metadata["chunk_bounds"] = chunk_bounds([chunk])
    if obj.window is not None:
        metadata["window"] = f"{watermark_text(obj.window.read_from)} .. {watermark_text(obj.window.high)}"
    return metadata

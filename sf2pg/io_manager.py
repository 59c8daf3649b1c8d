"""The COPY IO manager: receives a lazy ``TableLoad`` and streams it into PostgreSQL.

Dagster's ``DbIOManager`` wants a whole partition in memory and deletes with ``IN (keys)``
predicates; here each chunk streams in bounded memory and replaces exactly its own range.
"""

from __future__ import annotations

from dataclasses import dataclass

from dagster import ConfigurableIOManager, Failure, InputContext, MetadataValue, OutputContext
from pydantic import Field

from sf2pg import progress
from sf2pg.load.chunk import ChunkResult
from sf2pg.load.table import ChunkLoadError, TableLoad, load_table
from sf2pg.resources import PostgresResource
from sf2pg.retries import retried_on_failure


@dataclass(frozen=True)
class PostgresTableRef:
    """What a downstream asset receives: where the copy lives."""

    database: str
    schema: str
    table: str


def _bounds(chunks: list) -> str:
    """``lower .. upper`` over the run's range chunks, plus ``null``/``all`` when present."""
    ranges = [c for c in chunks if c.is_range]
    parts = [f"{min(c.lower for c in ranges)} .. {max(c.upper for c in ranges)}"] if ranges else []
    parts += [c.key for c in chunks if not c.is_range]
    return ", ".join(parts)


class PostgresCopyIOManager(ConfigurableIOManager):
    """Loads table chunks with binary COPY, one transaction per chunk."""

    postgres: PostgresResource = Field(default_factory=PostgresResource)

    def handle_output(self, context: OutputContext, obj: TableLoad) -> None:
        with retried_on_failure(context.step_context.previous_attempt_count):
            self._load(context, obj)

    def _load(self, context: OutputContext, obj: TableLoad) -> None:
        try:
            summary = load_table(obj, self.postgres, on_chunk=progress.reporter(obj.spec.name), logger=context.log)
        except ChunkLoadError as exc:
            if exc.permanent:
                raise Failure(str(exc), allow_retries=False) from None
            raise
        rows_per_s = summary.rows / summary.seconds if summary.seconds else 0.0
        chunks = obj.chunks
        metadata = {
            "rows": summary.rows,
            "bytes": summary.bytes,
            "duration_s": round(summary.seconds, 3),
            "rows_per_s": round(rows_per_s, 1),
            "chunks": len(summary.results),
            "mode": ", ".join(f"{m}: {n}" for m, n in sorted(summary.modes.items())) or "none",
            "rows_inserted": sum(r.rows_inserted for r in summary.results),
            "rows_updated": sum(r.rows_updated for r in summary.results),
            "rows_deleted": sum(r.rows_deleted for r in summary.results),
            "chunk_bounds": _bounds(chunks),
            "target": MetadataValue.text(f"{obj.spec.pg_database}.{obj.spec.pg_schema}.{obj.spec.pg_table}"),
            "created_table": summary.created_table,
            "truncated": summary.truncated,
            "fallbacks": sum(1 for r in summary.results if r.fallback),
            "table_chunks_loaded": summary.table_chunks[0],
            "table_chunks_failed": summary.table_chunks[1],
        }
        if obj.total_chunks:
            metadata["table_chunks_missing"] = max(obj.total_chunks - summary.table_chunks[0], 0)
        if len(chunks) == 1:
            query = obj.source.query_text(chunks[0], obj.source_columns)
            metadata["source_query"] = MetadataValue.md(f"```sql\n{query}\n```")
        if summary.skipped_source_columns:
            metadata["skipped_source_columns"] = ", ".join(summary.skipped_source_columns)
        if summary.unfilled_target_columns:
            metadata["unfilled_target_columns"] = ", ".join(summary.unfilled_target_columns)
        if summary.indexes_rebuilt:
            metadata["indexes_rebuilt"] = ", ".join(summary.indexes_rebuilt)
            metadata["index_rebuild_s"] = round(summary.index_seconds, 3)
        context.add_output_metadata(metadata)  # the run's totals, on every partition's materialization
        if context.has_asset_partitions and len(summary.results) > 1:
            for result in summary.results:  # each partition's own numbers, so the UI plots chunk by chunk
                context.step_context.add_asset_metadata(chunk_metadata(result), partition_key=result.key)

    def load_input(self, context: InputContext) -> PostgresTableRef:
        database, schema, table = context.upstream_output.definition_metadata["sf2pg/target"].value
        return PostgresTableRef(database, schema, table)


def chunk_metadata(result: ChunkResult) -> dict:
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
    if result.fallback:
        metadata["fallback"] = result.fallback
    return metadata

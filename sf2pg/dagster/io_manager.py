"""The COPY IO manager: receives a lazy ``TableLoad`` and streams it into PostgreSQL.

Dagster's ``DbIOManager`` wants a whole partition in memory and deletes with ``IN (keys)``
predicates; here each chunk streams in bounded memory and replaces exactly its own range.
"""

from __future__ import annotations

from dataclasses import dataclass

from dagster import AssetMaterialization, ConfigurableIOManager, Failure, InputContext, MetadataValue, OutputContext
from pydantic import Field

from sf2pg.dagster.assets import column_schema
from sf2pg.dagster.resources import PostgresResource
from sf2pg.dagster.retries import retried_on_failure
from sf2pg.load.chunk import ChunkResult
from sf2pg.load.job import chunk_bounds, load_totals
from sf2pg.load.table import ChunkLoadError, TableLoad, TableLoadSummary, load_table
from sf2pg.plan.chunks import Chunk, watermark_text
from sf2pg.run import progress


@dataclass(frozen=True)
class PostgresTableRef:
    """What a downstream asset receives: where the copy lives."""

    database: str
    schema: str
    table: str


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
    """The run's totals (``load_totals``) as materialization metadata."""
    metadata: dict = load_totals(obj, summary)
    metadata["target"] = MetadataValue.text(metadata["target"])
    if len(obj.chunks) == 1 and not obj.window:
        query = obj.source.query_text(obj.chunks[0], obj.source_columns)
        metadata["source_query"] = MetadataValue.md(f"```sql\n{query}\n```")
    if "schema_changes" in metadata:
        metadata["schema_changes"] = MetadataValue.md(metadata["schema_changes"])
    if summary.target_columns:
        metadata["dagster/column_schema"] = column_schema(summary.target_columns)
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

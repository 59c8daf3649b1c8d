"""Asset checks per table: a row-count reconciliation and a per-chunk fingerprint (partitioned).

The chunk check is partitioned like its asset, so a failure points at exact partitions: backfill the
failed check's partitions to reload just those chunks.
"""

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    MetadataValue,
    asset_check,
)
from dagster_snowflake import SnowflakeResource

from sf2pg.assets import asset_key, pool_name
from sf2pg.chunks import parse_chunk_key
from sf2pg.config import TableSpec
from sf2pg.partitions import partitions_def, source_columns
from sf2pg.reconcile import count_rows, fingerprint_chunks
from sf2pg.resources import PostgresResource


def chunk_check_result(verdicts: list) -> AssetCheckResult:
    failed = [v for v in verdicts if not v.passed]
    metadata = {
        "chunks_checked": len(verdicts),
        "chunks_failed": len(failed),
        "source_rows": sum(v.source_rows for v in verdicts),
        "target_rows": sum(v.target_rows for v in verdicts),
    }
    if failed:
        metadata["failed_chunks"] = MetadataValue.md(
            "\n".join(f"- `{v.key}`: {'; '.join(v.mismatches[:4])}" for v in failed[:50])
        )
    description = (
        "every chunk matches its source"
        if not failed
        else f"{len(failed)} chunk(s) differ from the source: {', '.join(v.key for v in failed[:10])}"
        " — re-materialize these partitions"
    )
    return AssetCheckResult(
        passed=not failed, severity=AssetCheckSeverity.ERROR, metadata=metadata, description=description
    )


def build_table_checks(spec: TableSpec, blocking: bool = True) -> list[AssetChecksDefinition]:
    key = asset_key(spec)

    @asset_check(
        asset=key,
        name="row_count",
        description="Source rows (with source_filter) equal target rows.",
        pool=pool_name(spec),
    )
    def row_count(snowflake: SnowflakeResource, postgres: PostgresResource) -> AssetCheckResult:
        with snowflake.get_connection() as sf, postgres.get_connection(spec.pg_database) as pg:
            source, target = count_rows(sf, pg, spec)
        return AssetCheckResult(
            passed=source == target,
            metadata={"source_rows": source, "target_rows": target, "difference": target - source},
            description=None if source == target else f"target has {target - source:+,} rows vs source",
        )

    @asset_check(
        asset=key,
        name="chunk_fingerprint",
        description="Per chunk: row count, chunk-column and key min/max/sum, non-NULL counts, on both sides.",
        partitions_def=partitions_def(spec),
        blocking=blocking,
        pool=pool_name(spec),
    )
    def chunk_fingerprint(
        context: AssetCheckExecutionContext, snowflake: SnowflakeResource, postgres: PostgresResource
    ) -> AssetCheckResult:
        # incremental windows overlap chunks; the row_count check covers them
        chunks = [parse_chunk_key(spec.chunking_type, k) for k in context.partition_keys]
        chunks = [c for c in chunks if not c.is_incremental]
        with snowflake.get_connection() as sf, postgres.get_connection(spec.pg_database) as pg:
            verdicts, _ = fingerprint_chunks(sf, pg, spec, source_columns(sf, spec), chunks)
        return chunk_check_result(verdicts)

    return [row_count, chunk_fingerprint]

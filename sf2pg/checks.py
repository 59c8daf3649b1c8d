"""Asset checks per table: a row-count reconciliation and a per-chunk fingerprint (partitioned).

The chunk check is partitioned like its asset, so a failure points at exact partitions: backfill the
failed check's partitions to reload just those chunks.
"""

from collections.abc import Iterator

from dagster import (
    AssetCheckEvaluation,
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetKey,
    MetadataValue,
    asset_check,
    multi_asset_check,
)
from dagster_snowflake import SnowflakeResource

from sf2pg.assets import asset_key, pool_name
from sf2pg.chunks import parse_chunk_key
from sf2pg.config import TableSpec
from sf2pg.load import ledger
from sf2pg.partitions import partitions_def, source_columns
from sf2pg.reconcile import ChunkVerdict, count_rows, fingerprint_chunks
from sf2pg.resources import PostgresResource

CHUNK_CHECK = "chunk_fingerprint"


def chunk_evaluation(key: AssetKey, verdict: ChunkVerdict, blocking: bool) -> AssetCheckEvaluation:
    """The check's result for one partition: Dagster shows it on that partition, pass or fail."""
    metadata = {"source_rows": verdict.source_rows, "target_rows": verdict.target_rows}
    if not verdict.passed:
        metadata["mismatches"] = MetadataValue.md("\n".join(f"- {m}" for m in verdict.mismatches[:20]))
    return AssetCheckEvaluation(
        asset_key=key,
        check_name=CHUNK_CHECK,
        passed=verdict.passed,
        partition=verdict.key,
        metadata=metadata,
        severity=AssetCheckSeverity.ERROR,
        blocking=blocking,
        description=(
            "the chunk matches its source"
            if verdict.passed
            else f"chunk {verdict.key} differs from the source: {'; '.join(verdict.mismatches[:4])}"
            " — re-materialize this partition"
        ),
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
            description=None
            if source == target
            else f"target has {abs(target - source):,} {'more' if target > source else 'fewer'} rows than the source "
            f"({target:,} vs {source:,})",
        )

    @multi_asset_check(
        specs=[
            AssetCheckSpec(
                CHUNK_CHECK,
                asset=key,
                description="Per chunk: row count, chunk-column and key min/max/sum, non-NULL counts, on both sides.",
                partitions_def=partitions_def(spec),
                blocking=blocking,
            )
        ],
        can_subset=True,  # one evaluation per partition of the run's range, instead of one for the whole range
        name=f"{key.to_python_identifier()}_{CHUNK_CHECK}",
        pool=pool_name(spec),
    )
    def chunk_fingerprint(
        context: AssetCheckExecutionContext, snowflake: SnowflakeResource, postgres: PostgresResource
    ) -> Iterator[AssetCheckEvaluation]:
        # incremental windows overlap chunks; the row_count check covers them
        chunks = [parse_chunk_key(spec.chunking_type, k) for k in context.partition_keys]
        chunks = [c for c in chunks if not c.is_incremental]
        with snowflake.get_connection() as sf, postgres.get_connection(spec.pg_database) as pg:
            verdicts, _ = fingerprint_chunks(sf, pg, spec, source_columns(sf, spec), chunks)
            # a chunk found different is reloaded by the next `sf2pg migrate`, once the cause is fixed
            ledger.record_checks(pg, spec.pg_schema, spec.pg_table, {v.key: v.passed for v in verdicts})
        for verdict in verdicts:
            yield chunk_evaluation(key, verdict, blocking)

    return [row_count, chunk_fingerprint]

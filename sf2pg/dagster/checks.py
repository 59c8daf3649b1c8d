"""Asset checks per table: a row-count reconciliation and a per-chunk fingerprint (partitioned).

The chunk check is partitioned like its asset, so a failure points at exact partitions: backfill the
failed check's partitions to reload just those chunks.
"""

from collections.abc import Iterator, Sequence

from dagster import (
    AssetCheckEvaluation,
    AssetCheckExecutionContext,
    AssetCheckKey,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetKey,
    AssetRecordsFilter,
    DagsterEventType,
    DagsterInstance,
    MetadataValue,
    asset_check,
    multi_asset_check,
)
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)

from sf2pg.config.model import TableSpec
from sf2pg.dagster.assets import asset_key, pool_name
from sf2pg.dagster.partitions import partitions_def
from sf2pg.dagster.resources import PostgresResource, SnowflakeResource
from sf2pg.load import ledger
from sf2pg.plan.chunks import parse_chunk_key
from sf2pg.plan.planning import source_columns
from sf2pg.reconcile.counts import compare_counts
from sf2pg.reconcile.fingerprints import fingerprint_chunks
from sf2pg.reconcile.verdicts import (
    CHUNK_CHECK,
    ROW_COUNT_CHECK,
    ROWS_CHECK,
    ChunkVerdict,
    Depth,
    chunk_check_after_load,
)


def chunk_evaluation(
    key: AssetKey,
    verdict: ChunkVerdict,
    blocking: bool,
    target: AssetCheckEvaluationTargetMaterializationData | None = None,
    check_name: str = CHUNK_CHECK,
) -> AssetCheckEvaluation:
    """The check's result for one partition: Dagster shows it on that partition, pass or fail.

    ``target`` is the partition's latest materialization: Dagster counts a partition's check result
    only while it points at that materialization (else the partition shows as never checked)."""
    metadata: dict = {"source_rows": verdict.source_rows, "target_rows": verdict.target_rows}
    if verdict.watermark is not None:
        metadata["compared_up_to_watermark"] = verdict.watermark
        metadata["moving_keys_left_out"] = verdict.moving_keys
    if verdict.pending_deletes:
        metadata["pending_deletes"] = verdict.pending_deletes  # delete detection removes them
    if not verdict.passed:
        metadata["columns_that_differ"] = MetadataValue.json(verdict.columns)
        metadata["mismatches"] = MetadataValue.md("\n".join(f"- {m}" for m in verdict.mismatches[:50]))
    return AssetCheckEvaluation(
        asset_key=key,
        check_name=check_name,
        passed=verdict.passed,
        partition=verdict.key,
        metadata=metadata,
        severity=AssetCheckSeverity.ERROR,
        blocking=blocking,
        target_materialization_data=target,
        description=verdict.description(),
    )


def latest_materializations(
    instance: DagsterInstance, key: AssetKey, partitions: Sequence[str]
) -> dict[str, AssetCheckEvaluationTargetMaterializationData]:
    """Each partition's latest materialization, in two storage queries whatever the partition count."""
    storage_ids = instance.event_log_storage.get_latest_storage_id_by_partition(
        key, DagsterEventType.ASSET_MATERIALIZATION, set(partitions)
    )
    if not storage_ids:
        return {}
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=key, storage_ids=list(storage_ids.values())), limit=len(storage_ids)
    ).records
    return {
        r.partition_key: AssetCheckEvaluationTargetMaterializationData(
            storage_id=r.storage_id, run_id=r.run_id, timestamp=r.timestamp
        )
        for r in records
        if r.partition_key is not None
    }


def build_table_checks(spec: TableSpec, blocking: bool = True) -> list[AssetChecksDefinition]:
    key = asset_key(spec)

    @asset_check(
        asset=key,
        name=ROW_COUNT_CHECK,
        description="Source rows (with source_filter) equal target rows; on a moving source, the target "
        "holds every settled row (watermark below the ledger's) and at most the rows past it.",
        pool=pool_name(spec),
    )
    def row_count(snowflake: SnowflakeResource, postgres: PostgresResource) -> AssetCheckResult:
        with snowflake.get_connection() as sf, postgres.get_connection(spec.pg_database) as pg:
            counts = compare_counts(sf, pg, spec, lambda: source_columns(sf, spec))
        metadata = {
            "source_rows": counts.source_rows,
            "target_rows": counts.target_rows,
            "difference": counts.target_rows - counts.source_rows,
        }
        if counts.watermark is not None:
            metadata |= {"moving_source_rows": counts.moving_rows, "compared_up_to_watermark": counts.watermark}
        return AssetCheckResult(
            passed=counts.passed,
            metadata=metadata,
            severity=AssetCheckSeverity.ERROR,
            description=None if counts.passed and counts.watermark is None else counts.summary(),
        )

    return [
        row_count,
        _chunk_check(spec, ROWS_CHECK, "rows", blocking),
        _chunk_check(spec, CHUNK_CHECK, "cells", blocking),
    ]


def _chunk_check(spec: TableSpec, name: str, depth: Depth, blocking: bool) -> AssetChecksDefinition:
    """A partitioned check: one evaluation per partition of the run's range, each on its own partition."""
    key = asset_key(spec)

    @multi_asset_check(
        specs=[
            AssetCheckSpec(
                name,
                asset=key,
                description=_DESCRIPTIONS[depth],
                partitions_def=partitions_def(spec),
                blocking=blocking,
            )
        ],
        can_subset=True,  # one evaluation per partition of the run's range, instead of one for the whole range
        name=f"{key.to_python_identifier()}_{name}",
        pool=pool_name(spec),
    )
    def chunk_check(
        context: AssetCheckExecutionContext, snowflake: SnowflakeResource, postgres: PostgresResource
    ) -> Iterator[AssetCheckEvaluation]:
        chunks = [parse_chunk_key(spec.chunking_type, k) for k in context.partition_keys]
        chunks = [c for c in chunks if not c.is_incremental]
        with snowflake.get_connection() as sf, postgres.get_connection(spec.pg_database) as pg:
            verdicts, _ = fingerprint_chunks(sf, pg, spec, source_columns(sf, spec), chunks, depth)
            # a chunk found different is reloaded by the next `sf2pg migrate`, once the cause is fixed
            ledger.record_checks(pg, spec.pg_schema, spec.pg_table, {v.key: v.passed for v in verdicts})
        targets = latest_materializations(context.instance, key, [v.key for v in verdicts])
        for verdict in verdicts:
            yield chunk_evaluation(key, verdict, blocking, targets.get(verdict.key), name)

    return chunk_check


_DESCRIPTIONS: dict[str, str] = {
    "rows": "Per chunk: row count, chunking-column and key min/max on both sides (settled rows on a moving "
    "source). Cheap: runs after every load unless the table's checks_after_load is 'cells'.",
    "cells": "Per chunk: row count, chunk-column and key min/max, and per column its non-NULL count and sums "
    "that see any changed value, on both sides (settled rows on a moving source). Reads every cell of the "
    "chunk again on both sides: sf2pg verify runs it, and loads do when checks_after_load is 'cells'.",
}


def after_load(spec: TableSpec, check_table: bool = True) -> list[AssetCheckKey]:
    """The checks a load of the table runs (the others run on demand: sf2pg verify, the UI); without
    ``check_table``, only its chunks' check (a command's run before its last one of the table)."""
    key = asset_key(spec)
    chunks = AssetCheckKey(key, chunk_check_after_load(spec)[0])
    return [AssetCheckKey(key, ROW_COUNT_CHECK), chunks] if check_table else [chunks]

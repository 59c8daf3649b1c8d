"""Headless runs for the CLI: plan, then materialize each table's partitions in one ranged run.

The same assets and IO manager as in the Dagster UI run here in-process, so the CLI and a Dagster
backfill load identically.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dagster import AssetsDefinition, DagsterEventType, DagsterInstance, ExecuteInProcessResult, materialize
from dagster._core.execution.plan.objects import ErrorSource
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from sf2pg.assets import build_table_asset
from sf2pg.build import build_resources
from sf2pg.checks import build_table_checks
from sf2pg.config import AppConfig, TableSpec
from sf2pg.partitions import partitions_name, replan
from sf2pg.planning import Plan
from sf2pg.resources import PostgresResource, snowflake_resource


@dataclass
class TableOutcome:
    """What a headless run did to one table."""

    spec: TableSpec
    plan: Plan | None = None
    success: bool = False
    error: str | None = None
    metadata: dict = field(default_factory=dict)
    checks: dict[str, bool] = field(default_factory=dict)  # check name -> passed


def failure_message(result: object) -> str:
    """The last step failure's message of an in-process run."""
    failures = [e for e in result.all_events if e.is_step_failure]  # type: ignore[attr-defined]
    if not failures:
        return "run failed"
    error = failures[-1].step_failure_data.error
    message = error.message.strip()
    while error.cls_name.startswith(("Dagster", "RetryRequested")) and (error.cause or error.context):
        error = error.cause or error.context  # "Exceeded max_retries": say what kept failing
        if not error.cls_name.startswith(("Dagster", "RetryRequested")):
            message = f"{message}: {error.message.strip()}"
    return re.sub(r"^(\w+\.)+\w+: ", "", message)  # "dagster._core...Failure: why" -> "why"


def _materialize(assets: list, **kwargs: Any) -> ExecuteInProcessResult:
    """``materialize`` that lets Ctrl-C stop the command: Dagster ends an interrupted run as a failed
    result and returns, and a command over several tables would go on with the next one."""
    result = materialize(assets, raise_on_error=False, **kwargs)
    if any(e.is_step_failure and e.step_failure_data.error_source == ErrorSource.INTERRUPT for e in result.all_events):
        raise KeyboardInterrupt
    return result


def run_metadata(result: object) -> dict:
    """The IO manager's totals for the run (each partition's materialization carries its own numbers)."""
    for event in result.all_events:  # type: ignore[attr-defined]
        if event.event_type == DagsterEventType.HANDLED_OUTPUT:
            return {k: v.value for k, v in event.event_specific_data.metadata.items()}
    return {}


def dagster_instance() -> DagsterInstance:
    """The DAGSTER_HOME instance when one is configured, else a throwaway one."""
    return DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else DagsterInstance.ephemeral()


def select_tables(config: AppConfig, source: str | None, tables: list[str] | None) -> list[TableSpec]:
    """Enabled tables of one source (or all), optionally narrowed to target or source table names."""
    if source:
        config.source(source)  # a clear error for an unknown source
    specs = [s for s in config.tables() if source in (None, s.source_name)]
    if tables:
        wanted = set(tables)
        unknown = wanted - {s.pg_table for s in specs} - {s.sf_table for s in specs} - {s.name for s in specs}
        if unknown:
            raise config.unknown_table(sorted(unknown), source, [n for s in specs for n in (s.pg_table, s.sf_table)])
        specs = [s for s in specs if {s.pg_table, s.sf_table, s.name} & wanted]
    return specs


def plan_tables(
    specs: list[TableSpec], instance: DagsterInstance | None, on_plan: Callable[[TableSpec, Plan], None] | None = None
) -> dict[str, Plan]:
    """Plan every table (one aggregated query each) and register new chunks with Dagster."""
    plans = {}
    postgres = PostgresResource()
    with snowflake_resource(resolve=True).get_connection() as conn:
        for spec in specs:
            plans[spec.name] = replan(spec, conn, instance, postgres)
            if on_plan:
                on_plan(spec, plans[spec.name])
    return plans


def migrate(
    config: AppConfig,
    specs: list[TableSpec],
    instance: DagsterInstance,
    confirm_truncate: bool = False,
    on_plan: Callable[[TableSpec, Plan], None] | None = None,
    on_table_done: Callable[[TableOutcome], None] | None = None,
    log_level: str = "INFO",
) -> list[TableOutcome]:
    """Plan, then load every partition of each table in one run per table (a single-run backfill)."""
    resources = build_resources(resolve_env=True)
    plans = plan_tables(specs, instance, on_plan)
    outcomes = []
    for spec in specs:
        outcome = TableOutcome(spec, plans[spec.name])
        keys = list(instance.get_dynamic_partitions(partitions_name(spec)))
        if not keys:
            outcome.success = True
            outcomes.append(outcome)
            continue
        assets_def: AssetsDefinition = build_table_asset(spec)
        result = _materialize(
            [assets_def, *build_table_checks(spec, spec.blocking_checks)],
            instance=instance,
            resources=resources,
            run_config={
                "ops": {assets_def.op.name: {"config": {"confirm_truncate": confirm_truncate}}},
                "loggers": {"console": {"config": {"log_level": log_level}}},
            },
            tags={ASSET_PARTITION_RANGE_START_TAG: keys[0], ASSET_PARTITION_RANGE_END_TAG: keys[-1]},
        )
        outcome.success = result.success
        if not result.success:
            outcome.error = failure_message(result)
        else:
            outcome.metadata = run_metadata(result)
            for evaluation in result.get_asset_check_evaluations():  # chunk checks: one per partition
                outcome.checks[evaluation.check_name] = outcome.checks.get(evaluation.check_name, True) and (
                    evaluation.passed
                )
        outcomes.append(outcome)
        if on_table_done:
            on_table_done(outcome)
    return outcomes


def known_chunks(spec: TableSpec, instance: DagsterInstance | None, sf_conn: object) -> list:
    """The table's chunks as Dagster and the ledger know them; planned afresh (unregistered) if neither does."""
    from sf2pg.chunks import parse_chunk_key
    from sf2pg.partitions import loaded_chunk_keys, source_columns
    from sf2pg.planning import plan_table

    keys = list(instance.get_dynamic_partitions(partitions_name(spec))) if instance else []
    keys += [k for k in loaded_chunk_keys(PostgresResource(), spec) if k not in keys]
    chunks = [parse_chunk_key(spec.chunking_type, k) for k in keys]
    if chunks:
        return [c for c in chunks if not c.is_incremental]
    return plan_table(
        sf_conn, spec.sf_database, spec.sf_schema, spec.sf_table, source_columns(sf_conn, spec),
        spec.chunking_column, spec.chunking_type, spec.source_filter, spec.rows_per_chunk,
    ).chunks  # fmt: skip


def verify(specs: list[TableSpec], instance: DagsterInstance | None) -> list:
    """Row counts and per-chunk fingerprints for each table (the asset checks, headless)."""
    from sf2pg.partitions import source_columns
    from sf2pg.reconcile import verify_table

    verdicts = []
    postgres = PostgresResource()
    with snowflake_resource(resolve=True).get_connection() as sf:
        for spec in specs:
            with postgres.get_connection(spec.pg_database) as pg:
                chunks = known_chunks(spec, instance, sf)
                verdicts.append(verify_table(sf, pg, spec, source_columns(sf, spec), chunks))
    return verdicts


@dataclass
class SyncOutcome:
    """What one incremental pass did to one table."""

    spec: TableSpec
    window: str | None = None  # the partition key loaded, if any
    note: str = ""
    success: bool = True
    metadata: dict = field(default_factory=dict)
    deleted: int = 0  # rows removed by delete detection


def sync(specs: list[TableSpec], instance: DagsterInstance, log_level: str = "INFO") -> list[SyncOutcome]:
    """One pass of the sensor's logic, headless: load each table's next watermark window."""
    from sf2pg.incremental import next_window
    from sf2pg.partitions import source_columns

    resources = build_resources(resolve_env=True)
    postgres = PostgresResource()
    outcomes = []
    with snowflake_resource(resolve=True).get_connection() as sf:
        for spec in specs:
            if not spec.source_watermark:
                outcomes.append(SyncOutcome(spec, note="no source_watermark: not synced"))
                continue
            with postgres.get_connection(spec.pg_database) as pg:
                window = next_window(sf, pg, spec, source_columns(sf, spec))
            if window.high is None:
                note = "not loaded yet: run sf2pg migrate first" if window.low is None else "up to date"
                outcome = SyncOutcome(spec, note=note, success=window.low is not None)
                if window.low is not None:
                    _detect_deletes(spec, instance, outcome)
                outcomes.append(outcome)
                continue
            key = window.key
            if not instance.has_dynamic_partition(partitions_name(spec), key):
                instance.add_dynamic_partitions(partitions_name(spec), [key])
            assets_def = build_table_asset(spec)
            result = _materialize(
                [assets_def, *build_table_checks(spec, spec.blocking_checks)],
                instance=instance,
                resources=resources,
                partition_key=key,
                run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
            )
            outcome = SyncOutcome(spec, key, success=result.success)
            if result.success:
                outcome.metadata = run_metadata(result)
            else:
                outcome.note = failure_message(result)
            if outcome.success:
                _detect_deletes(spec, instance, outcome)
            outcomes.append(outcome)
    return outcomes


def _detect_deletes(spec: TableSpec, instance: DagsterInstance, outcome: SyncOutcome) -> None:
    """Delete detection for a table that asks for it; a guard failure fails the table's outcome."""
    from sf2pg.load.deletes import DeleteGuardError

    if spec.delete_detection != "keys":
        return
    try:
        outcome.deleted = detect_table_deletes(spec, instance)
    except DeleteGuardError as exc:
        outcome.success, outcome.note = False, str(exc)


def detect_table_deletes(spec: TableSpec, instance: DagsterInstance | None) -> int:
    """Compare key sets chunk by chunk and delete target rows whose keys left the source."""
    from sf2pg.extract import SnowflakeChunkSource, find_column
    from sf2pg.load.conform import conform
    from sf2pg.load.deletes import delete_vanished, key_target
    from sf2pg.load.target import prepare_target
    from sf2pg.partitions import source_columns

    snowflake = snowflake_resource(resolve=True)
    with snowflake.get_connection() as sf:
        columns = source_columns(sf, spec)
        chunks = known_chunks(spec, instance, sf)
    where = f"table {spec.name} ({spec.config_path})"
    chunk_col = find_column(columns, spec.chunking_column, "chunking", where) if spec.chunking_column else None
    source = SnowflakeChunkSource(
        snowflake, spec.sf_database, spec.sf_schema, spec.sf_table, chunk_col, spec.source_filter
    )
    deleted = 0
    try:
        with PostgresResource().get_connection(spec.pg_database) as pg:
            target = prepare_target(
                pg, spec.pg_schema, spec.pg_table, columns, spec.uniqueness_columns, spec.chunking_column, where
            )
            keys = key_target(target)
            key_sources = [c.source for c in keys.columns]
            for chunk in chunks:
                batches = conform(source.open(chunk, key_sources), keys, spec.batch_size, "fail", where)
                deleted += delete_vanished(
                    pg, target, chunk, batches, spec.delete_max_ratio, f"{where}, chunk {chunk.key}"
                )
    finally:
        source.close()
    return deleted

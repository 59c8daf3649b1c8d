"""Headless runs for the CLI: plan, then materialize each table's partitions in ranged runs.

The same assets, IO manager and checks as in the Dagster UI run here in-process (as jobs named after
the command and the table, tagged with the table), so the CLI and a Dagster backfill load identically.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from dagster import (
    AssetsDefinition,
    AssetSelection,
    DagsterEventType,
    DagsterInstance,
    Definitions,
    ExecuteInProcessResult,
    define_asset_job,
    in_process_executor,
)
from dagster._core.execution.plan.objects import ErrorSource
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG
from psycopg import sql

from sf2pg.assets import build_table_asset
from sf2pg.build import build_resources
from sf2pg.checks import after_load, build_table_checks
from sf2pg.chunks import watermark_text
from sf2pg.config import AppConfig, TableSpec
from sf2pg.errors import InputError
from sf2pg.load import drift, ledger
from sf2pg.partitions import partitions_name, replan, report_loaded, run_tags
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
    check_failures: list[str] = field(default_factory=list)  # one line per failed check evaluation
    note: str = ""


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


def run_metadata(result: object) -> dict:
    """The IO manager's totals for the run (each partition's materialization carries its own numbers)."""
    for event in result.all_events:  # type: ignore[attr-defined]
        if event.event_type == DagsterEventType.HANDLED_OUTPUT:
            return {k: v.value for k, v in event.event_specific_data.metadata.items()}
    return {}


def dagster_instance() -> DagsterInstance:
    """The DAGSTER_HOME instance when one is configured, else a throwaway one."""
    return DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else DagsterInstance.ephemeral()


def plan_tables(
    specs: list[TableSpec],
    instance: DagsterInstance | None,
    on_plan: Callable[[TableSpec, Plan], None] | None = None,
    refused: dict[str, str] | None = None,
) -> dict[str, Plan]:
    """Plan every table (one aggregated query each), keep the plan in the ledger, register new chunks.

    With ``refused``, a table whose input is bad (its Snowflake table missing, its target loaded by
    another source...) is noted there and the others are planned; without it, the error is raised."""
    plans = {}
    postgres = PostgresResource()
    with snowflake_resource(resolve=True).get_connection() as conn:
        for spec in specs:
            try:
                plans[spec.name] = replan(spec, conn, instance, postgres)
            except InputError as exc:
                if refused is None:
                    raise
                refused[spec.name] = str(exc)
                continue
            if on_plan:
                on_plan(spec, plans[spec.name])
    return plans


# ---- running a table's job in-process ------------------------------------------------------------


def job_name(command: str, spec: TableSpec) -> str:
    """``migrate__shop__orders``: what Dagster's Runs page shows for a run the CLI launched."""
    return re.sub(r"[^A-Za-z0-9_]", "_", f"{command}__{spec.source_name}__{spec.pg_table}")


def run_table_job(
    command: str,
    spec: TableSpec,
    instance: DagsterInstance,
    resources: dict,
    tags: dict[str, str],
    run_config: dict | None = None,
) -> ExecuteInProcessResult:
    """Materialize the table's asset and its checks in-process, as a job named after the command and
    the table. Ctrl-C stops the command: Dagster ends an interrupted run as a failed result and
    returns, and a command over several tables would go on with the next one."""
    assets_def: AssetsDefinition = build_table_asset(spec)
    name = job_name(command, spec)
    defs = Definitions(
        assets=[assets_def],
        asset_checks=build_table_checks(spec, spec.blocking_checks),
        # the asset and the checks a load runs (the per-cell fingerprint only with checks_after_load "cells")
        jobs=[
            define_asset_job(
                name,
                selection=AssetSelection.assets(assets_def.key).without_checks()
                | AssetSelection.checks(*after_load(spec)),
            )
        ],
        resources=resources,
        executor=in_process_executor,
    )
    result = defs.resolve_job_def(name).execute_in_process(
        instance=instance, tags={**run_tags(spec), **tags}, run_config=run_config or {}, raise_on_error=False
    )
    if any(e.is_step_failure and e.step_failure_data.error_source == ErrorSource.INTERRUPT for e in result.all_events):
        raise KeyboardInterrupt
    return result


def _note_checks(result: ExecuteInProcessResult, outcome: TableOutcome | SyncOutcome) -> None:
    """Every check evaluation of the run; a failed one is one line naming its chunk and what differs."""
    for evaluation in result.get_asset_check_evaluations():
        name = evaluation.check_name
        outcome.checks[name] = outcome.checks.get(name, True) and evaluation.passed
        if not evaluation.passed:
            where = f" chunk {evaluation.partition}" if getattr(evaluation, "partition", None) else ""
            outcome.check_failures.append(f"check {name} failed{where}: {evaluation.description or 'mismatch'}")


def _logging(log_level: str) -> dict:
    return {"loggers": {"console": {"config": {"log_level": log_level}}}}


def _ranges(order: list[str], wanted: set[str]) -> list[tuple[str, str]]:
    """Maximal runs of consecutive partitions (in Dagster's order) that are all wanted."""
    out: list[list[str]] = []
    previous_wanted = False
    for key in order:
        if key in wanted:
            if previous_wanted:
                out[-1][1] = key
            else:
                out.append([key, key])
        previous_wanted = key in wanted
    return [(first, last) for first, last in out]


def _add_metadata(total: dict, more: dict) -> None:
    for key, value in more.items():
        if isinstance(value, int | float) and not isinstance(value, bool) and key in total:
            total[key] += value
        elif key == "mode" and key in total:
            total[key] = f"{total[key]}; {value}"
        else:
            total.setdefault(key, value)


def migrate(
    config: AppConfig,
    specs: list[TableSpec],
    instance: DagsterInstance,
    confirm_truncate: bool = False,
    on_plan: Callable[[TableSpec, Plan], None] | None = None,
    on_table_done: Callable[[TableOutcome], None] | None = None,
    log_level: str = "INFO",
    reload: bool = False,
) -> list[TableOutcome]:
    """Plan, then load each table's chunks that are not loaded yet (all of them with ``reload``, or with
    ``confirm_truncate`` for a ``truncate_onstart`` table), one run per contiguous range of them (a
    single run for a first load). A chunk that completed stays as it is: a re-run after a failure or a
    kill reads only what is missing."""
    resources = build_resources(resolve_env=True)
    refused: dict[str, str] = {}
    plans = plan_tables(specs, instance, on_plan, refused)
    postgres = PostgresResource()
    outcomes = []
    for spec in specs:
        if spec.name in refused:
            outcomes.append(TableOutcome(spec, None, success=False, error=refused[spec.name]))
            continue
        outcome = TableOutcome(spec, plans[spec.name], success=True)
        order = [k for k in instance.get_dynamic_partitions(partitions_name(spec)) if not k.startswith("inc_")]
        _tidy_up_after_an_interrupted_load(spec, postgres)
        if reload or (confirm_truncate and spec.truncate_onstart):  # truncating means loading it all again
            with postgres.get_connection(spec.pg_database) as conn:
                ledger.request_reload(conn, spec.pg_schema, spec.pg_table)
        report_loaded(instance, spec, postgres)  # chunks loaded while this instance was not looking
        backfill = _to_backfill(postgres, spec, plans[spec.name]) & set(order)
        todo = (_to_load(postgres, spec) | backfill) & set(order)
        if order and not todo:
            outcome.note = f"all {len(order)} chunk(s) already loaded (--reload loads them again)"
        elif backfill:
            outcome.note = (
                f"{len(backfill)} chunk(s) loaded before a column was added to the target are loaded again, "
                "to fill it for their rows that have not changed since"
            )
        for first, last in _ranges(order, todo):
            result = run_table_job(
                "migrate",
                spec,
                instance,
                resources,
                {ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last},
                {
                    "ops": {build_table_asset(spec).op.name: {"config": {"confirm_truncate": confirm_truncate}}},
                    **_logging(log_level),
                },
            )
            if result.success:
                _add_metadata(outcome.metadata, run_metadata(result))
            else:
                outcome.success = False
                outcome.error = failure_message(result)
            _note_checks(result, outcome)
        if outcome.success:
            missing = [k for k in order if _states(postgres, spec).get(k) != "completed"]
            if missing:
                outcome.success = False
                outcome.error = f"{len(missing)} of {len(order)} chunk(s) are not loaded: {', '.join(missing[:5])}"
        if outcome.check_failures:
            outcome.success = False
            outcome.error = outcome.error or "; ".join(outcome.check_failures[:5])
        outcomes.append(outcome)
        if on_table_done:
            on_table_done(outcome)
    return outcomes


def _to_backfill(postgres: PostgresResource, spec: TableSpec, plan: Plan) -> set[str]:
    """Chunks loaded before a column the target gained since (their unchanged rows hold NULL there):
    those the ledger knows of, or every chunk when the source has a column no load has seen yet (the
    run's load adds it)."""
    with postgres.get_connection(spec.pg_database) as conn:
        known = set(ledger.chunks_to_backfill(conn, spec.pg_schema, spec.pg_table))
        seen, _ = ledger.source_columns(conn, spec.pg_schema, spec.pg_table)
        previous = drift.from_json(seen) if seen is not None else None
        if drift.columns_not_seen(previous, plan.source_columns):
            known |= set(ledger.loaded_keys(conn, spec.pg_schema, spec.pg_table))
    return known


def _to_load(postgres: PostgresResource, spec: TableSpec) -> set[str]:
    _states(postgres, spec)  # a dropped target is planned again first
    with postgres.get_connection(spec.pg_database) as conn:
        return ledger.to_load(conn, spec.pg_schema, spec.pg_table)


def _tidy_up_after_an_interrupted_load(spec: TableSpec, postgres: PostgresResource) -> None:
    """A full load killed after its last chunk but before it rebuilt what it dropped leaves nothing to
    resume; rebuild its indexes (and key) now. A key it received twice empties and fails the chunks
    holding it (``keys.rebuild``), which the resumed migration then loads."""
    from sf2pg.load import indexes, keys
    from sf2pg.load.target import ColumnRules, prepare_target
    from sf2pg.partitions import source_columns

    with postgres.get_connection(spec.pg_database) as conn:
        if not indexes.saved_any(conn, spec.pg_schema, spec.pg_table):
            return
    with snowflake_resource(resolve=True).get_connection() as sf:
        columns = source_columns(sf, spec)
    with postgres.get_connection(spec.pg_database) as conn:
        where = f"table {spec.name} ({spec.config_path})"
        target = prepare_target(
            conn, spec.pg_schema, spec.pg_table, columns, spec.uniqueness_columns, spec.chunking_column, where,
            rules=ColumnRules.of(spec), keys_only=True,
        )  # fmt: skip
        if not indexes.lock_indexes(conn, spec.pg_schema, spec.pg_table):
            return  # a load of the table is running: it rebuilds them when it ends
        try:
            keys.rebuild(conn, target, spec.chunking_type, None)
        finally:
            indexes.unlock_indexes(conn, spec.pg_schema, spec.pg_table)


def _states(postgres: PostgresResource, spec: TableSpec) -> dict[str, str]:
    """The ledger's chunk states; a target table dropped since holds nothing, whatever they said."""
    with postgres.get_connection(spec.pg_database) as conn:
        states = ledger.chunk_states(conn, spec.pg_schema, spec.pg_table)
        name = sql.Identifier(spec.pg_schema, spec.pg_table).as_string(conn)
        gone = conn.execute("SELECT to_regclass(%s) IS NULL", (name,)).fetchone()[0]
        if gone and "completed" in states.values():
            with conn.transaction():
                ledger.reset_chunks(conn, spec.pg_schema, spec.pg_table)
            states = ledger.chunk_states(conn, spec.pg_schema, spec.pg_table)
        return states


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
                verdict = verify_table(sf, pg, spec, source_columns(sf, spec), chunks)
                # a chunk found different is reloaded by the next `sf2pg migrate`, once the cause is fixed
                ledger.record_checks(pg, spec.pg_schema, spec.pg_table, {c.key: c.passed for c in verdict.chunks})
                verdicts.append(verdict)
    return verdicts


@dataclass
class SyncOutcome:
    """What one incremental pass did to one table."""

    spec: TableSpec
    window: str | None = None  # the watermark range loaded, if any
    note: str = ""
    success: bool = True
    metadata: dict = field(default_factory=dict)
    deleted: int = 0  # rows removed by delete detection
    checks: dict[str, bool] = field(default_factory=dict)
    check_failures: list[str] = field(default_factory=list)


def sync(specs: list[TableSpec], instance: DagsterInstance, log_level: str = "INFO") -> list[SyncOutcome]:
    """One incremental pass, headless: the sensor's decision (``plan_window``) and its run, per table."""
    from sf2pg.incremental import plan_window
    from sf2pg.partitions import known_chunks, register, source_columns, window_run

    resources = build_resources(resolve_env=True)
    postgres = PostgresResource()
    outcomes = []
    with snowflake_resource(resolve=True).get_connection() as sf:
        for spec in specs:
            if not spec.source_watermark:
                outcomes.append(SyncOutcome(spec, note="no source_watermark: not synced"))
                continue
            chunks = known_chunks(spec, instance, postgres)
            register(instance, spec, chunks)  # a throwaway instance learns the plan from the ledger
            with postgres.get_connection(spec.pg_database) as pg:
                plan = plan_window(sf, pg, spec, source_columns(sf, spec), chunks)
            run = window_run(spec, plan, instance)
            if run is None:
                outcomes.append(SyncOutcome(spec, note=plan.note or "up to date", success=plan.loaded))
                continue
            result = run_table_job("sync", spec, instance, resources, run.tags, _logging(log_level))
            window = plan.window
            assert window is not None
            outcome = SyncOutcome(spec, f"{watermark_text(window.read_from)} .. {watermark_text(window.high)}")
            outcome.success = result.success
            if result.success:
                outcome.metadata = run_metadata(result)
                outcome.deleted = int(outcome.metadata.get("rows_deleted_by_delete_detection", 0))
            else:
                outcome.note = failure_message(result)
            _note_checks(result, outcome)
            if outcome.check_failures:
                outcome.success = False
                outcome.note = outcome.note or "; ".join(outcome.check_failures[:5])
            outcomes.append(outcome)
    return outcomes

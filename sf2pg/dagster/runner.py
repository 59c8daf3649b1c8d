"""A command's table runs as Dagster jobs, in-process, on a Dagster instance (the CLI's: ``DAGSTER_HOME``).

The same assets, IO manager and checks as in the Dagster UI run here (as jobs named after the command
and the table, tagged with the table), so the runs, their logs, the partitions' materializations and
the checks' results show in the UI as if it had launched them. ``plan_tables``, ``migrate``, ``sync``
and ``verify`` are the engine's commands (``sf2pg.run.commands``) with their runs on an instance.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

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

from sf2pg.config.model import AppConfig, TableSpec
from sf2pg.dagster.assets import build_table_asset
from sf2pg.dagster.checks import after_load, build_table_checks
from sf2pg.dagster.definitions import build_resources
from sf2pg.dagster.partitions import partitions_name, register, report_loaded, run_tags
from sf2pg.load.postgres import Connects
from sf2pg.plan.chunks import Chunk
from sf2pg.run import commands
from sf2pg.run.runners import CheckOutcome, RunResult
from sf2pg.source.snowflake_connection import SessionPool


class DagsterRegistry:
    """The table's dynamic partitions on a Dagster instance."""

    def __init__(self, instance: DagsterInstance, postgres: Connects) -> None:
        self.instance = instance
        self.postgres = postgres

    def order(self, spec: TableSpec) -> list[str]:
        return [k for k in self.instance.get_dynamic_partitions(partitions_name(spec)) if not k.startswith("inc_")]

    def register(self, spec: TableSpec, chunks: Iterable[Chunk]) -> None:
        register(self.instance, spec, chunks)

    def report_loaded(self, spec: TableSpec) -> None:
        report_loaded(self.instance, spec, self.postgres)  # chunks loaded while this instance was not looking


class DagsterRunner:
    """Each run is the table's asset job over a partition range, executed in this process."""

    def __init__(self, instance: DagsterInstance, log_level: str = "INFO") -> None:
        self.instance = instance
        self.log_level = log_level
        self.resources = build_resources(resolve_env=True)

    def run(
        self,
        command: str,
        spec: TableSpec,
        keys: list[str],
        every: list[str],
        tags: Mapping[str, str],
        confirm_truncate: bool = False,
        check_table: bool = True,
    ) -> RunResult:
        tags = {**tags, ASSET_PARTITION_RANGE_START_TAG: keys[0], ASSET_PARTITION_RANGE_END_TAG: keys[-1]}
        run_config = {"loggers": {"console": {"config": {"log_level": self.log_level}}}}
        if confirm_truncate:
            run_config["ops"] = {build_table_asset(spec).op.name: {"config": {"confirm_truncate": True}}}
        result = run_table_job(command, spec, self.instance, self.resources, tags, run_config, check_table)
        return RunResult(
            result.success,
            None if result.success else failure_message(result),
            run_metadata(result) if result.success else {},
            [
                CheckOutcome(e.check_name, e.passed, getattr(e, "partition", None), e.description or "")
                for e in result.get_asset_check_evaluations()
            ],
        )


class DagsterExecutor:
    """A command's runs as Dagster jobs on ``instance``, its chunks as the instance's dynamic partitions."""

    def __init__(self, instance: DagsterInstance) -> None:
        self.instance = instance

    def registry(self, postgres: Connects) -> DagsterRegistry:
        return DagsterRegistry(self.instance, postgres)

    def runner(self, snowflake: SessionPool, postgres: Connects, run_id: str, log_level: str) -> DagsterRunner:
        return DagsterRunner(self.instance, log_level)


def on_instance(instance: DagsterInstance | None) -> DagsterExecutor | None:
    """The executor for ``instance``; None (the engine runs directly) without one."""
    return None if instance is None else DagsterExecutor(instance)


def plan_tables(specs: list[TableSpec], instance: DagsterInstance | None = None, *args: Any, **kwargs: Any) -> dict:
    """``commands.plan_tables``, registering new chunks as the instance's partitions."""
    return commands.plan_tables(specs, on_instance(instance), *args, **kwargs)


def migrate(
    config: AppConfig, specs: list[TableSpec], instance: DagsterInstance | None = None, *args: Any, **kwargs: Any
) -> list:
    """``commands.migrate`` with each run a Dagster job on ``instance``."""
    return commands.migrate(config, specs, on_instance(instance), *args, **kwargs)


def sync(specs: list[TableSpec], instance: DagsterInstance | None = None, log_level: str = "INFO") -> list:
    """``commands.sync`` with each window's run a Dagster job on ``instance``."""
    return commands.sync(specs, on_instance(instance), log_level)


def verify(specs: list[TableSpec], instance: DagsterInstance | None = None) -> list:
    """``commands.verify`` over the chunks the instance's partitions and the ledger know."""
    return commands.verify(specs, on_instance(instance))


def job_name(command: str, spec: TableSpec) -> str:
    """``migrate__shop__orders``: what Dagster's Runs page shows for a run the CLI launched."""
    return re.sub(r"[^A-Za-z0-9_]", "_", f"{command}__{spec.source_name}__{spec.pg_table}")


def run_table_job(
    command: str,
    spec: TableSpec,
    instance: DagsterInstance,
    resources: dict,
    tags: Mapping[str, str],
    run_config: dict | None = None,
    check_table: bool = True,
) -> ExecuteInProcessResult:
    """Materialize the table's asset and the checks a load runs in-process, as a job named after the
    command and the table (without the whole-table ``row_count`` unless ``check_table``). Ctrl-C stops
    the command: Dagster ends an interrupted run as a failed result, and this raises
    ``KeyboardInterrupt`` for it."""
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
                | AssetSelection.checks(*after_load(spec, check_table)),
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

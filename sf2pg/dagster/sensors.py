"""Watermark sensors: one per source, asking Snowflake one query per tick for every table's watermark.

A tick reads each table's maximum watermark, row count and recent-rows hash (the rows within its
lookback of the maximum; ``sf2pg.plan.incremental.recent_rows_hash``) in a single statement. A table
whose source has not moved since the last tick (and whose last window run succeeded) costs nothing more:
no PostgreSQL query. For a table that moved, it asks the same decision function as ``sf2pg sync``
(``sf2pg.plan.incremental.plan_window``) and requests a run over the chunk partitions the window's rows
fall in. While a window run of a table is queued or running, no other is requested for it.
"""

from __future__ import annotations

import json
from typing import Any

from dagster import (
    DagsterRunStatus,
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from sf2pg.config.model import TableSpec
from sf2pg.config.typemap import SourceColumn
from sf2pg.dagster.assets import asset_key
from sf2pg.dagster.checks import after_load
from sf2pg.dagster.partitions import registered_chunks, window_run
from sf2pg.dagster.resources import PostgresResource, SnowflakeResource
from sf2pg.plan.chunks import as_watermark, watermark_text
from sf2pg.plan.incremental import plan_window, source_from, source_state_columns
from sf2pg.plan.planning import source_columns
from sf2pg.source.statements import describe_tables, watermark_column

_IN_FLIGHT = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
    DagsterRunStatus.CANCELING,
]
_DONE_BADLY = (DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED)


def watermarks_query(tables: list[tuple[TableSpec, SourceColumn]]) -> str:
    """Every table's (max watermark, row count, recent-rows hash) in one statement: a cross join of
    one-row aggregates."""
    parts = [
        f"(SELECT {source_state_columns(spec, column, str(i))} FROM {source_from(spec)}) AS t{i}"
        for i, (spec, column) in enumerate(tables)
    ]
    return f"SELECT * FROM {', '.join(parts)}"


def build_watermark_sensor(
    source_name: str, specs: list[TableSpec], interval_seconds: int, running: bool
) -> SensorDefinition | None:
    tables = [s for s in specs if s.source_watermark]
    if not tables:
        return None

    @sensor(
        name=f"{source_name}_watermarks",
        minimum_interval_seconds=interval_seconds,
        default_status=DefaultSensorStatus.RUNNING if running else DefaultSensorStatus.STOPPED,
        asset_selection=[asset_key(s) for s in tables],
        description=f"Requests incremental runs for {source_name}'s tables when their Snowflake watermark advances.",
    )
    def watermarks(
        context: SensorEvaluationContext, snowflake: SnowflakeResource, postgres: PostgresResource
    ) -> SensorResult | SkipReason:
        cursor: dict[str, Any] = json.loads(context.cursor) if context.cursor else {}
        runs, notes = [], []
        with snowflake.get_connection() as sf:
            columns = _describe(sf, tables)
            named = [(spec, watermark_column(columns[spec.name], spec)) for spec in tables]
            cur = sf.cursor()
            try:
                row = cur.execute(watermarks_query(named)).fetchone()
            finally:
                cur.close()
            for i, spec in enumerate(tables):
                high, rows, recent = as_watermark(row[3 * i]), int(row[3 * i + 1]), row[3 * i + 2]
                recent = None if recent is None else int(recent)
                seen = cursor.get(spec.name, {})
                now = {"high": None if high is None else watermark_text(high), "rows": rows, "recent": recent}
                pending = seen.get("run")
                if pending:
                    status = _run_status(context, pending)
                    if status in _IN_FLIGHT:
                        notes.append(f"{spec.name}: a window run is still in flight")
                        continue  # keep the cursor: the next tick looks again
                    if status in _DONE_BADLY:
                        seen = {}  # look at the ledger again: the window did not land
                if seen and all(seen.get(k) == v for k, v in now.items()):
                    cursor[spec.name] = {**now, "run": None}
                    continue  # the source has not moved: no PostgreSQL query at all
                with postgres.get_connection(spec.pg_database) as pg:
                    plan = plan_window(
                        sf,
                        pg,
                        spec,
                        columns[spec.name],
                        registered_chunks(spec, context.instance, postgres),
                        (high, rows, recent),
                    )
                run = window_run(spec, plan, context.instance)
                if run is None:
                    cursor[spec.name] = {**now, "run": None}
                    if plan.note and plan.note != "up to date":
                        notes.append(f"{spec.name}: {plan.note}")
                    continue
                runs.append(
                    RunRequest(
                        run_key=run.run_key,
                        asset_selection=[asset_key(spec)],
                        asset_check_keys=after_load(spec),
                        tags=run.tags,
                    )
                )
                cursor[spec.name] = {**now, "run": run.run_key}
        if not runs:
            context.update_cursor(json.dumps(cursor))
            return SkipReason("; ".join(notes) or "every table is up to date")
        return SensorResult(run_requests=runs, cursor=json.dumps(cursor))

    return watermarks


def _describe(sf: Any, tables: list[TableSpec]) -> dict[str, list]:
    """Every table's columns, one information_schema query per Snowflake schema (not one per table)."""
    by_schema: dict[tuple[str, str], list[TableSpec]] = {}
    for spec in tables:
        by_schema.setdefault((spec.sf_database, spec.sf_schema), []).append(spec)
    columns: dict[str, list] = {}
    for (database, schema), specs in by_schema.items():
        described = describe_tables(sf, database, schema, [s.sf_table for s in specs])
        for spec in specs:
            if not described.get(spec.sf_table):
                source_columns(sf, spec)  # raises the clear "does not exist or is not visible" error
            columns[spec.name] = described[spec.sf_table]
    return columns


def _run_status(context: SensorEvaluationContext, run_key: str) -> DagsterRunStatus | None:
    """The status of the newest run this sensor requested under ``run_key`` (None if it never started)."""
    found = context.instance.get_runs(RunsFilter(tags={"dagster/run_key": run_key}), limit=1)
    return found[0].status if found else None

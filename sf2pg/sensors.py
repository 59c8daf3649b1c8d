"""Watermark sensors: one per source, asking Snowflake one cheap aggregate per table per tick.

When a table's source watermark has moved past what the target holds, the sensor registers the
window ``(low, high]`` as a partition and requests a run for it. Several tables changing at once are
one tick. The cursor keeps the last seen maximum and row count per table, so an unchanged source
costs no PostgreSQL query at all.
"""

import json

from dagster import (
    AddDynamicPartitionsRequest,
    DefaultSensorStatus,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)
from dagster_snowflake import SnowflakeResource

from sf2pg.assets import asset_key
from sf2pg.config import TableSpec
from sf2pg.incremental import next_window, watermark_text
from sf2pg.partitions import partitions_name, source_columns
from sf2pg.resources import PostgresResource


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
        cursor = json.loads(context.cursor) if context.cursor else {}
        runs, additions, notes = [], [], []
        with snowflake.get_connection() as sf:
            for spec in tables:
                seen = cursor.get(spec.name, {})
                with postgres.get_connection(spec.pg_database) as pg:
                    window = next_window(sf, pg, spec, source_columns(sf, spec))
                high = None if window.high is None else watermark_text(window.high)
                cursor[spec.name] = {"high": high or seen.get("high"), "rows": window.source_rows}
                if window.high is None:
                    if window.low is None:
                        notes.append(f"{spec.name}: not loaded yet (run a backfill first)")
                    continue
                key = window.key
                name = partitions_name(spec)
                if not context.instance.has_dynamic_partition(name, key):
                    additions.append(AddDynamicPartitionsRequest(name, [key]))
                runs.append(
                    RunRequest(
                        run_key=f"{spec.name}:{key}",
                        partition_key=key,
                        asset_selection=[asset_key(spec)],
                        tags={"sf2pg/incremental": "true"},
                    )
                )
        if not runs:
            context.update_cursor(json.dumps(cursor))
            return SkipReason("; ".join(notes) or "every table is up to date")
        return SensorResult(run_requests=runs, dynamic_partitions_requests=additions, cursor=json.dumps(cursor))

    return watermarks

"""The asset factory: one partitioned asset per enabled table.

The asset body is thin: it describes the source and hands a lazy ``TableLoad`` to the IO manager,
which streams each chunk from Snowflake into PostgreSQL.
"""

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    BackfillPolicy,
    Config,
    MetadataValue,
    TableColumn,
    TableSchema,
    asset,
)
from pydantic import Field

from sf2pg.config.model import TableSpec
from sf2pg.dagster.partitions import partitions_def, partitions_name
from sf2pg.dagster.resources import SnowflakeResource
from sf2pg.dagster.retries import retried_on_failure
from sf2pg.load.job import describe_load
from sf2pg.load.table import TableLoad

IO_MANAGER_KEY = "sf2pg_io_manager"


class TableRunConfig(Config):
    """Run-time switches for a table's materialization."""

    confirm_truncate: bool = Field(
        default=False,
        description="Second key for truncate_onstart: truncation happens only when the table's config "
        "asks for it AND this is true AND the run loads every partition.",
    )


def asset_key(spec: TableSpec) -> AssetKey:
    """``TableSpec.asset_key_path``: ``[source_name, target]`` in characters Dagster allows (metadata keeps
    the real name)."""
    return AssetKey(spec.asset_key_path)


def column_schema(columns: list[tuple[str, str, str]]) -> TableSchema:
    """``dagster/column_schema`` of a table asset: the target's columns as the load left them (added
    and widened ones included), each with its PostgreSQL type and the Snowflake column it holds."""
    return TableSchema(
        columns=[
            TableColumn(name, pg_type, description=f"Snowflake column {source!r}") for name, pg_type, source in columns
        ]
    )


def pool_name(spec: TableSpec) -> str:
    """Dagster pool shared by a source's tables: bounds concurrent connections to that source."""
    return f"sf2pg_{spec.source_name}"


def build_table_asset(spec: TableSpec) -> AssetsDefinition:
    chunking = f"{spec.chunking_type} on {spec.chunking_column!r}" if spec.chunking_column else "one chunk"

    @asset(
        key=asset_key(spec),
        group_name=spec.source_name,
        partitions_def=partitions_def(spec),
        io_manager_key=IO_MANAGER_KEY,
        backfill_policy=BackfillPolicy.multi_run(spec.max_partitions_per_run)
        if spec.max_partitions_per_run
        else BackfillPolicy.single_run(),
        pool=pool_name(spec),
        kinds={"snowflake", "postgres"},
        description=(
            f"Copy of Snowflake {spec.sf_database}.{spec.sf_schema}.{spec.sf_table} in PostgreSQL "
            f"{spec.pg_database}: {spec.pg_schema}.{spec.pg_table}. Partitions are chunks ({chunking})."
        ),
        metadata={
            "source": f"{spec.sf_database}.{spec.sf_schema}.{spec.sf_table}",
            "target": f"{spec.pg_database}.{spec.pg_schema}.{spec.pg_table}",
            "chunking": chunking,
            "uniqueness_columns": ", ".join(spec.uniqueness_columns) or "(none)",
            "config_path": spec.config_path,
            "dagster/table_name": f"{spec.pg_database}.{spec.pg_schema}.{spec.pg_table}",
            "sf2pg/target": MetadataValue.json([spec.pg_database, spec.pg_schema, spec.pg_table]),
        },
    )
    def _table(context: AssetExecutionContext, config: TableRunConfig, snowflake: SnowflakeResource) -> TableLoad:
        with retried_on_failure(context.retry_number):
            return _table_load(spec, context, config, snowflake)

    return _table


def _table_load(
    spec: TableSpec, context: AssetExecutionContext, config: TableRunConfig, snowflake: SnowflakeResource
) -> TableLoad:
    """The asset body: describe the source and hand the IO manager a lazy load of the run's chunks."""
    return describe_load(
        spec,
        snowflake,
        list(context.partition_keys),
        list(context.instance.get_dynamic_partitions(partitions_name(spec))),
        dict(context.run.tags),
        context.run_id,
        config.confirm_truncate,
    )

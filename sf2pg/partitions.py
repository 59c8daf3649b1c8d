"""Keep each table's Dagster dynamic partitions in step with the planner.

Re-planning only ever adds chunks: every partition that exists (in Dagster or in the ledger) is kept,
since it may hold loaded rows; rows beyond the covered range get new chunks at its edges.
"""

from __future__ import annotations

import re
from typing import Any

from dagster import DagsterInstance, DynamicPartitionsDefinition

from sf2pg.config import TableSpec
from sf2pg.errors import InputError
from sf2pg.extract import describe_table
from sf2pg.load import ledger
from sf2pg.planning import Plan, plan_table
from sf2pg.resources import PostgresResource
from sf2pg.typemap import SourceColumn


class SourceTableMissingError(InputError):
    """The configured Snowflake table does not exist (or is not visible to this role)."""


def partitions_name(spec: TableSpec) -> str:
    """The dynamic partitions definition name (Dagster allows only letters, digits and underscores)."""
    return re.sub(r"[^A-Za-z0-9_]", "_", f"{spec.source_name}__{spec.pg_table}")


def partitions_def(spec: TableSpec) -> DynamicPartitionsDefinition:
    return DynamicPartitionsDefinition(name=partitions_name(spec))


def source_columns(sf_conn: Any, spec: TableSpec) -> list[SourceColumn]:
    """The table's columns, or a clear error naming the table and its config path."""
    columns = describe_table(sf_conn, spec.sf_database, spec.sf_schema, spec.sf_table)
    if not columns:
        raise SourceTableMissingError(
            f"{spec.config_path}.source: Snowflake table {spec.sf_database}.{spec.sf_schema}.{spec.sf_table} "
            "does not exist or is not visible to this role"
        )
    return columns


def loaded_chunk_keys(postgres: PostgresResource, spec: TableSpec) -> list[str]:
    """Chunk keys the ledger has loaded (empty when the database or ledger does not exist yet)."""
    import psycopg

    try:
        with postgres.get_connection(spec.pg_database) as conn:
            if not conn.execute("SELECT to_regclass('migration_status.chunk_state')").fetchone()[0]:
                return []
            return ledger.loaded_keys(conn, spec.pg_schema, spec.pg_table)
    except psycopg.OperationalError:
        return []


def replan(
    spec: TableSpec,
    sf_conn: Any,
    instance: DagsterInstance | None,
    postgres: PostgresResource | None,
) -> Plan:
    """Plan the table and register its new chunks with Dagster, in key order."""
    name = partitions_name(spec)
    existing = list(instance.get_dynamic_partitions(name)) if instance else []
    if postgres is not None:
        existing += loaded_chunk_keys(postgres, spec)
    plan = plan_table(
        sf_conn,
        spec.sf_database,
        spec.sf_schema,
        spec.sf_table,
        source_columns(sf_conn, spec),
        spec.chunking_column,
        spec.chunking_type,
        spec.source_filter,
        spec.rows_per_chunk,
        existing,
    )
    if instance is not None:
        registered = set(instance.get_dynamic_partitions(name))
        missing = [c.key for c in plan.chunks if c.key not in registered]
        if missing:
            instance.add_dynamic_partitions(name, missing)
    return plan

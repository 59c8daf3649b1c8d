"""Checks that connect before any row moves (``sf2pg validate --connect``).

Every problem names the config path and the table or column at fault.
"""

from __future__ import annotations

from typing import Any

import psycopg
import snowflake.connector

from sf2pg.config.identifiers import sf_qualified
from sf2pg.config.model import AppConfig, TableSpec
from sf2pg.config.typemap import SourceColumn
from sf2pg.errors import InputError
from sf2pg.load.postgres import Postgres
from sf2pg.load.target import ColumnRules, TargetSchemaError, plan_columns, prepare_target
from sf2pg.plan.chunks import chunking_type_problem
from sf2pg.plan.incremental import target_column_name
from sf2pg.source.snowflake_connection import sessions_from_env
from sf2pg.source.statements import UnknownColumnError, describe_table, find_column, watermark_column, where_clause


def check_connections(config: AppConfig) -> list[str]:
    """Problems found; empty when every source table and named column exists and targets answer."""
    problems: list[str] = []
    specs = config.tables()
    postgres = Postgres()
    for database in dict.fromkeys(s.pg_database for s in specs):
        try:
            with postgres.get_connection(database) as conn:
                conn.execute("SELECT 1")
        except psycopg.OperationalError as exc:
            problems.append(f"target database {database!r} is not reachable: {exc}")
    try:
        with sessions_from_env().get_connection() as sf:
            for spec in specs:
                where = f"{spec.config_path} ({spec.name})"
                columns = describe_table(sf, spec.sf_database, spec.sf_schema, spec.sf_table)
                if not columns:
                    problems.append(
                        f"{spec.config_path}.source: Snowflake table "
                        f"{spec.sf_database}.{spec.sf_schema}.{spec.sf_table} does not exist or is not visible"
                    )
                    continue
                known = len(problems)
                named = [("chunking", c, "chunking_columns") for c in filter(None, [spec.chunking_column])]
                named += [("uniqueness", c, "uniqueness_columns") for c in spec.uniqueness_columns]
                for what, name, key in named:
                    try:
                        find_column(columns, name, what, f"{spec.config_path}.{key}")
                    except UnknownColumnError as exc:
                        problems.append(str(exc))
                if spec.source_watermark:
                    try:
                        watermark_column(columns, spec)
                    except InputError as exc:
                        problems.append(str(exc))
                problems += _chunking_type_problems(spec, columns)
                problems += _filter_problems(sf, spec)
                try:
                    plan_columns(columns, where, ColumnRules.of(spec))
                    if len(problems) == known:  # the target check would only repeat a missing column
                        _check_target(postgres, spec, columns, where)
                except TargetSchemaError as exc:
                    problems.append(str(exc))
                except psycopg.OperationalError:
                    pass  # already reported as unreachable
                except psycopg.Error as exc:  # PostgreSQL refused the target as a run would create it
                    problems.append(f"{where}: PostgreSQL refuses the target table: {type(exc).__name__}: {exc}")
    except Exception as exc:  # the connector's errors carry no secrets; name the side
        problems.append(f"Snowflake is not reachable: {type(exc).__name__}: {exc}")
    return problems


def _filter_problems(sf: Any, spec: TableSpec) -> list[str]:
    """A ``source_filter`` Snowflake cannot evaluate on the table (a column it lacks, a type it cannot
    compare), found by asking for no rows."""
    if not spec.source_filter:
        return []
    table = sf_qualified(spec.sf_database, spec.sf_schema, spec.sf_table)
    cur = sf.cursor()
    try:
        cur.execute(f"SELECT 1 FROM {table} WHERE {where_clause(spec.source_filter)} LIMIT 0")
    except snowflake.connector.errors.ProgrammingError as exc:
        return [f"{spec.config_path}.source_filter: Snowflake cannot evaluate it on the table: {exc.msg}"]
    finally:
        cur.close()
    return []


def _chunking_type_problems(spec: TableSpec, columns: list[SourceColumn]) -> list[str]:
    """A chunking column must be of a Snowflake type its declared chunking type plans exactly."""
    if not (spec.chunking_column and spec.chunking_type):
        return []
    try:
        column = find_column(columns, spec.chunking_column, "chunking", spec.config_path)
    except UnknownColumnError:
        return []  # already reported
    problem = chunking_type_problem(spec.chunking_type, column.data_type)
    return [f"{spec.config_path}.chunking_column_types: chunking column {column.name!r} {problem}"] if problem else []


def _check_target(postgres: Postgres, spec: TableSpec, columns: list[SourceColumn], where: str) -> None:
    """Prepare the target exactly as a run would, inside a transaction that is always rolled back."""
    with postgres.get_connection(spec.pg_database) as conn, conn.transaction(force_rollback=True):
        target = prepare_target(
            conn,
            spec.pg_schema,
            spec.pg_table,
            columns,
            spec.uniqueness_columns,
            spec.chunking_column,
            where,
            spec.source_watermark,
            rules=ColumnRules.of(spec),
        )
        if spec.target_watermark and target.watermark_column:
            named = target_column_name(target.column_names, spec.target_watermark)
            if named != target.watermark_column.target:
                raise TargetSchemaError(
                    f"{spec.config_path}.target_watermark: {spec.target_watermark!r} is not the target column the "
                    f"source_watermark {spec.source_watermark!r} loads into ({target.watermark_column.target!r}); "
                    "remove target_watermark (it follows source_watermark) or name that column"
                )

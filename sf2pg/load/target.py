"""The target table: create it from the source columns, or reconcile with the one that exists.

Every decision about columns is made here, before any row moves: which columns load, which are
skipped, and the exact Arrow type each must arrive in for binary COPY.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg
import pyarrow as pa
from pgpq import ArrowToPostgresBinaryEncoder
from psycopg import sql

from sf2pg.errors import InputError
from sf2pg.extract import find_column
from sf2pg.identifiers import pg_name_for
from sf2pg.load import locks
from sf2pg.load.indexes import saved_key
from sf2pg.typemap import (
    IncompatibleTypeError,
    SourceColumn,
    TargetType,
    UnsupportedTypeError,
    load_type_for_existing,
    target_type,
)


class TargetSchemaError(InputError):
    """The source and target cannot be reconciled; raised before any row moves."""


@dataclass(frozen=True)
class ColumnPlan:
    """One column that loads: where it comes from, where it goes, and how it travels."""

    source: SourceColumn
    target: str
    load_type: TargetType


@dataclass
class TargetTable:
    """A prepared target table and how a source batch maps onto it."""

    schema: str
    table: str
    columns: list[ColumnPlan]
    key_columns: list[str]  # target names of the uniqueness columns
    chunk_column: ColumnPlan | None
    created: bool = False
    skipped_source_columns: list[str] = field(default_factory=list)
    unfilled_target_columns: list[str] = field(default_factory=list)
    watermark_column: ColumnPlan | None = None  # where the source watermark loads (guards merges, windows)

    @property
    def ident(self) -> sql.Composed:
        return sql.Identifier(self.schema, self.table)

    @property
    def column_names(self) -> list[str]:
        return [c.target for c in self.columns]

    @property
    def arrow_schema(self) -> pa.Schema:
        return pa.schema([pa.field(c.target, c.load_type.arrow_type) for c in self.columns])

    def encoder(self) -> ArrowToPostgresBinaryEncoder:
        schema = self.arrow_schema
        builders = {c.target: c.load_type.encoder(schema.field(c.target)) for c in self.columns}
        return ArrowToPostgresBinaryEncoder.new_with_encoders(schema, builders)

    @property
    def has_unique_key(self) -> bool:
        return bool(self.key_columns)


def plan_columns(source_columns: list[SourceColumn], where: str) -> list[tuple[SourceColumn, str, TargetType]]:
    """Target name and type for every source column; unsupported types fail here, naming the column."""
    planned = []
    for col in source_columns:
        try:
            planned.append((col, pg_name_for(col.name), target_type(col)))
        except UnsupportedTypeError as exc:
            raise TargetSchemaError(f"{where}: {exc}") from exc
    return planned


def _existing_columns(conn: psycopg.Connection, schema: str, table: str) -> dict[str, tuple]:
    rows = conn.execute(
        "SELECT column_name, data_type, numeric_precision, numeric_scale FROM information_schema.columns "
        "WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
        (schema, table),
    ).fetchall()
    return {r[0]: r[1:] for r in rows}


def _unique_index_exists(conn: psycopg.Connection, schema: str, table: str, columns: list[str]) -> bool:
    rows = conn.execute(
        """
        SELECT array_agg(a.attname ORDER BY a.attname)
        FROM pg_index i
        JOIN pg_class c ON c.oid = i.indrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = ANY(i.indkey)
        WHERE n.nspname = %s AND c.relname = %s AND i.indisunique AND i.indpred IS NULL
        GROUP BY i.indexrelid
        """,
        (schema, table),
    ).fetchall()
    return sorted(columns) in [sorted(r[0]) for r in rows]


def prepare_target(
    conn: psycopg.Connection,
    schema: str,
    table: str,
    source_columns: list[SourceColumn],
    uniqueness_columns: tuple[str, ...],
    chunking_column: str | None,
    where: str,
    watermark_column: str | None = None,
) -> TargetTable:
    """Create the schema and table if missing; otherwise map onto the columns both sides share.

    ``where`` names the table in errors (e.g. ``analytics.fact_visits (sources[0].tables[0])``).
    Runs in its own transaction and commits, so a created table is visible to the chunk loaders.
    """
    planned = plan_columns(source_columns, where)
    by_source = {c.name: (c, name, t) for c, name, t in planned}
    key_sources = [find_column(source_columns, k, "uniqueness", where) for k in uniqueness_columns]
    chunk_source = find_column(source_columns, chunking_column, "chunking", where) if chunking_column else None
    watermark_source = find_column(source_columns, watermark_column, "watermark", where) if watermark_column else None

    with conn.transaction():
        # concurrent runs on one table would race to create it: one prepares, the others wait
        locks.xact_lock(conn, locks.table_key(schema, table))
        existing = _existing_columns(conn, schema, table)
        if not existing:
            _create_table(conn, schema, table, planned, [by_source[k.name][1] for k in key_sources])
            columns = [ColumnPlan(c, name, t) for c, name, t in planned]
            target = TargetTable(schema, table, columns, [by_source[k.name][1] for k in key_sources], None, True)
        else:
            target = _reconcile(conn, schema, table, planned, existing, key_sources, where)
    target.chunk_column = next((c for c in target.columns if chunk_source and c.source == chunk_source), None)
    if chunk_source and target.chunk_column is None:
        raise TargetSchemaError(f"{where}: chunking column {chunk_source.name!r} has no column in the target table")
    target.watermark_column = next((c for c in target.columns if c.source == watermark_source), None)
    if watermark_source and target.watermark_column is None:
        raise TargetSchemaError(
            f"{where}: watermark column {watermark_source.name!r} has no column in the target table; "
            "sync needs it to compare and to order writes"
        )
    return target


def _create_table(conn: psycopg.Connection, schema: str, table: str, planned: list, key_names: list[str]) -> None:
    column_defs = [sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(t.pg_type)) for _, name, t in planned]
    if key_names:
        column_defs.append(sql.SQL("PRIMARY KEY ({})").format(sql.SQL(", ").join(map(sql.Identifier, key_names))))
    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
    conn.execute(
        sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(
            sql.Identifier(schema, table), sql.SQL(", ").join(column_defs)
        )
    )


def _reconcile(
    conn: psycopg.Connection,
    schema: str,
    table: str,
    planned: list,
    existing: dict[str, tuple],
    key_sources: list[SourceColumn],
    where: str,
) -> TargetTable:
    folded = {name.casefold(): name for name in existing}
    columns, skipped, problems = [], [], []
    for col, name, mapped in planned:
        target_name = name if name in existing else folded.get(name.casefold())
        if target_name is None:
            skipped.append(col.name)
            continue
        data_type, precision, scale = existing[target_name]
        try:
            columns.append(ColumnPlan(col, target_name, load_type_for_existing(mapped, data_type, precision, scale)))
        except IncompatibleTypeError as exc:
            problems.append(f"column {col.name!r} -> {target_name!r}: {exc}")
    if problems:
        raise TargetSchemaError(f"{where}: the existing target table cannot hold the source: " + "; ".join(problems))
    if not columns:
        raise TargetSchemaError(f"{where}: the existing target table shares no column with the source")
    loaded = {c.source.name: c.target for c in columns}
    missing_keys = [k.name for k in key_sources if k.name not in loaded]
    if missing_keys:
        raise TargetSchemaError(f"{where}: uniqueness columns {missing_keys} are missing in the target table")
    key_names = [loaded[k.name] for k in key_sources]
    if key_names and not _unique_index_exists(conn, schema, table, key_names) and not saved_key(conn, schema, table):
        # ON CONFLICT needs a unique index on exactly the uniqueness columns (unless the loader is about to
        # rebuild the primary key an interrupted first load dropped).
        conn.execute(
            sql.SQL("CREATE UNIQUE INDEX IF NOT EXISTS {} ON {} ({})").format(
                sql.Identifier(f"{table}_sf2pg_key"[:63]),
                sql.Identifier(schema, table),
                sql.SQL(", ").join(map(sql.Identifier, key_names)),
            )
        )
    unfilled = [name for name in existing if name not in set(loaded.values())]
    return TargetTable(schema, table, columns, key_names, None, False, skipped, unfilled)

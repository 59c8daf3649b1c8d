"""The Snowflake SQL sf2pg writes: describing a table's columns, finding a configured column, and the
predicate and query that select a chunk's or a window's rows (bounds from ``sf2pg.plan.chunks``)."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from sf2pg.config.identifiers import sf_qualified, sf_quote, sf_string
from sf2pg.config.typemap import SourceColumn
from sf2pg.errors import InputError
from sf2pg.plan.chunks import Chunk, sf_literal, sf_outside, sf_range

if TYPE_CHECKING:
    from sf2pg.config.model import TableSpec


class UnknownColumnError(InputError):
    """A configured column name that the source table does not have."""


class UnusableWatermarkError(InputError):
    """A ``source_watermark`` column of a type no window can select exactly."""


def describe_table(conn: Any, database: str, schema: str, table: str) -> list[SourceColumn]:
    """The table's columns in order; empty when the table does not exist."""
    cur = conn.cursor()
    try:
        cur.execute(
            "SELECT column_name, data_type, numeric_precision, numeric_scale, is_nullable, character_maximum_length "
            f"FROM {sf_quote(database)}.information_schema.columns "
            f"WHERE table_schema = {sf_string(schema)} AND table_name = {sf_string(table)} "
            "ORDER BY ordinal_position"
        )
        return [
            SourceColumn(name, data_type, precision, scale, nullable == "YES", length)
            for name, data_type, precision, scale, nullable, length in cur.fetchall()
        ]
    finally:
        cur.close()


def describe_tables(conn: Any, database: str, schema: str, tables: list[str]) -> dict[str, list[SourceColumn]]:
    """Several tables of one schema described in one query (a sensor tick over a source's tables)."""
    if not tables:
        return {}
    names = ", ".join(sf_string(t) for t in dict.fromkeys(tables))
    cur = conn.cursor()
    try:
        cur.execute(
            "SELECT table_name, column_name, data_type, numeric_precision, numeric_scale, is_nullable "
            f"FROM {sf_quote(database)}.information_schema.columns "
            f"WHERE table_schema = {sf_string(schema)} AND table_name IN ({names}) "
            "ORDER BY table_name, ordinal_position"
        )
        described: dict[str, list[SourceColumn]] = {t: [] for t in tables}
        for table, name, data_type, precision, scale, nullable in cur.fetchall():
            described.setdefault(table, []).append(SourceColumn(name, data_type, precision, scale, nullable == "YES"))
        return described
    finally:
        cur.close()


def where_clause(source_filter: str | None, chunk_predicate: str | None = None) -> str:
    parts = [f"({p})" for p in (chunk_predicate, source_filter) if p]
    return " AND ".join(parts) or "TRUE"


def window_predicate(watermark: SourceColumn, chunk: Chunk) -> str:
    """A window chunk's rows: ``lower <= watermark <= upper`` (both inclusive; see ``sf2pg.plan.incremental``),
    to the microsecond PostgreSQL keeps."""
    low, high = chunk.lower, chunk.upper
    col = sf_quote(watermark.name)
    if isinstance(low, dt.datetime):
        sf_type = watermark.data_type.upper()
        sf_type = sf_type if sf_type.startswith("TIMESTAMP") else "TIMESTAMP_NTZ"
        # high was read at microseconds; "< high + 1us" keeps rows with nanoseconds beyond it
        return f"{col} >= {sf_literal(low, sf_type)} AND {col} < {sf_literal(high + dt.timedelta(microseconds=1), sf_type)}"  # type: ignore[operator]
    return f"{col} >= {int(low)} AND {col} <= {int(high)}"  # type: ignore[arg-type]


def chunk_predicate(column: SourceColumn | None, chunk: Chunk, watermark: SourceColumn | None = None) -> str | None:
    """The Snowflake predicate selecting a chunk's rows (half-open range, IS NULL, or a watermark window)."""
    if chunk.is_incremental:
        if watermark is None:
            raise UnknownColumnError(
                f"chunk {chunk.key} is an incremental window but the table has no source_watermark"
            )
        return window_predicate(watermark, chunk)
    if chunk.is_all or column is None:
        return None
    col = sf_quote(column.name)
    if chunk.is_null:
        return f"{col} IS NULL"
    sf_type = column.data_type.upper()
    if chunk.is_outside:
        return sf_outside(col, chunk.lower, chunk.upper, sf_type)  # type: ignore[arg-type]
    return sf_range(col, chunk.lower, chunk.upper, sf_type)  # type: ignore[arg-type]


def chunk_query(
    database: str,
    schema: str,
    table: str,
    columns: list[SourceColumn],
    chunk_column: SourceColumn | None,
    chunk: Chunk,
    source_filter: str | None,
    watermark: SourceColumn | None = None,
) -> str:
    """SELECT of the chunk's rows, naming every column explicitly."""
    select = ", ".join(sf_quote(c.name) for c in columns)
    where = where_clause(source_filter, chunk_predicate(chunk_column, chunk, watermark))
    return f"SELECT {select} FROM {sf_qualified(database, schema, table)} WHERE {where}"


_INTEGER_TYPES = {"NUMBER", "DECIMAL", "NUMERIC", "INT", "INTEGER", "BIGINT", "SMALLINT", "TINYINT", "BYTEINT"}


def watermark_column(columns: list[SourceColumn], spec: TableSpec) -> SourceColumn:
    """The table's ``source_watermark`` column, which must be a timestamp, a date or an integer: the
    windows compare, store and step it exactly (a fractional number, text or a boolean cannot be)."""
    where = f"{spec.config_path}.source_watermark"
    column = find_column(columns, spec.source_watermark or "", "watermark", where)
    kind = column.data_type.upper()
    if kind.startswith("TIMESTAMP") or kind in ("DATE", "DATETIME") or (kind in _INTEGER_TYPES and not column.scale):
        return column
    shown = f"{kind}({column.precision},{column.scale})" if kind in _INTEGER_TYPES else kind
    raise UnusableWatermarkError(
        f"{where}: watermark column {column.name!r} is {shown}; a watermark must be a TIMESTAMP (NTZ, LTZ or TZ), "
        "a DATE or an integer NUMBER (scale 0) that grows with every change"
    )


def find_column(columns: list[SourceColumn], name: str, what: str, where: str) -> SourceColumn:
    """A source column by its configured name: exact match first, then a unique case-insensitive one."""
    for col in columns:
        if col.name == name:
            return col
    folded = [c for c in columns if c.name.casefold() == name.casefold()]
    if len(folded) == 1:
        return folded[0]
    known = ", ".join(c.name for c in columns[:20])
    raise UnknownColumnError(f"{where}: {what} column {name!r} does not exist in the source table (columns: {known})")

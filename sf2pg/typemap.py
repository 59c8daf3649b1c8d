"""Snowflake -> PostgreSQL -> Arrow types: the one table of truth (documented in docs/TYPES.md).

Binary COPY applies no casts on the server, so every batch is cast to the fixed Arrow type that
encodes exactly as the target column's binary format.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
from pgpq import encoders as enc
from pgpq import schema as pgschema

from sf2pg.errors import InputError


class UnsupportedTypeError(InputError):
    """A source column whose type has no lossless target type."""


@dataclass(frozen=True)
class SourceColumn:
    """A Snowflake column as ``information_schema.columns`` describes it."""

    name: str
    data_type: str  # NUMBER, TEXT, TIMESTAMP_NTZ, ...
    precision: int | None = None
    scale: int | None = None
    nullable: bool = True


@dataclass(frozen=True)
class TargetType:
    """How one column is stored in PostgreSQL and carried in Arrow."""

    pg_type: str  # as DDL, e.g. numeric(12,2)
    arrow_type: pa.DataType
    jsonb: bool = False  # text payload encoded as binary jsonb

    def encoder(self, field: pa.Field) -> object:
        """The pgpq encoder builder for a field of ``arrow_type``."""
        if self.jsonb:
            return enc.LargeStringEncoderBuilder.new_with_output(field, pgschema.Jsonb())
        return _ENCODERS[_encoder_kind(self.arrow_type)](field)


_INTEGER_WIDTHS = ((4, "smallint", pa.int16()), (9, "integer", pa.int32()), (18, "bigint", pa.int64()))
_UTC = "UTC"
_TEXT = {"TEXT", "VARCHAR", "STRING", "CHAR", "CHARACTER", "NCHAR", "NVARCHAR", "NVARCHAR2", "CHAR VARYING"}
_FLOAT = {"FLOAT", "FLOAT4", "FLOAT8", "DOUBLE", "DOUBLE PRECISION", "REAL"}
_SEMI_STRUCTURED = {"VARIANT", "OBJECT", "ARRAY", "GEOGRAPHY", "GEOMETRY"}


def target_type(col: SourceColumn) -> TargetType:
    """The lossless PostgreSQL type for a Snowflake column, or ``UnsupportedTypeError``."""
    t = col.data_type.upper()
    if t in {"NUMBER", "DECIMAL", "NUMERIC", "INT", "INTEGER", "BIGINT", "SMALLINT", "TINYINT", "BYTEINT"}:
        precision = col.precision or 38
        scale = col.scale or 0
        if scale == 0:
            for digits, pg, arrow in _INTEGER_WIDTHS:
                if precision <= digits:
                    return TargetType(pg, arrow)
        return TargetType(f"numeric({precision},{scale})", pa.decimal128(precision, scale))
    if t in _FLOAT:
        return TargetType("double precision", pa.float64())
    if t in _TEXT:
        return TargetType("text", pa.large_string())
    if t == "BOOLEAN":
        return TargetType("boolean", pa.bool_())
    if t == "DATE":
        return TargetType("date", pa.date32())
    if t == "TIME":
        return TargetType("time", pa.time64("us"))
    if t in {"TIMESTAMP_NTZ", "DATETIME", "TIMESTAMP"}:
        return TargetType("timestamp", pa.timestamp("us"))
    if t in {"TIMESTAMP_LTZ", "TIMESTAMP_TZ"}:
        return TargetType("timestamptz", pa.timestamp("us", tz=_UTC))
    if t in {"BINARY", "VARBINARY"}:
        return TargetType("bytea", pa.large_binary())
    if t in _SEMI_STRUCTURED:
        return TargetType("jsonb", pa.large_string(), jsonb=True)
    raise UnsupportedTypeError(f"column {col.name!r} has Snowflake type {col.data_type}, which sf2pg cannot map")


# Existing target columns a mapped type may load into: equal or wider, never narrower.
_WIDER = {
    "smallint": ("smallint", "integer", "bigint", "numeric"),
    "integer": ("integer", "bigint", "numeric"),
    "bigint": ("bigint", "numeric"),
    "numeric": ("numeric",),
    "double precision": ("double precision",),
    "text": ("text", "character varying"),
    "boolean": ("boolean",),
    "date": ("date",),
    "time without time zone": ("time without time zone",),
    "timestamp without time zone": ("timestamp without time zone",),
    "timestamp with time zone": ("timestamp with time zone",),
    "bytea": ("bytea",),
    "jsonb": ("jsonb",),
}
_ARROW_FOR_EXISTING = {
    "smallint": pa.int16(),
    "integer": pa.int32(),
    "bigint": pa.int64(),
    "double precision": pa.float64(),
    "text": pa.large_string(),
    "character varying": pa.large_string(),
    "boolean": pa.bool_(),
    "date": pa.date32(),
    "time without time zone": pa.time64("us"),
    "timestamp without time zone": pa.timestamp("us"),
    "timestamp with time zone": pa.timestamp("us", tz=_UTC),
    "bytea": pa.large_binary(),
}


class IncompatibleTypeError(InputError):
    """An existing target column cannot hold the source column's values."""


def load_type_for_existing(
    mapped: TargetType, pg_data_type: str, precision: int | None, scale: int | None
) -> TargetType:
    """The Arrow type to send into an existing target column, which may be wider than ``mapped``."""
    source_kind = pg_type_name(mapped.pg_type)
    if pg_data_type not in _WIDER.get(source_kind, ()):
        raise IncompatibleTypeError(f"a {mapped.pg_type} value cannot load into {pg_data_type}")
    if pg_data_type == "jsonb":
        return mapped
    if pg_data_type != "numeric":
        return TargetType(pg_data_type, _ARROW_FOR_EXISTING[pg_data_type])
    if precision is None:  # unconstrained numeric holds anything; keep the source's scale
        return TargetType("numeric", mapped.arrow_type if source_kind == "numeric" else pa.decimal128(38, 0))
    src_p, src_s = _decimal_shape(mapped.arrow_type)
    if (scale or 0) < src_s or precision - (scale or 0) < src_p - src_s:
        raise IncompatibleTypeError(
            f"a {mapped.pg_type} value cannot load into numeric({precision},{scale or 0}) without loss"
        )
    return TargetType(f"numeric({precision},{scale or 0})", pa.decimal128(precision, scale or 0))


def _decimal_shape(t: pa.DataType) -> tuple[int, int]:
    if pa.types.is_decimal(t):
        return t.precision, t.scale
    digits = {pa.int16(): 5, pa.int32(): 10, pa.int64(): 19}
    return digits[t], 0


def _encoder_kind(t: pa.DataType) -> str:
    if pa.types.is_decimal(t):
        return "decimal"
    if pa.types.is_timestamp(t):
        return "timestamp"
    return str(t)


_ENCODERS = {
    "int16": enc.Int16EncoderBuilder,
    "int32": enc.Int32EncoderBuilder,
    "int64": enc.Int64EncoderBuilder,
    "decimal": enc.Decimal128EncoderBuilder,
    "double": enc.Float64EncoderBuilder,
    "large_string": enc.LargeStringEncoderBuilder,
    "bool": enc.BooleanEncoderBuilder,
    "date32[day]": enc.Date32EncoderBuilder,
    "time64[us]": enc.Time64MicrosecondEncoderBuilder,
    "timestamp": enc.TimestampMicrosecondEncoderBuilder,
    "large_binary": enc.LargeBinaryEncoderBuilder,
}


def pg_type_name(declared: str) -> str:
    """Normalise a DDL type to the ``information_schema.columns.data_type`` spelling."""
    base = declared.split("(")[0].strip()
    return {
        "timestamp": "timestamp without time zone",
        "timestamptz": "timestamp with time zone",
        "time": "time without time zone",
    }.get(base, base)

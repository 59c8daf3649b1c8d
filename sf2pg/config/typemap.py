"""Snowflake -> PostgreSQL -> Arrow types: the one table of truth (documented in docs/TYPES.md).

Binary COPY applies no casts on the server, so every batch is cast to the fixed Arrow type that
encodes exactly as the target column's binary format. Besides the map itself, this module says which
other PostgreSQL types a column may load into: an existing target's own types, a per-column
``column_types`` override, the ``wide_integers`` policy, and how far a column may be widened when
the source's type grows.

Why one module: it is the one table of truth for Snowflake to PostgreSQL types, with the rules that read it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

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
    length: int | None = None  # characters, for text types (information_schema's character_maximum_length)


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


# Existing target columns a mapped type may load into: equal or wider, never narrower. Whole numbers
# (NUMBER(p,0)) also load into any integer column: their values are checked batch by batch instead.
_WIDER = {
    "smallint": ("smallint", "integer", "bigint", "numeric"),
    "integer": ("integer", "bigint", "numeric"),
    "bigint": ("bigint", "numeric"),
    "numeric": ("numeric",),
    "double precision": ("double precision",),
    "text": ("text", "character varying"),
    "character varying": ("character varying", "text"),
    "boolean": ("boolean",),
    "date": ("date",),
    "time without time zone": ("time without time zone",),
    "timestamp without time zone": ("timestamp without time zone",),
    "timestamp with time zone": ("timestamp with time zone",),
    "bytea": ("bytea",),
    "jsonb": ("jsonb", "json", "text"),  # JSON text is kept exactly by json and text too
    "json": ("json", "jsonb", "text"),
}
_INTEGER_ARROW = {"smallint": pa.int16(), "integer": pa.int32(), "bigint": pa.int64()}
_INTEGER_DIGITS = {"smallint": 5, "integer": 10, "bigint": 19}
_ARROW_FOR_EXISTING = {
    **_INTEGER_ARROW,
    "double precision": pa.float64(),
    "text": pa.large_string(),
    "character varying": pa.large_string(),
    "json": pa.large_string(),
    "boolean": pa.bool_(),
    "date": pa.date32(),
    "time without time zone": pa.time64("us"),
    "timestamp without time zone": pa.timestamp("us"),
    "timestamp with time zone": pa.timestamp("us", tz=_UTC),
    "bytea": pa.large_binary(),
}
_VARCHAR_MAX = 10_485_760  # PostgreSQL's largest varchar(n)


class IncompatibleTypeError(InputError):
    """An existing target column cannot hold the source column's values."""


def load_type_for_existing(
    mapped: TargetType, pg_data_type: str, precision: int | None, scale: int | None
) -> TargetType:
    """The Arrow type to send into an existing target column, which may be wider than ``mapped``.

    A whole number loads into any integer column; a value the column cannot hold fails its batch,
    naming the column (``sf2pg.load.conform``)."""
    source_kind = pg_type_name(mapped.pg_type)
    whole = is_whole(mapped)
    if pg_data_type not in _WIDER.get(source_kind, ()) and not (whole and pg_data_type in _INTEGER_ARROW):
        raise IncompatibleTypeError(f"a {mapped.pg_type} value cannot load into {pg_data_type}")
    if pg_data_type == "jsonb":
        return TargetType("jsonb", pa.large_string(), jsonb=True)
    if pg_data_type != "numeric":
        return TargetType(pg_data_type, _ARROW_FOR_EXISTING[pg_data_type])
    if precision is None:  # unconstrained numeric holds anything; keep the source's scale
        return TargetType(
            "numeric", mapped.arrow_type if pa.types.is_decimal(mapped.arrow_type) else pa.decimal128(38, 0)
        )
    src_p, src_s = _decimal_shape(mapped.arrow_type)
    if (scale or 0) < src_s or precision - (scale or 0) < src_p - src_s:
        raise IncompatibleTypeError(
            f"a {mapped.pg_type} value cannot load into numeric({precision},{scale or 0}) without loss"
        )
    return TargetType(f"numeric({precision},{scale or 0})", _decimal_arrow(precision, scale or 0))


def is_whole(t: TargetType) -> bool:
    """True when every value of the type is a whole number (integers, numeric(p,0))."""
    return pa.types.is_integer(t.arrow_type) or (pa.types.is_decimal(t.arrow_type) and t.arrow_type.scale == 0)


def _decimal_arrow(precision: int, scale: int) -> pa.DataType:
    """Arrow carries at most 38 digits; PostgreSQL's own numeric(p,s) takes any value that fits in it."""
    return pa.decimal128(min(precision, 38), min(scale, 38))


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
        "varchar": "character varying",
    }.get(base, base)


# ---- describing a Snowflake column --------------------------------------------------------------

SF_TEXT_MAX = 16_777_216  # Snowflake's VARCHAR without a length
_NUMBER = {"NUMBER", "DECIMAL", "NUMERIC", "INT", "INTEGER", "BIGINT", "SMALLINT", "TINYINT", "BYTEINT"}


def sf_type_text(col: SourceColumn) -> str:
    """The column's Snowflake type as a user would write it: ``NUMBER(12,2)``, ``VARCHAR(100)``."""
    t = col.data_type.upper()
    if t in _NUMBER:
        return f"NUMBER({col.precision or 38},{col.scale or 0})"
    if t in _TEXT:
        return f"VARCHAR({col.length})" if col.length and col.length < SF_TEXT_MAX else "VARCHAR"
    return t


def family(col: SourceColumn) -> str:
    """Which kind of value a column holds; a change of family is never a widening."""
    t = col.data_type.upper()
    if t in _NUMBER:
        return "number"
    if t in _FLOAT:
        return "float"
    if t in _TEXT:
        return "text"
    if t in _SEMI_STRUCTURED:
        return "json"
    return pg_type_name(target_type(col).pg_type) if t in _MAPPED_OTHER else t


_MAPPED_OTHER = {"BOOLEAN", "DATE", "TIME", "TIMESTAMP_NTZ", "DATETIME", "TIMESTAMP", "TIMESTAMP_LTZ", "TIMESTAMP_TZ",
                 "BINARY", "VARBINARY"}  # fmt: skip


def is_wide_integer(col: SourceColumn) -> bool:
    """A whole NUMBER too wide for bigint by its declaration (``INT`` is ``NUMBER(38,0)``)."""
    return col.data_type.upper() in _NUMBER and not col.scale and (col.precision or 38) > 18


# ---- the types a column may be told to load as (``column_types``, ``wide_integers``) -------------

WIDE_INTEGER_POLICIES = ("numeric", "bigint", "bigint_when_fits")
BIGINT_MIN, BIGINT_MAX = -(2**63), 2**63 - 1

_DECLARED = re.compile(r"^([a-z][a-z0-9 ]*?)\s*(?:\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\))?$")
_ALIASES = {
    "int2": "smallint", "int": "integer", "int4": "integer", "int8": "bigint", "decimal": "numeric",
    "character varying": "varchar", "float8": "double precision", "float": "double precision",
}  # fmt: skip
_DECLARABLE = ("smallint", "integer", "bigint", "numeric", "double precision", "text", "varchar", "json", "jsonb")


@dataclass(frozen=True)
class Declared:
    """A PostgreSQL type as a config names it: ``varchar(200)`` is ``Declared("varchar", (200,))``."""

    name: str
    args: tuple[int, ...] = ()

    def __str__(self) -> str:
        return self.name + (f"({','.join(map(str, self.args))})" if self.args else "")


def parse_declared(text: str) -> Declared:
    """A ``column_types`` value; ``ValueError`` says what is wrong with it."""
    match = _DECLARED.match(" ".join(text.lower().split()))
    if not match:
        raise ValueError(f"{text!r} is not a PostgreSQL type name")
    name = _ALIASES.get(match.group(1), match.group(1))
    args = tuple(int(a) for a in match.groups()[1:] if a is not None)
    if name not in _DECLARABLE:
        raise ValueError(f"{text!r} is not a type sf2pg can load into (one of {', '.join(_DECLARABLE)})")
    if args and name not in ("numeric", "varchar"):
        raise ValueError(f"{name} takes no length or precision")
    if name == "varchar" and args and not (len(args) == 1 and 1 <= args[0] <= _VARCHAR_MAX):
        raise ValueError(f"varchar(n) needs one length from 1 to {_VARCHAR_MAX:,}")
    if name == "numeric" and args:
        p, s = args[0], args[1] if len(args) > 1 else 0
        if not (1 <= p <= 1000 and 0 <= s <= p):
            raise ValueError("numeric(p,s) needs 1 <= p <= 1000 and 0 <= s <= p")
        args = (p, s)
    return Declared(name, args)


def override_type(col: SourceColumn, declared: str) -> TargetType:
    """The type a column loads as when the config names one; ``IncompatibleTypeError`` when that type
    cannot hold the column's values (``integer`` for a fraction, ``varchar`` for a number...)."""
    d = parse_declared(declared)
    mapped = target_type(col)
    fam = family(col)

    def refuse(why: str) -> IncompatibleTypeError:
        return IncompatibleTypeError(f"column {col.name!r} ({sf_type_text(col)}) cannot load as {d}: {why}")

    if d.name in _INTEGER_ARROW:
        if fam != "number" or col.scale:
            raise refuse("only whole NUMBER(p,0) columns load into integer types (each value is checked)")
        return TargetType(d.name, _INTEGER_ARROW[d.name])
    if d.name == "numeric":
        if fam != "number":
            raise refuse("only NUMBER columns load into numeric")
        if not d.args:
            return TargetType(
                "numeric", mapped.arrow_type if pa.types.is_decimal(mapped.arrow_type) else pa.decimal128(38, 0)
            )
        p, s = d.args
        src_p, src_s = col.precision or 38, col.scale or 0
        if s < src_s or p - s < src_p - src_s:
            raise refuse(f"it holds fewer digits than {sf_type_text(col)} (keep scale >= {src_s} and "
                         f"precision - scale >= {src_p - src_s})")  # fmt: skip
        return TargetType(f"numeric({p},{s})", _decimal_arrow(p, s))
    if d.name == "double precision":
        if fam != "float":
            raise refuse("only FLOAT columns load into double precision without loss")
        return mapped
    if d.name in ("text", "varchar"):
        if fam not in ("text", "json") or (d.name == "varchar" and fam != "text"):
            raise refuse("only text columns load into varchar; text also takes VARIANT, OBJECT and ARRAY as JSON")
        return TargetType(str(d), pa.large_string())
    if fam != "json":
        raise refuse(f"only VARIANT, OBJECT, ARRAY and GEOGRAPHY columns load into {d.name}")
    return (
        TargetType("jsonb", pa.large_string(), jsonb=True)
        if d.name == "jsonb"
        else TargetType("json", pa.large_string())
    )


def fits_bigint(value_range: tuple[Any, Any] | None) -> bool:
    """Whether a column's (MIN, MAX) lies inside bigint; an unknown range does not."""
    if value_range is None:
        return False
    low, high = value_range
    return low is None or (int(low) >= BIGINT_MIN and int(high) <= BIGINT_MAX)


def column_type(
    col: SourceColumn,
    override: str | None = None,
    wide_integers: str = "numeric",
    value_range: tuple[Any, Any] | None = None,
) -> TargetType:
    """The type a column is created (or added) as: the map, unless ``column_types`` names another, or
    the table's ``wide_integers`` policy makes a ``NUMBER(p>18,0)`` a bigint (``bigint_when_fits``:
    when the planner's MIN and MAX, ``value_range``, fit in one)."""
    if override:
        return override_type(col, override)
    if is_wide_integer(col) and (
        wide_integers == "bigint" or (wide_integers == "bigint_when_fits" and fits_bigint(value_range))
    ):
        return TargetType("bigint", pa.int64())
    return target_type(col)


# ---- widening an existing column when the source's type grows -----------------------------------


@dataclass(frozen=True)
class PgColumn:
    """An existing target column as ``information_schema.columns`` describes it."""

    data_type: str
    precision: int | None = None
    scale: int | None = None
    length: int | None = None

    @property
    def ddl(self) -> str:
        if self.data_type == "numeric" and self.precision is not None:
            return f"numeric({self.precision},{self.scale or 0})"
        if self.data_type == "character varying":
            return f"varchar({self.length})" if self.length else "varchar"
        return self.data_type


def holds(existing: PgColumn, wanted: TargetType, source: SourceColumn) -> bool:
    """Whether ``existing`` takes every value of ``wanted`` as the source now declares it (a varchar
    also needs the source's declared length)."""
    try:
        load_type_for_existing(wanted, existing.data_type, existing.precision, existing.scale)
    except IncompatibleTypeError:
        return False
    if existing.data_type in _INTEGER_ARROW and not pa.types.is_integer(wanted.arrow_type):
        return False  # a wider declared integer: it loads value by value, but does not hold by declaration
    if existing.data_type in _INTEGER_ARROW:
        return _INTEGER_DIGITS[existing.data_type] >= _decimal_shape(wanted.arrow_type)[0]
    if existing.data_type == "character varying" and existing.length:
        return bool(source.length) and source.length <= existing.length  # type: ignore[operator]
    return True


def widened_type(existing: PgColumn, wanted: TargetType, source: SourceColumn) -> str | None:
    """The type to ``ALTER`` an existing column to so that it holds both its own values and ``wanted``
    (same family only: integers and numerics, varchar lengths); None when no widening does."""
    if existing.data_type in _INTEGER_ARROW or existing.data_type == "numeric":
        if not (pa.types.is_integer(wanted.arrow_type) or pa.types.is_decimal(wanted.arrow_type)):
            return None
        if existing.data_type == "numeric" and existing.precision is None:
            return None  # unconstrained: already holds anything
        want_p, want_s = _decimal_shape(wanted.arrow_type)
        if pg_type_name(wanted.pg_type) == "numeric" and "(" not in wanted.pg_type:
            return "numeric"
        if existing.data_type in _INTEGER_ARROW and pa.types.is_integer(wanted.arrow_type):
            return wanted.pg_type  # a wider integer type
        have_p, have_s = (
            (_INTEGER_DIGITS[existing.data_type], 0)
            if existing.data_type in _INTEGER_ARROW
            else (existing.precision, existing.scale or 0)
        )
        scale = max(have_s, want_s)
        digits = max(have_p - have_s, want_p - want_s)  # type: ignore[operator]
        return f"numeric({min(digits + scale, 1000)},{scale})"
    if existing.data_type == "character varying" and pg_type_name(wanted.pg_type) in ("text", "character varying"):
        if not source.length or source.length > _VARCHAR_MAX:
            return "text"
        return f"varchar({max(existing.length or 0, source.length)})"
    return None

"""The chunk vocabulary: what a chunk is, its key, how its bounds are written in Snowflake SQL, and
how watermark values are kept.

Keys encode their bounds (``2024-01-01T000000_2024-01-08T000000``, ``id_0000000000_0001000000``,
``null``, ``all``), so a key alone says which rows a partition covers. Years are written with four
digits (``0001-01-01``); keys written before that (``1-01-01``) still parse. The chunk that holds
9999-12-31, the last day Python can name, ends at ``infinity`` (``9999-12-31_infinity``): it has no
upper bound, in Snowflake SQL or in PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import struct
from dataclasses import dataclass
from typing import Any, Literal

import psycopg
from psycopg.types.datetime import (
    DateBinaryDumper,
    DateDumper,
    DatetimeBinaryDumper,
    DatetimeDumper,
    DatetimeNoTzBinaryDumper,
    DatetimeNoTzDumper,
)

ChunkingType = Literal["timestamp", "date", "id"]
Bound = dt.datetime | dt.date | int

ALL_KEY = "all"  # the single chunk of a table without a chunking column
NULL_KEY = "null"  # rows whose chunking value is NULL
OUTSIDE_KEY = "outside"  # rows below or above every planned chunk (delete detection looks there too)
INCREMENTAL_PREFIX = "inc_"  # window partitions of sf2pg before 0.2 (windows now load into chunk partitions)
_WINDOW_FORMAT = "%Y%m%dT%H%M%S%f"
INFINITY = "infinity"  # how an open upper bound is written in keys, the ledger and PostgreSQL
_DATE_PART = re.compile(r"^(\d{1,4})-(\d{2})-(\d{2})$")  # 1 to 4 year digits: keys written before years had four
_TS_PART = re.compile(r"^(\d{1,4})-(\d{2})-(\d{2})T(\d{2})(\d{2})(\d{2})$")


class _Endless:
    """An upper bound past every value: greater than any date or timestamp, equal only to itself.

    Python's dates stop at 9999-12-31, a common sentinel, so the chunk that holds it cannot end a day
    later; it ends here instead. PostgreSQL receives it as ``infinity`` (see the dumpers below), and
    Snowflake predicates leave it out (``sf_range``)."""

    def __lt__(self, other: object) -> bool:
        return False

    def __le__(self, other: object) -> bool:
        return isinstance(other, _Endless)

    def __gt__(self, other: object) -> bool:
        return not isinstance(other, _Endless)

    def __ge__(self, other: object) -> bool:
        return True

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Endless)

    def __ne__(self, other: object) -> bool:
        return not isinstance(other, _Endless)

    def __hash__(self) -> int:
        return hash(INFINITY)

    def __str__(self) -> str:
        return INFINITY

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class EndDate(_Endless, dt.date):
    """The open upper bound of a date-chunked table's last chunk."""


class EndTimestamp(_Endless, dt.datetime):
    """The open upper bound of a timestamp-chunked table's last chunk."""


END_DATE = EndDate(9999, 12, 31)
END_TIMESTAMP = EndTimestamp(9999, 12, 31, 23, 59, 59, 999999)


def is_endless(value: object) -> bool:
    """True for the open upper bound (``infinity``)."""
    return isinstance(value, _Endless)


class _EndDateBinaryDumper(DateBinaryDumper):
    def dump(self, obj: dt.date) -> bytes:
        return struct.pack("!i", 2**31 - 1)  # PostgreSQL's date 'infinity'


class _EndTimestampBinaryDumper(DatetimeBinaryDumper):
    def dump(self, obj: dt.datetime) -> bytes:
        return struct.pack("!q", 2**63 - 1)  # PostgreSQL's timestamp(tz) 'infinity'

    def upgrade(self, obj: dt.datetime, format: Any) -> Any:
        return self if obj.tzinfo else _EndTimestampNoTzBinaryDumper(self.cls)


class _EndTimestampNoTzBinaryDumper(DatetimeNoTzBinaryDumper):
    def dump(self, obj: dt.datetime) -> bytes:
        return struct.pack("!q", 2**63 - 1)


# Text dumpers write str(value), which is "infinity"; binary ones need PostgreSQL's own encoding.
# Registered globally, so every connection (the loader's, the checks') compares against infinity.
for _cls, _dumpers in (
    (EndDate, (DateDumper, _EndDateBinaryDumper)),
    (EndTimestamp, (DatetimeNoTzDumper, _EndTimestampNoTzBinaryDumper, DatetimeDumper, _EndTimestampBinaryDumper)),
):
    for _dumper in _dumpers:
        psycopg.adapters.register_dumper(_cls, _dumper)


@dataclass(frozen=True)
class Chunk:
    """One partition of a table: rows with ``lower <= value < upper``, the NULL rows, or everything."""

    key: str
    lower: Bound | None = None
    upper: Bound | None = None
    estimated_rows: int = 0

    @property
    def is_null(self) -> bool:
        return self.key == NULL_KEY

    @property
    def is_all(self) -> bool:
        return self.key == ALL_KEY

    @property
    def is_incremental(self) -> bool:
        return self.key.startswith(INCREMENTAL_PREFIX)

    @property
    def is_outside(self) -> bool:
        return self.key == OUTSIDE_KEY

    @property
    def is_range(self) -> bool:
        return not (self.is_null or self.is_all or self.is_incremental or self.is_outside)


@dataclass(frozen=True)
class Bucket:
    """Rows counted over ``[start, end)`` of the chunking column."""

    start: Bound
    end: Bound
    rows: int


def chunk_key(kind: ChunkingType, lower: Bound, upper: Bound) -> str:
    """A readable key that sorts by range and is stable for the same bounds."""
    if kind == "timestamp":
        return f"{_timestamp_text(lower)}_{_timestamp_text(upper)}"
    if kind == "date":
        return f"{_date_text(lower)}_{_date_text(upper)}"
    width = max(10, len(str(abs(int(upper)))), len(str(abs(int(lower)))))
    return f"id_{int(lower):0{width}d}_{int(upper):0{width}d}"


def _date_text(value: Bound) -> str:
    if is_endless(value):
        return INFINITY
    return f"{value.year:04d}-{value.month:02d}-{value.day:02d}"  # type: ignore[union-attr]  # strftime: '1-01-01'


def _timestamp_text(value: Bound) -> str:
    if is_endless(value):
        return INFINITY
    v = naive_utc(value)
    return f"{_date_text(v)}T{v.hour:02d}{v.minute:02d}{v.second:02d}"


def _parse_date(text: str) -> dt.date:
    if text == INFINITY:
        return END_DATE
    match = _DATE_PART.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a date")
    return dt.date(*map(int, match.groups()))


def _parse_timestamp(text: str) -> dt.datetime:
    if text == INFINITY:
        return END_TIMESTAMP
    match = _TS_PART.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a timestamp")
    return dt.datetime(*map(int, match.groups()))


def parse_chunk_key(kind: ChunkingType | None, key: str) -> Chunk:
    """The chunk a key stands for; ``ValueError`` for a key this table could not have produced."""
    if key in (ALL_KEY, NULL_KEY):
        return Chunk(key)
    if key.startswith(INCREMENTAL_PREFIX):
        lo, hi = key.removeprefix(INCREMENTAL_PREFIX).split("_")
        if "T" in lo:
            return Chunk(key, dt.datetime.strptime(lo, _WINDOW_FORMAT), dt.datetime.strptime(hi, _WINDOW_FORMAT))
        return Chunk(key, int(lo), int(hi))
    try:
        if kind == "timestamp":
            lo, hi = key.split("_")
            return Chunk(key, _parse_timestamp(lo), _parse_timestamp(hi))
        if kind == "date":
            lo, hi = key.split("_")
            return Chunk(key, _parse_date(lo), _parse_date(hi))
        if kind == "id" and key.startswith("id_"):
            lo, hi = key[3:].split("_")
            return Chunk(key, int(lo), int(hi))
    except ValueError:
        pass
    raise ValueError(f"{key!r} is not a chunk key of a table chunked by {kind or 'nothing'}")


Watermark = dt.datetime | int  # a DATE watermark travels as its midnight


def watermark_text(value: Watermark) -> str:
    """How a watermark is kept in the ledger and in run tags (text: one column serves timestamps and integers)."""
    return naive_utc(value).isoformat() if isinstance(value, dt.datetime) else str(int(value))


def parse_watermark(text: str) -> Watermark:
    return int(text) if text.lstrip("-").isdigit() else naive_utc(dt.datetime.fromisoformat(text))


def as_watermark(value: Any) -> Watermark | None:
    """A watermark value as read from either side, in the one form sf2pg compares."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return naive_utc(value)
    if isinstance(value, dt.date):
        return dt.datetime.combine(value, dt.time())
    return int(value)


def naive_utc(value: Bound) -> dt.datetime:
    """Timestamps travel as naive UTC in keys and bounds."""
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(dt.UTC).replace(tzinfo=None)
    return value  # type: ignore[return-value]


def end_of(kind: ChunkingType) -> Bound:
    """The open upper bound for a chunking type (ids have none: Python's integers do not stop)."""
    return END_TIMESTAMP if kind == "timestamp" else END_DATE


def after(value: Bound, step: dt.timedelta | int, kind: ChunkingType) -> Bound:
    """``value + step``, or the open upper bound where that is past what Python can represent."""
    try:
        return value + step  # type: ignore[operator,return-value]
    except OverflowError:
        return end_of(kind)


def id_bound(value: Any) -> int:
    """A whole-number bound at or below an ID value: fractions and negatives round down, never toward
    zero (``int(-0.5)`` is 0, which would leave -0.5 below its chunk)."""
    return math.floor(value)


def sf_range(column: str, lower: Bound, upper: Bound, sf_type: str) -> str:
    """``column >= lower AND column < upper`` in Snowflake SQL; no upper comparison for the open bound."""
    low = f"{column} >= {sf_literal(lower, sf_type)}"
    return low if is_endless(upper) else f"{low} AND {column} < {sf_literal(upper, sf_type)}"


def sf_outside(column: str, lower: Bound, upper: Bound, sf_type: str) -> str:
    """Rows below ``lower`` or at and above ``upper`` (nothing is above the open bound)."""
    below = f"{column} < {sf_literal(lower, sf_type)}"
    return below if is_endless(upper) else f"{below} OR {column} >= {sf_literal(upper, sf_type)}"


def sf_literal(value: Any, sf_type: str) -> str:
    """A typed Snowflake literal for a bound produced by the planner (never user text)."""
    if is_endless(value):
        raise ValueError("the open upper bound has no Snowflake literal: build the predicate with sf_range")
    if isinstance(value, dt.datetime):
        return f"CAST('{naive_utc(value).isoformat(sep=' ')}' AS {sf_type})"
    if isinstance(value, dt.date):
        return f"CAST('{value.isoformat()}' AS DATE)"
    return str(int(value))


# Snowflake types each chunking type can plan exactly (information_schema spellings and synonyms).
_CHUNKABLE = {
    "timestamp": ("TIMESTAMP_NTZ", "TIMESTAMP_LTZ", "TIMESTAMP_TZ", "TIMESTAMP", "DATETIME"),
    "date": ("DATE",),
    "id": ("NUMBER", "DECIMAL", "NUMERIC", "INT", "INTEGER", "BIGINT", "SMALLINT", "TINYINT", "BYTEINT"),
}
_CHUNKING_HINT = {
    "timestamp": "timestamp needs a TIMESTAMP_NTZ, TIMESTAMP_LTZ or TIMESTAMP_TZ column",
    "date": "date needs a DATE column",
    "id": "id (or integer) needs a NUMBER column; fractions and negative values are planned exactly",
}


def chunking_type_problem(kind: ChunkingType, sf_type: str) -> str | None:
    """Why a column of Snowflake type ``sf_type`` cannot be chunked as ``kind``, or None when it can."""
    if sf_type.upper() in _CHUNKABLE[kind]:
        return None
    fits = [k for k, types in _CHUNKABLE.items() if sf_type.upper() in types]
    instead = f"; declare it as {fits[0]}" if fits else ""
    return f"is declared {kind} but is {sf_type} in Snowflake ({_CHUNKING_HINT[kind]}{instead})"

"""The chunk vocabulary: what a chunk is, its key, how its bounds are written in Snowflake SQL, and
how watermark values are kept.

Keys encode their bounds (``2024-01-01T000000_2024-01-08T000000``, ``id_0000000000_0001000000``,
``null``, ``all``), so a key alone says which rows a partition covers.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Literal

ChunkingType = Literal["timestamp", "date", "id"]
Bound = dt.datetime | dt.date | int

ALL_KEY = "all"  # the single chunk of a table without a chunking column
NULL_KEY = "null"  # rows whose chunking value is NULL
OUTSIDE_KEY = "outside"  # rows below or above every planned chunk (delete detection looks there too)
INCREMENTAL_PREFIX = "inc_"  # window partitions of sf2pg before 0.2 (windows now load into chunk partitions)
_WINDOW_FORMAT = "%Y%m%dT%H%M%S%f"
_TS_FORMAT = "%Y-%m-%dT%H%M%S"
_DATE_FORMAT = "%Y-%m-%d"


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
        return f"{naive_utc(lower).strftime(_TS_FORMAT)}_{naive_utc(upper).strftime(_TS_FORMAT)}"
    if kind == "date":
        return f"{lower.strftime(_DATE_FORMAT)}_{upper.strftime(_DATE_FORMAT)}"
    width = max(10, len(str(abs(int(upper)))), len(str(abs(int(lower)))))
    return f"id_{int(lower):0{width}d}_{int(upper):0{width}d}"


def parse_chunk_key(kind: ChunkingType | None, key: str) -> Chunk:
    """The chunk a key stands for; ``ValueError`` for a key this table could not have produced."""
    if key in (ALL_KEY, NULL_KEY):
        return Chunk(key)
    if key.startswith(INCREMENTAL_PREFIX):
        lo, hi = key.removeprefix(INCREMENTAL_PREFIX).split("_")
        if "T" in lo:
            return Chunk(key, dt.datetime.strptime(lo, _WINDOW_FORMAT), dt.datetime.strptime(hi, _WINDOW_FORMAT))
        return Chunk(key, int(lo), int(hi))
    if kind == "timestamp":
        lo, hi = key.split("_")
        return Chunk(key, dt.datetime.strptime(lo, _TS_FORMAT), dt.datetime.strptime(hi, _TS_FORMAT))
    if kind == "date":
        lo, hi = key.split("_")
        return Chunk(key, dt.datetime.strptime(lo, _DATE_FORMAT).date(), dt.datetime.strptime(hi, _DATE_FORMAT).date())
    if kind == "id" and key.startswith("id_"):
        lo, hi = key[3:].split("_")
        return Chunk(key, int(lo), int(hi))
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


def sf_literal(value: Any, sf_type: str) -> str:
    """A typed Snowflake literal for a bound produced by the planner (never user text)."""
    if isinstance(value, dt.datetime):
        return f"CAST('{naive_utc(value).isoformat(sep=' ')}' AS {sf_type})"
    if isinstance(value, dt.date):
        return f"CAST('{value.isoformat()}' AS DATE)"
    return str(int(value))

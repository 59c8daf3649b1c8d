"""Make every Arrow batch match the target's fixed schema before it is encoded.

Binary COPY applies no casts, and the source's Arrow types vary (integer width per batch,
nanosecond timestamps), so each batch is cast column by column to one schema.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sf2pg.errors import InputError
from sf2pg.load.target import TargetTable


class BadDataError(InputError):
    """A value the target cannot store, named by table, column and chunk."""


def conform(
    batches: Iterable[pa.RecordBatch | pa.Table],
    target: TargetTable,
    batch_size: int,
    nul_bytes: Literal["fail", "strip"],
    where: str,
    stats: dict | None = None,
) -> Iterator[pa.RecordBatch]:
    """Batches of at most ``batch_size`` rows in the target's Arrow schema, in source order.

    Source columns arrive in ``target.columns`` order (the extract query selects them so).
    ``stats`` (if given) collects ``nul_stripped``.
    """
    schema = target.arrow_schema
    json_columns = {c.target for c in target.columns if c.load_type.jsonb}
    for part in batches:
        for batch in (
            part.to_batches(max_chunksize=batch_size) if isinstance(part, pa.Table) else _slices(part, batch_size)
        ):
            if batch.num_rows == 0:
                continue
            arrays = []
            for i, field in enumerate(schema):
                array = _cast(batch.column(i), field.type, field.name, nul_bytes, where, stats)
                if field.name in json_columns:
                    array = _check_json_nul(array, field.name, nul_bytes, where, stats)
                arrays.append(array)
            yield pa.RecordBatch.from_arrays(arrays, schema=schema)


def _slices(batch: pa.RecordBatch, size: int) -> Iterator[pa.RecordBatch]:
    for offset in range(0, batch.num_rows, size):
        yield batch.slice(offset, size)


def _cast(arr: pa.Array, to: pa.DataType, column: str, nul_bytes: str, where: str, stats: dict | None) -> pa.Array:
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
        arr = _check_nul(arr, column, nul_bytes, where, stats)
    if arr.type == to:
        return arr
    try:
        if pa.types.is_timestamp(to) or pa.types.is_time(to):
            # PostgreSQL keeps microseconds; Snowflake may send nanoseconds. Truncate deliberately.
            return pc.cast(arr, to, safe=False)
        return pc.cast(arr, to)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        if to in _INTEGER_RANGES and (pa.types.is_integer(arr.type) or pa.types.is_decimal(arr.type)):
            name, low, high = _INTEGER_RANGES[to]
            lowest, highest = (v.as_py() for v in pc.min_max(arr).values())
            value = lowest if lowest is not None and lowest < low else highest
            raise BadDataError(
                f"{where}: column {column!r} holds {value}, which does not fit in the target column's {name} "
                f"({low} .. {high}); give the column a wider type (column_types, or widen it in PostgreSQL) "
                "and reload the chunk"
            ) from exc
        if pa.types.is_decimal(to) and pa.types.is_decimal(arr.type):
            raise BadDataError(
                f"{where}: column {column!r} holds a value that does not fit the target column's "
                f"numeric({to.precision},{to.scale}) (was the column widened in Snowflake during this load?); run "
                "the load again: it widens the target column first when the source column grew; or give the "
                "column a wider type (column_types)"
            ) from exc
        raise BadDataError(f"{where}: column {column!r}: cannot convert {arr.type} to {to}: {exc}") from exc


# Integer targets a whole number may load into, and what each holds (docs/TYPES.md#whole-numbers).
_INTEGER_RANGES = {
    pa.int16(): ("smallint", -(2**15), 2**15 - 1),
    pa.int32(): ("integer", -(2**31), 2**31 - 1),
    pa.int64(): ("bigint", -(2**63), 2**63 - 1),
}


# A JSON string escape for U+0000 that is not itself an escaped backslash followed by "u0000".
_JSON_NUL = r"((?:^|[^\\])(?:\\\\)*)\\u0000"


def _check_json_nul(arr: pa.Array, column: str, nul_bytes: str, where: str, stats: dict | None) -> pa.Array:
    """PostgreSQL's jsonb refuses the ``\\u0000`` escape (Snowflake's VARIANT allows it): fail before any
    row is written, naming the column, or strip it like a NUL in text."""
    if not pc.any(pc.match_substring(arr, "\\u0000")).as_py():
        return arr
    hits = pc.match_substring_regex(arr, _JSON_NUL)
    count = pc.sum(hits).as_py() or 0
    if not count:
        return arr
    if nul_bytes != "strip":
        raise BadDataError(
            f"{where}: column {column!r} holds {count} JSON value(s) with the \\u0000 escape, which PostgreSQL "
            'jsonb cannot store (set "nul_bytes": "strip" on the table to remove them)'
        )
    if stats is not None:
        stats["nul_stripped"] = stats.get("nul_stripped", 0) + count
    while pc.any(pc.match_substring_regex(arr, _JSON_NUL)).as_py():  # adjacent escapes need another pass
        arr = pc.replace_substring_regex(arr, _JSON_NUL, r"\1")
    return arr


def _may_hold_nul(arr: pa.Array) -> bool:
    """A scan of the array's own bytes for a zero byte: ten times cheaper than a string search per value."""
    _, offsets, data = arr.buffers()[:3]
    if data is None or len(arr) == 0:
        return False
    width = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    bounds = np.frombuffer(offsets, dtype=width, count=arr.offset + len(arr) + 1)
    start, end = int(bounds[arr.offset]), int(bounds[arr.offset + len(arr)])
    return not np.frombuffer(data, dtype=np.uint8, count=end - start, offset=start).all()


def _check_nul(arr: pa.Array, column: str, nul_bytes: str, where: str, stats: dict | None) -> pa.Array:
    if not _may_hold_nul(arr):
        return arr
    has_nul = pc.match_substring(arr, "\x00")
    count = pc.sum(has_nul).as_py() or 0
    if not count:
        return arr
    if nul_bytes == "strip":
        if stats is not None:
            stats["nul_stripped"] = stats.get("nul_stripped", 0) + count
        return pc.replace_substring(arr, "\x00", "")
    raise BadDataError(
        f"{where}: column {column!r} holds {count} value(s) with NUL characters, which PostgreSQL text "
        'cannot store (set "nul_bytes": "strip" on the table to remove them)'
    )

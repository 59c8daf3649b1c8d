"""Adaptive chunk planning: one aggregated query -> contiguous chunks of about ``rows_per_chunk`` rows.

Chunks tile the chunking column's range with no gaps (empty stretches fold into a neighbour), so a
row can never fall between chunks. Keys encode their bounds, so a key alone says what it covers and
re-planning can keep every existing chunk and add new ones only at the edges.

Why one module: it is one path, from the distribution query to the recorded plan; split, one algorithm would read across files.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg

from sf2pg.config.identifiers import sf_qualified, sf_quote
from sf2pg.config.model import DEFAULT_PARALLEL_THREADS, DEFAULT_ROWS_PER_CHUNK, MIN_AUTO_CHUNK_ROWS, TableSpec
from sf2pg.config.typemap import SourceColumn, is_wide_integer
from sf2pg.errors import InputError
from sf2pg.load import ledger
from sf2pg.load.postgres import Connects
from sf2pg.plan.chunks import (
    ALL_KEY,
    INCREMENTAL_PREFIX,
    NULL_KEY,
    Bound,
    Bucket,
    Chunk,
    ChunkingType,
    after,
    chunk_key,
    chunking_type_problem,
    id_bound,
    naive_utc,
    parse_chunk_key,
    sf_outside,
    sf_range,
    watermark_text,
)
from sf2pg.plan.incremental import source_high
from sf2pg.source.statements import describe_table, find_column, watermark_column, where_clause

_ID_BUCKETS = 4096  # equal-width ID buckets in the first query; merged afterwards
_REFINE_MINUTES_MAX_DENSE = 50  # refine up to this many dense days by minute, more by hour
_DAY, _MINUTE, _HOUR = dt.timedelta(days=1), dt.timedelta(minutes=1), dt.timedelta(hours=1)


class ChunkingTypeError(InputError):
    """A chunking column whose declared type does not fit its Snowflake type."""


@dataclass
class Plan:
    """The outcome of planning one table."""

    chunks: list[Chunk]
    new_keys: list[str]
    source_queries: int = 0
    queries: list[str] = field(default_factory=list)
    # MIN and MAX of the columns asked for, read by the same aggregated query (None, None: all NULL)
    ranges: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    source_columns: list[SourceColumn] = field(default_factory=list)  # the table's columns when it was planned


class SourceTableMissingError(InputError):
    """The configured Snowflake table does not exist (or is not visible to this role)."""


def source_columns(sf_conn: Any, spec: TableSpec) -> list[SourceColumn]:
    """The table's columns, or a clear error naming the table and its config path."""
    columns = describe_table(sf_conn, spec.sf_database, spec.sf_schema, spec.sf_table)
    if not columns:
        raise SourceTableMissingError(
            f"{spec.config_path}.source: Snowflake table {spec.sf_database}.{spec.sf_schema}.{spec.sf_table} "
            "does not exist or is not visible to this role"
        )
    return columns


# ---- pure planning ---------------------------------------------------------------------------


def tile(kind: ChunkingType, buckets: Sequence[Bucket], target_rows: int) -> list[Chunk]:
    """Merge ordered buckets into contiguous chunks of about ``target_rows`` rows.

    Each chunk ends where the next begins; the last ends at its last bucket's end. A bucket denser
    than the target becomes a chunk of its own.
    """
    groups: list[list[Bucket]] = []
    rows = 0
    for bucket in buckets:
        if bucket.rows <= 0:
            continue
        if groups and rows + bucket.rows <= target_rows:
            groups[-1].append(bucket)
            rows += bucket.rows
        else:
            groups.append([bucket])
            rows = bucket.rows
    chunks = []
    for i, group in enumerate(groups):
        lower = group[0].start
        upper = groups[i + 1][0].start if i + 1 < len(groups) else group[-1].end
        chunks.append(Chunk(chunk_key(kind, lower, upper), lower, upper, sum(b.rows for b in group)))
    return chunks


def plan_chunks(
    kind: ChunkingType | None,
    buckets: Sequence[Bucket],
    null_rows: int,
    target_rows: int,
    existing_keys: Iterable[str] = (),
) -> tuple[list[Chunk], list[str]]:
    """All chunks of a table in key order, and which of them are new.

    Existing chunks are kept as they are (they may hold loaded data); rows beyond the covered range
    get new chunks at the edges, which start or end exactly where the covered range does.
    """
    existing = [parse_chunk_key(kind, k) for k in dict.fromkeys(existing_keys) if not k.startswith(INCREMENTAL_PREFIX)]
    if kind is None:
        chunks = existing or [Chunk(ALL_KEY, estimated_rows=sum(b.rows for b in buckets) + null_rows)]
        return chunks, [] if existing else [ALL_KEY]
    buckets = [Bucket(naive_utc(b.start), naive_utc(b.end), b.rows) for b in buckets]  # type: ignore[arg-type]
    ranges = sorted((c for c in existing if c.is_range), key=lambda c: c.lower)  # type: ignore[arg-type,return-value]
    if ranges:
        covered_lo, covered_hi = ranges[0].lower, max(c.upper for c in ranges)  # type: ignore[type-var]
        below = [Bucket(b.start, min(b.end, covered_lo), b.rows) for b in buckets if b.start < covered_lo]
        above = [Bucket(max(b.start, covered_hi), b.end, b.rows) for b in buckets if b.end > covered_hi]
        new = _ending_at(kind, tile(kind, below, target_rows), covered_lo)
        new += _starting_at(kind, tile(kind, above, target_rows), covered_hi)
        kept = [_with_estimate(c, buckets) for c in ranges]
    else:
        new, kept = tile(kind, buckets, target_rows), []
    null_chunks = [c for c in existing if c.is_null]
    if not null_chunks and null_rows > 0:
        null_chunks = [Chunk(NULL_KEY, estimated_rows=null_rows)]
        new.append(null_chunks[0])
    else:
        null_chunks = [Chunk(NULL_KEY, estimated_rows=null_rows) for _ in null_chunks]
    ordered = sorted(kept + [c for c in new if c.is_range], key=lambda c: c.lower) + null_chunks  # type: ignore[arg-type,return-value]
    return ordered, [c.key for c in new]


def _ending_at(kind: ChunkingType, chunks: list[Chunk], upper: Bound) -> list[Chunk]:
    if not chunks:
        return chunks
    last = chunks[-1]
    return [*chunks[:-1], Chunk(chunk_key(kind, last.lower, upper), last.lower, upper, last.estimated_rows)]  # type: ignore[arg-type]


def _starting_at(kind: ChunkingType, chunks: list[Chunk], lower: Bound) -> list[Chunk]:
    if not chunks:
        return chunks
    first = chunks[0]
    return [Chunk(chunk_key(kind, lower, first.upper), lower, first.upper, first.estimated_rows), *chunks[1:]]  # type: ignore[arg-type]


def _with_estimate(chunk: Chunk, buckets: Sequence[Bucket]) -> Chunk:
    rows = sum(b.rows for b in buckets if chunk.lower <= b.start < chunk.upper)  # type: ignore[operator]
    return Chunk(chunk.key, chunk.lower, chunk.upper, rows)


# ---- the distribution queries ----------------------------------------------------------------


def distribution_sql(kind: ChunkingType, column: str, table: str, where: str, extra: Sequence[str] = ()) -> str:
    """The one aggregated query: rows per bucket (a NULL bucket counts NULLs), with bucket bounds.

    ``extra`` aggregates (other columns' MIN and MAX) ride along after the bucket's own columns."""
    more = "".join(f", {e}" for e in extra)
    if kind == "timestamp":
        return (
            f"SELECT DATE_TRUNC('DAY', {column}) AS bucket, COUNT(*) AS n{more} FROM {table} WHERE {where} "
            "GROUP BY 1 ORDER BY 1"
        )
    if kind == "date":
        return f"SELECT {column} AS bucket, COUNT(*) AS n{more} FROM {table} WHERE {where} GROUP BY 1 ORDER BY 1"
    return (
        f"WITH bounds AS (SELECT MIN({column}) AS lo, MAX({column}) AS hi FROM {table} WHERE {where}) "
        f"SELECT FLOOR(CAST({column} - bounds.lo AS DOUBLE) / CAST(bounds.hi - bounds.lo + 1 AS DOUBLE) "
        f"* {_ID_BUCKETS}) AS bucket, COUNT(*) AS n, MIN({column}) AS bmin, MAX({column}) AS bmax{more} "
        f"FROM {table}, bounds WHERE {where} GROUP BY 1 ORDER BY 1"
    )


def _bucket_columns(kind: ChunkingType | None) -> int:
    """How many columns of a distribution row describe the bucket (the ``extra`` ones follow)."""
    return {None: 1, "timestamp": 2, "date": 2, "id": 4}[kind]


def buckets_from_rows(kind: ChunkingType, rows: Iterable[Sequence[Any]]) -> tuple[list[Bucket], int]:
    """Buckets and the NULL count from the distribution query's rows.

    A bucket at 9999-12-31 ends at the open upper bound. ID buckets start at the floor of their
    smallest value and end past the floor of their largest, so fractional and negative values fall
    inside; buckets that then start together are one."""
    buckets, nulls = [], 0
    for row in rows:
        if row[0] is None:
            nulls += int(row[1])
        elif kind == "timestamp":
            start = naive_utc(row[0])
            buckets.append(Bucket(start, after(start, _DAY, kind), int(row[1])))
        elif kind == "date":
            buckets.append(Bucket(row[0], after(row[0], _DAY, kind), int(row[1])))
        else:
            buckets.append(Bucket(id_bound(row[2]), id_bound(row[3]) + 1, int(row[1])))
    return _merged(buckets), nulls


def _merged(buckets: Iterable[Bucket]) -> list[Bucket]:
    """Buckets in order, those with one start made one (ID bounds rounded down can meet)."""
    out: list[Bucket] = []
    for b in sorted(buckets, key=lambda b: b.start):  # type: ignore[arg-type,return-value]
        if out and out[-1].start == b.start:
            out[-1] = Bucket(b.start, max(out[-1].end, b.end), out[-1].rows + b.rows)  # type: ignore[type-var]
        else:
            out.append(b)
    return out


def ranges_from_rows(rows: Sequence[Sequence[Any]], offset: int, columns: Sequence[SourceColumn]) -> dict:
    """Each column's MIN and MAX over the whole table, from the per-bucket pairs the query returned."""
    ranges = {}
    for i, col in enumerate(columns):
        lows = [r[offset + 2 * i] for r in rows if r[offset + 2 * i] is not None]
        highs = [r[offset + 2 * i + 1] for r in rows if r[offset + 2 * i + 1] is not None]
        ranges[col.name] = (min(lows) if lows else None, max(highs) if highs else None)
    return ranges


def refinement_sql(
    kind: ChunkingType, column: str, sf_type: str, table: str, where: str, dense: Sequence[Bucket]
) -> str | None:
    """One query that splits every bucket denser than the target into finer buckets, or None."""
    if not dense or kind == "date":
        return None
    ranges = " OR ".join(f"({sf_range(column, b.start, b.end, sf_type)})" for b in dense)
    if kind == "timestamp":
        unit = "MINUTE" if len(dense) <= _REFINE_MINUTES_MAX_DENSE else "HOUR"
        return (
            f"SELECT DATE_TRUNC('{unit}', {column}) AS bucket, COUNT(*) AS n, '{unit}' AS unit FROM {table} "
            f"WHERE ({where}) AND ({ranges}) GROUP BY 1 ORDER BY 1"
        )
    cases = " ".join(
        f"WHEN {column} >= {b.start} AND {column} < {b.end} THEN {i * _ID_BUCKETS} + "
        f"FLOOR(CAST({column} - {b.start} AS DOUBLE) / CAST({int(b.end) - int(b.start)} AS DOUBLE) * {_ID_BUCKETS})"
        for i, b in enumerate(dense)
    )
    return (
        f"SELECT CASE {cases} END AS bucket, COUNT(*) AS n, MIN({column}) AS bmin, MAX({column}) AS bmax "
        f"FROM {table} WHERE ({where}) AND ({ranges}) GROUP BY 1 ORDER BY 1"
    )


def refined_buckets(kind: ChunkingType, rows: Iterable[Sequence[Any]]) -> list[Bucket]:
    """Finer buckets from the refinement query's rows."""
    out = []
    for row in rows:
        if kind == "timestamp":
            start = naive_utc(row[0])
            out.append(Bucket(start, after(start, _MINUTE if row[2] == "MINUTE" else _HOUR, kind), int(row[1])))
        else:
            out.append(Bucket(id_bound(row[2]), id_bound(row[3]) + 1, int(row[1])))
    return _merged(out)


def replace_dense(buckets: Sequence[Bucket], dense: Sequence[Bucket], finer: Sequence[Bucket]) -> list[Bucket]:
    """Buckets with every dense one swapped for its finer buckets, in order."""
    dense_starts = {b.start for b in dense}
    return _merged([b for b in buckets if b.start not in dense_starts] + list(finer))


# ---- planning a table against Snowflake ------------------------------------------------------


def plan_table(
    sf_conn: Any,
    database: str,
    schema: str,
    table: str,
    columns: list[SourceColumn],
    chunking_column: str | None,
    kind: ChunkingType | None,
    source_filter: str | None,
    rows_per_chunk: int | None,
    existing_keys: Iterable[str] = (),
    only_where: str | None = None,
    range_columns: Sequence[SourceColumn] = (),
    config_path: str | None = None,
    threads: int = DEFAULT_PARALLEL_THREADS,
) -> Plan:
    """Plan one table with one aggregated query (two when dense buckets need splitting).

    ``rows_per_chunk`` None sizes chunks from the rows the query counts (``auto_chunk_rows``, for
    ``threads`` loaders). ``only_where`` narrows the query to some rows (the edges beyond the chunks already planned).
    ``range_columns`` get their MIN and MAX read by the same query (``Plan.ranges``); ``config_path``
    names the table in errors."""
    table_sql = sf_qualified(database, schema, table)
    where = where_clause(source_filter, only_where)
    queries: list[str] = []
    extra = [f"MIN({sf_quote(c.name)}), MAX({sf_quote(c.name)})" for c in range_columns]

    def run(query: str) -> list:
        queries.append(query)
        cur = sf_conn.cursor()
        try:
            return cur.execute(query).fetchall()
        finally:
            cur.close()

    if kind is None or chunking_column is None:
        rows = run(f"SELECT COUNT(*){''.join(', ' + e for e in extra)} FROM {table_sql} WHERE {where}")
        chunks, new = plan_chunks(None, [], int(rows[0][0]), rows_per_chunk or DEFAULT_ROWS_PER_CHUNK, existing_keys)
        return Plan(chunks, new, len(queries), queries, ranges_from_rows(rows, 1, range_columns), columns)
    place = config_path or f"{database}.{schema}.{table}"
    column = find_column(columns, chunking_column, "chunking", place)
    problem = chunking_type_problem(kind, column.data_type)
    if problem:
        raise ChunkingTypeError(f"{place}.chunking_column_types: chunking column {column.name!r} {problem}")
    col_sql = sf_quote(column.name)
    rows = run(distribution_sql(kind, col_sql, table_sql, where, extra))
    ranges = ranges_from_rows(rows, _bucket_columns(kind), range_columns)
    buckets, nulls = buckets_from_rows(kind, rows)
    rows_per_chunk = rows_per_chunk or auto_chunk_rows(sum(b.rows for b in buckets) + nulls, threads)
    dense = [b for b in buckets if b.rows > rows_per_chunk and not (kind == "id" and b.end == b.start + 1)]  # type: ignore[operator]
    refine = refinement_sql(kind, col_sql, column.data_type.upper(), table_sql, where, dense)
    if refine:
        buckets = replace_dense(buckets, dense, refined_buckets(kind, run(refine)))
    chunks, new = plan_chunks(kind, buckets, nulls, rows_per_chunk, existing_keys)
    return Plan(chunks, new, len(queries), queries, ranges, columns)


def auto_chunk_rows(rows: int, threads: int) -> int:
    """Rows per chunk when the config sets none: 2 chunks per loader thread, so every thread has work and
    one that finishes early takes another, each of 100,000 to 1,000,000 rows (per-chunk work, a query
    and a transaction, stays small beside the rows; a failed chunk retries cheaply)."""
    return max(MIN_AUTO_CHUNK_ROWS, min(DEFAULT_ROWS_PER_CHUNK, -(-rows // (2 * max(threads, 1)))))


def plan_edges(
    sf_conn: Any, spec: TableSpec, columns: list[SourceColumn], chunks: Sequence[Chunk], table_rows: int
) -> list[Chunk]:
    """New chunks for the rows beyond the known chunks' range, planned with one aggregated query over just
    those rows (cheap where the chunking column follows insertion order, as pruning then skips the rest).
    They are sized as the table's ``table_rows`` would plan (``edge_chunk_rows``).

    The topmost new chunk reaches ahead by a typical chunk's width, so rows that keep arriving beyond it
    land in it instead of making a chunk per sync: the partition set grows with the data."""
    ranges = sorted((c for c in chunks if c.is_range), key=lambda c: c.lower)  # type: ignore[arg-type,return-value]
    if not ranges or spec.chunking_column is None or spec.chunking_type is None:
        return []
    column = find_column(columns, spec.chunking_column, "chunking", spec.config_path)
    col, sf_type = sf_quote(column.name), column.data_type.upper()
    low, high = ranges[0].lower, max(c.upper for c in ranges)  # type: ignore[type-var]
    outside = sf_outside(col, low, high, sf_type)
    plan = plan_table(
        sf_conn, spec.sf_database, spec.sf_schema, spec.sf_table, columns, spec.chunking_column,
        spec.chunking_type, spec.source_filter, edge_chunk_rows(spec, table_rows), [c.key for c in chunks],
        only_where=outside, config_path=spec.config_path,
    )  # fmt: skip
    new = set(plan.new_keys)
    edges = [c for c in plan.chunks if c.key in new and c.is_range]
    if edges and edges[-1].lower >= high:  # type: ignore[operator]
        top = edges[-1]
        widths = sorted(c.upper - c.lower for c in ranges)  # type: ignore[operator]
        try:
            reach = top.lower + widths[len(widths) // 2]  # type: ignore[operator]
        except OverflowError:  # a chunk near year 9999 reaches no further
            reach = top.upper
        if reach > top.upper:  # type: ignore[operator]
            edges[-1] = Chunk(chunk_key(spec.chunking_type, top.lower, reach), top.lower, reach, top.estimated_rows)  # type: ignore[arg-type]
    return edges


def edge_chunk_rows(spec: TableSpec, table_rows: int) -> int:
    """Rows per new edge chunk: the configured size, or the size a plan of the whole table would choose."""
    return spec.rows_per_chunk or auto_chunk_rows(table_rows, spec.parallel_threads)


# ---- keeping the plan ------------------------------------------------------------------------


def range_columns(spec: TableSpec, columns: list[SourceColumn]) -> list[SourceColumn]:
    """Columns whose MIN and MAX the plan reads: wide integers of a ``bigint_when_fits`` table that no
    ``column_types`` entry types already."""
    if spec.wide_integers != "bigint_when_fits":
        return []
    named = {n.casefold() for n, _ in spec.column_types}
    return [c for c in columns if is_wide_integer(c) and c.name.casefold() not in named]


def in_bound_order(chunks: Iterable[Chunk]) -> list[Chunk]:
    """Range chunks by their lower bound, then the NULL chunk (or the single ``all`` chunk)."""
    chunks = list(chunks)
    ranges = sorted((c for c in chunks if c.is_range), key=lambda c: c.lower)  # type: ignore[arg-type,return-value]
    return ranges + [c for c in chunks if not c.is_range and not c.is_incremental]


def ledger_chunk_keys(postgres: Connects, spec: TableSpec) -> list[str]:
    """Every chunk the ledger knows for the table, whatever its state (empty before the first plan)."""
    try:
        with postgres.get_connection(spec.pg_database) as conn:
            return list(ledger.chunk_states(conn, spec.pg_schema, spec.pg_table))
    except psycopg.OperationalError:
        return []


def known_chunks(spec: TableSpec, postgres: Connects, also: Iterable[str] = ()) -> list[Chunk]:
    """The table's chunks as the ledger knows them (and ``also``, keys known elsewhere), in bound order."""
    keys = list(dict.fromkeys([*also, *ledger_chunk_keys(postgres, spec)]))
    return in_bound_order(parse_chunk_key(spec.chunking_type, k) for k in keys if not k.startswith(INCREMENTAL_PREFIX))


def replan(spec: TableSpec, sf_conn: Any, postgres: Connects | None, existing: Iterable[str] = ()) -> Plan:
    """Plan the table and keep the whole plan in the ledger: every chunk planned before is kept (it may
    hold loaded rows), rows beyond them get new edge chunks. ``existing`` are keys known elsewhere
    (Dagster's partitions); without ``postgres`` the plan is only computed."""
    existing = list(existing) + (ledger_chunk_keys(postgres, spec) if postgres is not None else [])
    columns = source_columns(sf_conn, spec)
    before = None  # rows beyond the plan's range are written after this: no load may settle above it
    if spec.source_watermark:
        watermark = watermark_column(columns, spec)
        high = source_high(sf_conn, spec, watermark)[0]
        before = None if high is None else watermark_text(high)
    plan = plan_table(
        sf_conn,
        spec.sf_database,
        spec.sf_schema,
        spec.sf_table,
        columns,
        spec.chunking_column,
        spec.chunking_type,
        spec.source_filter,
        spec.rows_per_chunk,
        existing,
        range_columns=range_columns(spec, columns),
        config_path=spec.config_path,
        threads=spec.parallel_threads,
    )
    if postgres is not None:
        with postgres.get_connection(spec.pg_database) as conn:
            source_table = f"{spec.sf_database}.{spec.sf_schema}.{spec.sf_table}"
            where = f"table {spec.name} ({spec.config_path})"
            ledger.claim_table(conn, spec.pg_schema, spec.pg_table, spec.source_name, source_table, where)
            with conn.transaction():
                ledger.record_plan(conn, spec.pg_schema, spec.pg_table, plan.chunks)
                ledger.record_planned_watermark(conn, spec.pg_schema, spec.pg_table, before)
                if plan.ranges:
                    ledger.record_column_ranges(conn, spec.pg_schema, spec.pg_table, plan.ranges)
    return plan

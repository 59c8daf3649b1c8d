"""Source-to-target reconciliation: row counts per table and fingerprints per chunk.

A fingerprint is computed with portable SQL on both sides: row count, min/max of the chunking
column, min/max/sum of every numeric key column, non-NULL counts of every loaded column, and, so that
altered values show too, the sum of every integer/decimal column and of every text column's lengths.
Chunks are fingerprinted in batches (one query per side per ``CHUNKS_PER_QUERY`` chunks), so a
1,000-chunk table costs a handful of queries, not a thousand.
"""

from __future__ import annotations

import datetime as dt
import decimal
import itertools
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from sf2pg.chunks import Chunk, naive_utc
from sf2pg.config import TableSpec
from sf2pg.extract import chunk_predicate, find_column, where_clause
from sf2pg.identifiers import pg_name_for, sf_qualified, sf_quote
from sf2pg.typemap import SourceColumn, target_type

CHUNKS_PER_QUERY = 250
# Sums of wider columns could overflow NUMBER(38) in Snowflake; those columns keep min/max and counts.
_SUMMABLE_PRECISION = 18


@dataclass
class ChunkVerdict:
    """One chunk's comparison."""

    key: str
    source_rows: int
    target_rows: int
    mismatches: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.mismatches


@dataclass
class TableVerdict:
    table: str
    source_rows: int
    target_rows: int
    chunks: list[ChunkVerdict] = field(default_factory=list)
    source_queries: int = 0

    @property
    def failed_chunks(self) -> list[ChunkVerdict]:
        return [c for c in self.chunks if not c.passed]

    @property
    def passed(self) -> bool:
        return self.source_rows == self.target_rows and not self.failed_chunks


@dataclass(frozen=True)
class _Measure:
    """One aggregate computed identically on both sides."""

    label: str
    kind: str  # count_rows | min | max | sum | count | sum_length
    source_column: SourceColumn | None = None
    strip_nul: bool = False  # the table strips NUL characters on load: measure the source that way

    def sf(self) -> str:
        if self.kind == "count_rows":
            return "COUNT(*)"
        col = self.source_column
        if self.kind == "sum_length":
            value = f"REPLACE({sf_quote(col.name)}, CHR(0), '')" if self.strip_nul else sf_quote(col.name)  # type: ignore[union-attr]
            return f"SUM(LENGTH({value}))"
        if self.kind == "sum":  # exact: say the result type rather than trust the aggregate's
            return f"CAST(SUM({sf_quote(col.name)}) AS NUMBER(38, {col.scale or 0}))"  # type: ignore[union-attr]
        return f"{self.kind.upper()}({sf_quote(col.name)})"  # type: ignore[union-attr]

    def pg(self, target_name: str | None) -> sql.Composable:
        if self.kind == "count_rows":
            return sql.SQL("COUNT(*)")
        if self.kind == "sum_length":
            return sql.SQL("SUM(LENGTH({}))").format(sql.Identifier(target_name))  # type: ignore[arg-type]
        return sql.SQL("{}({})").format(sql.SQL(self.kind.upper()), sql.Identifier(target_name))  # type: ignore[arg-type]


def _measures(spec: TableSpec, columns: list[SourceColumn]) -> list[_Measure]:
    measures = [_Measure("rows", "count_rows")]
    if spec.chunking_column:
        col = find_column(columns, spec.chunking_column, "chunking", spec.config_path)
        measures += [_Measure(f"min({col.name})", "min", col), _Measure(f"max({col.name})", "max", col)]
    for name in spec.uniqueness_columns:
        col = find_column(columns, name, "uniqueness", spec.config_path)
        if target_type(col).pg_type.split("(")[0] in {"smallint", "integer", "bigint", "numeric", "double precision"}:
            measures += [
                _Measure(f"min({col.name})", "min", col),
                _Measure(f"max({col.name})", "max", col),
                _Measure(f"sum({col.name})", "sum", col),
            ]
    measures += [_Measure(f"non-null {c.name}", "count", c) for c in columns]
    for c in columns:
        kind = target_type(c).pg_type.split("(")[0]
        if kind in {"smallint", "integer", "bigint", "numeric"} and (c.precision or 38) <= _SUMMABLE_PRECISION:
            measures.append(_Measure(f"sum({c.name})", "sum", c))
        elif kind == "text":
            measures.append(_Measure(f"sum(length({c.name}))", "sum_length", c, spec.nul_bytes == "strip"))
    return list(dict.fromkeys(measures))


def _comparable(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return naive_utc(value)
    if isinstance(value, int | float | decimal.Decimal) and not isinstance(value, bool):
        return decimal.Decimal(str(value)).normalize()
    return value


def _sf_case(spec: TableSpec, column: SourceColumn | None, chunks: Sequence[Chunk]) -> str:
    if column is None:
        return f"'{chunks[0].key}'"
    whens = " ".join(f"WHEN {chunk_predicate(column, c)} THEN '{c.key}'" for c in chunks)
    return f"CASE {whens} END"


def _pg_case(target_col: str | None, kind_tz: bool, chunks: Sequence[Chunk]) -> tuple[sql.Composable, list]:
    if target_col is None:
        return sql.Literal(chunks[0].key), []
    col = sql.Identifier(target_col)
    parts, params = [], []
    for c in chunks:
        if c.is_null:
            parts.append(sql.SQL("WHEN {} IS NULL THEN {}").format(col, sql.Literal(c.key)))
        else:
            lower, upper = _pg_bounds(c, kind_tz)
            parts.append(sql.SQL("WHEN {} >= %s AND {} < %s THEN {}").format(col, col, sql.Literal(c.key)))
            params += [lower, upper]
    return sql.SQL("CASE {} END").format(sql.SQL(" ").join(parts)), params


def _pg_bound(value: Any, kind_tz: bool) -> Any:
    return value.replace(tzinfo=dt.UTC) if kind_tz else value


def _pg_bounds(chunk: Chunk, kind_tz: bool) -> tuple[Any, Any]:
    return _pg_bound(chunk.lower, kind_tz), _pg_bound(chunk.upper, kind_tz)


def _pg_buckets(
    target_col: str, kind_tz: bool, chunks: Sequence[Chunk]
) -> tuple[sql.Composable, list, dict[int | None, str]] | None:
    """A ``width_bucket`` over the chunks' sorted bounds: a binary search per row instead of a CASE that
    tries every chunk in turn. Only for disjoint ranges (each row then belongs to one chunk whichever way
    it is found); ``None`` otherwise. Returns the expression, its parameters and bucket -> chunk key."""
    ranges = sorted((c for c in chunks if c.is_range), key=lambda c: c.lower)  # type: ignore[arg-type,return-value]
    if not ranges or any(not (c.lower < c.upper) for c in ranges):  # type: ignore[operator]
        return None
    if any(b.lower < a.upper for a, b in itertools.pairwise(ranges)):  # type: ignore[operator]
        return None
    bounds: list = []
    for c in ranges:
        if not bounds or bounds[-1] != c.lower:
            bounds.append(c.lower)
        bounds.append(c.upper)
    # bucket i (1-based) holds bounds[i-1] <= value < bounds[i]; 0 and len(bounds) are outside every chunk
    keys: dict[int | None, str] = {bounds.index(c.lower) + 1: c.key for c in ranges}
    for c in chunks:
        if c.is_null:
            keys[None] = c.key  # width_bucket(NULL) is NULL
    params = [_pg_bound(b, kind_tz) for b in bounds]
    expr = sql.SQL("width_bucket({}, ARRAY[{}])").format(
        sql.Identifier(target_col), sql.SQL(", ").join(sql.SQL("%s") for _ in bounds)
    )
    return expr, params, keys


def fingerprint_chunks(
    sf_conn: Any,
    pg_conn: psycopg.Connection,
    spec: TableSpec,
    columns: list[SourceColumn],
    chunks: Sequence[Chunk],
) -> tuple[list[ChunkVerdict], int]:
    """Compare every chunk's fingerprint; returns verdicts and the number of source queries used."""
    measures = _measures(spec, columns)
    existing = {
        r[0]: r[1]
        for r in pg_conn.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = %s AND table_name = %s",
            (spec.pg_schema, spec.pg_table),
        ).fetchall()
    }
    folded = {n.casefold(): n for n in existing}

    def target_name(col: SourceColumn) -> str | None:
        name = pg_name_for(col.name)
        return name if name in existing else folded.get(name.casefold())

    chunk_col = (
        find_column(columns, spec.chunking_column, "chunking", spec.config_path) if spec.chunking_column else None
    )
    chunk_target = target_name(chunk_col) if chunk_col else None
    tz = bool(chunk_target) and existing.get(chunk_target, "") == "timestamp with time zone"
    # measures on columns the target lacks cannot be compared; they are reported as skipped elsewhere
    usable = [m for m in measures if m.source_column is None or target_name(m.source_column)]
    verdicts, queries = [], 0
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sf2pg-fingerprint") as pool:
        for start in range(0, len(chunks), CHUNKS_PER_QUERY):
            batch = chunks[start : start + CHUNKS_PER_QUERY]
            # both sides at once: the source's aggregate runs while the target computes its own
            source = pool.submit(_source_fingerprints, sf_conn, spec, chunk_col, batch, usable)
            pg_rows = _target_fingerprints(pg_conn, spec, chunk_target, tz, batch, usable, target_name)
            sf_rows = source.result()
            queries += 1
            verdicts += _compare(batch, usable, sf_rows, pg_rows)
    return verdicts, queries


def _compare(
    batch: Sequence[Chunk], usable: list[_Measure], sf_rows: dict[str, list], pg_rows: dict[str, list]
) -> list[ChunkVerdict]:
    verdicts = []
    for chunk in batch:
        src = sf_rows.get(chunk.key, [0] + [None] * (len(usable) - 1))
        tgt = pg_rows.get(chunk.key, [0] + [None] * (len(usable) - 1))
        mismatches = [
            f"{m.label}: source {s!r}, target {t!r}"
            for m, s, t in zip(usable, src, tgt, strict=True)
            if _comparable(s) != _comparable(t) and not (m.kind == "count" and (s or 0) == (t or 0))
        ]
        verdicts.append(ChunkVerdict(chunk.key, int(src[0] or 0), int(tgt[0] or 0), mismatches))
    return verdicts


def _source_fingerprints(
    sf_conn: Any, spec: TableSpec, chunk_col: SourceColumn | None, chunks: Sequence[Chunk], measures: list[_Measure]
) -> dict[str, list]:
    case = _sf_case(spec, chunk_col, chunks)
    query = (
        f"SELECT {case} AS chunk_key, {', '.join(m.sf() for m in measures)} "
        f"FROM {sf_qualified(spec.sf_database, spec.sf_schema, spec.sf_table)} "
        f"WHERE {where_clause(spec.source_filter)} GROUP BY 1"
    )
    cur = sf_conn.cursor()
    try:
        return {r[0]: list(r[1:]) for r in cur.execute(query).fetchall() if r[0] is not None}
    finally:
        cur.close()


def _target_fingerprints(
    pg_conn: psycopg.Connection,
    spec: TableSpec,
    chunk_target: str | None,
    tz: bool,
    chunks: Sequence[Chunk],
    measures: list[_Measure],
    target_name: Any,
) -> dict[str, list]:
    aggregates = sql.SQL(", ").join(m.pg(target_name(m.source_column) if m.source_column else None) for m in measures)
    if chunk_target and _leads_an_index(pg_conn, spec.pg_schema, spec.pg_table, chunk_target):
        return _target_fingerprints_by_range(pg_conn, spec, chunk_target, tz, chunks, aggregates)
    buckets = _pg_buckets(chunk_target, tz, chunks) if chunk_target else None
    if buckets is None:
        case, params = _pg_case(chunk_target, tz, chunks)
        keys = None
    else:
        case, params, keys = buckets
    query = sql.SQL("SELECT {} AS chunk_key, {} FROM {} GROUP BY 1").format(
        case, aggregates, sql.Identifier(spec.pg_schema, spec.pg_table)
    )
    rows = pg_conn.execute(query, params).fetchall()
    if keys is not None:  # bucket numbers -> chunk keys; rows outside every chunk drop out, as with the CASE
        rows = [(keys.get(r[0]), *r[1:]) for r in rows]
    return {r[0]: list(r[1:]) for r in rows if r[0] is not None}


def _leads_an_index(pg_conn: psycopg.Connection, schema: str, table: str, column: str) -> bool:
    """True when some index of the table starts with ``column`` (so a chunk's rows are one index range)."""
    return pg_conn.execute(
        """
        SELECT EXISTS (
            SELECT 1 FROM pg_index i
            JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
            WHERE i.indrelid = to_regclass(format('%%I.%%I', %s::text, %s::text)) AND a.attname = %s
              AND i.indisvalid AND i.indpred IS NULL
        )
        """,
        (schema, table, column),
    ).fetchone()[0]


def _target_fingerprints_by_range(
    pg_conn: psycopg.Connection,
    spec: TableSpec,
    chunk_target: str,
    tz: bool,
    chunks: Sequence[Chunk],
    aggregates: sql.Composable,
) -> dict[str, list]:
    """One plain aggregate per chunk over its index range, as a ``UNION ALL``: each reads only its own
    rows, and PostgreSQL runs them on parallel workers (a ``GROUP BY`` over a computed chunk number
    cannot be: its group count is misestimated as the table's row count). Measured on 1M rows, 8
    chunks: 0.20 s against 0.41 s for the grouped scan."""
    col = sql.Identifier(chunk_target)
    table = sql.Identifier(spec.pg_schema, spec.pg_table)
    parts, params = [], []
    for c in chunks:
        if c.is_null:
            where = sql.SQL("{} IS NULL").format(col)
        else:
            where = sql.SQL("{} >= %s AND {} < %s").format(col, col)
            params += list(_pg_bounds(c, tz))
        parts.append(sql.SQL("SELECT {}, {} FROM {} WHERE {}").format(sql.Literal(c.key), aggregates, table, where))
    rows = pg_conn.execute(sql.SQL(" UNION ALL ").join(parts), params).fetchall()
    return {r[0]: list(r[1:]) for r in rows if r[1]}  # a chunk without rows is absent, as with GROUP BY


def count_rows(sf_conn: Any, pg_conn: psycopg.Connection, spec: TableSpec) -> tuple[int, int]:
    """(source rows with source_filter, target rows)."""
    cur = sf_conn.cursor()
    try:
        source = cur.execute(
            f"SELECT COUNT(*) FROM {sf_qualified(spec.sf_database, spec.sf_schema, spec.sf_table)} "
            f"WHERE {where_clause(spec.source_filter)}"
        ).fetchone()[0]
    finally:
        cur.close()
    target = pg_conn.execute(
        sql.SQL("SELECT COUNT(*) FROM {}").format(sql.Identifier(spec.pg_schema, spec.pg_table))
    ).fetchone()[0]
    return int(source), int(target)


def verify_table(
    sf_conn: Any, pg_conn: psycopg.Connection, spec: TableSpec, columns: list[SourceColumn], chunks: Sequence[Chunk]
) -> TableVerdict:
    """Row counts for the whole table plus a fingerprint per chunk."""
    source, target = count_rows(sf_conn, pg_conn, spec)
    verdicts, queries = fingerprint_chunks(sf_conn, pg_conn, spec, columns, chunks)
    return TableVerdict(spec.name, source, target, verdicts, queries + 1)

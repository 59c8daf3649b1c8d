"""Source-to-target reconciliation: row counts per table and fingerprints per chunk.

A chunk's fingerprint is the row count, min/max of the chunking column and numeric keys, and per
column the non-NULL count and sums of exact encodings (``sf2pg/reconcile/measures.py``), computed by both
engines in one aggregated query per side per ``CHUNKS_PER_QUERY`` chunks.

On a moving source, the ledger's table watermark H says what the target must already hold: every
change with a watermark below H (rows at H itself may still arrive late: the next window reads them
again). With H set, the source side reads the *settled* rows (watermark < H or
NULL) and, in the same statement (one snapshot), the keys of the rows past H; those keys go into a
temporary table and the target side leaves them out. Tables without keys filter both sides on their
own watermark column. Each comparison holds the table's lease exclusively, so no load commits
between the two sides' statements.
"""

from __future__ import annotations

import datetime as dt
import decimal
import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
from psycopg import sql

from sf2pg.config.identifiers import pg_column_match, sf_qualified, sf_quote
from sf2pg.config.model import TableSpec
from sf2pg.config.typemap import IncompatibleTypeError, SourceColumn, load_type_for_existing, target_type
from sf2pg.errors import InputError
from sf2pg.load import ledger, locks
from sf2pg.load.conform import conform
from sf2pg.load.copy import copy_batches
from sf2pg.load.target import ColumnPlan, TargetTable
from sf2pg.plan.chunks import Chunk, naive_utc, parse_watermark, sf_literal
from sf2pg.reconcile.measures import Measure, column_measures, row_count, sf_node_source
from sf2pg.source.extract import chunk_predicate, find_column, where_clause

CHUNKS_PER_QUERY = 250
_MOVING_KEYS = sql.Identifier("sf2pg_moving_keys")
_PRESENT_KEYS = sql.Identifier("sf2pg_present_keys")
_NUMERIC_KEY_TYPES = {"smallint", "integer", "bigint", "numeric", "double precision"}


Depth = Literal["rows", "cells"]  # what a chunk comparison reads: counts and bounds, or every cell

# the checks' names, in Dagster's UI and the CLI's output alike
ROW_COUNT_CHECK = "row_count"  # whole-table counts
ROWS_CHECK = "chunk_rows"  # per chunk: row counts and bounds
CHUNK_CHECK = "chunk_fingerprint"  # per chunk: every cell


def chunk_check_after_load(spec: TableSpec) -> tuple[str, Depth]:
    """The per-chunk check a load of the table runs, and its depth (``checks_after_load``)."""
    return (CHUNK_CHECK, "cells") if spec.checks_after_load == "cells" else (ROWS_CHECK, "rows")


class WatermarkError(InputError):
    """The ledger's watermark cannot be compared with the table's watermark column."""


@dataclass(frozen=True)
class Mismatch:
    """One measure of one chunk that differs between the sides."""

    column: str | None
    measure: str
    source: Any
    target: Any
    shows_values: bool = True

    def __str__(self) -> str:
        what = f"column {self.column}: {self.measure}" if self.column else self.measure
        if not self.shows_values:
            return f"{what} differs"
        return f"{what}: source {_shown(self.source)}, target {_shown(self.target)}"


@dataclass
class ChunkVerdict:
    """One chunk's comparison (over its settled rows when the source moves)."""

    key: str
    source_rows: int
    target_rows: int
    mismatches: list[Mismatch] = field(default_factory=list)
    watermark: str | None = None  # compared up to this watermark (the ledger's H), if set
    moving_keys: int = 0  # keys past H left out of the target side
    pending_deletes: int = 0  # target rows whose key Snowflake no longer holds (delete detection removes them)
    awaiting_reload: list[str] = field(default_factory=list)  # columns added since the chunk loaded

    @property
    def passed(self) -> bool:
        return not self.mismatches

    @property
    def columns(self) -> list[str]:
        """The columns that differ, in table order."""
        return list(dict.fromkeys(m.column for m in self.mismatches if m.column))

    def summary(self) -> str:
        """The mismatches in one line: the row counts when they differ (the columns' measures follow
        them then, so they are only counted), else each differing measure with its column."""
        if self.rows_differ:
            rows = f"rows: source {self.source_rows:,}, target {self.target_rows:,}"
            text = f"{rows}, and with them the measures of {len(self.columns)} column(s)" if self.columns else rows
        else:
            text = "; ".join(str(m) for m in self.mismatches)
        waiting = [c for c in self.awaiting_reload if c in self.columns] if not self.rows_differ else []
        if waiting:
            text += (
                f" ({', '.join(waiting)} added to the table after this chunk loaded: its unchanged rows hold NULL "
                "there until `sf2pg migrate` reloads it)"
            )
        return text

    @property
    def rows_differ(self) -> bool:
        return self.source_rows != self.target_rows

    def description(self) -> str:
        """The verdict as a check reports it: what was compared, and on failure what differs."""
        settled = f" (rows with watermark below {self.watermark})" if self.watermark is not None else ""
        if self.pending_deletes:
            settled += f"; {self.pending_deletes} row(s) deleted in Snowflake wait for delete detection"
        if self.passed:
            return f"the chunk matches its source{settled}"
        return f"chunk {self.key} differs from the source{settled}: {self.summary()} — re-materialize this partition"


@dataclass(frozen=True)
class RowCount:
    """Whole-table counts. With a watermark H, the source's settled rows and the rows past H."""

    source_rows: int  # settled rows (all rows without H)
    target_rows: int
    moving_rows: int = 0
    watermark: str | None = None
    deletes_pending: bool = False  # delete detection removes rows Snowflake deleted: more may be there meanwhile

    @property
    def passed(self) -> bool:
        if self.deletes_pending:
            return self.source_rows <= self.target_rows
        return self.source_rows <= self.target_rows <= self.source_rows + self.moving_rows

    def summary(self) -> str:
        if self.watermark is None:
            if self.passed:
                return f"source and target both have {self.target_rows:,} rows"
            more = "more" if self.target_rows > self.source_rows else "fewer"
            return (
                f"target has {abs(self.target_rows - self.source_rows):,} {more} rows than the source "
                f"({self.target_rows:,} vs {self.source_rows:,})"
            )
        settled = f"{self.source_rows:,} settled up to watermark {self.watermark}"
        if self.passed and self.deletes_pending:
            extra = max(self.target_rows - self.source_rows - self.moving_rows, 0)
            return (
                f"target has {self.target_rows:,} rows: at least the {self.source_rows:,} settled source rows "
                f"(watermark below {self.watermark}), {self.moving_rows:,} past it"
                + (f", and up to {extra:,} deleted in Snowflake that delete detection removes" if extra else "")
            )
        if self.passed:
            return (
                f"target has {self.target_rows:,} rows: between {self.source_rows:,} settled source rows "
                f"(watermark below {self.watermark}) and {self.source_rows + self.moving_rows:,} with the "
                f"{self.moving_rows:,} past it, as expected"
            )
        if self.target_rows < self.source_rows:
            return (
                f"target has {self.source_rows - self.target_rows:,} fewer rows than the source "
                f"({self.target_rows:,} vs {settled}; {self.moving_rows:,} past it)"
            )
        return (
            f"target has {self.target_rows - self.source_rows - self.moving_rows:,} more rows than the source "
            f"({self.target_rows:,} vs {settled} and {self.moving_rows:,} past it)"
        )


@dataclass
class TableVerdict:
    table: str
    source_rows: int
    target_rows: int
    chunks: list[ChunkVerdict] = field(default_factory=list)
    source_queries: int = 0
    moving_rows: int = 0
    watermark: str | None = None
    deletes_pending: bool = False

    @property
    def counts(self) -> RowCount:
        return RowCount(self.source_rows, self.target_rows, self.moving_rows, self.watermark, self.deletes_pending)

    @property
    def failed_chunks(self) -> list[ChunkVerdict]:
        return [c for c in self.chunks if not c.passed]

    @property
    def passed(self) -> bool:
        return self.counts.passed and not self.failed_chunks


def _shown(value: Any) -> str:
    if isinstance(value, decimal.Decimal):
        return format(value.normalize(), "f") if value == value.to_integral_value() else str(value)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat(sep=" ") if isinstance(value, dt.datetime) else value.isoformat()
    return "NULL" if value is None else str(value)


def _comparable(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return naive_utc(value)
    if isinstance(value, int | float | decimal.Decimal) and not isinstance(value, bool):
        return decimal.Decimal(str(value)).normalize()
    return value


# ---- the table as both sides see it ---------------------------------------------------------------


@dataclass(frozen=True)
class _TargetColumn:
    name: str
    data_type: str
    precision: int | None
    scale: int | None


@dataclass
class _Plan:
    """What one table's comparison reads on each side (worked out once per table)."""

    spec: TableSpec
    measures: list[Measure]
    chunk_col: SourceColumn | None
    chunk_target: str | None
    tz: bool
    by_range: bool
    keys: list[tuple[SourceColumn, _TargetColumn]]
    watermark_col: SourceColumn | None
    watermark_target: str | None

    @property
    def json_measures(self) -> list[tuple[int, Measure]]:
        return [(i, m) for i, m in enumerate(self.measures) if m.sf_nodes]


def _target_columns(pg_conn: psycopg.Connection, spec: TableSpec) -> dict[str, _TargetColumn]:
    rows = pg_conn.execute(
        "SELECT column_name, data_type, numeric_precision, numeric_scale FROM information_schema.columns "
        "WHERE table_schema = %s AND table_name = %s",
        (spec.pg_schema, spec.pg_table),
    ).fetchall()
    return {r[0]: _TargetColumn(*r) for r in rows}


def _plan(pg_conn: psycopg.Connection, spec: TableSpec, columns: list[SourceColumn], depth: Depth = "cells") -> _Plan:
    """``depth`` "rows": each chunk's row count and chunking-column and key bounds (cheap: no column is
    read beyond those); "cells": every column's measures too, which see one changed cell."""
    existing = _target_columns(pg_conn, spec)

    def target_name(name: str) -> str | None:
        return pg_column_match(existing, name)  # the one naming rule every load uses (long names too)

    # columns the target lacks, or holds in a type the source no longer loads into (a retype ignored by
    # unsafe_schema_changes), cannot be compared; load metadata reports them as skipped
    shared = [(c, t) for c in columns if (t := target_name(c.name)) and _loads_into(c, existing[t])]
    chunk_col = (
        find_column(columns, spec.chunking_column, "chunking", spec.config_path) if spec.chunking_column else None
    )
    chunk_target = target_name(chunk_col.name) if chunk_col else None
    measures = [row_count()]
    ident = {c.name: t for c, t in shared}
    keys = [find_column(columns, k, "uniqueness", spec.config_path) for k in spec.uniqueness_columns]
    for col in ([chunk_col] if chunk_col else []) + [k for k in keys if _is_numeric(k)]:
        if col.name in ident:
            target = sql.Identifier("t", ident[col.name])
            measures += [
                Measure(col.name, "min", f"MIN({sf_quote(col.name)})", sql.SQL("MIN({})").format(target)),
                Measure(col.name, "max", f"MAX({sf_quote(col.name)})", sql.SQL("MAX({})").format(target)),
            ]
    for i, (col, target) in enumerate(shared if depth == "cells" else []):
        measures += column_measures(col, target, i, spec.nul_bytes == "strip")
    watermark_col = (
        find_column(columns, spec.source_watermark, "watermark", f"{spec.config_path}.source_watermark")
        if spec.source_watermark
        else None
    )
    return _Plan(
        spec,
        list({(m.column, m.name): m for m in measures}.values()),
        chunk_col,
        chunk_target,
        bool(chunk_target) and existing[chunk_target].data_type == "timestamp with time zone",  # type: ignore[index]
        bool(chunk_target) and _leads_an_index(pg_conn, spec.pg_schema, spec.pg_table, chunk_target),  # type: ignore[arg-type]
        [(k, existing[ident[k.name]]) for k in keys if k.name in ident],
        watermark_col,
        target_name(spec.target_watermark) if spec.target_watermark else None,
    )


def _loads_into(col: SourceColumn, target: _TargetColumn) -> bool:
    try:
        load_type_for_existing(target_type(col), target.data_type, target.precision, target.scale)
    except (IncompatibleTypeError, ValueError):
        return False
    return True


def _is_numeric(col: SourceColumn) -> bool:
    return target_type(col).pg_type.split("(")[0] in _NUMERIC_KEY_TYPES


# ---- settled rows on a moving source --------------------------------------------------------------


def read_watermark(pg_conn: psycopg.Connection, spec: TableSpec) -> dt.datetime | int | None:
    """The ledger's table watermark H: every source change with a watermark below H is in the target."""
    if not spec.source_watermark:
        return None
    if not pg_conn.execute("SELECT to_regclass('migration_status.table_state')").fetchone()[0]:
        return None
    row = pg_conn.execute(
        "SELECT watermark FROM migration_status.table_state WHERE target_schema = %s AND target_table = %s",
        (spec.pg_schema, spec.pg_table),
    ).fetchone()
    return parse_watermark(row[0]) if row and row[0] is not None else None


@dataclass(frozen=True)
class _Settled:
    """The rows both sides compare when the ledger holds a watermark H (``None``: every row)."""

    watermark: dt.datetime | int | None
    column: SourceColumn | None
    target_column: str | None
    keyed: bool

    @property
    def active(self) -> bool:
        return self.watermark is not None

    @property
    def ships_keys(self) -> bool:
        return self.active and self.keyed

    @property
    def text(self) -> str | None:
        if self.watermark is None:
            return None
        return (
            naive_utc(self.watermark).isoformat(sep=" ")
            if isinstance(self.watermark, dt.datetime)
            else str(self.watermark)
        )

    def _bound(self) -> tuple[str, Any]:
        """(operator, first value in flight): rows *at* H are in flight too, since rows committed late
        with the last high watermark are only read by the next window (its lower bound is inclusive)."""
        if isinstance(self.watermark, dt.datetime):
            return "<", self.watermark
        return "<", int(self.watermark)  # type: ignore[arg-type]

    def sf(self, moving: bool = False) -> str:
        col = sf_quote(self.column.name)  # type: ignore[union-attr]
        op, bound = self._bound()
        if isinstance(bound, dt.datetime):
            sf_type = self.column.data_type.upper()  # type: ignore[union-attr]
            literal = sf_literal(bound, sf_type if sf_type.startswith("TIMESTAMP") else "TIMESTAMP_NTZ")
        else:
            literal = str(bound)
        if moving:
            return f"{col} {'>=' if op == '<' else '>'} {literal}"
        return f"({col} {op} {literal} OR {col} IS NULL)"

    def pg(self, tz: bool) -> tuple[sql.Composable, list]:
        col = sql.Identifier("t", self.target_column)  # type: ignore[arg-type]
        op, bound = self._bound()
        if isinstance(bound, dt.datetime) and tz:
            bound = bound.replace(tzinfo=dt.UTC)
        return sql.SQL("({} {} %s OR {} IS NULL)").format(col, sql.SQL(op), col), [bound]


def _settled(pg_conn: psycopg.Connection, plan: _Plan) -> _Settled:
    spec = plan.spec
    watermark = read_watermark(pg_conn, spec)
    if watermark is None or plan.watermark_col is None:
        return _Settled(None, None, None, bool(plan.keys))
    is_time = target_type(plan.watermark_col).pg_type.split("(")[0] in {"timestamp", "timestamptz", "date"}
    if is_time != isinstance(watermark, dt.datetime):
        raise WatermarkError(
            f"table {spec.name} ({spec.config_path}): migration_status.table_state.watermark is {watermark!r}, "
            f"which cannot be compared with {plan.watermark_col.name} ({plan.watermark_col.data_type})"
        )
    if not plan.keys and plan.watermark_target is None:
        raise WatermarkError(
            f"table {spec.name} ({spec.config_path}.target_watermark): the target has no column "
            f"{spec.target_watermark!r} to leave out the rows past the watermark"
        )
    return _Settled(watermark, plan.watermark_col, plan.watermark_target, bool(plan.keys))


# ---- fingerprints --------------------------------------------------------------------------------


def fingerprint_chunks(
    sf_conn: Any,
    pg_conn: psycopg.Connection,
    spec: TableSpec,
    columns: list[SourceColumn],
    chunks: Sequence[Chunk],
    depth: Depth = "cells",
) -> tuple[list[ChunkVerdict], int]:
    """Compare every chunk's fingerprint (at ``depth``); returns verdicts and the source queries used."""
    plan = _plan(pg_conn, spec, columns, depth)
    backfill = ledger.chunks_to_backfill(pg_conn, spec.pg_schema, spec.pg_table)
    verdicts, queries = [], 0
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sf2pg-fingerprint") as pool:
        for start in range(0, len(chunks), CHUNKS_PER_QUERY):
            batch = chunks[start : start + CHUNKS_PER_QUERY]
            verdicts += _compare_batch(sf_conn, pg_conn, plan, batch, pool)
            queries += 1
    for verdict in verdicts:
        verdict.awaiting_reload = backfill.get(verdict.key, [])
    return verdicts, queries


def _compare_batch(
    sf_conn: Any, pg_conn: psycopg.Connection, plan: _Plan, batch: Sequence[Chunk], pool: ThreadPoolExecutor
) -> list[ChunkVerdict]:
    verdicts = _compare_once(sf_conn, pg_conn, plan, batch, pool)
    failing = [v.key for v in verdicts if not v.passed]
    if failing and plan.spec.delete_detection == "keys" and plan.keys:
        again = {
            v.key: v for v in _compare_once(sf_conn, pg_conn, plan, [c for c in batch if c.key in failing], pool, True)
        }
        verdicts = [again.get(v.key, v) for v in verdicts]
    return verdicts


def _compare_once(
    sf_conn: Any,
    pg_conn: psycopg.Connection,
    plan: _Plan,
    batch: Sequence[Chunk],
    pool: ThreadPoolExecutor,
    pending_deletes: bool = False,
) -> list[ChunkVerdict]:
    """One comparison of a batch of chunks. With ``pending_deletes`` (a table with delete detection, for
    chunks that differed): the same statement also returns the keys Snowflake holds in those chunks,
    and target rows whose key is gone count as deletes still to be applied, not as differences, since
    the next delete-detection pass removes them."""
    spec = plan.spec
    with pg_conn.transaction():
        locks.hold_lease_exclusive(pg_conn, spec.pg_schema, spec.pg_table)
        settled = _settled(pg_conn, plan)
        present = pending_deletes and bool(plan.keys)
        query = _source_query(plan, batch, settled, present)
        moving = 0
        if settled.ships_keys or present:  # the target side needs the source's keys first
            sf_rows, moving, held = _source_rows(
                sf_conn, query, plan, lambda keys: _ship_keys(pg_conn, plan, keys, _MOVING_KEYS), present
            )
            if present:
                _ship_keys(pg_conn, plan, held, _PRESENT_KEYS)
            pg_rows = _target_fingerprints(pg_conn, plan, batch, settled, present)
            everything = _target_fingerprints(pg_conn, plan, batch, settled) if present else pg_rows
        else:  # both sides at once: the source's aggregate runs while the target computes its own
            source = pool.submit(_source_rows, sf_conn, query, plan, None)
            pg_rows = everything = _target_fingerprints(pg_conn, plan, batch, settled)
            sf_rows, _, _ = source.result()
    verdicts = _compare(batch, plan.measures, sf_rows, pg_rows, settled.text, moving)
    for v in verdicts:
        v.pending_deletes = int((everything.get(v.key) or [0])[0] or 0) - int((pg_rows.get(v.key) or [0])[0] or 0)
    return verdicts


def _compare(
    batch: Sequence[Chunk],
    measures: list[Measure],
    sf_rows: dict[str, list],
    pg_rows: dict[str, list],
    watermark: str | None,
    moving: int,
) -> list[ChunkVerdict]:
    verdicts = []
    empty = [0] + [None] * (len(measures) - 1)
    for chunk in batch:
        src, tgt = sf_rows.get(chunk.key, empty), pg_rows.get(chunk.key, empty)
        mismatches = [
            Mismatch(m.column, m.name, s, t, m.shows_values)
            for m, s, t in zip(measures, src, tgt, strict=True)
            if _comparable(s) != _comparable(t) and not (m.sf.startswith("COUNT(") and (s or 0) == (t or 0))
        ]
        verdicts.append(ChunkVerdict(chunk.key, int(src[0] or 0), int(tgt[0] or 0), mismatches, watermark, moving))
    return verdicts


# ---- the Snowflake side --------------------------------------------------------------------------

_ROWS = '"_sf2pg_rows"'
_CHUNK = '"_sf2pg_chunk"'


def _sf_case(column: SourceColumn | None, chunks: Sequence[Chunk]) -> str:
    if column is None:
        return f"'{chunks[0].key}'"
    whens = " ".join(f"WHEN {chunk_predicate(column, c)} THEN '{c.key}'" for c in chunks)
    return f"CASE {whens} END"


def _source_query(plan: _Plan, chunks: Sequence[Chunk], settled: _Settled, present: bool = False) -> str:
    """One statement (one snapshot): a row per chunk with every measure, and with H set on a keyed
    table also a row per key past H (``_sf2pg_kind`` 'k'); with ``present``, a row per key of the
    chunks' compared rows too ('p')."""
    spec = plan.spec
    table = sf_qualified(spec.sf_database, spec.sf_schema, spec.sf_table)
    where = where_clause(spec.source_filter, settled.sf() if settled.active else None)
    extra = "".join(f", {expression} AS {sf_quote(alias)}" for m in plan.measures for alias, expression in m.sf_row)
    rows = f"SELECT *, {_sf_case(plan.chunk_col, chunks)} AS {_CHUNK}{extra} FROM {table} WHERE {where}"
    aggregates = ", ".join(f'{m.sf} AS "m{i}"' for i, m in enumerate(plan.measures))
    parts = [f"(SELECT {_CHUNK}, {aggregates} FROM {_ROWS} WHERE {_CHUNK} IS NOT NULL GROUP BY 1) f"]
    selected = [f'f."m{i}"' for i in range(len(plan.measures))]
    for i, m in plan.json_measures:
        nodes = sf_node_source(_ROWS, "r", m.column)  # type: ignore[arg-type]
        parts.append(
            f"LEFT JOIN (SELECT {_CHUNK}, {m.sf_nodes} AS h FROM ({nodes}) WHERE {_CHUNK} IS NOT NULL GROUP BY 1) j{i} "
            f"ON j{i}.{_CHUNK} = f.{_CHUNK}"
        )
        selected[i] = f'COALESCE(f."m{i}", 0) + COALESCE(j{i}.h, 0)'
    keys = [sf_quote(k.name) for k, _ in plan.keys] if (settled.ships_keys or present) else []
    select = ", ".join([f"'c' AS \"_sf2pg_kind\", f.{_CHUNK}", *selected, *(f"NULL AS k{i}" for i in range(len(keys)))])
    query = f"WITH {_ROWS} AS ({rows}) SELECT {select} FROM {' '.join(parts)}"
    nulls = ", ".join(["NULL"] * (1 + len(plan.measures)))
    if keys and settled.ships_keys:
        moving = where_clause(spec.source_filter, settled.sf(moving=True))
        query += f" UNION ALL SELECT 'k', {nulls}, {', '.join(keys)} FROM {table} WHERE {moving}"
    if keys and present:
        query += f" UNION ALL SELECT 'p', {nulls}, {', '.join(keys)} FROM {_ROWS} WHERE {_CHUNK} IS NOT NULL"
    return query


def _source_rows(
    sf_conn: Any,
    query: str,
    plan: _Plan,
    on_keys: Callable[[Iterator[pa.RecordBatch]], int] | None,
    present: bool = False,
) -> tuple[dict[str, list], int, list[pa.RecordBatch]]:
    """Run the source statement: chunk rows by key, and the moving keys streamed to ``on_keys``
    (Arrow batches, so the key set is never held in memory whole); returns (rows, keys shipped, the
    chunks' own keys when ``present``: only chunks that differed are rechecked that way)."""
    width = 2 + len(plan.measures)
    found: dict[str, list] = {}
    held: list[pa.RecordBatch] = []
    cur = sf_conn.cursor()
    try:
        cur.execute(query)

        def keys() -> Iterator[pa.RecordBatch]:
            for table in cur.fetch_arrow_batches():
                kinds = table.column(0)
                chunk_rows = table.filter(pc.equal(kinds, "c"))
                for row in zip(*(c.to_pylist() for c in chunk_rows.columns[1:width]), strict=True):
                    if row[0] is not None:
                        found[row[0]] = list(row[1:])
                key_columns = list(range(width, table.num_columns))
                if present:
                    held.extend(table.filter(pc.equal(kinds, "p")).select(key_columns).to_batches())
                key_rows = table.filter(pc.equal(kinds, "k"))
                if key_rows.num_rows:
                    yield from key_rows.select(key_columns).to_batches()

        shipped = on_keys(keys()) if on_keys else sum(1 for _ in keys())
    finally:
        cur.close()
    return found, shipped, held


# ---- the PostgreSQL side -------------------------------------------------------------------------


def _ship_keys(
    pg_conn: psycopg.Connection, plan: _Plan, batches: Iterable[pa.RecordBatch], into: sql.Identifier
) -> int:
    """COPY source keys into a temporary table (dropped at commit): the moving keys, for the target side
    to leave out, or the keys Snowflake still holds, for it to keep."""
    spec = plan.spec
    keys = TargetTable(
        spec.pg_schema,
        spec.pg_table,
        [
            ColumnPlan(col, tc.name, load_type_for_existing(target_type(col), tc.data_type, tc.precision, tc.scale))
            for col, tc in plan.keys
        ],
        [tc.name for _, tc in plan.keys],
        None,
    )
    names = sql.SQL(", ").join(sql.Identifier(tc.name) for _, tc in plan.keys)
    where = f"table {spec.name} ({spec.config_path}), moving keys"
    with pg_conn.cursor() as cur:
        cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(into))
        cur.execute(
            sql.SQL("CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA").format(
                into, names, sql.Identifier(spec.pg_schema, spec.pg_table)
            )
        )
        rows, _ = copy_batches(cur, into, keys, conform(batches, keys, spec.batch_size, spec.nul_bytes, where))
        cur.execute(sql.SQL("ANALYZE {}").format(into))
    return rows


def _pg_filter(plan: _Plan, settled: _Settled, present: bool = False) -> tuple[sql.Composable | None, list]:
    def same(alias: str) -> sql.Composable:
        return sql.SQL(" AND ").join(
            sql.SQL("{a}.{c} = t.{c}").format(a=sql.Identifier(alias), c=sql.Identifier(tc.name)) for _, tc in plan.keys
        )

    parts: list[sql.Composable] = []
    params: list = []
    if settled.ships_keys:
        parts.append(sql.SQL("NOT EXISTS (SELECT 1 FROM {} AS mk WHERE {})").format(_MOVING_KEYS, same("mk")))
    elif settled.active:
        condition, params = settled.pg(target_type(settled.column).pg_type == "timestamptz")  # type: ignore[arg-type]
        parts.append(condition)
    if present:
        parts.append(sql.SQL("EXISTS (SELECT 1 FROM {} AS pk WHERE {})").format(_PRESENT_KEYS, same("pk")))
    if not parts:
        return None, []
    return sql.SQL(" AND ").join(parts), params


def _pg_case(col: sql.Composable | None, kind_tz: bool, chunks: Sequence[Chunk]) -> tuple[sql.Composable, list]:
    if col is None:
        return sql.Literal(chunks[0].key), []
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
    col: sql.Composable, kind_tz: bool, chunks: Sequence[Chunk]
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
    expr = sql.SQL("width_bucket({}, ARRAY[{}])").format(col, sql.SQL(", ").join(sql.SQL("%s") for _ in bounds))
    return expr, params, keys


def _target_fingerprints(
    pg_conn: psycopg.Connection, plan: _Plan, chunks: Sequence[Chunk], settled: _Settled, present: bool = False
) -> dict[str, list]:
    spec = plan.spec
    aggregates = sql.SQL(", ").join(m.pg for m in plan.measures)
    source = sql.SQL(" ").join(
        [sql.SQL("{} AS t").format(sql.Identifier(spec.pg_schema, spec.pg_table))]
        + [m.pg_from for m in plan.measures if m.pg_from is not None]
    )
    condition, condition_params = _pg_filter(plan, settled, present)
    chunk_col = sql.Identifier("t", plan.chunk_target) if plan.chunk_target else None
    if chunk_col is not None and plan.by_range:
        return _target_fingerprints_by_range(
            pg_conn, chunk_col, plan.tz, chunks, aggregates, source, condition, condition_params
        )
    buckets = _pg_buckets(chunk_col, plan.tz, chunks) if chunk_col is not None else None
    if buckets is None:
        case, params = _pg_case(chunk_col, plan.tz, chunks)
        keys = None
    else:
        case, params, keys = buckets
    where = sql.SQL(" WHERE {}").format(condition) if condition is not None else sql.SQL("")
    query = sql.SQL("SELECT {} AS chunk_key, {} FROM {}{} GROUP BY 1").format(case, aggregates, source, where)
    rows = pg_conn.execute(query, params + condition_params).fetchall()
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
    col: sql.Composable,
    tz: bool,
    chunks: Sequence[Chunk],
    aggregates: sql.Composable,
    source: sql.Composable,
    condition: sql.Composable | None,
    condition_params: list,
) -> dict[str, list]:
    """One plain aggregate per chunk over its index range, as a ``UNION ALL``: each reads only its own
    rows, and PostgreSQL runs them on parallel workers (a ``GROUP BY`` over a computed chunk number
    cannot be: its group count is misestimated as the table's row count). Measured on 1M rows, 8
    chunks: 0.20 s against 0.41 s for the grouped scan."""
    parts, params = [], []
    for c in chunks:
        if c.is_null:
            where = sql.SQL("{} IS NULL").format(col)
        else:
            where = sql.SQL("{} >= %s AND {} < %s").format(col, col)
            params += list(_pg_bounds(c, tz))
        if condition is not None:
            where = sql.SQL("{} AND {}").format(where, condition)
            params += condition_params
        parts.append(sql.SQL("SELECT {}, {} FROM {} WHERE {}").format(sql.Literal(c.key), aggregates, source, where))
    rows = pg_conn.execute(sql.SQL(" UNION ALL ").join(parts), params).fetchall()
    return {r[0]: list(r[1:]) for r in rows if r[1]}  # a chunk without rows is absent, as with GROUP BY


# ---- whole-table counts --------------------------------------------------------------------------


def count_rows(sf_conn: Any, pg_conn: psycopg.Connection, spec: TableSpec) -> tuple[int, int]:
    """(source rows with source_filter, target rows): plain counts, for summaries."""
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


def compare_counts(
    sf_conn: Any, pg_conn: psycopg.Connection, spec: TableSpec, columns: Callable[[], list[SourceColumn]]
) -> RowCount:
    """Whole-table counts under the lease. With the ledger's watermark H, the source's settled rows
    and rows past H are counted in one statement; the target may hold anything in between.
    ``columns`` describes the source table, asked only when H is set."""
    with pg_conn.transaction():
        locks.hold_lease_exclusive(pg_conn, spec.pg_schema, spec.pg_table)
        watermark = read_watermark(pg_conn, spec)
        table = sf_qualified(spec.sf_database, spec.sf_schema, spec.sf_table)
        if watermark is None:
            query = f"SELECT COUNT(*), 0 FROM {table} WHERE {where_clause(spec.source_filter)}"
            settled = None
        else:
            column = find_column(columns(), spec.source_watermark, "watermark", f"{spec.config_path}.source_watermark")  # type: ignore[arg-type]
            settled = _Settled(watermark, column, None, True)
            query = (
                f"SELECT COUNT(CASE WHEN {settled.sf()} THEN 1 END), COUNT(CASE WHEN {settled.sf(moving=True)} THEN 1 END) "
                f"FROM {table} WHERE {where_clause(spec.source_filter)}"
            )
        cur = sf_conn.cursor()
        try:
            source, moving = cur.execute(query).fetchone()
        finally:
            cur.close()
        target = pg_conn.execute(
            sql.SQL("SELECT COUNT(*) FROM {}").format(sql.Identifier(spec.pg_schema, spec.pg_table))
        ).fetchone()[0]
    deletes = settled is not None and spec.delete_detection == "keys"
    return RowCount(int(source), int(target), int(moving), settled.text if settled else None, deletes)


def verify_table(
    sf_conn: Any, pg_conn: psycopg.Connection, spec: TableSpec, columns: list[SourceColumn], chunks: Sequence[Chunk]
) -> TableVerdict:
    """Row counts for the whole table plus a fingerprint per chunk."""
    counts = compare_counts(sf_conn, pg_conn, spec, lambda: columns)
    verdicts, queries = fingerprint_chunks(sf_conn, pg_conn, spec, columns, chunks)
    return TableVerdict(
        spec.name,
        counts.source_rows,
        counts.target_rows,
        verdicts,
        queries + 1,
        counts.moving_rows,
        counts.watermark,
        counts.deletes_pending,
    )

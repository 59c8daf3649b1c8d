"""Per-chunk fingerprints of source and target, compared: what each side reads, and on a moving source which rows.

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
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from sf2pg.config.identifiers import pg_column_match, sf_quote
from sf2pg.config.model import TableSpec
from sf2pg.config.typemap import (
    IncompatibleTypeError,
    SourceColumn,
    load_type_for_existing,
    sf_type_text,
    target_type,
)
from sf2pg.load import drift, ledger, locks
from sf2pg.load.chunk import is_timestamptz, pg_bound
from sf2pg.load.target import existing_columns
from sf2pg.plan.chunks import Chunk, naive_utc, parse_watermark, sf_literal
from sf2pg.reconcile.measures import Measure, column_measures, row_count
from sf2pg.reconcile.queries import (
    MOVING_KEYS,
    PRESENT_KEYS,
    leads_an_index,
    ship_keys,
    source_query,
    source_rows,
    target_fingerprints,
)
from sf2pg.reconcile.verdicts import ChunkVerdict, Depth, Mismatch, WatermarkError, comparable
from sf2pg.source.statements import find_column, watermark_column

CHUNKS_PER_QUERY = 250
_NUMERIC_KEY_TYPES = {"smallint", "integer", "bigint", "numeric", "double precision"}


# ---- the table as both sides see it ---------------------------------------------------------------


@dataclass(frozen=True)
class TargetColumn:
    name: str
    data_type: str
    precision: int | None
    scale: int | None


@dataclass
class ComparisonPlan:
    """What one table's comparison reads on each side (worked out once per table)."""

    spec: TableSpec
    measures: list[Measure]
    chunk_col: SourceColumn | None
    chunk_target: str | None
    tz: bool
    by_range: bool
    keys: list[tuple[SourceColumn, TargetColumn]]
    watermark_col: SourceColumn | None
    watermark_target: str | None
    # source columns changed in Snowflake since the last load (added, widened) that the target does not
    # hold yet: every chunk differs in them until the next load follows the change
    not_loaded_yet: list[Mismatch] = field(default_factory=list)

    @property
    def json_measures(self) -> list[tuple[int, Measure]]:
        return [(i, m) for i, m in enumerate(self.measures) if m.sf_nodes]


def _target_columns(pg_conn: psycopg.Connection, spec: TableSpec) -> dict[str, TargetColumn]:
    existing = existing_columns(pg_conn, spec.pg_schema, spec.pg_table)
    return {name: TargetColumn(name, c.data_type, c.precision, c.scale) for name, c in existing.items()}


def comparison_plan(
    pg_conn: psycopg.Connection, spec: TableSpec, columns: list[SourceColumn], depth: Depth = "cells"
) -> ComparisonPlan:
    """``depth`` "rows": each chunk's row count and chunking-column and key bounds (cheap: no column is
    read beyond those); "cells": every column's measures too, which see one changed cell."""
    existing = _target_columns(pg_conn, spec)

    def target_name(name: str) -> str | None:
        return pg_column_match(existing, name)  # the one naming rule every load uses (long names too)

    # columns the target lacks, or holds in a type the source no longer loads into, cannot be compared:
    # a change the loads keep out (a retype ignored by unsafe_schema_changes; load metadata reports it
    # as skipped) is left out, one the next load follows (added, widened) is a difference until then
    shared = [(c, t) for c in columns if (t := target_name(c.name)) and _loads_into(c, existing[t])]
    compared = {c.name for c, _ in shared}
    recorded, _ = ledger.source_columns(pg_conn, spec.pg_schema, spec.pg_table)
    followed = {
        change.name: change.kind
        for change in (drift.source_changes(drift.from_json(recorded), columns) if recorded is not None else [])
        if change.kind in drift.SAFE
    }
    not_loaded_yet = [
        Mismatch(
            c.name,
            f"{followed[c.name]} in Snowflake since the last load",
            sf_type_text(c),
            existing[t].data_type if (t := target_name(c.name)) else "no such column",
        )
        for c in columns
        if c.name not in compared and c.name in followed
    ]
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
    watermark_col = watermark_column(columns, spec) if spec.source_watermark else None
    return ComparisonPlan(
        spec,
        list({(m.column, m.name): m for m in measures}.values()),
        chunk_col,
        chunk_target,
        bool(chunk_target) and is_timestamptz(existing[chunk_target].data_type),  # type: ignore[index]
        bool(chunk_target) and leads_an_index(pg_conn, spec.pg_schema, spec.pg_table, chunk_target),  # type: ignore[arg-type]
        [(k, existing[ident[k.name]]) for k in keys if k.name in ident],
        watermark_col,
        target_name(spec.target_watermark) if spec.target_watermark else None,
        not_loaded_yet,
    )


def _loads_into(col: SourceColumn, target: TargetColumn) -> bool:
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


def settled_boundary(
    sf_conn: Any, pg_conn: psycopg.Connection, spec: TableSpec, column: SourceColumn
) -> dt.datetime | int | None:
    """The watermark below which the checks compare rows: the ledger's H while the source is as the
    last window (or load) left it (its maximum H, its count and its recent-rows hash unchanged), else
    H less the table's lookback, since a change committed late may have landed up to there and only
    the next window reads it. None before any load recorded H."""
    from sf2pg.plan.incremental import source_high, window

    h = read_watermark(pg_conn, spec)
    if h is None:
        return None
    _, seen_rows, seen_recent = ledger.settled(pg_conn, spec.pg_schema, spec.pg_table)
    high, rows, recent = source_high(sf_conn, spec, column)
    if high == h and rows == seen_rows and recent is not None and recent == seen_recent:
        return h
    return window(spec, column, h, h).read_from


@dataclass(frozen=True)
class Settled:
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
        bound = pg_bound(bound, isinstance(bound, dt.datetime) and tz)
        return sql.SQL("({} {} %s OR {} IS NULL)").format(col, sql.SQL(op), col), [bound]


def settled_rows(sf_conn: Any, pg_conn: psycopg.Connection, plan: ComparisonPlan) -> Settled:
    spec = plan.spec
    if plan.watermark_col is None:
        return Settled(None, None, None, bool(plan.keys))
    watermark = settled_boundary(sf_conn, pg_conn, spec, plan.watermark_col)
    if watermark is None:
        return Settled(None, None, None, bool(plan.keys))
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
    return Settled(watermark, plan.watermark_col, plan.watermark_target, bool(plan.keys))


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
    plan = comparison_plan(pg_conn, spec, columns, depth)
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
    sf_conn: Any, pg_conn: psycopg.Connection, plan: ComparisonPlan, batch: Sequence[Chunk], pool: ThreadPoolExecutor
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
    plan: ComparisonPlan,
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
        settled = settled_rows(sf_conn, pg_conn, plan)
        present = pending_deletes and bool(plan.keys)
        query = source_query(plan, batch, settled, present)
        moving = 0
        if settled.ships_keys or present:  # the target side needs the source's keys first
            sf_rows, moving, held = source_rows(
                sf_conn, query, plan, lambda keys: ship_keys(pg_conn, plan, keys, MOVING_KEYS), present
            )
            if present:
                ship_keys(pg_conn, plan, held, PRESENT_KEYS)
            pg_rows = target_fingerprints(pg_conn, plan, batch, settled, present)
            everything = target_fingerprints(pg_conn, plan, batch, settled) if present else pg_rows
        else:  # both sides at once: the source's aggregate runs while the target computes its own
            source = pool.submit(source_rows, sf_conn, query, plan, None)
            pg_rows = everything = target_fingerprints(pg_conn, plan, batch, settled)
            sf_rows, _, _ = source.result()
    verdicts = _compare(batch, plan.measures, sf_rows, pg_rows, settled.text, moving)
    for v in verdicts:
        v.mismatches += plan.not_loaded_yet
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
            if comparable(s) != comparable(t) and not (m.sf.startswith("COUNT(") and (s or 0) == (t or 0))
        ]
        verdicts.append(ChunkVerdict(chunk.key, int(src[0] or 0), int(tgt[0] or 0), mismatches, watermark, moving))
    return verdicts

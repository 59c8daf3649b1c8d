"""Keep each table's Dagster dynamic partitions in step with the plan the ledger holds.

The ledger is the plan's record: every chunk ever planned is there with its state, so re-planning
never drops one, whatever Dagster's instance remembers (the CLI may run on a throwaway instance).
Re-planning only ever adds chunks: every chunk that exists is kept, since it may hold loaded rows;
rows beyond the covered range get new chunks at its edges. Partitions are registered in bound order,
so a partition range in Dagster is a range of the table.

Incremental windows load into the chunk partitions their rows fall in (``window_run``), so the
partition set stays the table's chunks: it grows with the data, not with the number of syncs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from dagster import DagsterInstance, DynamicPartitionsDefinition
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from sf2pg.chunks import INCREMENTAL_PREFIX, Chunk, parse_chunk_key, watermark_text
from sf2pg.config import TableSpec
from sf2pg.extract import find_column
from sf2pg.incremental import WindowPlan, source_high
from sf2pg.load import ledger
from sf2pg.planning import Plan, plan_table, source_columns
from sf2pg.resources import PostgresResource
from sf2pg.typemap import SourceColumn, is_wide_integer


def partitions_name(spec: TableSpec) -> str:
    """The dynamic partitions definition name (Dagster allows only letters, digits and underscores)."""
    return re.sub(r"[^A-Za-z0-9_]", "_", f"{spec.source_name}__{spec.pg_table}")


def partitions_def(spec: TableSpec) -> DynamicPartitionsDefinition:
    return DynamicPartitionsDefinition(name=partitions_name(spec))


def in_bound_order(chunks: Iterable[Chunk]) -> list[Chunk]:
    """Range chunks by their lower bound, then the NULL chunk (or the single ``all`` chunk)."""
    chunks = list(chunks)
    ranges = sorted((c for c in chunks if c.is_range), key=lambda c: c.lower)  # type: ignore[arg-type,return-value]
    return ranges + [c for c in chunks if not c.is_range and not c.is_incremental]


def ledger_chunk_keys(postgres: PostgresResource, spec: TableSpec) -> list[str]:
    """Every chunk the ledger knows for the table, whatever its state (empty before the first plan)."""
    import psycopg

    try:
        with postgres.get_connection(spec.pg_database) as conn:
            return list(ledger.chunk_states(conn, spec.pg_schema, spec.pg_table))
    except psycopg.OperationalError:
        return []


loaded_chunk_keys = ledger_chunk_keys  # the name earlier callers use


def known_chunks(spec: TableSpec, instance: DagsterInstance | None, postgres: PostgresResource) -> list[Chunk]:
    """The table's chunks as Dagster and the ledger know them, in bound order (none before a plan)."""
    keys = list(instance.get_dynamic_partitions(partitions_name(spec))) if instance else []
    keys += [k for k in ledger_chunk_keys(postgres, spec) if k not in keys]
    return in_bound_order(parse_chunk_key(spec.chunking_type, k) for k in keys if not k.startswith(INCREMENTAL_PREFIX))


def register(instance: DagsterInstance, spec: TableSpec, chunks: Iterable[Chunk]) -> None:
    """Add the chunks Dagster does not know yet as partitions, in the order given."""
    name = partitions_name(spec)
    registered = set(instance.get_dynamic_partitions(name))
    missing = [c.key for c in chunks if c.key not in registered]
    if missing:
        instance.add_dynamic_partitions(name, list(dict.fromkeys(missing)))


def report_loaded(instance: DagsterInstance, spec: TableSpec, postgres: PostgresResource) -> None:
    """Tell Dagster about chunks the ledger holds as loaded that it has no materialization of (a run
    killed before its events were written, or loads made while another instance, or none, was looking),
    so the UI shows what the target really holds."""
    from dagster import AssetMaterialization

    from sf2pg.assets import asset_key

    with postgres.get_connection(spec.pg_database) as conn:
        if not ledger.exists(conn):
            return
        rows = conn.execute(
            "SELECT chunk_key, mode, rows_copied, completed_at, run_id FROM migration_status.chunk_state "
            "WHERE target_schema = %s AND target_table = %s AND status = 'completed'",
            (spec.pg_schema, spec.pg_table),
        ).fetchall()
    if not rows:
        return
    key = asset_key(spec)
    known = set(instance.get_materialized_partitions(key))
    for chunk_key, mode, rows_copied, completed_at, run_id in rows:
        if chunk_key in known:
            continue
        instance.report_runless_asset_event(
            AssetMaterialization(
                asset_key=key,
                partition=chunk_key,
                metadata={
                    "rows": rows_copied,
                    "mode": f"{mode}: 1",
                    "reported_from": "the migration_status ledger",
                    "loaded_at": str(completed_at),
                    "loaded_by_run": run_id or "",
                },
            )
        )


def range_columns(spec: TableSpec, columns: list[SourceColumn]) -> list[SourceColumn]:
    """Columns whose MIN and MAX the plan reads: wide integers of a ``bigint_when_fits`` table that no
    ``column_types`` entry types already."""
    if spec.wide_integers != "bigint_when_fits":
        return []
    named = {n.casefold() for n, _ in spec.column_types}
    return [c for c in columns if is_wide_integer(c) and c.name.casefold() not in named]


def replan(
    spec: TableSpec,
    sf_conn: Any,
    instance: DagsterInstance | None,
    postgres: PostgresResource | None,
) -> Plan:
    """Plan the table, keep the whole plan in the ledger, and register new chunks with Dagster."""
    existing = list(instance.get_dynamic_partitions(partitions_name(spec))) if instance else []
    if postgres is not None:
        existing += ledger_chunk_keys(postgres, spec)
    columns = source_columns(sf_conn, spec)
    before = None  # rows beyond the plan's range are written after this: no load may settle above it
    if spec.source_watermark:
        watermark = find_column(columns, spec.source_watermark, "watermark", f"{spec.config_path}.source_watermark")
        high, _ = source_high(sf_conn, spec, watermark)
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
    if instance is not None:
        register(instance, spec, plan.chunks)
    return plan


@dataclass(frozen=True)
class WindowRun:
    """A sync run of one table: its partition range and the tags that carry the window."""

    spec: TableSpec
    plan: WindowPlan
    first: str
    last: str

    @property
    def tags(self) -> dict[str, str]:
        assert self.plan.window is not None
        return {
            **self.plan.window.tags,
            **run_tags(self.spec),
            "sf2pg/incremental": "true",
            ASSET_PARTITION_RANGE_START_TAG: self.first,
            ASSET_PARTITION_RANGE_END_TAG: self.last,
        }

    @property
    def run_key(self) -> str:
        assert self.plan.window is not None
        return f"{self.spec.name}:{self.plan.window.tags['sf2pg/window_high']}:{self.plan.source_rows}"


def run_tags(spec: TableSpec) -> dict[str, str]:
    """Tags every sf2pg run of a table carries, so Dagster's Runs page can filter by table."""
    return {"sf2pg/table": spec.name, "sf2pg/source": spec.source_name}


def window_run(spec: TableSpec, plan: WindowPlan, instance: DagsterInstance) -> WindowRun | None:
    """The run that loads a window: over the chunk partitions its rows fall in (registering the edge
    chunks it planned), or None when there is nothing to load. A window with no changed rows still
    runs when the table has delete detection; it is recorded on the table's newest chunk."""
    if plan.window is None:
        return None
    register(instance, spec, plan.new_chunks)
    order = list(instance.get_dynamic_partitions(partitions_name(spec)))
    wanted = set(plan.touched) | {c.key for c in plan.new_chunks}
    positions = sorted(order.index(k) for k in wanted if k in order)
    if not positions:
        chunk_keys = [k for k in order if not k.startswith(INCREMENTAL_PREFIX)]
        if spec.delete_detection != "keys" or not chunk_keys:
            return None
        positions = [order.index(chunk_keys[-1])]
    return WindowRun(spec, plan, order[positions[0]], order[positions[-1]])

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

from sf2pg.config.model import TableSpec
from sf2pg.load import ledger
from sf2pg.load.postgres import Connects
from sf2pg.plan import planning
from sf2pg.plan.chunks import Chunk
from sf2pg.plan.incremental import WindowPlan, window_range, window_run_key
from sf2pg.plan.planning import Plan


def partitions_name(spec: TableSpec) -> str:
    """The dynamic partitions definition name (Dagster allows only letters, digits and underscores)."""
    return re.sub(r"[^A-Za-z0-9_]", "_", f"{spec.source_name}__{spec.pg_table}")


def partitions_def(spec: TableSpec) -> DynamicPartitionsDefinition:
    return DynamicPartitionsDefinition(name=partitions_name(spec))


def registered_chunks(spec: TableSpec, instance: DagsterInstance | None, postgres: Connects) -> list[Chunk]:
    """The table's chunks as Dagster and the ledger know them, in bound order (none before a plan)."""
    keys = list(instance.get_dynamic_partitions(partitions_name(spec))) if instance else []
    return planning.known_chunks(spec, postgres, keys)


def register(instance: DagsterInstance, spec: TableSpec, chunks: Iterable[Chunk]) -> None:
    """Add the chunks Dagster does not know yet as partitions, in the order given."""
    name = partitions_name(spec)
    registered = set(instance.get_dynamic_partitions(name))
    missing = [c.key for c in chunks if c.key not in registered]
    if missing:
        instance.add_dynamic_partitions(name, list(dict.fromkeys(missing)))


def report_loaded(instance: DagsterInstance, spec: TableSpec, postgres: Connects) -> None:
    """Tell Dagster about chunks the ledger holds as loaded that it has no materialization of (a run
    killed before its events were written, or loads made while another instance, or none, was looking),
    so the UI shows what the target really holds."""
    from dagster import AssetMaterialization

    from sf2pg.dagster.assets import asset_key

    with postgres.get_connection(spec.pg_database) as conn:
        if not ledger.exists(conn):
            return
        rows = ledger.completed_chunks(conn, spec.pg_schema, spec.pg_table)
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


def replan_and_register(
    spec: TableSpec, sf_conn: Any, instance: DagsterInstance | None, postgres: Connects | None
) -> Plan:
    """Plan the table, keep the whole plan in the ledger (``planning.replan``), and register new chunks
    with Dagster."""
    existing = list(instance.get_dynamic_partitions(partitions_name(spec))) if instance else []
    plan = planning.replan(spec, sf_conn, postgres, existing)
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
        return {
            **self.plan.tags,
            **run_tags(self.spec),
            ASSET_PARTITION_RANGE_START_TAG: self.first,
            ASSET_PARTITION_RANGE_END_TAG: self.last,
        }

    @property
    def run_key(self) -> str:
        return window_run_key(self.spec, self.plan)


def run_tags(spec: TableSpec) -> dict[str, str]:
    """Tags every sf2pg run of a table carries, so Dagster's Runs page can filter by table."""
    return {"sf2pg/table": spec.name, "sf2pg/source": spec.source_name}


def window_run(spec: TableSpec, plan: WindowPlan, instance: DagsterInstance) -> WindowRun | None:
    """The run that loads a window: over the chunk partitions its rows fall in (registering the edge
    chunks it planned first), or None when there is nothing to load (``incremental.window_range``)."""
    if plan.window is None:
        return None
    register(instance, spec, plan.new_chunks)
    found = window_range(spec, plan, list(instance.get_dynamic_partitions(partitions_name(spec))))
    return None if found is None else WindowRun(spec, plan, *found)

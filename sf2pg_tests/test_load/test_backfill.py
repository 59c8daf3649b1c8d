"""A real Dagster backfill of every partition of every demo table, run by dagster-daemon."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from dagster import DagsterInstance, DagsterRunStatus
from dagster._core.execution.backfill import BulkActionStatus

from sf2pg.config.loading import parse_config
from sf2pg.dagster.definitions import build_definitions
from sf2pg.dagster.runner import plan_tables
from sf2pg.devstack.seed import seed_demo
from sf2pg_tests.harness import World, dagster_deployment, running_daemon, source_rows, submit_backfill, target_rows

REPO = Path(__file__).resolve().parents[2]
JSON_COLUMNS = {"VAR", "OBJ", "ARR"}


def test_a_dagster_backfill_loads_every_demo_table_row_for_row(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    seed_demo(world.sf, scale=0.05)
    raw = json.loads((REPO / "config" / "config.json").read_text())
    raw["sources"][0]["target_pg_database"] = world.pg_database
    with dagster_deployment(world, tmp_path, raw, monkeypatch), DagsterInstance.get() as instance:
        config = parse_config(raw)
        plans = plan_tables(config.tables(), instance)
        graph = build_definitions(config).resolve_asset_graph()
        backfills = [
            submit_backfill(
                instance, config, [graph.get(k).key for k in graph.get_all_asset_keys() if k.path[-1] == spec.pg_table]
            )
            for spec in config.tables()
        ]
        with running_daemon(tmp_path) as daemon_log:
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                statuses = [instance.get_backfill(b).status for b in backfills]
                if all(s != BulkActionStatus.REQUESTED for s in statuses):
                    break
                time.sleep(2)
            assert all(s == BulkActionStatus.COMPLETED_SUCCESS for s in statuses), (statuses, daemon_log())
        runs = instance.get_runs()
        assert all(r.status == DagsterRunStatus.SUCCESS for r in runs)
        assert len(runs) == len(backfills)  # single-run backfills: one run per table, not one per chunk
        assert sum(len(p.chunks) for p in plans.values()) > len(runs)

    tables = {
        "FACT_VISITS": ["Visit Id", "Visit Updated Timestamp", "Patient Name", "Visit Cost", "Is Emergency", "PROVIDER_ID", "notes"],
        "DIM_PROVIDERS": ["PROVIDER_ID", "PROVIDER_NAME", "SPECIALTY", "CREATED_AT", "RATING"],
        "ALL_TYPES": ["ID", "N_INT", "N_BIG", "N_DEC", "N_HIGH", "F", "V", "B", "D", "T", "TS_NTZ", "TS_LTZ", "TS_TZ", "BIN", "VAR", "OBJ", "ARR"],
        "DAILY_METRICS": ["METRIC_DATE", "REGION", "VISITS", "REVENUE"],
    }  # fmt: skip
    demo = World(world.stack, "DEMO_DB", world.pg_database, world.sf)
    for table, columns in tables.items():
        target = [c.lower() if c.isupper() else c for c in columns]
        assert target_rows(demo, "analytics", table.lower(), target) == source_rows(demo, table, columns, JSON_COLUMNS)

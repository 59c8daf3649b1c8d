"""The sensor under a real dagster-daemon: PostgreSQL storage, queued runs, a run in its own process."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

from sf2pg.config.loading import parse_config
from sf2pg.dagster.runner import migrate
from sf2pg_tests.harness import World, dagster_deployment, running_daemon
from sf2pg_tests.test_sync.test_watermark_sensor import change_source, exact, orders_config, seed_orders


def test_a_running_daemon_syncs_a_changed_table(world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    table = seed_orders(world, 400)
    raw = orders_config(world)
    raw["sources"][0].update(sensor_running=True, sensor_interval_seconds=30)
    with dagster_deployment(world, tmp_path, raw, monkeypatch), DagsterInstance.get() as instance:
        config = parse_config(raw)
        assert migrate(config, config.tables(), instance)[0].success
        change_source(table, world)
        with running_daemon(tmp_path) as daemon_log:
            deadline = time.monotonic() + 240
            runs = []
            while time.monotonic() < deadline:
                runs = instance.get_runs(RunsFilter(tags={"sf2pg/incremental": "true"}))
                if runs and runs[0].status in (DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE):
                    break
                time.sleep(2)
            assert runs, daemon_log()
            assert runs[0].status == DagsterRunStatus.SUCCESS, daemon_log()
            assert "sf2pg/window_high" in runs[0].tags and runs[0].tags["sf2pg/table"] == "src.orders"
            assert runs[0].tags["dagster/asset_partition_range_end"] in instance.get_dynamic_partitions("src__orders")
    assert exact(world)

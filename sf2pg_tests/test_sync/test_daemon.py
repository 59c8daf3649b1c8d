"""The sensor under a real dagster-daemon: PostgreSQL storage, queued runs, a run in its own process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

from sf2pg.config import parse_config
from sf2pg.runs import migrate
from sf2pg_tests.harness import World
from sf2pg_tests.test_sync.test_watermark_sensor import change_source, exact, orders_config, seed_orders

REPO = Path(__file__).resolve().parents[2]


def test_a_running_daemon_syncs_a_changed_table(world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    table = seed_orders(world, 400)
    raw = orders_config(world)
    raw["sources"][0].update(sensor_running=True, sensor_interval_seconds=30)
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(raw))

    storage_db = f"{world.pg_database}_dagster"
    world.stack.create_pg_database(storage_db)
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    env = {
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_HOST": os.environ.get("PGHOST", "127.0.0.1"),
        "DAGSTER_PG_PORT": os.environ.get("PGPORT", "5432"),
        "DAGSTER_PG_USER": os.environ.get("PGUSER", "postgres"),
        "DAGSTER_PG_PASSWORD": os.environ.get("PGPASSWORD", ""),
        "DAGSTER_PG_DB": storage_db,
        "SF2PG_CONFIG": str(config_file),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)

    with DagsterInstance.get() as instance:
        config = parse_config(raw)
        assert migrate(config, config.tables(), instance)[0].success
        change_source(table, world)
        log = (tmp_path / "daemon.log").open("w")
        daemon = subprocess.Popen(
            [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", str(REPO / "workspace.yaml")],
            cwd=REPO, env={**os.environ}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 240
            runs = []
            while time.monotonic() < deadline and daemon.poll() is None:
                runs = instance.get_runs(RunsFilter(tags={"sf2pg/incremental": "true"}))
                if runs and runs[0].status in (DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE):
                    break
                time.sleep(2)
            assert runs, (tmp_path / "daemon.log").read_text()[-3000:]
            assert runs[0].status == DagsterRunStatus.SUCCESS, (tmp_path / "daemon.log").read_text()[-3000:]
            assert runs[0].tags["dagster/partition"].startswith("inc_")
        finally:
            daemon.terminate()
            try:
                daemon.wait(30)
            except subprocess.TimeoutExpired:
                daemon.kill()
    assert exact(world)

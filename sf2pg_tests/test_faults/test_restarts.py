"""Faults in the middle of a run: the failed chunks roll back, retry with backoff, and the run ends exact."""

from __future__ import annotations

import threading
import time

import pytest
from dagster import DagsterEventType, DagsterInstance

from sf2pg.config.loading import parse_config
from sf2pg.dagster.runner import migrate
from sf2pg_tests.conftest import EMULATOR_SETTINGS
from sf2pg_tests.harness import World
from sf2pg_tests.test_load.test_migrate import all_types_config, assert_exact, seed_all_types


def test_a_postgresql_restart_mid_run_is_retried_and_the_run_ends_exact(world: World):
    if world.stack.postgres is None:
        pytest.skip("needs the embedded server (this test restarts it)")
    seed_all_types(world, 10000)
    raw = all_types_config(world, "id", rows_per_chunk=100, parallel_threads=1)
    config = parse_config(raw)
    instance = DagsterInstance.ephemeral()
    outcome: list = []
    worker = threading.Thread(target=lambda: outcome.extend(migrate(config, config.tables(), instance)))
    worker.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait until some chunks have committed, then pull the plug
        try:
            done = world.pg_query("SELECT count(*) FROM migration_status.chunk_state WHERE status = 'completed'")
        except Exception:
            done = [(0,)]
        if done[0][0] >= 3:
            break
        time.sleep(0.05)
    world.stack.postgres.kill_and_restart()
    worker.join(300)
    assert outcome and outcome[0].success, outcome[0].error if outcome else "no outcome"
    assert_exact(world)
    # the run really was interrupted: the step failed on the lost connection and Dagster retried it
    [dagster_run] = instance.get_runs()
    assert instance.all_logs(dagster_run.run_id, of_type=DagsterEventType.STEP_UP_FOR_RETRY)


def test_a_snowflake_outage_mid_run_is_retried_and_names_the_source_side(
    world: World, tmp_path, monkeypatch: pytest.MonkeyPatch
):
    from sf2pg.dagster.resources import snowflake_resource
    from sf2pg.devstack.emulator import start_emulator

    own = start_emulator(tmp_path / "sf", log_path=tmp_path / "emulator.log", settings=EMULATOR_SETTINGS)  # persistent
    for key, value in {**own.env(), "SNOWFLAKE_LOGIN_TIMEOUT": "5", "SNOWFLAKE_NETWORK_TIMEOUT": "10"}.items():
        monkeypatch.setenv(key, value)
    try:
        with snowflake_resource(resolve=True).get_connection() as sf:
            sf.cursor().execute(f'CREATE DATABASE IF NOT EXISTS "{world.sf_database}"')
            sf.cursor().execute(f'CREATE SCHEMA IF NOT EXISTS "{world.sf_database}"."PUBLIC"')
            world.sf = sf
            seed_all_types(world, 10000)
        raw = all_types_config(world, "id", rows_per_chunk=100, parallel_threads=1)
        config = parse_config(raw)
        instance = DagsterInstance.ephemeral()
        outcome: list = []
        worker = threading.Thread(target=lambda: outcome.extend(migrate(config, config.tables(), instance)))
        worker.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if (
                world.pg_query(
                    "SELECT count(*) FROM pg_tables WHERE schemaname = 'migration_status' AND tablename = 'chunk_state'"
                )
                != [(0,)]
                and world.pg_query("SELECT count(*) FROM migration_status.chunk_state WHERE status = 'completed'")[0][0]
                >= 3
            ):
                break
            time.sleep(0.05)
        own.stop()  # the source goes away for a while ...
        time.sleep(2)
        own = start_emulator(
            tmp_path / "sf", port=own.port, log_path=tmp_path / "emulator.log", settings=EMULATOR_SETTINGS
        )
        worker.join(300)
        assert outcome and outcome[0].success, outcome[0].error if outcome else "no outcome"
        [dagster_run] = instance.get_runs()
        messages = [entry.user_message for entry in instance.all_logs(dagster_run.run_id)]
        assert any("Snowflake (source) failed" in m for m in messages)  # the log says which side failed
        assert instance.all_logs(dagster_run.run_id, of_type=DagsterEventType.STEP_UP_FOR_RETRY)
        with snowflake_resource(resolve=True).get_connection() as sf:
            world.sf = sf
            assert_exact(world)
    finally:
        own.stop()

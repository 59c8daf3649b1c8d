"""A run terminated from Dagster (the UI's Terminate: SIGTERM/SIGINT to the run worker), or ``sf2pg migrate``
stopped with Ctrl-C, stops at once and leaves whole chunks only."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from dagster import DagsterInstance, DagsterRunStatus

from sf2pg.cli.main import main
from sf2pg.config.loading import parse_config
from sf2pg.dagster.runner import plan_tables
from sf2pg_tests.harness import World, dagster_deployment, running_daemon, submit_backfill
from sf2pg_tests.test_faults.test_kills import (
    CHUNK_CHANGES,
    _completed,
    _rerun_ends_exact_and_dagster_agrees_with_the_ledger,
    _sf2pg,
)
from sf2pg_tests.test_load.test_migrate import all_types_config, assert_exact, run, seed_all_types


def _wait(condition, seconds: float, what: str, log=lambda: "") -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}\n{log()}"
        time.sleep(0.2)


def test_a_run_terminated_from_dagster_keeps_whole_chunks_and_its_indexes(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    table = seed_all_types(world, 20000)
    raw = all_types_config(
        world, "id", rows_per_chunk=1000, parallel_threads=2
    )  # chunks long in flight beside the gaps between them
    assert run(world, raw)[0].success
    world.pg_query("CREATE INDEX all_types_v ON tgt.all_types (v)")
    world.sf_exec(f"UPDATE {table} SET N_INT = -1")  # every chunk changes in the next full load
    with dagster_deployment(world, tmp_path, raw, monkeypatch), DagsterInstance.get() as instance:
        config = parse_config(raw)
        plan_tables(config.tables(), instance)
        submit_backfill(instance, config)
        with running_daemon(tmp_path) as daemon_log:
            _wait(lambda: instance.get_runs(), 120, "the backfill's run", daemon_log)
            [dagster_run] = instance.get_runs()

            def chunks_done() -> int:
                return world.pg_query(
                    "SELECT count(*) FROM migration_status.chunk_state "
                    "WHERE run_id = %s AND status = 'completed' AND error IS NULL",
                    (dagster_run.run_id,),
                )[0][0]

            _wait(lambda: chunks_done() >= 3, 180, "the first chunks to commit", daemon_log)
            instance.run_coordinator.cancel_run(dagster_run.run_id)  # what the UI's Terminate button does
            _wait(lambda: instance.get_run_by_id(dagster_run.run_id).is_finished, 120, "the run to stop", daemon_log)
            assert instance.get_run_by_id(dagster_run.run_id).status == DagsterRunStatus.CANCELED, daemon_log()
        # nothing runs any more: no COPY, merge or index build is still open on the server
        _wait(
            lambda: (
                world.pg_query(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND state <> 'idle' AND pid <> pg_backend_pid()",
                    (world.pg_database,),
                )
                == [(0,)]
            ),
            30,
            "in-flight statements to end",
        )
    per_chunk = world.pg_query(CHUNK_CHANGES)
    assert all(changed in (0, rows) for _, changed, rows in per_chunk), per_chunk  # each chunk all old or all new
    loaded_in_run = chunks_done()
    assert 3 <= loaded_in_run < len(per_chunk)  # terminated mid-run, not after it
    assert sum(changed == rows for _, changed, rows in per_chunk) == loaded_in_run  # ledger and rows agree
    interrupted = world.pg_query("SELECT count(*) FROM migration_status.chunk_state WHERE error LIKE '%%interrupted%%'")
    assert interrupted[0][0] >= 1  # the chunks in flight said why they stopped
    # the index dropped for the load came back, or is one command away
    if world.pg_query("SELECT count(*) FROM pg_indexes WHERE indexname = 'all_types_v'") == [(0,)]:
        with pytest.raises(SystemExit) as exit_info:
            main(["restore-indexes"])
        assert exit_info.value.code == 0
    assert world.pg_query("SELECT count(*) FROM pg_indexes WHERE indexname = 'all_types_v'") == [(1,)]
    assert run(world, raw, reload=True)[0].success  # the terminated backfill was a reload: finish it
    assert_exact(world)


def test_ctrl_c_stops_sf2pg_migrate_at_once_without_a_retry_and_keeps_whole_chunks(world: World, tmp_path: Path):
    seed_all_types(world, 6000)
    raw = all_types_config(world, "id", rows_per_chunk=200, parallel_threads=1)
    child = _sf2pg(tmp_path, raw, "migrate", stderr=subprocess.PIPE)
    try:
        _wait(lambda: _completed(world) >= 3 or child.poll() is not None, 120, "the first chunks to commit")
        os.kill(child.pid, signal.SIGINT)
        _, err = child.communicate(timeout=30)  # a retry would first wait 5 s, then load on
    finally:
        child.kill()
    assert child.returncode == 130, err
    said = " ".join(err.decode().split())  # the console wraps long lines
    assert "interrupted: chunks in flight rolled back, completed chunks kept; run the same command again" in said
    loaded = _completed(world)
    assert 3 <= loaded < 30  # stopped mid-run
    total = world.pg_query("SELECT count(*) FROM tgt.all_types")[0][0]
    committed = world.pg_query(
        "SELECT coalesce(sum(rows_copied), 0) FROM migration_status.chunk_state WHERE status = 'completed'"
    )[0][0]
    assert total == committed  # whole chunks only
    _rerun_ends_exact_and_dagster_agrees_with_the_ledger(world, tmp_path, raw)

"""A first load builds its table's primary key after the chunks; a key that arrives twice fails just
the chunks that hold it, and the table keeps whole chunks and its key."""

from __future__ import annotations

import threading
from pathlib import Path

import psycopg
import pytest
from dagster import DagsterInstance

from sf2pg.cli.main import main
from sf2pg.load import indexes
from sf2pg_tests.harness import World
from sf2pg_tests.test_cli import write_config
from sf2pg_tests.test_load.test_migrate import all_types_config, assert_exact, run, seed_all_types

PRIMARY_KEY = "SELECT conname FROM pg_constraint WHERE conrelid = 'tgt.all_types'::regclass AND contype = 'p'"
SAVED = "SELECT count(*) FROM migration_status.saved_indexes"


def loaded_once(world: World) -> tuple[dict, DagsterInstance]:
    """The all-types table (600 rows, chunks of 200 by id) after one successful first load."""
    seed_all_types(world, 600)
    raw = all_types_config(world, "id", rows_per_chunk=200)
    instance = DagsterInstance.ephemeral()
    assert run(world, raw, instance)[0].success
    return raw, instance


def first_attempts_error(instance: DagsterInstance) -> str:
    """The error of the latest run's first failed attempt, which Dagster's retry policy then retried."""
    run_id = instance.get_runs(limit=1)[0].run_id
    [retry, *_] = [
        e.dagster_event
        for e in instance.all_logs(run_id)
        if e.is_dagster_event and e.dagster_event.event_type_value == "STEP_UP_FOR_RETRY"
    ]
    error, message = retry.event_specific_data.error, ""
    while error:  # RetryRequestedFromPolicy, caused by the loader's error
        message, error = message + error.message, error.cause or error.context
    return message


def test_a_first_load_builds_the_primary_key_after_its_chunks_and_later_loads_keep_it(world: World):
    seed_all_types(world, 900)
    raw = all_types_config(world, "id", rows_per_chunk=200)
    instance = DagsterInstance.ephemeral()
    [first] = run(world, raw, instance)
    assert first.success, first.error
    assert first.metadata["indexes_rebuilt"] == "all_types_pkey"  # dropped for the load, built after
    assert world.pg_query(PRIMARY_KEY) == [("all_types_pkey",)]
    assert world.pg_query(SAVED) == [(0,)]
    assert_exact(world)

    [again] = run(world, raw, instance, reload=True)  # chunks are loaded now: merges need the key, so it stays
    assert again.success, again.error
    assert "indexes_rebuilt" not in again.metadata
    assert_exact(world)


def test_a_key_repeated_across_chunks_fails_just_those_chunks_then_merging_and_the_checks_take_over(world: World):
    table = seed_all_types(world, 900)
    world.sf_exec(f"UPDATE {table} SET ID = 5 WHERE ID = 800")  # rows 5 and 800 sit in different chunks
    raw = all_types_config(world, "ts_ntz", rows_per_chunk=150)
    instance = DagsterInstance.ephemeral()
    [outcome] = run(world, raw, instance)

    # the first attempt: the key's rebuild found id 5 twice, emptied and failed the two chunks holding it
    message = first_attempts_error(instance)
    assert "2 of 8 chunk(s)" in message and "(id)=(5)" in message and "more than once" in message
    # the retry loads them with the key in place: the second row of id 5 merges over the first, and the
    # fingerprint check (blocking) names the chunk that lost its row
    assert not outcome.success and "chunk_rows" in outcome.error
    assert world.pg_query(PRIMARY_KEY) == [("all_types_pkey",)]
    assert world.pg_query(SAVED) == [(0,)]

    world.sf_exec(f"UPDATE {table} SET ID = 800 WHERE N_INT = 5600")  # the source is fixed: reload it
    [rerun] = run(world, raw, instance, reload=True)
    assert rerun.success, rerun.error
    assert_exact(world)


def test_a_key_left_dropped_by_an_interrupted_first_load_is_rebuilt_before_the_next_load(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture
):
    raw, instance = loaded_once(world)
    with world.stack.pg(world.pg_database) as conn:  # what a first load killed mid-way leaves behind ...
        assert indexes.drop_secondary_indexes(conn, "tgt", "all_types", None, primary_key=True) == ["all_types_pkey"]
    # ... with a key received twice (here: a copy of one row)
    world.pg_query("INSERT INTO tgt.all_types SELECT * FROM tgt.all_types WHERE id = 250")
    assert world.pg_query(PRIMARY_KEY) == []

    with pytest.raises(SystemExit) as exit_info:
        main(["--config", write_config(tmp_path, raw), "restore-indexes"])
    assert exit_info.value.code == 1
    out = " ".join(capsys.readouterr().out.split())
    assert "the primary key cannot be rebuilt" in out and "(id)=(250)" in out and "sf2pg migrate -t all_types" in out

    [rerun] = run(world, raw, instance)  # empties the chunk holding id 250 twice, builds the key, reloads
    assert rerun.success, rerun.error
    assert world.pg_query(PRIMARY_KEY) == [("all_types_pkey",)]
    assert world.pg_query(SAVED) == [(0,)]
    assert world.pg_query("SELECT count(*) FROM pg_indexes WHERE tablename = 'all_types'") == [(1,)]
    assert_exact(world)


def test_while_a_first_load_holds_the_key_away_other_loads_and_restore_indexes_leave_it_alone(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture
):
    raw, instance = loaded_once(world)
    first_load = psycopg.connect(dbname=world.pg_database, autocommit=True)  # a first load, still running
    assert indexes.lock_indexes(first_load, "tgt", "all_types")
    indexes.drop_secondary_indexes(first_load, "tgt", "all_types", "running", primary_key=True)

    with pytest.raises(SystemExit) as exit_info:
        main(["--config", write_config(tmp_path, raw), "restore-indexes"])
    assert exit_info.value.code == 0
    assert "skipped: a load of this table is running" in " ".join(capsys.readouterr().out.split())
    assert world.pg_query(PRIMARY_KEY) == []

    # another load must not rebuild the key under the running one; it fails clearly, and Dagster's
    # retry (5 s later) finds the first load gone (its session ends 3 s in, without a rebuild)
    threading.Timer(3.0, first_load.close).start()
    [second] = run(world, raw, instance, reload=True)
    assert second.success, second.error
    assert "another load of this table is running its first load" in first_attempts_error(instance)
    assert world.pg_query(PRIMARY_KEY) == [("all_types_pkey",)]
    assert world.pg_query(SAVED) == [(0,)]
    assert_exact(world)

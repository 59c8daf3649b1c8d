"""The plan survives: the ledger holds every planned chunk and its state, a re-run loads what is not
loaded yet, and a run that committed some chunks before one failed shows those in Dagster."""

from __future__ import annotations

import pytest
from dagster import AssetKey, DagsterInstance

from sf2pg.config.loading import parse_config
from sf2pg.dagster.definitions import build_resources
from sf2pg.dagster.partitions import partitions_name
from sf2pg.dagster.runner import on_instance, run_table_job
from sf2pg.run import commands
from sf2pg_tests.harness import World
from sf2pg_tests.test_load.test_migrate import all_types_config, assert_exact, run, seed_all_types

STATES = "SELECT status, count(*) FROM migration_status.chunk_state GROUP BY 1 ORDER BY 1"


def break_middle_chunk(world: World, table: str) -> None:
    """Text PostgreSQL cannot store, in the rows of one middle chunk (ids 301-400 of 1-601)."""
    world.sf_exec(f"UPDATE {table} SET V = 'nul ' || CHR(0) WHERE ID BETWEEN 301 AND 400")


def test_a_failed_middle_chunk_stays_in_the_plan_when_dagster_forgets_it_and_a_rerun_loads_only_it(world: World):
    table = seed_all_types(world, 600)
    break_middle_chunk(world, table)
    raw = all_types_config(world, "id", rows_per_chunk=100, parallel_threads=2)
    [failed] = run(world, raw, DagsterInstance.ephemeral())
    assert not failed.success and "NUL" in failed.error
    assert dict(world.pg_query(STATES)) == {"completed": 6, "failed": 1}

    [again] = run(world, raw, DagsterInstance.ephemeral())  # a throwaway instance, as without DAGSTER_HOME
    assert not again.success  # the chunk is still in the plan, still bad: never silently dropped
    assert dict(world.pg_query(STATES)) == {"completed": 6, "failed": 1}

    world.sf_exec(f"UPDATE {table} SET V = 'fixed' WHERE ID BETWEEN 301 AND 400")
    loaded_before = world.pg_query(
        "SELECT chunk_key, completed_at FROM migration_status.chunk_state WHERE status = 'completed'"
    )
    [fixed] = run(world, raw, DagsterInstance.ephemeral())
    assert fixed.success, fixed.error
    assert fixed.metadata["chunks"] == 1  # only the missing chunk was read
    after = dict(world.pg_query("SELECT chunk_key, completed_at FROM migration_status.chunk_state"))
    assert all(after[key] == at for key, at in loaded_before)
    assert_exact(world)


def test_a_run_that_committed_some_chunks_before_one_failed_shows_those_as_materialized(world: World):
    table = seed_all_types(world, 600)
    break_middle_chunk(world, table)
    raw = all_types_config(world, "id", rows_per_chunk=100, parallel_threads=2)
    instance = DagsterInstance.ephemeral()
    [failed] = run(world, raw, instance)
    assert not failed.success
    spec = parse_config(raw).tables()[0]
    key = AssetKey([spec.source_name, spec.pg_table])
    completed = {
        r[0] for r in world.pg_query("SELECT chunk_key FROM migration_status.chunk_state WHERE status = 'completed'")
    }
    assert set(instance.get_materialized_partitions(key)) == completed and len(completed) == 6

    # a backfill of the missing partitions finishes the job
    world.sf_exec(f"UPDATE {table} SET V = 'fixed' WHERE ID BETWEEN 301 AND 400")
    missing = [k for k in instance.get_dynamic_partitions(partitions_name(spec)) if k not in completed]
    [only] = missing
    result = run_table_job(
        "backfill",
        spec,
        instance,
        build_resources(resolve_env=True),
        {"dagster/asset_partition_range_start": only, "dagster/asset_partition_range_end": only},
    )
    assert result.success
    assert set(instance.get_materialized_partitions(key)) == set(instance.get_dynamic_partitions(partitions_name(spec)))
    assert_exact(world)


def test_an_interrupted_reload_resumes_where_it_stopped(world: World):
    table = seed_all_types(world, 600)
    raw = all_types_config(world, "id", rows_per_chunk=100, parallel_threads=1)
    instance = DagsterInstance.ephemeral()
    assert run(world, raw, instance)[0].success
    world.sf_exec(f"UPDATE {table} SET N_INT = -1")
    break_middle_chunk(world, table)  # the reload stops at this chunk
    [stopped] = run(world, raw, instance, reload=True)
    assert not stopped.success
    world.sf_exec(f"UPDATE {table} SET V = 'fixed' WHERE ID BETWEEN 301 AND 400")
    [resumed] = run(world, raw, instance)  # no --reload: the reload the user asked for is still pending
    assert resumed.success, resumed.error
    assert resumed.metadata["chunks"] == 1  # the chunks the interrupted reload had done are not read again
    assert_exact(world)


@pytest.mark.parametrize("with_dagster", [False, True], ids=["direct", "dagster"])
def test_a_resume_of_two_separate_gaps_judges_the_whole_table_once_both_are_in(world: World, with_dagster: bool):
    """The chunks a migrate still has to load can lie in several ranges (a killed parallel load leaves
    holes): each range is a run, and the table's row count is only comparable after the last one."""
    table = seed_all_types(world, 600)
    world.sf_exec(f"UPDATE {table} SET V = 'nul ' || CHR(0) WHERE ID BETWEEN 101 AND 200 OR ID BETWEEN 401 AND 500")
    raw = all_types_config(world, "id", rows_per_chunk=100, parallel_threads=2)
    config = parse_config(raw)
    instance = DagsterInstance.ephemeral() if with_dagster else None
    [failed] = commands.migrate(config, config.tables(), on_instance(instance))
    assert not failed.success and dict(world.pg_query(STATES)) == {"completed": 5, "failed": 2}

    world.sf_exec(f"UPDATE {table} SET V = 'fixed' WHERE ID BETWEEN 101 AND 200 OR ID BETWEEN 401 AND 500")
    [resumed] = commands.migrate(config, config.tables(), on_instance(instance))
    assert resumed.success, resumed.error
    assert resumed.metadata["chunks"] == 2 and resumed.checks["row_count"]
    assert resumed.check_failures == []
    assert_exact(world)


def test_a_reload_attempt_that_failed_is_not_taken_for_a_commit_of_its_run(world: World):
    """A reloading run's step that is retried skips the chunks that run committed; a chunk it only
    started (or that failed and rolled back) still holds the previous load's rows and is loaded again."""
    from sf2pg.load import ledger

    seed_all_types(world, 300)
    raw = all_types_config(world, "id", rows_per_chunk=100, parallel_threads=1)
    config = parse_config(raw)
    [first] = commands.migrate(config, config.tables())
    assert first.success, first.error
    with world.stack.pg(world.pg_database) as conn:
        [key, *_] = sorted(ledger.chunk_states(conn, "tgt", "all_types"))
        ledger.mark_running(conn, "tgt", "all_types", key, "reload-run")
        ledger.record_failure(conn, "tgt", "all_types", key, "interrupted: rolled back", "reload-run")
        assert key not in ledger.completed_by_run(conn, "tgt", "all_types", "reload-run")
        assert ledger.chunk_states(conn, "tgt", "all_types")[key] == "completed"  # its rows are whole

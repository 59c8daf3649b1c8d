"""Errors no retry can fix fail their chunk at once, naming table, chunk and column (or key): a key the
source repeats inside a chunk, a JSON value jsonb refuses, a value the target column cannot hold."""

from __future__ import annotations

from dagster import DagsterEventType, DagsterInstance

from sf2pg_tests.harness import World, source_rows, target_rows
from sf2pg_tests.test_load.test_migrate import all_types_config, run, seed_all_types


def retries_of_last_run(instance: DagsterInstance) -> int:
    run_id = instance.get_runs(limit=1)[0].run_id
    return len(instance.all_logs(run_id, of_type=DagsterEventType.STEP_UP_FOR_RETRY))


def test_a_key_the_source_repeats_inside_a_chunk_fails_its_first_load_once_naming_it(world: World):
    table = seed_all_types(world, 600)
    world.sf_exec(f"UPDATE {table} SET ID = 5 WHERE ID = 6")  # two rows of id 5, side by side in one chunk
    instance = DagsterInstance.ephemeral()
    [outcome] = run(world, all_types_config(world, "id", rows_per_chunk=200), instance)
    assert not outcome.success
    assert (
        "src.all_types" in outcome.error and "id=Decimal('5')" in outcome.error and "inside this chunk" in outcome.error
    )
    assert "id_0000000001_" in outcome.error  # the chunk
    assert retries_of_last_run(instance) == 0  # it cannot succeed on retry: no retry re-reads it


def test_a_key_the_source_repeats_fails_a_later_merge_once_naming_it(world: World):
    table = seed_all_types(world, 600)
    raw = all_types_config(world, "id", rows_per_chunk=200)
    instance = DagsterInstance.ephemeral()
    assert run(world, raw, instance)[0].success
    world.sf_exec(f"UPDATE {table} SET ID = 250 WHERE ID = 251")
    [outcome] = run(world, raw, instance, reload=True)
    assert not outcome.success
    assert "key (id=Decimal('250')) 2 times in this chunk" in outcome.error
    assert retries_of_last_run(instance) == 0


def test_a_json_value_with_the_nul_escape_fails_at_once_or_is_stripped_on_request(world: World):
    table = seed_all_types(world, 300)
    world.sf_exec(f'UPDATE {table} SET VAR = PARSE_JSON(\'{{"s": "a\\\\u0000b"}}\') WHERE ID = 7')
    instance = DagsterInstance.ephemeral()
    [outcome] = run(world, all_types_config(world, "id"), instance)
    assert not outcome.success
    assert "column 'var'" in outcome.error and "\\u0000" in outcome.error and "nul_bytes" in outcome.error
    assert retries_of_last_run(instance) == 0

    [stripped] = run(world, all_types_config(world, "id", nul_bytes="strip"), instance)
    assert stripped.success, stripped.error
    assert world.pg_query("SELECT var->>'s' FROM tgt.all_types WHERE id = 7") == [("ab",)]


def test_a_value_the_existing_target_column_cannot_hold_fails_at_once_naming_the_column(world: World):
    table = f'"{world.sf_database}"."PUBLIC"."NAMES"'
    world.sf_exec(
        f"CREATE TABLE {table} (ID NUMBER(9,0), NAME VARCHAR)",
        f"INSERT INTO {table} VALUES (1, 'short'), (2, 'much too long for the target')",
    )
    world.pg_query("CREATE SCHEMA tgt")
    world.pg_query("CREATE TABLE tgt.names (id integer PRIMARY KEY, name varchar(10))")
    instance = DagsterInstance.ephemeral()
    [outcome] = run(world, world.config([{"source": "NAMES", "uniqueness_columns": ["ID"]}]), instance)
    assert not outcome.success
    assert "src.names" in outcome.error and "chunk all" in outcome.error and "name" in outcome.error
    assert "too long" in outcome.error
    assert retries_of_last_run(instance) == 0
    assert world.pg_query("SELECT count(*) FROM tgt.names") == [(0,)]  # nothing half-written
    assert target_rows(world, "tgt", "names", ["id"]) != source_rows(world, "NAMES", ["ID"])

"""One chunk, one transaction: kills, re-runs of single partitions, indexes, truncation, existing tables."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

from dagster import DagsterInstance, materialize

from sf2pg.config.loading import parse_config
from sf2pg.dagster.assets import build_table_asset
from sf2pg.dagster.definitions import build_resources
from sf2pg.dagster.partitions import partitions_name
from sf2pg_tests.harness import World
from sf2pg_tests.test_load.test_migrate import all_types_config, assert_exact, run, seed_all_types

KILLED_LOADER = """
import json, sys, time
from sf2pg.config.loading import parse_config
from sf2pg.source.extract import stream_query
from sf2pg.source.statements import chunk_query, find_column
from sf2pg.load import ledger
from sf2pg.load.chunk import load_chunk
from sf2pg.load.conform import conform
from sf2pg.load.target import prepare_target
from sf2pg.plan.planning import source_columns
from sf2pg.plan.planning import plan_table
from sf2pg.dagster.resources import PostgresResource, snowflake_resource

spec = parse_config(json.loads(sys.argv[1])).tables()[0]
with snowflake_resource(resolve=True).get_connection() as sf, PostgresResource().get_connection(spec.pg_database) as pg:
    columns = source_columns(sf, spec)
    chunk = plan_table(sf, spec.sf_database, spec.sf_schema, spec.sf_table, columns, spec.chunking_column,
                       spec.chunking_type, None, spec.rows_per_chunk).chunks[0]
    ledger.ensure_ledger(pg)
    target = prepare_target(pg, spec.pg_schema, spec.pg_table, columns, spec.uniqueness_columns,
                            spec.chunking_column, "test")
    ledger.register_table(pg, spec.pg_schema, spec.pg_table, spec.source_name,
                          f"{spec.sf_database}.{spec.sf_schema}.{spec.sf_table}", pristine=True)
    query = chunk_query(spec.sf_database, spec.sf_schema, spec.sf_table, columns,
                        find_column(columns, spec.chunking_column, "chunking", "test"), chunk, None)

    def batches():
        for i, batch in enumerate(conform(stream_query(sf, query), target, 50, "fail", "test")):
            yield batch
            if i == 3:
                print("COPYING", flush=True)
                time.sleep(120)  # killed here, mid-COPY

    load_chunk(pg, target, chunk, batches, insert_only=False, run_id="killed", source_query=query)
"""


def test_a_chunk_killed_mid_copy_leaves_no_rows_and_loads_cleanly_on_retry(world: World, tmp_path):
    seed_all_types(world, 600)
    raw = all_types_config(world)
    script = tmp_path / "loader.py"
    script.write_text(textwrap.dedent(KILLED_LOADER))
    child = subprocess.Popen(
        [sys.executable, str(script), json.dumps(raw)], stdout=subprocess.PIPE, text=True, env=os.environ.copy()
    )
    try:
        assert child.stdout.readline().strip() == "COPYING"
        copying = world.pg_query("SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'COPY%%'")[0][0]
        assert copying == 1  # the COPY really is in flight
        os.kill(child.pid, signal.SIGKILL)
        child.wait(30)
    finally:
        child.kill()
    deadline = time.monotonic() + 30
    while world.pg_query("SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'COPY%%'")[0][0]:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert world.pg_query("SELECT count(*) FROM tgt.all_types") == [(0,)]
    assert world.pg_query("SELECT count(*) FROM migration_status.chunk_state WHERE status = 'completed'") == [(0,)]
    outcome = run(world, raw)[0]
    assert outcome.success, outcome.error
    assert_exact(world)


def test_rematerializing_one_partition_in_dagster_restores_exactly_that_chunk(world: World):
    seed_all_types(world, 900)
    instance = DagsterInstance.ephemeral()
    raw = all_types_config(world, "id")
    assert run(world, raw, instance)[0].success
    spec = parse_config(raw).tables()[0]
    keys = list(instance.get_dynamic_partitions(partitions_name(spec)))
    victim = keys[1]
    lower, upper = (int(x) for x in victim[3:].split("_"))
    world.pg_query("DELETE FROM tgt.all_types WHERE id >= %s AND id < %s AND id %% 2 = 0 RETURNING 1", (lower, upper))
    world.pg_query("UPDATE tgt.all_types SET v = 'tampered' WHERE id = %s RETURNING 1", (lower + 1,))
    result = materialize(
        [build_table_asset(spec)], instance=instance, resources=build_resources(resolve_env=True), partition_key=victim
    )
    assert result.success
    [event] = result.get_asset_materialization_events()
    assert event.materialization.partition == victim
    assert event.materialization.metadata["mode"].value == "merge: 1"
    assert_exact(world)
    # and once more: a re-run of a clean chunk writes nothing
    again = materialize(
        [build_table_asset(spec)], instance=instance, resources=build_resources(resolve_env=True), partition_key=victim
    )
    md = again.get_asset_materialization_events()[0].materialization.metadata
    assert (md["rows_inserted"].value, md["rows_updated"].value, md["rows_deleted"].value) == (0, 0, 0)


def test_secondary_indexes_are_dropped_for_a_full_load_and_rebuilt_after(world: World):
    seed_all_types(world, 600)
    raw = all_types_config(world)
    assert run(world, raw)[0].success
    world.pg_query("CREATE INDEX all_types_v ON tgt.all_types (v)")
    world.pg_query('CREATE INDEX "Odd ""index""" ON tgt.all_types (d, b)')
    outcome = run(world, raw, reload=True)[0]
    assert outcome.success, outcome.error
    assert sorted(outcome.metadata["indexes_rebuilt"].split(", ")) == ['Odd "index"', "all_types_v"]
    names = {r[0] for r in world.pg_query("SELECT indexname FROM pg_indexes WHERE tablename = 'all_types'")}
    assert {"all_types_v", 'Odd "index"', "all_types_pkey"} <= names
    assert world.pg_query("SELECT count(*) FROM migration_status.saved_indexes") == [(0,)]


def test_truncate_needs_both_the_config_flag_and_the_runtime_confirmation(world: World):
    seed_all_types(world, 600)
    raw = all_types_config(world, truncate_onstart=True)
    instance = DagsterInstance.ephemeral()
    assert run(world, raw, instance)[0].success
    world.pg_query("INSERT INTO tgt.all_types (id, v, ts_ntz) VALUES (999999, 'stray', '1990-01-01')")
    unconfirmed = run(world, raw, instance, reload=True)[0]
    assert not unconfirmed.metadata["truncated"]
    assert not unconfirmed.success and "1 more rows than the source" in unconfirmed.error  # the stray row is seen
    assert world.pg_query("SELECT count(*) FROM tgt.all_types WHERE id = 999999") == [(1,)]  # outside every chunk
    confirmed = run(world, raw, instance, confirm_truncate=True, reload=True)[0]
    assert confirmed.success and confirmed.metadata["truncated"]
    assert confirmed.metadata["mode"] == f"copy: {confirmed.metadata['chunks']}"
    assert world.pg_query("SELECT truncated_at IS NOT NULL FROM migration_status.table_state") == [(True,)]
    assert_exact(world)


def test_an_existing_target_loads_shared_columns_and_reports_the_rest(world: World):
    table = f'"{world.sf_database}"."PUBLIC"."PEOPLE"'
    world.sf_exec(
        f'CREATE TABLE {table} (ID NUMBER(9,0), NAME VARCHAR, "Extra Col" VARCHAR, AGE NUMBER(4,0))',
        f"INSERT INTO {table} SELECT SEQ4(), 'n' || SEQ4(), 'x', SEQ4() % 90 FROM TABLE(GENERATOR(ROWCOUNT => 50))",
    )
    world.pg_query("CREATE SCHEMA tgt")
    world.pg_query("CREATE TABLE tgt.people (id bigint PRIMARY KEY, name varchar(100), age numeric, note text)")
    raw = world.config([{"source": "PEOPLE", "uniqueness_columns": ["ID"]}])
    outcome = run(world, raw)[0]
    assert outcome.success, outcome.error
    assert outcome.metadata["skipped_source_columns"] == "Extra Col"
    assert outcome.metadata["unfilled_target_columns"] == "note"
    assert world.pg_query("SELECT count(*), sum(age), max(name) FROM tgt.people WHERE note IS NULL")[0][0] == 50


def test_an_incompatible_existing_column_fails_before_any_row_moves(world: World):
    table = f'"{world.sf_database}"."PUBLIC"."PEOPLE"'
    world.sf_exec(
        f"CREATE TABLE {table} (ID NUMBER(12,2), NAME VARCHAR)",
        f"INSERT INTO {table} VALUES (1, 'a'), (2, 'b')",
    )
    world.pg_query("CREATE SCHEMA tgt")
    world.pg_query("CREATE TABLE tgt.people (id integer, name integer)")  # a fraction, a text: neither fits
    outcome = run(world, world.config([{"source": "PEOPLE"}]))[0]
    assert not outcome.success
    assert "'ID'" in outcome.error and "'NAME'" in outcome.error and "sources[0].tables[0]" in outcome.error
    assert world.pg_query("SELECT count(*) FROM tgt.people") == [(0,)]


def test_a_dropped_target_is_recreated_and_fully_reloaded(world: World):
    seed_all_types(world, 600)
    raw = all_types_config(world)
    instance = DagsterInstance.ephemeral()
    assert run(world, raw, instance)[0].success
    world.pg_query("DROP TABLE tgt.all_types")
    again = run(world, raw, instance)[0]
    assert again.success, again.error
    assert again.metadata["created_table"] and again.metadata["mode"].startswith("copy")
    assert_exact(world)

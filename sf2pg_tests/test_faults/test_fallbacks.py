"""Tiered handling: a duplicate key falls back to merge, memory trouble to smaller batches; both are recorded.

The memory fault is injected where it would really strike (while a batch is encoded for COPY); the
emulator, the connector and PostgreSQL are all real.
"""

from __future__ import annotations

import pyarrow as pa
import pytest
import snowflake.connector
from dagster import DagsterInstance, materialize

from sf2pg.config.loading import parse_config
from sf2pg.dagster.assets import build_table_asset
from sf2pg.dagster.definitions import build_resources
from sf2pg.dagster.partitions import partitions_name
from sf2pg.dagster.runner import plan_tables
from sf2pg.load import chunk as chunk_module
from sf2pg.source.snowflake_session import SNOWFLAKE_SESSION
from sf2pg_tests.harness import World
from sf2pg_tests.test_load.test_migrate import all_types_config, assert_exact, run, seed_all_types


@pytest.fixture
def large_result_chunks(world: World, tmp_path):
    """The world on an emulator of its own whose result chunks hold 2,500 rows: a tier of smaller batches
    only shows when Snowflake's chunks are larger than the batches (the suite's are 40 to 240 rows)."""
    from sf2pg.devstack.emulator import start_emulator

    own = start_emulator(
        None,
        log_path=tmp_path / "emulator.log",
        settings={"SF2PG_EMULATOR_INLINE_ROWS": "2500", "SF2PG_EMULATOR_CHUNK_ROWS": "2500"},
    )
    env = pytest.MonkeyPatch()  # its own: a test's monkeypatch.undo() must not point it back
    for key, value in own.env().items():
        env.setenv(key, value)
    sf = snowflake.connector.connect(**{**_connect_args(world), "port": own.port})
    try:
        sf.cursor().execute(f'CREATE DATABASE "{world.sf_database}"')
        sf.cursor().execute(f'CREATE SCHEMA "{world.sf_database}"."PUBLIC"')
        world.sf = sf
        yield world
    finally:
        sf.close()
        env.undo()
        own.stop()


def _connect_args(world: World) -> dict:
    emulator = world.stack.emulator
    return {"user": "fake", "password": "snow", "account": "fakesnow", "host": emulator.host, "protocol": "http",
            "session_parameters": dict(SNOWFLAKE_SESSION), "arrow_number_to_decimal": True}  # fmt: skip


def _batches_fail_above(monkeypatch: pytest.MonkeyPatch, max_rows: int) -> list[int]:
    """COPY raises ArrowMemoryError on any batch larger than ``max_rows``; returns the batch sizes seen."""
    real, seen = chunk_module.copy_batches, []

    def copy_batches(cur, table, target, batches):
        def guarded():
            for batch in batches:
                seen.append(batch.num_rows)
                if batch.num_rows > max_rows:
                    raise pa.ArrowMemoryError(f"malloc of size {batch.nbytes * 4} failed")
                yield batch

        return real(cur, table, target, guarded())

    monkeypatch.setattr(chunk_module, "copy_batches", copy_batches)
    return seen


def test_a_chunk_out_of_memory_is_retried_with_smaller_batches_and_the_ledger_says_so(
    large_result_chunks: World, monkeypatch: pytest.MonkeyPatch
):
    world = large_result_chunks
    seed_all_types(world, 3000)
    raw = all_types_config(world, "id", rows_per_chunk=5000, batch_size=10000)
    seen = _batches_fail_above(monkeypatch, 2000)
    outcome = run(world, raw)[0]
    assert outcome.success, outcome.error
    assert outcome.metadata["fallbacks"] >= 1
    md = outcome.metadata  # the table summary: every partition loaded, none failed or missing
    assert (md["table_chunks_loaded"], md["table_chunks_failed"], md["table_chunks_missing"]) == (md["chunks"], 0, 0)
    assert_exact(world)
    assert max(seen) > 2000 and 1250 in seen  # first tier failed, the eight times smaller one loaded
    notes = world.pg_query("SELECT fallback FROM migration_status.chunk_state WHERE fallback IS NOT NULL")
    assert notes and all(n == ("ArrowMemoryError with batches of 10000 rows: retried with 1250",) for n in notes), notes


def test_a_chunk_still_out_of_memory_at_the_smallest_batches_fails_with_nothing_written(
    large_result_chunks: World, monkeypatch: pytest.MonkeyPatch
):
    world = large_result_chunks
    seed_all_types(world, 3000)
    raw = all_types_config(world, "id", rows_per_chunk=5000, batch_size=10000, parallel_threads=1)
    seen = _batches_fail_above(monkeypatch, 100)
    outcome = run(world, raw)[0]
    assert not outcome.success
    assert "ArrowMemoryError: malloc" in outcome.error
    assert "batches of 1024 rows, after 2 smaller tier(s)" in outcome.error  # two tiers down to the floor, then stop
    assert {1250, 1024} <= set(seen)
    assert world.pg_query("SELECT count(*) FROM tgt.all_types") == [(0,)]
    assert world.pg_query("SELECT count(*) FROM migration_status.chunk_state WHERE status = 'completed'") == [(0,)]
    monkeypatch.undo()
    again = run(world, raw)[0]
    assert again.success, again.error
    assert_exact(world)


def test_a_copy_that_hits_a_duplicate_key_falls_back_to_merge_and_the_ledger_says_so(world: World):
    table = seed_all_types(world, 1200)
    instance = DagsterInstance.ephemeral()
    raw = all_types_config(world, "ts_ntz")
    assert run(world, raw, instance)[0].success
    # a row moves past the last chunk: its key already lives in the target, under an older range
    world.sf_exec(f"UPDATE {table} SET TS_NTZ = '2031-01-01 00:00:00' WHERE ID = 7")
    spec = parse_config(raw).tables()[0]
    before = set(instance.get_dynamic_partitions(partitions_name(spec)))
    plan_tables([spec], instance)
    [edge] = set(instance.get_dynamic_partitions(partitions_name(spec))) - before
    result = materialize(
        [build_table_asset(spec)], instance=instance, resources=build_resources(resolve_env=True), partition_key=edge
    )
    assert result.success
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    assert metadata["mode"].value == "copy->merge: 1" and metadata["fallbacks"].value == 1
    assert world.pg_query("SELECT mode, fallback FROM migration_status.chunk_state WHERE chunk_key = %s", (edge,)) == [
        ("copy->merge", "COPY hit a duplicate key: merged by key instead")
    ]
    assert world.pg_query("SELECT ts_ntz::text FROM tgt.all_types WHERE id = 7") == [("2031-01-01 00:00:00",)]
    assert run(world, raw, instance)[0].success  # the old chunk lets go of the moved row
    assert_exact(world)

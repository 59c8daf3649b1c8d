"""Incremental sync: the watermark sensor and `sync` bring a changed source back to exact equality."""

from __future__ import annotations

import json

import psycopg
from dagster import DagsterInstance, SensorResult, SkipReason, build_sensor_context
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from sf2pg.config.loading import parse_config
from sf2pg.dagster.definitions import build_resources
from sf2pg.dagster.partitions import partitions_name
from sf2pg.dagster.resources import PostgresResource, snowflake_resource
from sf2pg.dagster.runner import run_table_job, sync
from sf2pg.dagster.sensors import build_watermark_sensor
from sf2pg.load import indexes
from sf2pg_tests.harness import World, source_rows, target_rows
from sf2pg_tests.test_load.test_migrate import run

COLUMNS = ["ID", "UPDATED_AT", "NAME", "AMOUNT"]
TARGET = ["id", "updated_at", "name", "amount"]
PRIMARY_KEY = "SELECT conname FROM pg_constraint WHERE conrelid = 'tgt.orders'::regclass AND contype = 'p'"


def seed_orders(world: World, n: int = 600) -> str:
    table = f'"{world.sf_database}"."PUBLIC"."ORDERS"'
    world.sf_exec(
        f"CREATE TABLE {table} (ID NUMBER(18,0), UPDATED_AT TIMESTAMP_NTZ, NAME VARCHAR, AMOUNT NUMBER(12,2))",
        f"INSERT INTO {table} SELECT SEQ4(), DATEADD(minute, SEQ4(), '2024-01-01 00:00:00'::TIMESTAMP_NTZ), "
        f"'order ' || SEQ4(), SEQ4() * 1.5 FROM TABLE(GENERATOR(ROWCOUNT => {n}))",
    )
    return table


def orders_config(world: World, **table_keys) -> dict:
    return world.config(
        [
            {
                "source": "ORDERS",
                "chunking_columns": ["UPDATED_AT"],
                "chunking_column_types": ["timestamp"],
                "uniqueness_columns": ["ID"],
                "source_watermark": "UPDATED_AT",
                **table_keys,
            }
        ]
    )


def exact(world: World) -> bool:
    return target_rows(world, "tgt", "orders", TARGET) == source_rows(world, "ORDERS", COLUMNS)


def change_source(table: str, world: World) -> None:
    world.sf_exec(
        # an update moves a row's watermark forward
        f"UPDATE {table} SET NAME = 'updated', AMOUNT = 1, UPDATED_AT = '2024-01-02 12:00:00'::TIMESTAMP_NTZ WHERE ID = 7",
        # new rows beyond the old maximum
        f"INSERT INTO {table} VALUES (1000, '2024-01-02 13:00:00'::TIMESTAMP_NTZ, 'new', 5), "
        "(1001, '2024-01-02 13:30:00'::TIMESTAMP_NTZ, 'newer', 6)",
    )


def evaluate(sensor, instance: DagsterInstance, cursor: str | None):
    """One tick, as the daemon runs it: the resources live for the tick (their sessions end with it)."""
    resources = {"snowflake": snowflake_resource(resolve=True), "postgres": PostgresResource()}
    with build_sensor_context(instance=instance, cursor=cursor, resources=resources) as context:
        return sensor(context)


def run_request(request, spec, instance: DagsterInstance):
    """Launch a sensor's run request the way the daemon would: the table's asset and checks, with its tags."""
    return run_table_job("sync", spec, instance, build_resources(resolve_env=True), request.tags)


def test_the_sensor_requests_one_window_over_the_chunks_it_touches_and_a_second_tick_requests_nothing(
    world: World,
):
    table = seed_orders(world)
    raw = orders_config(world, watermark_lookback=3600)
    instance = DagsterInstance.ephemeral()
    assert run(world, raw, instance)[0].success
    spec = parse_config(raw).tables()[0]
    sensor = build_watermark_sensor("src", [spec], 60, running=False)
    chunks_before = list(instance.get_dynamic_partitions(partitions_name(spec)))

    result = evaluate(sensor, instance, None)
    assert isinstance(result, SkipReason)  # nothing changed since the full load

    change_source(table, world)
    result = evaluate(sensor, instance, None)
    assert isinstance(result, SensorResult)
    [request] = result.run_requests
    assert request.tags["sf2pg/incremental"] == "true" and request.tags["sf2pg/table"] == spec.name
    assert json.loads(result.cursor)[spec.name]["rows"] == 602
    after = list(instance.get_dynamic_partitions(partitions_name(spec)))
    assert after[: len(chunks_before)] == chunks_before and len(after) == len(chunks_before) + 1  # one edge chunk
    assert not any(k.startswith("inc_") for k in after)  # windows are no partitions of their own
    # the run covers the chunks the window's rows fall in: the updated row's new place and the new edge
    assert (request.tags[ASSET_PARTITION_RANGE_START_TAG], request.tags[ASSET_PARTITION_RANGE_END_TAG]) == (
        chunks_before[-1],
        after[-1],
    )

    done = run_request(request, spec, instance)
    assert done.success
    md = {m.partition: m.metadata for m in (e.materialization for e in done.get_asset_materialization_events())}
    assert set(md) == {chunks_before[-1], after[-1]}
    assert md[after[-1]]["mode"].value == "merge: 1"  # the edge chunk loads as a chunk, over the window's rows
    assert md[chunks_before[-1]]["mode"].value == "kept current by the window"
    assert exact(world)

    again = evaluate(sensor, instance, result.cursor)
    assert isinstance(again, SkipReason)


def test_an_unmoved_source_costs_the_sensor_no_postgresql_query(world: World):
    seed_orders(world, 100)
    raw = orders_config(world)
    instance = DagsterInstance.ephemeral()
    assert run(world, raw, instance)[0].success
    spec = parse_config(raw).tables()[0]
    sensor = build_watermark_sensor("src", [spec], 60, running=False)
    first = evaluate(sensor, instance, None)
    assert isinstance(first, SkipReason)
    # a PostgreSQL nobody can reach: the next tick must not need it
    unreachable = {"snowflake": snowflake_resource(resolve=True), "postgres": PostgresResource(port=1)}
    with build_sensor_context(instance=instance, cursor=first_cursor(sensor, instance), resources=unreachable) as ctx:
        again = sensor(ctx)
    assert isinstance(again, SkipReason), again


def first_cursor(sensor, instance: DagsterInstance) -> str:
    resources = {"snowflake": snowflake_resource(resolve=True), "postgres": PostgresResource()}
    with build_sensor_context(instance=instance, resources=resources) as context:
        sensor(context)
        return context.cursor


def test_late_rows_inside_the_lookback_are_not_lost(world: World):
    table = seed_orders(world)
    raw = orders_config(world, watermark_lookback=3600)
    instance = DagsterInstance.ephemeral()
    assert run(world, raw, instance)[0].success
    [first] = sync(parse_config(raw).tables(), instance)
    assert first.note == "up to date"
    change_source(table, world)
    # committed late: its watermark is 30 minutes older than the newest row already in the window
    world.sf_exec(f"INSERT INTO {table} VALUES (2000, '2024-01-02 13:05:00'::TIMESTAMP_NTZ, 'late', 7)")
    [outcome] = sync(parse_config(raw).tables(), instance)
    assert outcome.success and outcome.window
    world.sf_exec(f"INSERT INTO {table} VALUES (2001, '2024-01-02 13:10:00'::TIMESTAMP_NTZ, 'later but old', 8)")
    world.sf_exec(f"INSERT INTO {table} VALUES (2002, '2024-01-02 14:00:00'::TIMESTAMP_NTZ, 'newest', 9)")
    [outcome] = sync(parse_config(raw).tables(), instance)
    assert outcome.success, outcome.note
    assert exact(world)  # 2001 arrived below the previous high but inside the lookback


def late_changes(table: str) -> list[str]:
    """Two changes committed late that leave MAX(UPDATED_AT) (04:59) and COUNT(*) as they were."""
    return [
        # stamped when its transaction began, a minute and a half before the newest row, inside the lookback
        f"UPDATE {table} SET NAME = 'late', UPDATED_AT = '2024-01-01 04:57:30'::TIMESTAMP_NTZ WHERE ID = 295",
        # stamped with the newest watermark itself, which the last window already read
        f"UPDATE {table} SET NAME = 'at the high', UPDATED_AT = '2024-01-01 04:59:00'::TIMESTAMP_NTZ WHERE ID = 10",
    ]


def test_sync_reads_late_changes_that_move_neither_the_maximum_nor_the_row_count(world: World):
    table = seed_orders(world, 300)
    raw = orders_config(world)  # the default lookback: 900 s
    instance = DagsterInstance.ephemeral()
    assert run(world, raw, instance)[0].success
    specs = parse_config(raw).tables()
    assert sync(specs, instance)[0].note == "up to date"
    for change in late_changes(table):
        world.sf_exec(change)
        [outcome] = sync(specs, instance)
        assert outcome.success and outcome.window, outcome.note
        assert exact(world)
    assert sync(specs, instance)[0].note == "up to date"  # and once read, nothing more


def test_the_sensor_requests_a_window_for_late_changes_that_move_neither_the_maximum_nor_the_count(world: World):
    table = seed_orders(world, 300)
    raw = orders_config(world)
    instance = DagsterInstance.ephemeral()
    assert run(world, raw, instance)[0].success
    spec = parse_config(raw).tables()[0]
    sensor = build_watermark_sensor("src", [spec], 60, running=False)
    cursor = first_cursor(sensor, instance)
    for change in late_changes(table):
        world.sf_exec(change)
        result = evaluate(sensor, instance, cursor)
        assert isinstance(result, SensorResult) and len(result.run_requests) == 1, result
        assert run_request(result.run_requests[0], spec, instance).success
        assert exact(world)
        cursor = result.cursor
        quiet = evaluate(sensor, instance, cursor)
        assert isinstance(quiet, SkipReason), quiet


def test_sync_waits_for_a_running_first_load_but_not_for_one_that_died(world: World):
    table = seed_orders(world, 300)
    raw = orders_config(world)
    instance = DagsterInstance.ephemeral()
    assert run(world, raw, instance)[0].success
    specs = parse_config(raw).tables()
    change_source(table, world)
    first_load = psycopg.connect(dbname=world.pg_database, autocommit=True)  # holds the key away, running
    assert indexes.lock_indexes(first_load, "tgt", "orders")
    assert indexes.drop_secondary_indexes(first_load, "tgt", "orders", "first", primary_key=True) == ["orders_pkey"]
    [waiting] = sync(specs, instance)
    assert waiting.success and not waiting.window and waiting.note.startswith("its first load is still running")
    first_load.close()  # killed: its session, and so its claim on the indexes, ends; the key stays saved
    [outcome] = sync(specs, instance)
    assert outcome.success and outcome.window, outcome.note
    assert world.pg_query(PRIMARY_KEY) == [("orders_pkey",)]
    assert exact(world)


def test_reloading_one_chunk_after_syncs_keeps_the_settled_watermark_the_syncs_reached(world: World):
    table = seed_orders(world, 300)
    raw = orders_config(world, rows_per_chunk=100, watermark_lookback=0)
    instance = DagsterInstance.ephemeral()
    assert run(world, raw, instance)[0].success
    spec = parse_config(raw).tables()[0]
    world.sf_exec(
        f"INSERT INTO {table} SELECT 1000 + SEQ4(), DATEADD(minute, SEQ4(), '2024-01-03'::TIMESTAMP_NTZ), 'new', 1 "
        "FROM TABLE(GENERATOR(ROWCOUNT => 50))"
    )
    assert sync([spec], instance)[0].window
    settled = "SELECT watermark FROM migration_status.table_state"
    reached = world.pg_query(settled)
    first = instance.get_dynamic_partitions(partitions_name(spec))[0]
    tags = {ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: first}
    assert run_table_job("materialize", spec, instance, build_resources(resolve_env=True), tags).success
    assert world.pg_query(settled) == reached  # not back at the plan's maximum: the next window starts there
    assert sync([spec], instance)[0].note == "up to date"
    assert exact(world)


def test_sync_of_an_unloaded_table_says_to_migrate_first(world: World):
    seed_orders(world, 10)
    [outcome] = sync(parse_config(orders_config(world)).tables(), DagsterInstance.ephemeral())
    assert not outcome.success and outcome.window is None and "migrate" in outcome.note  # exit 1 in the CLI


def test_integer_watermarks_sync_too(world: World):
    table = seed_orders(world, 300)
    raw = world.config(
        [
            {
                "source": "ORDERS",
                "chunking_columns": ["ID"],
                "chunking_column_types": ["id"],
                "uniqueness_columns": ["ID"],
                "source_watermark": "ID",
            }
        ]
    )
    instance = DagsterInstance.ephemeral()
    assert run(world, raw, instance)[0].success
    world.sf_exec(f"INSERT INTO {table} VALUES (5000, '2030-01-01'::TIMESTAMP_NTZ, 'big id', 1)")
    [outcome] = sync(parse_config(raw).tables(), instance)
    assert outcome.success and outcome.window == "299 .. 5000"  # a number watermark has no lookback by default
    assert exact(world)


def test_delete_detection_removes_vanished_keys_and_the_guard_refuses_mass_deletes(world: World):
    table = seed_orders(world, 600)
    raw = orders_config(world, delete_detection="keys", delete_max_ratio=0.2)
    instance = DagsterInstance.ephemeral()
    assert run(world, raw, instance)[0].success
    world.sf_exec(f"DELETE FROM {table} WHERE ID IN (3, 4, 500)")
    [outcome] = sync(parse_config(raw).tables(), instance)
    assert outcome.success, outcome.note
    assert outcome.deleted == 3
    assert exact(world)

    before = world.pg_query("SELECT count(*) FROM tgt.orders")
    world.sf_exec(f"DELETE FROM {table} WHERE ID < 300")  # about half of a chunk's rows
    [refused] = sync(parse_config(raw).tables(), instance)
    assert not refused.success
    assert "delete_max_ratio" in refused.note and "nothing was deleted" in refused.note
    assert world.pg_query("SELECT count(*) FROM tgt.orders") == before


def test_a_tick_over_many_tables_sends_two_snowflake_queries_whatever_their_number(world: World):
    from contextlib import contextmanager

    tables = [f"T{i}" for i in range(6)]
    for name in tables:
        world.sf_exec(
            f'CREATE TABLE "{world.sf_database}"."PUBLIC"."{name}" (ID NUMBER(18,0), UPDATED_AT TIMESTAMP_NTZ)',
            f'INSERT INTO "{world.sf_database}"."PUBLIC"."{name}" VALUES (1, \'2024-01-01\'::TIMESTAMP_NTZ)',
        )
    raw = world.config([{"source": t, "uniqueness_columns": ["ID"], "source_watermark": "UPDATED_AT"} for t in tables])
    instance = DagsterInstance.ephemeral()
    assert all(o.success for o in run(world, raw, instance))
    specs = parse_config(raw).tables()
    sensor = build_watermark_sensor("src", specs, 60, running=False)
    first = evaluate(sensor, instance, None)
    assert isinstance(first, SkipReason)

    sent: list[str] = []

    class Counting(type(snowflake_resource(resolve=True))):
        @contextmanager
        def get_connection(self, raw_conn: bool = True):
            with super().get_connection(raw_conn) as conn:
                real_cursor = conn.cursor

                def cursor(*args, **kwargs):
                    cur = real_cursor(*args, **kwargs)
                    real_execute = cur.execute

                    def execute(query, *a, **k):
                        sent.append(query)
                        return real_execute(query, *a, **k)

                    cur.execute = execute
                    return cur

                conn.cursor = cursor
                yield conn

    counting = Counting(**snowflake_resource(resolve=True).model_dump(exclude_none=True))
    with build_sensor_context(
        instance=instance,
        cursor=first_cursor(sensor, instance),
        resources={"snowflake": counting, "postgres": PostgresResource()},
    ) as context:
        assert isinstance(sensor(context), SkipReason)
    assert len(sent) == 2, sent  # the columns of every table, then every table's MAX and COUNT

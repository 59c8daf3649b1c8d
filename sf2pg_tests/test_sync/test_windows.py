"""Incremental windows on a source that keeps changing: inclusive bounds, no stale write, no overlap,
append-only re-runs, NULL watermarks, the watermark's target spelling, and a bounded partition set."""

from __future__ import annotations

import json
import threading
import time

import pytest
from dagster import DagsterInstance, DagsterRunStatus, SensorResult, SkipReason
from dagster._core.test_utils import create_run_for_test

from sf2pg.cli.main import main
from sf2pg.config.loading import parse_config
from sf2pg.dagster.definitions import build_resources
from sf2pg.dagster.partitions import partitions_name
from sf2pg.dagster.runner import run_table_job, sync
from sf2pg.dagster.sensors import build_watermark_sensor
from sf2pg.load import chunk as chunk_module
from sf2pg.plan.chunks import parse_chunk_key
from sf2pg_tests.harness import World, source_rows, target_rows
from sf2pg_tests.test_cli import write_config
from sf2pg_tests.test_load.test_migrate import run
from sf2pg_tests.test_sync.test_watermark_sensor import COLUMNS, TARGET, evaluate, exact, orders_config, seed_orders


def by_id_config(world: World, **table_keys) -> dict:
    """ORDERS chunked by ID with UPDATED_AT as its watermark: updates land in every chunk."""
    return world.config(
        [
            {
                "source": "ORDERS",
                "chunking_columns": ["ID"],
                "chunking_column_types": ["id"],
                "uniqueness_columns": ["ID"],
                "source_watermark": "UPDATED_AT",
                **table_keys,
            }
        ],
        rows_per_chunk=100,
    )


def test_rows_committed_late_with_the_last_high_watermark_still_arrive(world: World):
    table = seed_orders(world, 300)
    raw = orders_config(world, watermark_lookback=0)  # the inclusive lower bound alone must catch them
    instance = DagsterInstance.ephemeral()
    assert run(world, raw, instance)[0].success
    [first] = sync(parse_config(raw).tables(), instance)
    assert first.success and first.note == "up to date"
    # a batch stamped with the same time as the newest row already loaded, committed after the sync read
    world.sf_exec(
        f"INSERT INTO {table} VALUES (9001, '2024-01-01 04:59:00'::TIMESTAMP_NTZ, 'late twin', 1), "
        "(9002, '2024-01-01 04:59:00'::TIMESTAMP_NTZ, 'late twin 2', 2)"
    )
    [outcome] = sync(parse_config(raw).tables(), instance)
    assert outcome.success and outcome.window, outcome.note
    assert outcome.metadata["rows_inserted"] == 2
    assert exact(world)


def test_an_append_only_table_never_duplicates_rows_across_overlapping_or_repeated_windows(world: World):
    table = seed_orders(world, 300)
    raw = orders_config(world, uniqueness_columns=[], insert_only_mode=True, watermark_lookback=3600)
    instance = DagsterInstance.ephemeral()
    spec = parse_config(raw).tables()[0]
    assert run(world, raw, instance)[0].success
    sensor = build_watermark_sensor("src", [spec], 60, running=False)
    world.sf_exec(f"INSERT INTO {table} VALUES (5000, '2024-01-01 05:10:00'::TIMESTAMP_NTZ, 'a', 1)")
    [first] = evaluate(sensor, instance, None).run_requests
    world.sf_exec(f"INSERT INTO {table} VALUES (5001, '2024-01-01 05:20:00'::TIMESTAMP_NTZ, 'b', 2)")
    [second] = evaluate(sensor, instance, None).run_requests  # overlaps the first: same low, higher high
    resources = build_resources(resolve_env=True)
    for request in (second, first, second):  # out of order, and one of them twice
        assert run_table_job("sync", spec, instance, resources, request.tags).success
    [again] = sync([spec], instance)
    assert again.success
    assert target_rows(world, "tgt", "orders", TARGET) == source_rows(world, "ORDERS", COLUMNS)  # no copy twice


@pytest.mark.parametrize("order", ["older first", "newer first"])
def test_overlapping_windows_end_exact_whatever_order_they_commit_in(world: World, order: str):
    table = seed_orders(world, 300)
    raw = by_id_config(world, watermark_lookback=3600)
    instance = DagsterInstance.ephemeral()
    spec = parse_config(raw).tables()[0]
    assert run(world, raw, instance)[0].success
    sensor = build_watermark_sensor("src", [spec], 60, running=False)
    world.sf_exec(f"UPDATE {table} SET NAME = 'first', UPDATED_AT = '2024-01-02 00:00:00'::TIMESTAMP_NTZ WHERE ID = 10")
    [older] = evaluate(sensor, instance, None).run_requests
    world.sf_exec(
        f"UPDATE {table} SET NAME = 'second', UPDATED_AT = '2024-01-02 01:00:00'::TIMESTAMP_NTZ WHERE ID = 10",
        f"UPDATE {table} SET NAME = 'other', UPDATED_AT = '2024-01-02 01:00:00'::TIMESTAMP_NTZ WHERE ID = 250",
    )
    [newer] = evaluate(sensor, instance, None).run_requests
    resources = build_resources(resolve_env=True)
    for request in (older, newer) if order == "older first" else (newer, older):
        assert run_table_job("sync", spec, instance, resources, request.tags).success
    assert exact(world)  # the older window read later, so it brings the newest values too
    [outcome] = sync([spec], instance)
    assert outcome.success and exact(world)


def test_the_sensor_requests_no_new_window_while_one_is_in_flight(world: World):
    table = seed_orders(world, 300)
    raw = by_id_config(world)
    instance = DagsterInstance.ephemeral()
    spec = parse_config(raw).tables()[0]
    assert run(world, raw, instance)[0].success
    sensor = build_watermark_sensor("src", [spec], 60, running=False)
    evaluate(sensor, instance, None)
    world.sf_exec(f"UPDATE {table} SET NAME = 'x', UPDATED_AT = '2024-01-02 00:00:00'::TIMESTAMP_NTZ WHERE ID = 3")
    tick = evaluate(sensor, instance, None)
    [request] = tick.run_requests
    queued = create_run_for_test(
        instance,
        job_name="sync__src__orders",
        status=DagsterRunStatus.STARTED,
        tags={"dagster/run_key": request.run_key},
    )
    world.sf_exec(f"UPDATE {table} SET NAME = 'y', UPDATED_AT = '2024-01-02 01:00:00'::TIMESTAMP_NTZ WHERE ID = 4")
    busy = evaluate(sensor, instance, tick.cursor)
    assert isinstance(busy, SkipReason) and "in flight" in busy.skip_message
    instance.report_run_canceled(queued)  # the queued run never landed: the next tick plans again
    retried = evaluate(sensor, instance, tick.cursor)
    assert isinstance(retried, SensorResult) and len(retried.run_requests) == 1
    assert run_table_job(
        "sync", spec, instance, build_resources(resolve_env=True), retried.run_requests[0].tags
    ).success
    assert exact(world)


def chunk_holding(instance: DagsterInstance, spec, value: int) -> str:
    chunks = [parse_chunk_key(spec.chunking_type, k) for k in instance.get_dynamic_partitions(partitions_name(spec))]
    return next(c.key for c in chunks if c.is_range and c.lower <= value < c.upper)


def test_a_chunk_reload_that_read_earlier_never_commits_over_a_window_that_read_later(
    world: World, monkeypatch: pytest.MonkeyPatch
):
    table = seed_orders(world, 300)
    world.sf_exec(f"DELETE FROM {table} WHERE ID = 150")
    raw = by_id_config(world)
    instance = DagsterInstance.ephemeral()
    spec = parse_config(raw).tables()[0]
    assert run(world, raw, instance)[0].success
    chunk = chunk_holding(instance, spec, 150)

    # A big chunk streams into its staging table long after its query read Snowflake: stand for that
    # with a pause between the reload's staged copy and the rest of its merge (the servers stay real).
    staged = threading.Event()
    real_copy = chunk_module.copy_batches

    def slow_copy(cur, table_ident, target, batches):
        result = real_copy(cur, table_ident, target, batches)
        if table_ident == chunk_module._STAGE and not staged.is_set():
            staged.set()
            time.sleep(4)
        return result

    monkeypatch.setattr(chunk_module, "copy_batches", slow_copy)
    resources = build_resources(resolve_env=True)
    tags = {"dagster/asset_partition_range_start": chunk, "dagster/asset_partition_range_end": chunk}
    reload = threading.Thread(target=lambda: run_table_job("migrate", spec, instance, resources, tags))
    reload.start()
    assert staged.wait(30), "the chunk reload never staged its rows"
    # the reload has read its rows; now the source gains a row inside that chunk, and a sync runs
    world.sf_exec(f"INSERT INTO {table} VALUES (150, '2024-01-03 00:00:00'::TIMESTAMP_NTZ, 'inside', 1)")
    [outcome] = sync([spec], instance)
    reload.join(60)
    assert outcome.success, outcome.note
    # had the window committed first, the reload (which never saw row 150) would have deleted it
    assert world.pg_query("SELECT name FROM tgt.orders WHERE id = 150") == [("inside",)]
    assert exact(world)
    window_done, chunk_done = world.pg_query(
        "SELECT (SELECT max(completed_at) FROM migration_status.window_state), "
        "(SELECT completed_at FROM migration_status.chunk_state WHERE chunk_key = %s)",
        (chunk,),
    )[0]
    assert window_done > chunk_done  # the window waited for the reload, then read after it


def test_rows_with_a_null_watermark_load_with_their_chunk_and_sync_leaves_them(world: World, tmp_path):
    table = seed_orders(world, 300)
    world.sf_exec(f"UPDATE {table} SET UPDATED_AT = NULL WHERE ID IN (20, 21)")
    raw = by_id_config(world)
    instance = DagsterInstance.ephemeral()
    spec = parse_config(raw).tables()[0]
    assert run(world, raw, instance)[0].success
    assert exact(world)  # a full load carries them
    world.sf_exec(f"UPDATE {table} SET AMOUNT = 777 WHERE ID = 20")  # still NULL: no window sees it
    [outcome] = sync([spec], instance)
    assert outcome.success and outcome.note == "up to date"
    assert world.pg_query("SELECT amount FROM tgt.orders WHERE id = 20")[0][0] != 777
    with pytest.raises(SystemExit) as verified:
        main(["--config", write_config(tmp_path, raw), "verify"])
    assert verified.value.code == 1  # the checks see it, naming the chunk
    assert run(world, raw, instance)[0].success  # the chunk the check failed is reloaded by a plain re-run
    assert exact(world)


def test_a_target_watermark_spelled_as_in_snowflake_finds_the_target_column(world: World, tmp_path):
    table = seed_orders(world, 200)
    raw = orders_config(world, target_watermark="UPDATED_AT")
    instance = DagsterInstance.ephemeral()
    assert run(world, raw, instance)[0].success
    with pytest.raises(SystemExit) as checked:
        main(["--config", write_config(tmp_path, raw), "validate", "--connect"])
    assert checked.value.code == 0
    world.sf_exec(f"INSERT INTO {table} VALUES (5000, '2024-02-01 00:00:00'::TIMESTAMP_NTZ, 'new', 1)")
    [outcome] = sync(parse_config(raw).tables(), instance)
    assert outcome.success and outcome.window, outcome.note
    assert exact(world)

    wrong = orders_config(world, target_watermark="NAME")
    with pytest.raises(SystemExit) as refused:
        main(["--config", write_config(tmp_path, wrong), "validate", "--connect"])
    assert refused.value.code == 1


def test_the_partition_set_grows_with_the_data_not_with_the_sensor_ticks(world: World):
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
        ],
        rows_per_chunk=100,
    )
    instance = DagsterInstance.ephemeral()
    spec = parse_config(raw).tables()[0]
    assert run(world, raw, instance)[0].success
    planned = len(instance.get_dynamic_partitions(partitions_name(spec)))
    sensor = build_watermark_sensor("src", [spec], 60, running=False)
    resources = build_resources(resolve_env=True)
    cursor = None
    for tick in range(30):  # 30 ticks, 5 new rows each: 150 rows, one and a half chunks' worth
        world.sf_exec(
            f"INSERT INTO {table} SELECT 300 + {tick * 5} + SEQ4(), '2024-03-01'::TIMESTAMP_NTZ, 'n', 1 "
            "FROM TABLE(GENERATOR(ROWCOUNT => 5))"
        )
        result = evaluate(sensor, instance, cursor)
        assert isinstance(result, SensorResult), result
        cursor = result.cursor
        for request in result.run_requests:
            assert run_table_job("sync", spec, instance, resources, request.tags).success
        cursor = json.dumps({k: {**v, "run": None} for k, v in json.loads(cursor).items()})  # runs are done
    keys = list(instance.get_dynamic_partitions(partitions_name(spec)))
    assert len(keys) <= planned + 2, keys  # not one partition per tick
    assert not any(k.startswith("inc_") for k in keys)
    assert exact(world)

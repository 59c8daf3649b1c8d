"""Two loads of the same table at once: the per-chunk advisory lock serialises them; the result is exact.
Loads of different tables do not wait for each other."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import psycopg
from dagster import DagsterInstance

from sf2pg.config.loading import parse_config
from sf2pg.dagster.runner import migrate
from sf2pg.load.ledger import ensure_ledger
from sf2pg_tests.harness import World
from sf2pg_tests.test_load.test_migrate import all_types_config, assert_exact, seed_all_types


def test_two_first_loads_at_once_create_the_table_once_and_end_exact(world: World):
    seed_all_types(world, 800)
    config = parse_config(all_types_config(world, "id"))
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: migrate(config, config.tables(), DagsterInstance.ephemeral()), range(2)))
    assert [r[0].success for r in results] == [True, True], [r[0].error for r in results]
    assert_exact(world)


def test_two_concurrent_full_loads_of_one_table_end_exact(world: World):
    table = seed_all_types(world, 1500)
    raw = all_types_config(world, "id")
    config = parse_config(raw)
    assert migrate(config, config.tables(), DagsterInstance.ephemeral())[0].success
    world.sf_exec(f"UPDATE {table} SET V = 'changed twice' WHERE ID % 7 = 0", f"DELETE FROM {table} WHERE ID % 11 = 0")

    def load() -> bool:
        return migrate(config, config.tables(), DagsterInstance.ephemeral(), reload=True)[0].success

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: load(), range(2)))
    assert results == [True, True]
    assert_exact(world)
    [(dupes,)] = world.pg_query("SELECT count(*) - count(DISTINCT id) FROM tgt.all_types")
    assert dupes == 0


def test_loads_of_different_tables_proceed_in_parallel(world: World):
    table = seed_all_types(world, 600)
    world.sf_exec(f'CREATE TABLE "{world.sf_database}"."PUBLIC"."ALL_TYPES_COPY" AS SELECT * FROM {table}')
    raw = all_types_config(world, "id", parallel_threads=1)
    raw["sources"][0]["tables"].append({**raw["sources"][0]["tables"][0], "source": "ALL_TYPES_COPY", "target": "copy"})
    config = parse_config(raw)
    with psycopg.connect(dbname=world.pg_database) as gate:
        ensure_ledger(gate)
        gate.commit()
        # no chunk can commit while this lock is held: each table's single loader stops at its ledger write
        gate.execute("LOCK TABLE migration_status.chunk_state IN SHARE MODE")
        with ThreadPoolExecutor(2) as pool:
            futures = [pool.submit(migrate, config, [spec], DagsterInstance.ephemeral()) for spec in config.tables()]
            waiting = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = %s"
            deadline = time.monotonic() + 60
            while world.pg_query(waiting, (world.pg_database,)) != [(2,)]:  # one per table, at the same time
                assert time.monotonic() < deadline, "the two tables' loads never waited side by side"
                time.sleep(0.1)
            gate.rollback()  # let both go
            outcomes = [f.result()[0] for f in futures]
    assert [o.success for o in outcomes] == [True, True], [o.error for o in outcomes]
    assert_exact(world)
    assert world.pg_query("SELECT count(*) FROM tgt.copy") == world.pg_query("SELECT count(*) FROM tgt.all_types")

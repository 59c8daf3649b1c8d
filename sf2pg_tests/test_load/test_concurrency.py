"""Two loads of the same table at once: the per-chunk advisory lock serialises them; the result is exact."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from dagster import DagsterInstance

from sf2pg.config import parse_config
from sf2pg.runs import migrate
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
        return migrate(config, config.tables(), DagsterInstance.ephemeral())[0].success

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: load(), range(2)))
    assert results == [True, True]
    assert_exact(world)
    [(dupes,)] = world.pg_query("SELECT count(*) - count(DISTINCT id) FROM tgt.all_types")
    assert dupes == 0

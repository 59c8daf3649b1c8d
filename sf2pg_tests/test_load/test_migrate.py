"""Full loads end to end: real connector -> emulator over HTTP, psycopg -> real PostgreSQL."""

from __future__ import annotations

import pytest
from dagster import AssetKey, DagsterInstance

from sf2pg.config.loading import parse_config
from sf2pg.dagster.partitions import partitions_name
from sf2pg.dagster.runner import migrate, plan_tables
from sf2pg_tests.harness import World, source_rows, target_rows

ALL_TYPES_DDL = """
CREATE OR REPLACE TABLE {table} (
    ID NUMBER(38,0), N_SMALL NUMBER(4,0), N_INT NUMBER(9,0), N_BIG NUMBER(38,0), N_DEC NUMBER(12,2),
    N_HIGH NUMBER(38,10), N_WIDE NUMBER(38,2), F FLOAT, V VARCHAR, B BOOLEAN, D DATE, T TIME, TS_NTZ TIMESTAMP_NTZ,
    TS_LTZ TIMESTAMP_LTZ, TS_TZ TIMESTAMP_TZ, BIN BINARY, VAR VARIANT, OBJ OBJECT, ARR ARRAY,
    "Visit Id" NUMBER(10,0), "we""ird name" VARCHAR
)"""

ALL_TYPES_ROWS = """
INSERT INTO {table}
SELECT
    i, i % 1000, i * 7, i * 1000000000007,
    i * 1.25, i / 7, CAST('123456789012345678901234567890123.45' AS NUMBER(38,2)) - i, i * 0.5 + 0.125, CASE WHEN i % 4 = 0 THEN NULL WHEN i % 4 = 1 THEN '' ELSE 'héllo ✓ 日本 ' || i END,
    i % 2 = 0, DATEADD(day, i, '2020-01-01'::DATE), '12:34:56.789'::TIME,
    DATEADD(second, i * 3607, '2023-05-01 00:00:00.123456'::TIMESTAMP_NTZ),
    DATEADD(second, i * 11, '2023-05-01 00:00:00'::TIMESTAMP_LTZ),
    DATEADD(second, i * 13, '2023-05-01 00:00:00'::TIMESTAMP_TZ),
    TO_BINARY('CAFE', 'HEX'), PARSE_JSON('{{"a": [1, 2, {{"b": null}}], "i": ' || i || '}}'),
    OBJECT_CONSTRUCT('k', i), ARRAY_CONSTRUCT(i, 'x'), i + 1000, 'q"uote ' || i
FROM (SELECT SEQ4() + 1 AS i FROM TABLE(GENERATOR(ROWCOUNT => {n})))
"""

NULL_ROW = "INSERT INTO {table} (ID) VALUES ({id})"

TARGET_COLUMNS = [
    "id", "n_small", "n_int", "n_big", "n_dec", "n_high", "n_wide", "f", "v", "b", "d", "t", "ts_ntz",
    "ts_ltz", "ts_tz", "bin", "var", "obj", "arr", "Visit Id", 'we"ird name',
]  # fmt: skip
SOURCE_COLUMNS = [c.upper() if c.islower() else c for c in TARGET_COLUMNS]


def seed_all_types(world: World, n: int = 1200) -> str:
    table = f'"{world.sf_database}"."PUBLIC"."ALL_TYPES"'
    world.sf_exec(ALL_TYPES_DDL.format(table=table), ALL_TYPES_ROWS.format(table=table, n=n))
    world.sf_exec(NULL_ROW.format(table=table, id=n + 1))
    return table


def all_types_config(world: World, chunking: str = "ts_ntz", **table_keys) -> dict:
    chunk_cols = {"ts_ntz": (["TS_NTZ"], ["timestamp"]), "id": (["ID"], ["id"]), "d": (["D"], ["date"])}[chunking]
    return world.config(
        [
            {
                "source": "ALL_TYPES",
                "target": "all_types",
                "chunking_columns": chunk_cols[0],
                "chunking_column_types": chunk_cols[1],
                "uniqueness_columns": ["ID"],
                **table_keys,
            }
        ]
    )


def run(world: World, raw: dict, instance: DagsterInstance | None = None, **kwargs):
    config = parse_config(raw)
    outcomes = migrate(config, config.tables(), instance or DagsterInstance.ephemeral(), **kwargs)
    return outcomes


def assert_exact(world: World) -> None:
    json_cols = {"VAR", "OBJ", "ARR"}
    assert target_rows(world, "tgt", "all_types", TARGET_COLUMNS) == source_rows(
        world, "ALL_TYPES", SOURCE_COLUMNS, json_cols
    )


@pytest.mark.parametrize("chunking", ["ts_ntz", "id", "d"])
def test_migrate_copies_every_type_family_exactly(world: World, chunking: str):
    seed_all_types(world)
    outcomes = run(world, all_types_config(world, chunking))
    assert [o.success for o in outcomes] == [True], outcomes[0].error
    assert len(outcomes[0].plan.chunks) > 2  # really chunked (500 rows per chunk)
    assert_exact(world)


def test_reloading_the_whole_table_changes_nothing(world: World):
    seed_all_types(world)
    instance = DagsterInstance.ephemeral()
    raw = all_types_config(world)
    assert run(world, raw, instance)[0].success
    before = target_rows(world, "tgt", "all_types", TARGET_COLUMNS)
    second = run(world, raw, instance, reload=True)[0]
    assert second.success, second.error
    assert second.metadata["rows_inserted"] == 0 and second.metadata["rows_updated"] == 0
    assert "merge" in second.metadata["mode"]
    assert target_rows(world, "tgt", "all_types", TARGET_COLUMNS) == before
    assert_exact(world)


def test_a_rerun_after_success_reads_nothing_and_says_so(world: World):
    seed_all_types(world, 600)
    instance = DagsterInstance.ephemeral()
    raw = all_types_config(world)
    assert run(world, raw, instance)[0].success
    again = run(world, raw, DagsterInstance.ephemeral())[0]  # even with an instance that forgot everything
    assert again.success and again.metadata == {} and "already loaded" in again.note
    assert_exact(world)


def test_source_changes_are_reflected_exactly_on_reload(world: World):
    table = seed_all_types(world)
    instance = DagsterInstance.ephemeral()
    raw = all_types_config(world)
    assert run(world, raw, instance)[0].success
    world.sf_exec(
        f"UPDATE {table} SET V = 'changed' WHERE ID = 10",
        f"DELETE FROM {table} WHERE ID = 20",
        # a row whose chunking value moves to another chunk: its key must not be duplicated
        f"UPDATE {table} SET TS_NTZ = '2023-05-03 00:00:00'::TIMESTAMP_NTZ WHERE ID = 900",
    )
    again = run(world, raw, instance, reload=True)[0]
    assert again.success, again.error
    assert_exact(world)


def test_a_table_without_uniqueness_replaces_each_chunk(world: World):
    seed_all_types(world, 700)
    raw = all_types_config(world, uniqueness_columns=[])
    instance = DagsterInstance.ephemeral()
    assert run(world, raw, instance)[0].success
    second = run(world, raw, instance, reload=True)[0]
    assert second.success and "replace" in second.metadata["mode"]
    assert_exact(world)


def test_planning_takes_one_query_and_two_with_refinement(world: World):
    table = f'"{world.sf_database}"."PUBLIC"."SKEWED"'
    world.sf_exec(
        f"CREATE TABLE {table} (ID NUMBER(38,0), TS TIMESTAMP_NTZ)",
        # a sparse tail over a year, then 2,000 rows inside one hour of one day
        f"INSERT INTO {table} SELECT SEQ4(), DATEADD(day, SEQ4(), '2023-01-01'::TIMESTAMP_NTZ) "
        "FROM TABLE(GENERATOR(ROWCOUNT => 300))",
        f"INSERT INTO {table} SELECT 1000 + SEQ4(), DATEADD(second, SEQ4(), '2024-02-01 10:00:00'::TIMESTAMP_NTZ) "
        "FROM TABLE(GENERATOR(ROWCOUNT => 2000))",
    )
    raw = world.config(
        [{"source": "SKEWED", "chunking_columns": ["TS"], "chunking_column_types": ["timestamp"]}],
        rows_per_chunk=400,
    )
    config = parse_config(raw)
    plan = plan_tables(config.tables(), None)[config.tables()[0].name]
    assert plan.source_queries == 2  # one distribution query + one refinement of the dense day
    assert max(c.estimated_rows for c in plan.chunks) <= 400
    assert sum(c.estimated_rows for c in plan.chunks) == 2300

    sparse = world.config(
        [{"source": "SKEWED", "chunking_columns": ["TS"], "chunking_column_types": ["timestamp"]}],
        rows_per_chunk=5000,
    )
    config = parse_config(sparse)
    assert plan_tables(config.tables(), None)[config.tables()[0].name].source_queries == 1


def test_partitions_are_registered_in_key_order_and_replanning_adds_at_the_edge(world: World):
    table = seed_all_types(world, 600)
    instance = DagsterInstance.ephemeral()
    raw = all_types_config(world, "id")
    assert run(world, raw, instance)[0].success
    spec = parse_config(raw).tables()[0]
    first = list(instance.get_dynamic_partitions(partitions_name(spec)))
    assert first == sorted(first)
    world.sf_exec(f"INSERT INTO {table} (ID, V) SELECT 5000 + SEQ4(), 'new' FROM TABLE(GENERATOR(ROWCOUNT => 50))")
    again = run(world, raw, instance)[0]
    assert again.success, again.error
    after = list(instance.get_dynamic_partitions(partitions_name(spec)))
    assert after[: len(first)] == first  # nothing dropped or re-cut
    assert len(after) == len(first) + 1 and after[-1].startswith("id_")
    assert_exact(world)


def test_each_partition_carries_its_own_numbers_and_the_run_its_totals(world: World):
    seed_all_types(world, 1200)
    instance = DagsterInstance.ephemeral()
    outcome = run(world, all_types_config(world, "id"), instance)[0]
    assert outcome.success, outcome.error
    records = instance.fetch_materializations(AssetKey(["src", "all_types"]), limit=1000).records
    rows = {r.partition_key: r.asset_materialization.metadata["rows"].value for r in records}
    assert len(rows) == outcome.metadata["chunks"] > 1
    assert sum(rows.values()) == outcome.metadata["rows"] == 1201  # the UI plots chunk by chunk
    assert all(r.asset_materialization.metadata["mode"].value == "copy: 1" for r in records)

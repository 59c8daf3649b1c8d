"""Edge values in chunking columns: sentinel dates and timestamps from year 1 to 9999 plan, load and plan
again; fractional and negative IDs are planned exactly; a declared chunking type that does not fit its
Snowflake column is refused before anything runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from dagster import DagsterInstance

from sf2pg.config.loading import parse_config
from sf2pg.dagster.runner import plan_tables
from sf2pg.plan.chunks import INFINITY
from sf2pg_tests.harness import World, source_rows, target_rows
from sf2pg_tests.test_cli import run_cli, write_config
from sf2pg_tests.test_load.test_migrate import run

COLUMNS = ["ID", "D", "TS", "V"]


def _seed_sentinels(world: World) -> str:
    table = f'"{world.sf_database}"."PUBLIC"."EVENTS"'
    world.sf_exec(
        f"CREATE TABLE {table} (ID NUMBER(9,0), D DATE, TS TIMESTAMP_NTZ, V VARCHAR)",
        f"INSERT INTO {table} SELECT SEQ4(), DATEADD(day, SEQ4() % 40, '2024-01-01'::DATE), "
        "DATEADD(minute, SEQ4(), '2024-01-01 00:00:00'::TIMESTAMP_NTZ), 'v' || SEQ4() FROM TABLE(GENERATOR(ROWCOUNT => 300))",
        f"INSERT INTO {table} VALUES "
        "(1001, '0001-01-01', '0001-01-01 00:00:00', 'first day'), "
        "(1002, '0001-01-01', '0001-01-01 00:00:00', 'first day again'), "
        "(1003, '1899-12-31', '1899-12-31 23:59:59', 'spreadsheet zero'), "
        "(1004, '9999-12-31', '9999-12-31 00:00:00', 'open end'), "
        "(1005, '9999-12-31', '9999-12-31 23:59:59.999999', 'the last microsecond'), "
        "(1006, NULL, NULL, 'no date')",
    )
    return table


def _config(world: World, column: str, kind: str) -> dict:
    return world.config(
        [
            {
                "source": "EVENTS",
                "chunking_columns": [column],
                "chunking_column_types": [kind],
                "uniqueness_columns": ["ID"],
            }
        ],
        rows_per_chunk=100,
    )


def _exact(world: World) -> bool:
    return target_rows(world, "tgt", "events", [c.lower() for c in COLUMNS]) == source_rows(world, "EVENTS", COLUMNS)


@pytest.mark.parametrize(
    ("column", "kind", "first"), [("D", "date", "0001-01-01_"), ("TS", "timestamp", "0001-01-01T000000_")]
)
def test_sentinel_values_from_year_1_to_9999_plan_load_and_plan_again(world: World, column: str, kind: str, first: str):
    table = _seed_sentinels(world)
    raw = _config(world, column, kind)
    specs = parse_config(raw).tables()
    instance = DagsterInstance.ephemeral()
    [plan] = plan_tables(specs, instance).values()
    keys = [c.key for c in plan.chunks]
    assert keys[0].startswith(first) and keys[-2].endswith(f"_{INFINITY}") and keys[-1] == "null"
    outcome = run(world, raw, instance)[0]
    assert outcome.success, outcome.error
    assert _exact(world)

    [again] = plan_tables(specs, instance).values()  # the keys parse back: the table is not wedged
    assert [c.key for c in again.chunks] == keys and again.new_keys == []
    world.sf_exec(
        f"INSERT INTO {table} VALUES (2001, '9999-12-31', '9999-12-31 12:00:00', 'later sentinel'), "
        "(2002, '0001-01-02', '0001-01-01 00:00:01', 'early')",
        f"UPDATE {table} SET V = 'changed' WHERE ID IN (1001, 1005)",
    )
    reloaded = run(world, raw, instance, reload=True)[0]
    assert reloaded.success, reloaded.error
    assert _exact(world)
    assert world.pg_query("SELECT upper_bound FROM migration_status.chunk_state WHERE chunk_key = %s", (keys[-2],)) == [
        (INFINITY,)
    ]


def test_fractional_and_negative_ids_are_planned_exactly(world: World):
    table = f'"{world.sf_database}"."PUBLIC"."READINGS"'
    world.sf_exec(
        f"CREATE TABLE {table} (READING NUMBER(10,2), V VARCHAR)",
        f"INSERT INTO {table} SELECT (SEQ4() - 250) * 1.37 - 0.5, 'r' || SEQ4() FROM TABLE(GENERATOR(ROWCOUNT => 500))",
        f"INSERT INTO {table} VALUES (-0.25, 'just below zero'), (0.25, 'just above'), (-0.99, 'nearly minus one')",
    )
    raw = world.config(
        [
            {
                "source": "READINGS",
                "chunking_columns": ["READING"],
                "chunking_column_types": ["id"],
                "uniqueness_columns": ["READING"],
            }
        ],
        rows_per_chunk=100,
    )
    outcome = run(world, raw)[0]
    assert outcome.success, outcome.error
    assert target_rows(world, "tgt", "readings", ["reading", "v"]) == source_rows(world, "READINGS", ["READING", "V"])
    assert world.pg_query("SELECT count(*) FROM tgt.readings WHERE reading < 0") == [(253,)]


def test_a_chunking_type_that_does_not_fit_its_snowflake_column_is_refused(world: World, tmp_path: Path, capsys):
    _seed_sentinels(world)
    raw = world.config(
        [
            {
                "source": "EVENTS",
                "chunking_columns": ["V"],
                "chunking_column_types": ["id"],
                "uniqueness_columns": ["ID"],
            },
            {"source": "EVENTS", "target": "by_ts", "chunking_columns": ["TS"], "chunking_column_types": ["date"]},
        ]
    )
    code, out = run_cli(capsys, "--config", write_config(tmp_path, raw), "validate", "--connect")
    assert code == 1
    out = " ".join(out.split())
    assert "sources[0].tables[0].chunking_column_types: chunking column 'V' is declared id but is TEXT" in out
    assert (
        "sources[0].tables[1].chunking_column_types: chunking column 'TS' is declared date but is TIMESTAMP_NTZ" in out
    )
    assert "declare it as timestamp" in out
    outcomes = run(world, raw)
    assert [o.success for o in outcomes] == [False, False]
    assert "is declared id but is TEXT" in outcomes[0].error
    assert world.pg_query("SELECT to_regclass('tgt.events') IS NULL") == [(True,)]

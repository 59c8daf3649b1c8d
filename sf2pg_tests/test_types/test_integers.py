"""Integers a user can live with: NUMBER(38,0) (every Snowflake INT) into an existing bigint column, the
wide_integers policies, and per-column types; a value a column cannot hold fails naming the column.

The emulator keeps NUMBER(38,0) in 64 bits, so values beyond bigint are held by NUMBER(20,0) columns."""

from __future__ import annotations

from pathlib import Path

from dagster import DagsterInstance

from sf2pg.config.loading import parse_config
from sf2pg.dagster.runner import plan_tables
from sf2pg_tests.harness import World, source_rows, target_rows
from sf2pg_tests.test_cli import run_cli, write_config
from sf2pg_tests.test_load.test_migrate import run

BEYOND_BIGINT = 99999999999999999999


def _seed(world: World, rows: int = 200) -> str:
    table = f'"{world.sf_database}"."PUBLIC"."NUMS"'
    world.sf_exec(
        f"CREATE TABLE {table} (ID INT, BIG NUMBER(20,0), AMOUNT NUMBER(12,2), NOTES VARCHAR, PAYLOAD VARIANT)",
        f"INSERT INTO {table} SELECT SEQ4(), SEQ4() * 1000000000007, SEQ4() * 1.25, 'note ' || SEQ4(), "
        f"PARSE_JSON('{{\"k\": ' || SEQ4() || ', \"a\": [1, 2]}}') FROM TABLE(GENERATOR(ROWCOUNT => {rows}))",
    )
    return table


def _table(**keys) -> dict:
    return {
        "source": "NUMS",
        "chunking_columns": ["ID"],
        "chunking_column_types": ["id"],
        "uniqueness_columns": ["ID"],
        **keys,
    }


def _types(world: World) -> dict[str, str]:
    return dict(
        world.pg_query(
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = 'tgt.nums'::regclass AND attnum > 0 AND NOT attisdropped"
        )
    )


def _attempts(world: World) -> list[tuple]:
    return world.pg_query("SELECT status, attempts FROM migration_status.chunk_state WHERE status = 'failed'")


def test_int_columns_load_into_existing_bigint_columns_and_a_value_beyond_bigint_fails_naming_its_column(world: World):
    table = _seed(world)
    world.pg_query("CREATE SCHEMA tgt")
    world.pg_query("CREATE TABLE tgt.nums (id bigint PRIMARY KEY, big bigint, amount numeric(12,2), notes text)")
    raw = world.config([_table()], rows_per_chunk=100)
    instance = DagsterInstance.ephemeral()
    outcome = run(world, raw, instance)[0]
    assert outcome.success, outcome.error
    assert target_rows(world, "tgt", "nums", ["id", "big", "amount", "notes"]) == source_rows(
        world, "NUMS", ["ID", "BIG", "AMOUNT", "NOTES"]
    )

    world.sf_exec(f"INSERT INTO {table} (ID, BIG) VALUES (500, {BEYOND_BIGINT})")
    failed = run(world, raw, instance)[0]
    assert not failed.success
    assert f"column 'big' holds {BEYOND_BIGINT}, which does not fit in the target column's bigint" in failed.error
    assert world.pg_query("SELECT count(*) FROM tgt.nums WHERE id = 500") == [(0,)]
    assert _attempts(world) == [("failed", 1)]  # bad data: failed at once, not retried


def test_wide_integers_bigint_creates_bigint_columns(world: World):
    _seed(world)
    outcome = run(world, world.config([_table(wide_integers="bigint")]))[0]
    assert outcome.success, outcome.error
    assert _types(world)["id"] == "bigint" and _types(world)["big"] == "bigint"


def test_bigint_when_fits_asks_the_one_planning_query_and_a_later_value_beyond_fails_naming_the_column(world: World):
    table = _seed(world)
    world.sf_exec(f"INSERT INTO {table} (ID, BIG) VALUES (1000, NULL)")
    wide = f'"{world.sf_database}"."PUBLIC"."WIDE"'
    world.sf_exec(
        f"CREATE TABLE {wide} (ID NUMBER(20,0), HUGE NUMBER(20,0))",
        f"INSERT INTO {wide} VALUES (1, 5), (2, {BEYOND_BIGINT})",
    )
    raw = world.config([_table(), {"source": "WIDE", "uniqueness_columns": ["ID"]}], wide_integers="bigint_when_fits")
    config = parse_config(raw)
    instance = DagsterInstance.ephemeral()
    plans = plan_tables(config.tables(), instance)
    assert [p.source_queries for p in plans.values()] == [1, 1]  # the ranges rode along with the plan
    outcome, other = run(world, raw, instance)
    assert outcome.success and other.success, (outcome.error, other.error)
    assert _types(world)["id"] == "bigint" and _types(world)["big"] == "bigint"
    types = dict(
        world.pg_query("SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'wide'")
    )
    assert types == {"id": "bigint", "huge": "numeric"}  # 99999999999999999999 does not fit

    world.sf_exec(f"UPDATE {table} SET BIG = {BEYOND_BIGINT} WHERE ID = 7")
    failed = run(world, raw, instance, reload=True)[0]
    assert not failed.success and "column 'big' holds 99999999999999999999" in failed.error


def test_column_types_give_each_column_the_type_a_user_asks_for(world: World):
    table = _seed(world)
    column_types = {"ID": "integer", "AMOUNT": "numeric(20,4)", "NOTES": "varchar(12)", "PAYLOAD": "json"}
    raw = world.config([_table(column_types=column_types)], rows_per_chunk=100)
    instance = DagsterInstance.ephemeral()
    outcome = run(world, raw, instance)[0]
    assert outcome.success, outcome.error
    assert {k: v for k, v in _types(world).items() if k != "big"} == {
        "id": "integer", "amount": "numeric(20,4)", "notes": "character varying(12)", "payload": "json",
    }  # fmt: skip
    assert target_rows(world, "tgt", "nums", ["id", "big", "amount", "notes"]) == source_rows(
        world, "NUMS", ["ID", "BIG", "AMOUNT", "NOTES"]
    )
    assert world.pg_query("SELECT payload::text FROM tgt.nums WHERE id = 3") == [('{"k":3,"a":[1,2]}',)]
    schema = outcome.metadata["dagster/column_schema"]
    assert {c.name: c.type for c in schema.columns}["notes"] == "varchar(12)"

    world.sf_exec(f"UPDATE {table} SET NOTES = 'far longer than twelve' WHERE ID = 150")
    failed = run(world, raw, instance, reload=True)[0]
    assert not failed.success
    assert "value too long for type character varying(12)" in failed.error and "notes" in failed.error


def test_a_column_type_that_cannot_hold_its_column_is_refused_before_any_row_moves(
    world: World, tmp_path: Path, capsys
):
    _seed(world, 10)
    raw = world.config([_table(column_types={"amount": "integer"})])
    code, out = run_cli(capsys, "--config", write_config(tmp_path, raw), "validate", "--connect")
    assert code == 1
    out = " ".join(out.split())
    assert "sources[0].tables[0].column_types: column 'AMOUNT' (NUMBER(12,2)) cannot load as integer" in out
    outcome = run(world, raw)[0]
    assert not outcome.success and "cannot load as integer" in outcome.error
    assert world.pg_query("SELECT to_regclass('tgt.nums') IS NULL") == [(True,)]

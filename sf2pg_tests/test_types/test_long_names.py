"""Snowflake names longer than PostgreSQL's 63 bytes: one deterministic shortened name, found by every
later load, so updates of such a column keep arriving."""

from __future__ import annotations

import psycopg
from dagster import DagsterInstance

from sf2pg.config.identifiers import PG_MAX_NAME_BYTES, pg_name_for, pg_truncated
from sf2pg.config.loading import parse_config
from sf2pg.dagster.runner import sync
from sf2pg_tests.harness import World, source_rows, target_rows
from sf2pg_tests.test_load.test_migrate import run

LONG = "CUSTOMER_LIFETIME_VALUE_SEGMENT_ASSIGNED_BY_THE_QUARTERLY_REVIEW_BOARD"  # 70 characters, unquoted style
WIDE = "Größe der Bestellung in Kubikmetern laut Lieferschein, geprüft übers Jahr"  # 77 bytes, quoted
COLUMNS = ["ID", "UPDATED_AT", LONG, WIDE]


def _seed(world: World) -> str:
    table = f'"{world.sf_database}"."PUBLIC"."ACCOUNTS"'
    world.sf_exec(
        f'CREATE TABLE {table} (ID NUMBER(9,0), UPDATED_AT TIMESTAMP_NTZ, {LONG} VARCHAR, "{WIDE}" NUMBER(9,0))',
        f"INSERT INTO {table} SELECT SEQ4(), DATEADD(minute, SEQ4(), '2024-01-01'::TIMESTAMP_NTZ), 'tier ' || SEQ4(), "
        "SEQ4() * 3 FROM TABLE(GENERATOR(ROWCOUNT => 200))",
    )
    return table


def _config(world: World) -> dict:
    return world.config(
        [
            {
                "source": "ACCOUNTS",
                "chunking_columns": ["UPDATED_AT"],
                "chunking_column_types": ["timestamp"],
                "uniqueness_columns": ["ID"],
                "source_watermark": "UPDATED_AT",
            }
        ],
        rows_per_chunk=100,
    )


def _exact(world: World) -> bool:
    target = ["id", "updated_at", pg_name_for(LONG), pg_name_for(WIDE)]
    return target_rows(world, "tgt", "accounts", target) == source_rows(world, "ACCOUNTS", COLUMNS)


def test_a_column_name_over_63_bytes_survives_several_loads_and_its_updates_arrive(world: World):
    table = _seed(world)
    raw = _config(world)
    instance = DagsterInstance.ephemeral()
    assert run(world, raw, instance)[0].success
    names = [
        r[0] for r in world.pg_query("SELECT column_name FROM information_schema.columns WHERE table_name = 'accounts'")
    ]
    assert pg_name_for(LONG) in names and pg_name_for(WIDE) in names
    assert all(len(n.encode()) <= PG_MAX_NAME_BYTES for n in names)
    assert _exact(world)

    world.sf_exec(
        f"UPDATE {table} SET {LONG} = 'platinum', UPDATED_AT = '2024-01-02 10:00:00'::TIMESTAMP_NTZ WHERE ID < 20"
    )
    [synced] = sync(parse_config(raw).tables(), instance)
    assert synced.success and synced.metadata["rows_updated"] == 20, synced.note
    assert _exact(world)

    world.sf_exec(f'UPDATE {table} SET "{WIDE}" = -1 WHERE ID >= 150')  # a change only a full reload reads
    reloaded = run(world, raw, instance, reload=True)[0]
    assert reloaded.success, reloaded.error
    assert "skipped_source_columns" not in reloaded.metadata
    assert _exact(world)
    assert world.pg_query(
        psycopg.sql.SQL("SELECT count(*) FROM tgt.accounts WHERE {} = -1").format(
            psycopg.sql.Identifier(pg_name_for(WIDE))
        )
    ) == [(50,)]


def test_a_target_that_postgresql_cut_the_name_of_is_still_found(world: World):
    _seed(world)
    world.pg_query("CREATE SCHEMA tgt")
    cut_long, cut_wide = pg_truncated(LONG.lower()), pg_truncated(WIDE)  # what an older load left behind
    world.pg_query(
        psycopg.sql.SQL(
            "CREATE TABLE tgt.accounts (id integer PRIMARY KEY, updated_at timestamp, {} text, {} integer)"
        ).format(psycopg.sql.Identifier(cut_long), psycopg.sql.Identifier(cut_wide))
    )
    outcome = run(world, _config(world))[0]
    assert outcome.success, outcome.error
    assert "skipped_source_columns" not in outcome.metadata
    assert target_rows(world, "tgt", "accounts", ["id", "updated_at", cut_long, cut_wide]) == source_rows(
        world, "ACCOUNTS", COLUMNS
    )

"""Hostile names, bad data and secrets: clear errors, nothing half-written, nothing leaked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from dagster import DagsterEventType, DagsterInstance, EventRecordsFilter

from sf2pg_tests.harness import World, source_rows, target_rows
from sf2pg_tests.test_load.test_migrate import run

HOSTILE_TABLE = 'x"; DROP TABLE t; --'
HOSTILE_COLUMN = 'we"ird; DROP'
REPO = Path(__file__).resolve().parents[2]


def test_names_crafted_as_sql_injection_are_just_names(world: World):
    table = f'"{world.sf_database}"."PUBLIC"."{HOSTILE_TABLE.replace(chr(34), chr(34) * 2)}"'
    col = HOSTILE_COLUMN.replace('"', '""')
    world.sf_exec(
        f'CREATE TABLE {table} ("{col}" VARCHAR, "select" NUMBER(9,0), "Ünïcode Näme" VARCHAR)',
        f"INSERT INTO {table} SELECT 'v' || SEQ4(), SEQ4(), 'ü' FROM TABLE(GENERATOR(ROWCOUNT => 300))",
    )
    raw = world.config(
        [
            {
                "source": HOSTILE_TABLE,
                "chunking_columns": ["select"],
                "chunking_column_types": ["id"],
                "uniqueness_columns": ["select"],
            }
        ],
        rows_per_chunk=100,
        batch_size=1000,
    )
    outcome = run(world, raw)[0]
    assert outcome.success, outcome.error
    columns = [HOSTILE_COLUMN, "select", "Ünïcode Näme"]
    assert target_rows(world, "tgt", HOSTILE_TABLE, columns) == source_rows(world, HOSTILE_TABLE, columns)
    assert world.pg_query("SELECT count(*) FROM pg_tables WHERE schemaname = 'tgt'") == [(1,)]


def nul_table(world: World) -> None:
    table = f'"{world.sf_database}"."PUBLIC"."NOTES"'
    world.sf_exec(
        f"CREATE TABLE {table} (ID NUMBER(9,0), BODY VARCHAR)",
        f"INSERT INTO {table} SELECT SEQ4(), 'line ' || SEQ4() FROM TABLE(GENERATOR(ROWCOUNT => 20))",
        f"INSERT INTO {table} VALUES (100, 'bad' || CHR(0) || 'byte')",
    )


def test_nul_bytes_fail_by_default_naming_table_column_and_chunk(world: World):
    nul_table(world)
    raw = world.config([{"source": "NOTES", "uniqueness_columns": ["ID"]}])
    outcome = run(world, raw)[0]
    assert not outcome.success
    assert "src.notes" in outcome.error and "'body'" in outcome.error and "chunk all" in outcome.error
    assert "nul_bytes" in outcome.error  # says how to fix it
    assert world.pg_query("SELECT count(*) FROM tgt.notes") == [(0,)]  # nothing half-written


def test_nul_bytes_can_be_stripped(world: World):
    nul_table(world)
    raw = world.config([{"source": "NOTES", "uniqueness_columns": ["ID"], "nul_bytes": "strip"}])
    outcome = run(world, raw)[0]
    assert outcome.success, outcome.error
    assert world.pg_query("SELECT body FROM tgt.notes WHERE id = 100") == [("badbyte",)]


CANARY = "Canary-Secret-7f3a9e!"


def test_secrets_never_appear_in_output_logs_or_metadata(world: World, tmp_path: Path):
    nul_table(world)  # the NUL byte makes one table fail
    table = f'"{world.sf_database}"."PUBLIC"."GOOD"'
    world.sf_exec(f"CREATE TABLE {table} (ID NUMBER(9,0))", f"INSERT INTO {table} VALUES (1), (2)")
    raw = world.config([{"source": "NOTES", "uniqueness_columns": ["ID"]}, {"source": "GOOD"}])
    config = tmp_path / "config.json"
    config.write_text(json.dumps(raw))
    home = tmp_path / "dagster_home"
    home.mkdir()
    env = {**os.environ, "SNOWFLAKE_PASSWORD": CANARY, "PGPASSWORD": CANARY, "DAGSTER_HOME": str(home)}
    result = subprocess.run(
        [sys.executable, "-m", "sf2pg.cli", "--config", str(config), "migrate"],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=300,
    )  # fmt: skip
    assert result.returncode == 1  # NOTES failed, GOOD loaded
    assert CANARY not in result.stdout + result.stderr
    # a failing connection too: a wrong Snowflake port
    bad = {**env, "SNOWFLAKE_PORT": "1", "SNOWFLAKE_NETWORK_TIMEOUT": "5", "SNOWFLAKE_LOGIN_TIMEOUT": "5"}
    failed = subprocess.run(
        [sys.executable, "-m", "sf2pg.cli", "--config", str(config), "validate", "--connect"],
        capture_output=True, text=True, env=bad, cwd=REPO, timeout=300,
    )  # fmt: skip
    assert failed.returncode == 1 and CANARY not in failed.stdout + failed.stderr
    with DagsterInstance.from_config(str(home)) as instance:
        records = instance.get_event_records(EventRecordsFilter(event_type=DagsterEventType.STEP_FAILURE))
        records += instance.get_event_records(EventRecordsFilter(event_type=DagsterEventType.ASSET_MATERIALIZATION))
        assert records
        for record in records:
            assert CANARY not in json.dumps(record.event_log_entry.to_json())
    for path in home.rglob("*"):
        if path.is_file():
            assert CANARY.encode() not in path.read_bytes(), path


def test_a_second_config_loading_the_same_table_is_refused_before_any_row_moves(world: World):
    table = f'"{world.sf_database}"."PUBLIC"'
    world.sf_exec(
        f'CREATE TABLE {table}."A" (ID NUMBER(9,0))',
        f'INSERT INTO {table}."A" VALUES (1), (2)',
        f'CREATE TABLE {table}."B" (ID NUMBER(9,0))',
        f'INSERT INTO {table}."B" VALUES (3)',
    )
    assert run(world, world.config([{"source": "A", "target": "shared"}]))[0].success
    other = world.config([{"source": "B", "target": "shared"}])  # another file, same target
    outcome = run(world, other)[0]
    assert not outcome.success
    assert "already loaded from" in outcome.error and ".PUBLIC.A" in outcome.error
    assert world.pg_query("SELECT id FROM tgt.shared ORDER BY id") == [(1,), (2,)]

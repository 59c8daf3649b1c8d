"""Hostile names, bad data and secrets: clear errors, nothing half-written, nothing leaked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from dagster import DagsterEventType, DagsterInstance, EventRecordsFilter

from sf2pg.source.snowflake_connection import AUTH_VARIABLES
from sf2pg_tests.harness import World, source_rows, target_rows
from sf2pg_tests.test_load.test_migrate import run
from sf2pg_tests.test_snowflake_auth import make_key

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


def secret_settings(world: World, how: str) -> tuple[dict[str, str], list[str]]:
    """SNOWFLAKE_* (and PGPASSWORD) values for one way to authenticate, every secret among them a canary;
    and the texts that must never show."""
    env = {k: v for k, v in os.environ.items() if k not in AUTH_VARIABLES and k != "SNOWFLAKE_PRIVATE_KEY_PASSPHRASE"}
    env["PGPASSWORD"] = CANARY
    if how != "SNOWFLAKE_PRIVATE_KEY":
        return {**env, how: CANARY}, [CANARY]
    pem, public = make_key(CANARY)  # the passphrase is the canary; so is every line of the key
    world.sf_exec(f"ALTER USER fake SET RSA_PUBLIC_KEY = '{public}'")
    lines = [line for line in pem.splitlines() if not line.startswith("-----")]
    return {**env, how: pem, "SNOWFLAKE_PRIVATE_KEY_PASSPHRASE": CANARY}, [CANARY, *lines]


@pytest.mark.parametrize("how", ["SNOWFLAKE_PASSWORD", "SNOWFLAKE_PAT", "SNOWFLAKE_PRIVATE_KEY"])
def test_secrets_never_appear_in_output_logs_or_metadata(world: World, tmp_path: Path, how: str):
    nul_table(world)  # the NUL byte makes one table fail
    table = f'"{world.sf_database}"."PUBLIC"."GOOD"'
    world.sf_exec(f"CREATE TABLE {table} (ID NUMBER(9,0))", f"INSERT INTO {table} VALUES (1), (2)")
    raw = world.config([{"source": "NOTES", "uniqueness_columns": ["ID"]}, {"source": "GOOD"}])
    config = tmp_path / "config.json"
    config.write_text(json.dumps(raw))
    home = tmp_path / "dagster_home"
    home.mkdir()
    settings, secrets = secret_settings(world, how)
    env = {**settings, "DAGSTER_HOME": str(home)}

    def shown(result: subprocess.CompletedProcess) -> list[str]:
        return [s for s in secrets if s in result.stdout + result.stderr]

    def sf2pg(*args: str, **overrides: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "sf2pg.cli", "--config", str(config), *args],
            capture_output=True, text=True, env={**env, **overrides}, cwd=REPO, timeout=300,
        )  # fmt: skip

    result = sf2pg("migrate")
    assert result.returncode == 1, result.stderr[-2000:]  # NOTES failed, GOOD loaded
    assert not shown(result)
    # failing connections too: a wrong Snowflake port, and (keys) a passphrase that does not open the key
    failed = sf2pg("validate", "--connect", SNOWFLAKE_PORT="1", SNOWFLAKE_LOGIN_TIMEOUT="5")
    assert failed.returncode == 1 and not shown(failed)
    if how == "SNOWFLAKE_PAT":  # an OAuth token travels the same way as a PAT
        oauth = {k: v for k, v in env.items() if k != "SNOWFLAKE_PAT"}
        checked = subprocess.run(
            [sys.executable, "-m", "sf2pg.cli", "--config", str(config), "validate", "--connect"],
            capture_output=True, text=True, env={**oauth, "SNOWFLAKE_OAUTH_TOKEN": CANARY}, cwd=REPO, timeout=300,
        )  # fmt: skip
        assert checked.returncode == 0 and not shown(checked), checked.stdout + checked.stderr
    if how == "SNOWFLAKE_PRIVATE_KEY":
        wrong = sf2pg("validate", "--connect", SNOWFLAKE_PRIVATE_KEY_PASSPHRASE=CANARY + "-wrong")
        assert wrong.returncode == 1 and "SNOWFLAKE_PRIVATE_KEY: the private key cannot be loaded" in wrong.stderr
        assert not [s for s in secrets if s in wrong.stdout + wrong.stderr]
    with DagsterInstance.from_config(str(home)) as instance:
        records = instance.get_event_records(EventRecordsFilter(event_type=DagsterEventType.STEP_FAILURE))
        records += instance.get_event_records(EventRecordsFilter(event_type=DagsterEventType.ASSET_MATERIALIZATION))
        assert records
        for record in records:
            entry = json.dumps(record.event_log_entry.to_json())
            assert not [s for s in secrets if s in entry]
    for path in home.rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            assert not [s for s in secrets if s.encode() in content], path


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

"""Test harness: real servers, real drivers, and helpers to compare source and target row for row."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import snowflake.connector

from sf2pg.config.identifiers import sf_qualified, sf_quote
from sf2pg.devstack.emulator import Emulator
from sf2pg.devstack.postgres import LocalPostgres
from sf2pg.source.snowflake_session import SNOWFLAKE_SESSION


@dataclass
class Stack:
    """The session's servers: the emulator and a PostgreSQL (embedded, or the user's via PG* vars)."""

    emulator: Emulator
    pg_env: dict[str, str]
    work_dir: Path
    postgres: LocalPostgres | None = None  # None when the user's own server is used (PGHOST)

    def sf_connect(self, **extra: Any) -> snowflake.connector.SnowflakeConnection:
        """A session of the test's own (seeding, reading the source), pinned like sf2pg's and, like sf2pg's,
        without ``network_timeout``: it would cancel a slow seed client-side."""
        return snowflake.connector.connect(
            user="fake",
            password="snow",
            account="fakesnow",
            host=self.emulator.host,
            port=self.emulator.port,
            protocol="http",
            session_parameters=dict(SNOWFLAKE_SESSION),
            arrow_number_to_decimal=True,
            **extra,
        )

    @contextmanager
    def pg(self, dbname: str) -> Iterator[psycopg.Connection]:
        with psycopg.connect(dbname=dbname, autocommit=True) as conn:
            yield conn

    def create_pg_database(self, dbname: str) -> None:
        with self.pg("postgres") as conn:
            conn.execute(
                psycopg.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(psycopg.sql.Identifier(dbname))
            )
            conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(dbname)))


@dataclass
class World:
    """One test's private source database and target database."""

    stack: Stack
    sf_database: str
    pg_database: str
    sf: snowflake.connector.SnowflakeConnection

    def sf_exec(self, *statements: str) -> list:
        cur = self.sf.cursor()
        out: list = []
        for statement in statements:
            out = cur.execute(statement).fetchall()
        cur.close()
        return out

    def pg_query(self, query: str, params: tuple = ()) -> list:
        """Rows of a query (empty for a statement that returns none)."""
        with self.stack.pg(self.pg_database) as conn:
            cur = conn.execute(query, params or None)
            return cur.fetchall() if cur.description else []

    def config(self, tables: list[dict], **top: Any) -> dict:
        """A config dict for this world's databases, in the seed's shape."""
        return {
            "parallel_threads": 2,
            "batch_size": 1000,
            "rows_per_chunk": 500,
            **top,
            "sources": [
                {
                    "source_name": "src",
                    "source_sf_database": self.sf_database,
                    "source_sf_schema": "PUBLIC",
                    "target_pg_database": self.pg_database,
                    "target_pg_schema": "tgt",
                    "tables": tables,
                }
            ],
        }


# ---- comparing content -----------------------------------------------------------------------


def normalise(value: Any) -> Any:
    """One comparable form for a value read from either side."""
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(dt.UTC)
    if isinstance(value, memoryview | bytearray):
        return bytes(value)
    if isinstance(value, decimal.Decimal):
        return value.normalize() if value == value.to_integral_value() else value
    if isinstance(value, int) and not isinstance(value, bool):
        return decimal.Decimal(value).normalize()
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    return value


def _json_or_text(value: Any) -> Any:
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except ValueError:
            return value
        if isinstance(parsed, dict | list):
            return json.dumps(parsed, sort_keys=True)
    return value


def source_rows(world: World, table: str, columns: list[str], json_columns: set[str] = frozenset()) -> list[tuple]:
    select = ", ".join(sf_quote(c) for c in columns)
    rows = world.sf_exec(f"SELECT {select} FROM {sf_qualified(world.sf_database, 'PUBLIC', table)}")
    return sorted(
        (
            tuple(normalise(_json_or_text(v) if c in json_columns else v) for c, v in zip(columns, r, strict=True))
            for r in rows
        ),
        key=repr,
    )


def target_rows(world: World, schema: str, table: str, columns: list[str]) -> list[tuple]:
    select = psycopg.sql.SQL(", ").join(map(psycopg.sql.Identifier, columns))
    with world.stack.pg(world.pg_database) as conn:
        rows = conn.execute(
            psycopg.sql.SQL("SELECT {} FROM {}").format(select, psycopg.sql.Identifier(schema, table))
        ).fetchall()
    return sorted((tuple(normalise(v) for v in r) for r in rows), key=repr)


def pg_env_from_os() -> dict[str, str] | None:
    """The user's own server when PGHOST is set (libpq conventions), else None."""
    if os.environ.get("PGHOST"):
        return {k: v for k, v in os.environ.items() if k.startswith("PG")}
    return None


# ---- a Dagster deployment for daemon tests -------------------------------------------------------


@contextmanager
def dagster_deployment(world: World, work: Path, config: dict, monkeypatch: Any) -> Iterator[Path]:
    """DAGSTER_HOME with PostgreSQL storage (the repo's instance/dagster.yaml) and SF2PG_CONFIG for ``config``.

    Yields the folder for logs; the environment is set for this process and its children.
    """
    import shutil

    from sf2pg.cli.demo import INSTANCE_YAML

    config_file = work / "config.json"
    config_file.write_text(json.dumps(config))
    storage_db = f"{world.pg_database}_dagster"
    world.stack.create_pg_database(storage_db)
    home = work / "dagster_home"
    home.mkdir()
    shutil.copy(INSTANCE_YAML, home / "dagster.yaml")
    env = {
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_HOST": os.environ.get("PGHOST", "127.0.0.1"),
        "DAGSTER_PG_PORT": os.environ.get("PGPORT", "5432"),
        "DAGSTER_PG_USER": os.environ.get("PGUSER", "postgres"),
        "DAGSTER_PG_PASSWORD": os.environ.get("PGPASSWORD", ""),
        "DAGSTER_PG_DB": storage_db,
        "SF2PG_CONFIG": str(config_file),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    yield work


def submit_backfill(instance: Any, config: Any, asset_keys: list | None = None) -> str:
    """Ask for a backfill of every partition of ``asset_keys`` (default: every table), as the UI does;
    a running daemon picks it up. Returns the backfill id."""
    import time

    from dagster._core.execution.backfill import PartitionBackfill
    from dagster._core.utils import make_new_backfill_id

    from sf2pg.dagster.definitions import build_definitions

    graph = build_definitions(config).resolve_asset_graph()
    backfill = PartitionBackfill.from_asset_partitions(
        backfill_id=make_new_backfill_id(),
        asset_graph=graph,
        partition_names=None,
        asset_selection=asset_keys if asset_keys is not None else list(graph.get_all_asset_keys()),
        backfill_timestamp=time.time(),
        tags={},
        dynamic_partitions_store=instance,
        all_partitions=True,
        title=None,
        description=None,
        run_config=None,
    )
    instance.add_backfill(backfill)
    return backfill.backfill_id


@contextmanager
def running_daemon(work: Path) -> Iterator[Callable[[], str]]:
    """A real ``dagster-daemon run`` on the repo's workspace; yields a function returning its log tail."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    log_path = work / "daemon.log"
    with log_path.open("w") as log:
        daemon = subprocess.Popen(
            [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", str(repo / "workspace.yaml")],
            cwd=repo, env={**os.environ}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            yield lambda: log_path.read_text()[-3000:]
        finally:
            daemon.terminate()
            try:
                daemon.wait(30)
            except subprocess.TimeoutExpired:
                daemon.kill()
            stop_process_group(daemon.pid)


def stop_process_group(pgid: int) -> None:
    """SIGKILL what is left of a process group we started (``start_new_session``): the code server a
    ``dagster-daemon`` spawned outlives the daemon's SIGTERM and would otherwise linger."""
    import signal
    from contextlib import suppress

    with suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)

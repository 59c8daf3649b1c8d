"""Session fixtures: one emulator and one PostgreSQL for the whole run; private databases per test."""

from __future__ import annotations

import itertools
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from sf2pg.devstack.emulator import start_emulator
from sf2pg.devstack.postgres import start_postgres
from sf2pg_tests.harness import Stack, World, pg_env_from_os

_counter = itertools.count()

# Results of more than 40 rows arrive in chunks the connector downloads (60, 120, then 240 rows each), with
# per-chunk integer widths, as real Snowflake serves them; a statement running over 2 s is polled.
EMULATOR_SETTINGS = {
    "SF2PG_EMULATOR_INLINE_ROWS": "40",
    "SF2PG_EMULATOR_CHUNK_ROWS": "60",
    "SF2PG_EMULATOR_MAX_CHUNK_ROWS": "240",
    "SF2PG_EMULATOR_QUERY_WAIT": "2",
}


@pytest.fixture(scope="session")
def stack() -> Stack:
    # Not under pytest's basetemp: pytest re-chmods that to 0700 when any other session starts,
    # which locks out the server's own OS user (postgres refuses to run as root).
    work = Path(tempfile.mkdtemp(prefix="sf2pg-test-"))
    work.chmod(0o755)
    emulator = start_emulator(db_path=None, log_path=work / "emulator.log", settings=EMULATOR_SETTINGS)
    pg_env = pg_env_from_os()
    server = None
    if pg_env is None:
        server = start_postgres(work / "pg", durable=False)
        pg_env = server.env()
    saved = dict(os.environ)
    os.environ.update(pg_env)
    os.environ.update(emulator.env())
    yield Stack(emulator, pg_env, work, server)
    os.environ.clear()
    os.environ.update(saved)
    emulator.stop(grace=1)
    if server is not None:
        server.stop(discard=True)
    shutil.rmtree(work, ignore_errors=True)


# The minute-long query test: its queries start before the session's first test and it runs last.
MINUTE_LONG = "test_a_query_running_longer_than_a_minute_completes_where_the_connectors_timeout_would_cancel_it"


def _minute_long(item: pytest.Item) -> bool:
    return getattr(item, "originalname", None) == MINUTE_LONG


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=_minute_long)  # stable: the others keep their order


@pytest.fixture(scope="session", autouse=True)
def minute_long_queries(request: pytest.FixtureRequest) -> Callable[[], tuple] | None:
    """Started once for the whole run when that test is selected, so its minute overlaps the others."""
    if not any(_minute_long(item) for item in request.session.items):
        return None
    from sf2pg_tests.test_snowflake_session import start_the_minute_long_queries

    return start_the_minute_long_queries(request.getfixturevalue("stack"))


@pytest.fixture
def world(stack: Stack, request: pytest.FixtureRequest) -> World:
    """A fresh Snowflake database and PostgreSQL database named after the test."""
    slug = re.sub(r"[^a-z0-9]+", "_", request.node.name.lower())[:40]
    n = next(_counter)
    sf_database = f"SRC_{n}_{slug}".upper()
    pg_database = f"tgt_{n}_{slug}"
    stack.create_pg_database(pg_database)
    sf = stack.sf_connect()
    cur = sf.cursor()
    cur.execute(f'CREATE DATABASE IF NOT EXISTS "{sf_database}"')
    cur.execute(f'CREATE SCHEMA IF NOT EXISTS "{sf_database}"."PUBLIC"')
    cur.close()
    yield World(stack, sf_database, pg_database, sf)
    sf.close()

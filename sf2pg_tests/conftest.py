"""Session fixtures: one emulator and one PostgreSQL for the whole run; private databases per test."""

from __future__ import annotations

import itertools
import os
import re

import pytest

from sf2pg.devstack.emulator import start_emulator
from sf2pg.devstack.postgres import start_postgres
from sf2pg_tests.harness import Stack, World, pg_env_from_os

_counter = itertools.count()


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Stack:
    work = tmp_path_factory.mktemp("stack")
    emulator = start_emulator(db_path=None, log_path=work / "emulator.log")
    pg_env = pg_env_from_os()
    server = None
    if pg_env is None:
        server = start_postgres(work / "pg", durable=False)
        pg_env = server.env()
    saved = dict(os.environ)
    os.environ.update(pg_env)
    os.environ.update(emulator.env())
    yield Stack(emulator, pg_env, work)
    os.environ.clear()
    os.environ.update(saved)
    emulator.stop()
    if server is not None:
        server.stop()


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

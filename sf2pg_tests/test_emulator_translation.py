"""The dev stack's emulator translates each SQL text once (``sf2pg.devstack.translation_cache``): a
repeated statement still answers from the data and the session it runs in, never from an earlier run.

Real connector, emulator over HTTP."""

from __future__ import annotations

import pytest
from snowflake.connector.errors import ProgrammingError

from sf2pg_tests.harness import World


def test_one_select_text_in_two_databases_reads_each_sessions_own_table(world: World):
    other = f"{world.sf_database}_OTHER"
    world.sf_exec(
        f'CREATE DATABASE "{other}"',
        f'CREATE SCHEMA "{other}"."PUBLIC"',
        f'CREATE TABLE "{other}"."PUBLIC"."T" (N NUMBER(9,0))',
        f'INSERT INTO "{other}"."PUBLIC"."T" VALUES (2)',
        f'CREATE TABLE "{world.sf_database}"."PUBLIC"."T" (N NUMBER(9,0))',
        f'INSERT INTO "{world.sf_database}"."PUBLIC"."T" VALUES (1)',
    )
    seen = []
    for database in (world.sf_database, other, world.sf_database):
        world.sf_exec(f'USE SCHEMA "{database}"."PUBLIC"')
        seen.append(world.sf_exec('SELECT N FROM "T"'))
    assert seen == [[(1,)], [(2,)], [(1,)]]


def test_a_repeated_select_sees_the_rows_and_columns_the_table_has_now(world: World):
    table = f'"{world.sf_database}"."PUBLIC"."T"'
    query = f"SELECT * FROM {table} ORDER BY 1"
    world.sf_exec(f"CREATE TABLE {table} (N NUMBER(9,0))", f"INSERT INTO {table} VALUES (1)")
    assert world.sf_exec(query) == [(1,)]
    world.sf_exec(f"ALTER TABLE {table} ADD COLUMN NOTE VARCHAR", f"INSERT INTO {table} VALUES (2, 'two')")
    cur = world.sf.cursor()
    rows = cur.execute(query).fetchall()
    assert rows == [(1, None), (2, "two")]
    assert [d.name for d in cur.description] == ["N", "NOTE"]


def test_a_select_that_fails_fails_again_when_sent_again(world: World):
    query = f'SELECT MISSING FROM "{world.sf_database}"."PUBLIC"."NOWHERE"'
    for _ in range(2):
        with pytest.raises(ProgrammingError):
            world.sf_exec(query)
    world.sf_exec(f'CREATE TABLE "{world.sf_database}"."PUBLIC"."NOWHERE" (MISSING NUMBER(9,0))')
    assert world.sf_exec(query) == []


def test_the_caches_hold_a_bounded_length_of_sql_dropping_the_least_recently_used():
    from sf2pg.devstack.translation_cache import _Trees

    trees = _Trees(budget=100)
    for key in "abc":
        trees.put(key, f"tree {key}", 40)
    assert trees.get("a") is None  # 120 > 100: the oldest went
    assert trees.get("b") == "tree b"  # now the most recently used
    trees.put("d", "tree d", 40)
    assert (trees.get("b"), trees.get("c"), trees.get("d")) == ("tree b", None, "tree d")
    trees.put("huge", "tree huge", 1000)  # one text over the budget is still kept, alone
    assert trees.get("huge") == "tree huge" and trees.get("d") is None

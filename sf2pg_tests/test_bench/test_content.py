"""The benchmark's source table, its per-round changes, and the exact-content check that decides
whether a contender's round counts: proven by copies that differ in one cell, one NULL, one row."""

from __future__ import annotations

import pytest

from sf2pg.bench import content, source_table
from sf2pg_tests.harness import World

ROWS = 600


@pytest.fixture
def source(world: World) -> World:
    source_table.execute(world.sf, source_table.seed_statements(ROWS))
    return world


def copy_reference_as(world: World, schema: str, column_types: dict[str, str] | None = None) -> None:
    """A faithful copy of the reference table, with some columns stored as another tool would store them."""
    casts = {"updated_at": "timestamptz", "payload": "text", "id": "numeric", "note": "varchar", **(column_types or {})}
    select = ", ".join(
        f"{name.lower()}::{casts.get(name.lower(), pg_type)} AS {name.lower()}"
        for name, _, pg_type in source_table.COLUMNS
    )
    world.pg_query(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    world.pg_query(f"CREATE SCHEMA {schema}")
    world.pg_query(f"SET TimeZone = 'UTC'; CREATE TABLE {schema}.cmd_events AS SELECT {select}, 'extra' AS _loaded_by FROM "
                   f"{content.REFERENCE_SCHEMA}.{content.REFERENCE_TABLE}")  # fmt: skip


def test_the_source_holds_every_kind_of_value(source: World):
    assert content.build_reference(source.sf, source.pg_database) == ROWS
    nulls = source.pg_query(
        "SELECT count(*) FILTER (WHERE note IS NULL), count(*) FILTER (WHERE note = ''), count(*) FILTER (WHERE amount IS NULL), "
        "count(*) FILTER (WHERE flag IS NULL), count(*) FILTER (WHERE payload IS NULL), count(DISTINCT id), "
        "min(updated_at) < max(updated_at) FROM bench_reference.source_rows"
    )
    assert nulls == [(ROWS // 17, ROWS // 31 - ROWS // (17 * 31), ROWS // 19, ROWS // 23, ROWS // 29, ROWS, True)]
    [(payload,)] = source.pg_query("SELECT payload FROM bench_reference.source_rows WHERE id = 1")
    assert payload == {"id": 1, "tags": ["a", "b"], "w": 1.5}


def test_each_rounds_changes_are_exactly_the_rows_past_its_watermark(source: World):
    updates, inserts = source_table.split_changes(61)
    assert (updates, inserts) == (31, 30)
    before = source.sf_exec(f"SELECT MAX(UPDATED_AT) FROM {source_table.QUALIFIED}")[0][0]
    for n in range(2):
        change = source_table.Change(n, ROWS, updates, inserts)
        source_table.execute(source.sf, change.statements())
        [(changed, new, updated_now)] = source.sf_exec(
            f"SELECT COUNT(*), COUNT_IF(ID > {ROWS}), COUNT_IF(NOTE = 'changed in round {n}') "
            f"FROM ({source_table.read_changed_query(change)})"
        )
        assert (changed, new, updated_now) == (change.changed, inserts, updates)
    assert source.sf_exec(f"SELECT COUNT(*) FROM {source_table.QUALIFIED}")[0][0] == ROWS + 2 * inserts
    [(earliest,)] = source.sf_exec(f"SELECT MIN(UPDATED_AT) FROM {source_table.QUALIFIED} WHERE ID > {ROWS}")
    assert earliest > before  # a sync has exactly these rows past its watermark to take


def test_a_faithful_copy_is_exact_whatever_types_it_chose(source: World):
    content.build_reference(source.sf, source.pg_database)
    copy_reference_as(source, "copy")
    verdict = content.compare(source.pg_database, "copy", "cmd_events")
    assert verdict.exact, verdict.summary()
    assert verdict.summary() == f"exact ({ROWS:,} rows)"


@pytest.mark.parametrize(
    "tamper",
    [
        "UPDATE copy.cmd_events SET updated_at = updated_at + interval '1 microsecond' WHERE id = 5",
        "UPDATE copy.cmd_events SET note = NULL WHERE note = '' AND id = 31",  # what dlt's CSV COPY does
        "UPDATE copy.cmd_events SET amount = amount + 0.01 WHERE id = 7",
        "UPDATE copy.cmd_events SET payload = '{\"id\": 8}' WHERE id = 8",
        "DELETE FROM copy.cmd_events WHERE id = 9",
        "INSERT INTO copy.cmd_events SELECT * FROM copy.cmd_events WHERE id = 10",  # a doubled row
    ],
)
def test_one_changed_cell_or_row_makes_a_copy_differ(source: World, tamper: str):
    content.build_reference(source.sf, source.pg_database)
    copy_reference_as(source, "copy")
    source.pg_query(tamper)
    verdict = content.compare(source.pg_database, "copy", "cmd_events")
    assert not verdict.exact
    assert verdict.differing_rows in (1, 2)


def test_a_missing_table_or_column_is_named(source: World):
    content.build_reference(source.sf, source.pg_database)
    assert content.compare(source.pg_database, "nowhere", "cmd_events").summary() == "no table nowhere.cmd_events"
    copy_reference_as(source, "copy")
    source.pg_query("ALTER TABLE copy.cmd_events DROP COLUMN flag")
    assert content.compare(source.pg_database, "copy", "cmd_events").summary() == "columns missing: flag"

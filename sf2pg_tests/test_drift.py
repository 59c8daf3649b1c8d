"""Naming a source table's schema changes, without servers."""

from __future__ import annotations

from sf2pg.config.typemap import SourceColumn
from sf2pg.load.drift import columns_not_seen, from_json, source_changes, to_json

BEFORE = [
    SourceColumn("ID", "NUMBER", 38, 0),
    SourceColumn("AMOUNT", "NUMBER", 8, 2),
    SourceColumn("CODE", "TEXT", length=10),
    SourceColumn("QTY", "NUMBER", 9, 0),
    SourceColumn("NOTE", "TEXT"),
    SourceColumn("AT", "TIMESTAMP_NTZ"),
]


def test_each_kind_of_change_is_named_once_and_unchanged_columns_not_at_all():
    after = [
        SourceColumn("ID", "NUMBER", 38, 0),
        SourceColumn("AMOUNT", "NUMBER", 12, 2),
        SourceColumn("CODE", "TEXT", length=5),
        SourceColumn("QTY", "TEXT"),
        SourceColumn("AT", "TIMESTAMP_TZ"),
        SourceColumn("SEGMENT", "TEXT"),
    ]
    assert [(c.kind, c.name) for c in source_changes(BEFORE, after)] == [
        ("widened", "AMOUNT"),
        ("narrowed", "CODE"),
        ("retyped", "QTY"),
        ("retyped", "AT"),
        ("added", "SEGMENT"),
        ("dropped", "NOTE"),
    ]
    assert source_changes(BEFORE, BEFORE) == []


def test_a_scale_that_grows_while_the_integer_digits_shrink_is_a_narrowing():
    [change] = source_changes([SourceColumn("A", "NUMBER", 12, 2)], [SourceColumn("A", "NUMBER", 12, 4)])
    assert change.kind == "narrowed"


def test_the_columns_a_load_saw_round_trip_through_the_ledger():
    assert from_json(to_json(BEFORE)) == BEFORE
    assert columns_not_seen(None, BEFORE) == []  # before any recorded load, nothing is new
    assert columns_not_seen(BEFORE[:2], BEFORE) == ["CODE", "QTY", "NOTE", "AT"]

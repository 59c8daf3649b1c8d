"""The Snowflake -> PostgreSQL naming rule, without servers."""

from __future__ import annotations

import pytest

from sf2pg.config.identifiers import PG_MAX_NAME_BYTES, pg_column_match, pg_name_for, pg_truncated
from sf2pg.config.typemap import SourceColumn
from sf2pg.load.target import TargetSchemaError, plan_columns


def test_names_that_fit_keep_the_rule_they_always_had():
    assert pg_name_for("VISIT_ID") == "visit_id"
    assert pg_name_for("Visit Id") == "Visit Id"
    assert pg_name_for("X" * 63) == "x" * 63


@pytest.mark.parametrize("name", ["A" * 70, "Größe " * 12, "日本語の列名" * 5, 'we"ird ' * 10])
def test_a_long_name_is_cut_to_63_bytes_on_a_character_boundary_with_a_stable_hash(name: str):
    mapped = pg_name_for(name)
    assert len(mapped.encode()) <= PG_MAX_NAME_BYTES
    assert mapped.encode().decode() == mapped  # no character cut in half
    assert mapped == pg_name_for(name)  # the same on every run
    assert mapped.rsplit("_", 1)[1].isalnum() and len(mapped.rsplit("_", 1)[1]) == 8


def test_long_names_sharing_their_first_63_bytes_stay_apart():
    a, b = "SHARED_PREFIX_" * 5 + "ALPHA", "SHARED_PREFIX_" * 5 + "BETA"
    assert pg_truncated(a) == pg_truncated(b)  # what PostgreSQL itself would have made of both
    assert pg_name_for(a) != pg_name_for(b)


def test_a_target_column_is_found_by_the_rule_by_postgresqls_own_cut_or_by_case():
    long = "L" * 70
    assert pg_column_match([pg_name_for(long)], long) == pg_name_for(long)
    assert pg_column_match(["l" * 63], long) == "l" * 63  # a target an older load created
    assert pg_column_match(["Visit_ID"], "VISIT_ID") == "Visit_ID"
    assert pg_column_match(["visit_id", "VISIT_ID"], "Visit_Id") is None  # two by case: none is guessed


def test_two_source_columns_with_one_postgresql_name_are_refused_naming_both():
    with pytest.raises(TargetSchemaError, match="'ABC' and 'abc' both map to the PostgreSQL name 'abc'"):
        plan_columns([SourceColumn("ABC", "TEXT"), SourceColumn("abc", "TEXT")], "table t")


def test_the_example_in_types_md_is_what_the_rule_gives():
    long = "CUSTOMER_LIFETIME_VALUE_SEGMENT_ASSIGNED_BY_THE_QUARTERLY_REVIEW_BOARD"
    assert pg_name_for(long) == "customer_lifetime_value_segment_assigned_by_the_quarte_ffaad57e"

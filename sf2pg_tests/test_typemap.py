"""The type map: one table of truth, checked without servers."""

from __future__ import annotations

import pyarrow as pa
import pytest

from sf2pg.config.identifiers import pg_name_for, sf_quote
from sf2pg.config.typemap import (
    IncompatibleTypeError,
    PgColumn,
    SourceColumn,
    UnsupportedTypeError,
    column_type,
    holds,
    load_type_for_existing,
    target_type,
    widened_type,
)


@pytest.mark.parametrize(
    ("precision", "scale", "pg", "arrow"),
    [
        (4, 0, "smallint", pa.int16()),
        (9, 0, "integer", pa.int32()),
        (18, 0, "bigint", pa.int64()),
        (38, 0, "numeric(38,0)", pa.decimal128(38, 0)),
        (12, 2, "numeric(12,2)", pa.decimal128(12, 2)),
    ],
)
def test_number_maps_to_the_smallest_type_that_holds_it(precision, scale, pg, arrow):
    t = target_type(SourceColumn("N", "NUMBER", precision, scale))
    assert (t.pg_type, t.arrow_type) == (pg, arrow)


@pytest.mark.parametrize(
    ("sf", "pg"),
    [
        ("FLOAT", "double precision"),
        ("TEXT", "text"),
        ("BOOLEAN", "boolean"),
        ("DATE", "date"),
        ("TIME", "time"),
        ("TIMESTAMP_NTZ", "timestamp"),
        ("TIMESTAMP_LTZ", "timestamptz"),
        ("TIMESTAMP_TZ", "timestamptz"),
        ("BINARY", "bytea"),
        ("VARIANT", "jsonb"),
        ("OBJECT", "jsonb"),
        ("ARRAY", "jsonb"),
        ("GEOGRAPHY", "jsonb"),
    ],
)
def test_each_type_family_has_a_lossless_target(sf, pg):
    assert target_type(SourceColumn("C", sf)).pg_type == pg


def test_an_unknown_type_is_an_error_naming_the_column():
    with pytest.raises(UnsupportedTypeError, match="'WEIRD'"):
        target_type(SourceColumn("WEIRD", "VECTOR"))


def test_existing_wider_columns_get_their_own_arrow_type():
    small = target_type(SourceColumn("N", "NUMBER", 4, 0))
    assert load_type_for_existing(small, "bigint", 64, 0).arrow_type == pa.int64()
    dec = target_type(SourceColumn("N", "NUMBER", 12, 2))
    assert load_type_for_existing(dec, "numeric", 18, 4).arrow_type == pa.decimal128(18, 4)


def test_existing_narrower_columns_are_rejected():
    dec = target_type(SourceColumn("N", "NUMBER", 12, 2))
    with pytest.raises(IncompatibleTypeError):
        load_type_for_existing(dec, "integer", 32, 0)
    with pytest.raises(IncompatibleTypeError):
        load_type_for_existing(dec, "numeric", 8, 2)
    with pytest.raises(IncompatibleTypeError):
        load_type_for_existing(target_type(SourceColumn("T", "TEXT")), "integer", 32, 0)


@pytest.mark.parametrize("precision", [18, 20, 38])
def test_whole_numbers_load_into_any_existing_integer_column_value_by_value(precision):
    whole = target_type(SourceColumn("N", "NUMBER", precision, 0))
    assert load_type_for_existing(whole, "bigint", 64, 0).arrow_type == pa.int64()
    assert load_type_for_existing(whole, "integer", 32, 0).arrow_type == pa.int32()
    assert load_type_for_existing(whole, "smallint", 16, 0).arrow_type == pa.int16()


def test_names_follow_snowflake_quoting_rules():
    assert pg_name_for("VISIT_ID") == "visit_id"
    assert pg_name_for("Visit Id") == "Visit Id"
    assert pg_name_for("notes") == "notes"
    assert sf_quote('x"; DROP TABLE t; --') == '"x""; DROP TABLE t; --"'


@pytest.mark.parametrize(
    ("column", "declared", "pg", "arrow"),
    [
        (SourceColumn("N", "NUMBER", 38, 0), "bigint", "bigint", pa.int64()),
        (SourceColumn("N", "NUMBER", 38, 0), "INT4", "integer", pa.int32()),
        (SourceColumn("N", "NUMBER", 12, 2), "numeric(20, 4)", "numeric(20,4)", pa.decimal128(20, 4)),
        (SourceColumn("N", "NUMBER", 12, 2), "numeric", "numeric", pa.decimal128(12, 2)),
        (SourceColumn("T", "TEXT"), "varchar(200)", "varchar(200)", pa.large_string()),
        (SourceColumn("T", "TEXT"), "character varying", "varchar", pa.large_string()),
        (SourceColumn("V", "VARIANT"), "json", "json", pa.large_string()),
        (SourceColumn("V", "OBJECT"), "text", "text", pa.large_string()),
    ],
)
def test_column_types_give_a_column_the_type_it_names(column, declared, pg, arrow):
    t = column_type(column, declared)
    assert (t.pg_type, t.arrow_type, t.jsonb) == (pg, arrow, False)


@pytest.mark.parametrize(
    ("column", "declared", "why"),
    [
        (SourceColumn("N", "NUMBER", 12, 2), "integer", "only whole NUMBER"),
        (SourceColumn("N", "NUMBER", 12, 2), "numeric(11,2)", "fewer digits"),
        (SourceColumn("N", "NUMBER", 12, 2), "numeric(14,1)", "fewer digits"),
        (SourceColumn("F", "FLOAT"), "numeric", "only NUMBER columns"),
        (SourceColumn("T", "TEXT"), "jsonb", "only VARIANT"),
        (SourceColumn("V", "VARIANT"), "varchar(10)", "only text columns load into varchar"),
    ],
)
def test_a_column_type_that_cannot_hold_its_column_is_refused_saying_why(column, declared, why):
    with pytest.raises(IncompatibleTypeError, match=why):
        column_type(column, declared)


def test_wide_integers_become_bigint_by_policy_or_when_their_range_fits():
    int_ = SourceColumn("ID", "NUMBER", 38, 0)
    assert column_type(int_).pg_type == "numeric(38,0)"
    assert column_type(int_, wide_integers="bigint").pg_type == "bigint"
    assert column_type(int_, wide_integers="bigint_when_fits", value_range=(-5, 2**63 - 1)).pg_type == "bigint"
    assert column_type(int_, wide_integers="bigint_when_fits", value_range=(None, None)).pg_type == "bigint"
    assert column_type(int_, wide_integers="bigint_when_fits", value_range=(0, 2**63)).pg_type == "numeric(38,0)"
    assert column_type(int_, wide_integers="bigint_when_fits").pg_type == "numeric(38,0)"  # range unknown
    assert column_type(SourceColumn("N", "NUMBER", 9, 0), wide_integers="bigint").pg_type == "integer"


@pytest.mark.parametrize(
    ("existing", "wanted", "source", "wider"),
    [
        (PgColumn("numeric", 8, 2), SourceColumn("A", "NUMBER", 12, 2), None, "numeric(12,2)"),
        (PgColumn("integer", 32, 0), SourceColumn("A", "NUMBER", 18, 0), None, "bigint"),
        (PgColumn("bigint", 64, 0), SourceColumn("A", "NUMBER", 12, 2), None, "numeric(21,2)"),
        (PgColumn("character varying", length=10), SourceColumn("T", "TEXT", length=20), None, "varchar(20)"),
        (PgColumn("character varying", length=10), SourceColumn("T", "TEXT", length=16_777_216), None, "text"),
        (PgColumn("text"), SourceColumn("N", "NUMBER", 12, 2), None, None),
    ],
)
def test_a_column_whose_source_grew_widens_to_hold_both_its_values_and_the_new_type(existing, wanted, source, wider):
    assert not holds(existing, target_type(wanted), wanted)
    assert widened_type(existing, target_type(wanted), wanted) == wider

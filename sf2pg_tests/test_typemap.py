"""The type map: one table of truth, checked without servers."""

from __future__ import annotations

import pyarrow as pa
import pytest

from sf2pg.identifiers import pg_name_for, sf_quote
from sf2pg.typemap import (
    IncompatibleTypeError,
    SourceColumn,
    UnsupportedTypeError,
    load_type_for_existing,
    target_type,
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

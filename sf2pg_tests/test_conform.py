"""The NUL pre-check reads only the bytes of the values in view, so slices of one buffer stay exact."""

from __future__ import annotations

import pyarrow as pa
import pytest

from sf2pg.load.conform import _may_hold_nul


@pytest.mark.parametrize("arrow_type", [pa.string(), pa.large_string()])
def test_the_nul_pre_check_sees_exactly_the_values_of_a_slice(arrow_type: pa.DataType):
    values = ["abc", "d\x00e", None, "fgh", ""] * 3
    array = pa.array(values, type=arrow_type)
    for offset in range(len(values)):
        for length in range(len(values) - offset + 1):
            expected = any(v is not None and "\x00" in v for v in values[offset : offset + length])
            assert _may_hold_nul(array.slice(offset, length)) == expected, (offset, length)


def test_all_null_and_empty_arrays_hold_no_nul():
    assert not _may_hold_nul(pa.array([None, None], type=pa.string()))
    assert not _may_hold_nul(pa.array(["", ""]))


def test_a_decimal_too_wide_for_its_target_names_the_column_and_the_widened_source():
    import decimal

    from sf2pg.load.conform import BadDataError, _cast

    wide = pa.array([decimal.Decimal("12345678901234.56")], pa.decimal128(38, 2))
    with pytest.raises(BadDataError) as raised:
        _cast(wide, pa.decimal128(12, 2), "AMOUNT", "fail", "table src.t (sources[0].tables[0]), chunk 1", None)
    said = str(raised.value)
    assert said.startswith("table src.t (sources[0].tables[0]), chunk 1: column 'AMOUNT' holds a value that does not")
    assert "numeric(12,2)" in said and "widened in Snowflake during this load" in said

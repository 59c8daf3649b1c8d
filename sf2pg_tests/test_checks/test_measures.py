"""The float decomposition both engines compute (Snowflake from LN and POWER, PostgreSQL from the bits)
is the exact IEEE mantissa and exponent, for every kind of double and for NULL."""

from __future__ import annotations

import math
import struct

from psycopg import sql

from sf2pg.reconcile.measures import pg_float_parts, sf_float_parts
from sf2pg_tests.harness import World

DOUBLES = [
    0.1, 0.30000000000000004, -0.25, 1.0, 2.0, 0.5, 1024.0, 2**53 - 1.0, 2**-1022, 5e-324, 2**-1074 * 3,
    1.7976931348623157e308, -1.7976931348623157e308, 123456.789, 0.0, -0.0, math.inf, -math.inf, math.nan, None,
]  # fmt: skip


def ieee(x: float | None) -> tuple[int, int] | tuple[None, None]:
    """(mantissa, exponent) with x = mantissa * 2^(exponent - 52), from the bits."""
    if x is None:
        return None, None
    if math.isnan(x):
        return 0, 8192
    if math.isinf(x):
        return 0, 4096 if x > 0 else -4096
    if x == 0:
        return 0, 0
    bits = struct.unpack(">q", struct.pack(">d", abs(x)))[0]
    exponent, fraction = bits >> 52, bits & ((1 << 52) - 1)
    if exponent == 0:  # subnormal: shift the fraction up to 53 bits
        shift = 53 - fraction.bit_length()
        mantissa, exponent = fraction << shift, -1022 - shift
    else:
        mantissa, exponent = fraction | (1 << 52), exponent - 1023
    return (-mantissa if x < 0 else mantissa), exponent


def literal(x: float | None) -> str:
    if x is None:
        return "NULL"
    return f"'{x!r}'".replace("'inf'", "'Infinity'").replace("'-inf'", "'-Infinity'").replace("'nan'", "'NaN'")


def test_both_engines_decompose_every_double_exactly(world: World):
    expected = [ieee(x) for x in DOUBLES]
    mantissa, exponent = sf_float_parts('"X"')
    table = f'"{world.sf_database}"."PUBLIC"."DOUBLES"'
    world.sf_exec(
        f'CREATE TABLE {table} ("I" NUMBER(4,0), "X" FLOAT)',
        *(f"INSERT INTO {table} SELECT {i}, CAST({literal(x)} AS FLOAT)" for i, x in enumerate(DOUBLES)),
    )
    source = world.sf_exec(
        f"SELECT CAST({mantissa} AS NUMBER(17, 0)), CAST({exponent} AS NUMBER(5, 0)) FROM {table} ORDER BY 1 + I"
    )
    assert [(m, e) for m, e in source] == expected

    values = sql.SQL(", ").join(
        sql.SQL("({}, {}::float8)").format(i, sql.SQL(literal(x))) for i, x in enumerate(DOUBLES)
    )
    m_pg, e_pg = pg_float_parts(sql.SQL("x"))
    query = sql.SQL("SELECT {}, {} FROM (VALUES {}) AS v(i, x) ORDER BY i").format(m_pg, e_pg, values)
    assert [tuple(r) for r in world.pg_query(query.as_string())] == expected

"""Values at the edges of their types load exactly: NaN and infinities, 38-digit numerics, the first and
last timestamps and dates, empty strings beside NULL, and VARIANT values of several megabytes."""

from __future__ import annotations

import json
import math

from sf2pg_tests.harness import World, source_rows, target_rows
from sf2pg_tests.test_load.test_migrate import run

EDGES_DDL = """
CREATE TABLE {table} (
    ID NUMBER(9,0), F FLOAT, N NUMBER(38,10), N0 NUMBER(38,0), TS TIMESTAMP_NTZ, D DATE, S VARCHAR, V VARIANT
)"""

EDGES_ROWS = [  # the emulator keeps NUMBER(38,0) in 64 bits, so N0 stops at the BIGINT limits
    "1, 'NaN'::FLOAT, 9999999999999999999999999999.9999999999, 9223372036854775807, "
    "'0001-01-01 00:00:00'::TIMESTAMP_NTZ, '0001-01-01'::DATE, '', PARSE_JSON('{{\"small\": true}}')",
    "2, 'inf'::FLOAT, -9999999999999999999999999999.9999999999, -9223372036854775808, "
    "'9999-12-31 23:59:59.999999'::TIMESTAMP_NTZ, '9999-12-31'::DATE, NULL, "
    "OBJECT_CONSTRUCT('big', REPEAT('x', {big}), 'n', 1)",
    "3, '-inf'::FLOAT, 0.0000000001, 1, '1969-12-31 23:59:59.999999'::TIMESTAMP_NTZ, NULL, ' ', NULL",
    "4, 1.7976931348623157e308, -0.0000000001, 0, '2262-04-11 23:47:16.854775'::TIMESTAMP_NTZ, "
    "'1970-01-01'::DATE, 'ü', PARSE_JSON('[]')",
    "5, 5e-324, 0, -1, NULL, '2000-02-29'::DATE, 'null', PARSE_JSON('null')",
    "6, -0.0, NULL, NULL, '1677-09-21 00:12:43.145224'::TIMESTAMP_NTZ, '1582-10-10'::DATE, '\\\\N', "
    "PARSE_JSON('\"text\"')",
]

COLUMNS = ["ID", "F", "N", "N0", "TS", "D", "S", "V"]
BIG = 3_000_000


def _comparable(rows: list[tuple]) -> list[tuple]:
    """NaN is not equal to itself; compare it by name."""
    return [tuple("NaN" if isinstance(v, float) and math.isnan(v) else v for v in r) for r in rows]


def test_edge_values_of_every_type_load_exactly(world: World):
    table = f'"{world.sf_database}"."PUBLIC"."EDGES"'
    world.sf_exec(
        EDGES_DDL.format(table=table),
        *(f"INSERT INTO {table} SELECT {row.format(big=BIG)}" for row in EDGES_ROWS),
    )
    raw = world.config(
        [
            {
                "source": "EDGES",
                "chunking_columns": ["ID"],
                "chunking_column_types": ["id"],
                "uniqueness_columns": ["ID"],
            }
        ],
        rows_per_chunk=100,
    )
    outcome = run(world, raw)[0]
    assert outcome.success, outcome.error
    scalars = COLUMNS[:-1]  # VARIANT below: a JSON null must stay apart from SQL NULL, which readers conflate
    target = _comparable(target_rows(world, "tgt", "edges", [c.lower() for c in scalars]))
    assert target == _comparable(source_rows(world, "EDGES", scalars))
    variants = dict(world.pg_query("SELECT id, v::text FROM tgt.edges WHERE id <> 2"))
    assert variants == {1: '{"small": true}', 3: None, 4: "[]", 5: "null", 6: '"text"'}
    # spelled out, so a shared mistake of both readers cannot hide a loss
    by_id = {r[0]: r for r in world.pg_query("SELECT id, f::text, n::text, ts::text, d::text, s FROM tgt.edges")}
    assert by_id[1][1:] == ("NaN", "9999999999999999999999999999.9999999999", "0001-01-01 00:00:00", "0001-01-01", "")
    assert by_id[2][1:] == ("Infinity", "-9999999999999999999999999999.9999999999", "9999-12-31 23:59:59.999999",
                            "9999-12-31", None)  # fmt: skip
    assert by_id[3][1] == "-Infinity" and by_id[3][5] == " "
    assert by_id[5][5] == "null" and by_id[6][5] == "\\N"
    [(big,)] = world.pg_query("SELECT v FROM tgt.edges WHERE id = 2")
    assert len(big["big"]) == BIG and json.dumps(big, sort_keys=True) == json.dumps(
        {"big": "x" * BIG, "n": 1}, sort_keys=True
    )

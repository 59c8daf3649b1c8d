"""One changed target cell of any mapped type fails ``sf2pg verify``, naming its column; so does a
missing or an extra row. One table is loaded once; each case changes a cell and puts it back."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from sf2pg.config.loading import parse_config
from sf2pg.dagster.resources import PostgresResource
from sf2pg.plan.planning import ledger_chunk_keys as loaded_chunk_keys
from sf2pg_tests.harness import Stack, World
from sf2pg_tests.test_cli import run_cli
from sf2pg_tests.test_load.test_migrate import all_types_config, run, seed_all_types

VICTIM = 10  # every column of this row holds a value (text: 'héllo ✓ 日本 10')

# source column -> a PostgreSQL expression for a slightly different value of the target column
CHANGES = {
    "N_SMALL": "n_small + 1",
    "N_INT": "n_int - 1",
    "N_BIG": "n_big + 1",  # NUMBER(38,0), how Snowflake stores every INT
    "N_DEC": "n_dec + 0.01",
    "N_HIGH": "n_high + 0.0000000001",  # NUMBER(38,10), the last place
    "N_WIDE": "n_wide + 1",  # NUMBER(38,2) beyond 10^32
    "F": "f * (1 + 2.220446049250313e-16)",  # the last bit of the mantissa
    "V": "overlay(v placing 'H' from 1 for 1)",  # one character, same length
    "B": "NOT b",
    "D": "d + 1",
    "T": "t + interval '1 microsecond'",
    "TS_NTZ": "ts_ntz + interval '1 second'",
    "TS_LTZ": "ts_ltz + interval '1 microsecond'",
    "TS_TZ": "ts_tz - interval '1 microsecond'",
    "BIN": "'\\xcaff'::bytea",
    "VAR": "jsonb_set(var, '{a,0}', '5')",  # a nested value
    "OBJ": "obj || '{\"k2\": null}'",  # one more key
    "ARR": "jsonb_build_array(arr -> 1, arr -> 0)",  # the same elements in another order
    "Visit Id": '"Visit Id" + 1',
    'we"ird name': '"we""ird name" || \' \'',
}
EDGE_CHANGES = {
    "F": ["'NaN'::float8", "'Infinity'::float8", "'-Infinity'::float8", "-f", "0"],
    "VAR": ["jsonb_set(var, '{i}', '\"10\"')", "var - 'i'", "'null'::jsonb"],
}


@pytest.fixture(scope="module")
def loaded(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[World, str]]:
    """ALL_TYPES (900 rows and one of NULLs) loaded by id chunks, and a config file for the CLI."""
    sf_database, pg_database = "SRC_FINGERPRINT_TYPES", "tgt_fingerprint_types"
    stack.create_pg_database(pg_database)
    sf = stack.sf_connect()
    sf.cursor().execute(f'CREATE DATABASE IF NOT EXISTS "{sf_database}"')
    sf.cursor().execute(f'CREATE SCHEMA IF NOT EXISTS "{sf_database}"."PUBLIC"')
    world = World(stack, sf_database, pg_database, sf)
    seed_all_types(world, 900)
    raw = all_types_config(world, "id", checks_after_load="cells")
    outcome = run(world, raw)[0]
    assert outcome.success, outcome.error
    assert outcome.checks == {"row_count": True, "chunk_fingerprint": True}
    path = tmp_path_factory.mktemp("fingerprint") / "config.json"
    path.write_text(json.dumps(raw))
    world.pg_query("CREATE TABLE public.saved AS SELECT * FROM tgt.all_types WHERE id = %s", (VICTIM,))
    yield world, str(path)
    sf.close()


def victim_chunk(config: str) -> str:
    spec = parse_config(json.loads(Path(config).read_text())).tables()[0]
    keys = loaded_chunk_keys(PostgresResource(), spec)
    return next(k for k in keys if int(k.split("_")[1]) <= VICTIM < int(k.split("_")[2]))


def verify(capsys: pytest.CaptureFixture, config: str) -> tuple[int, str]:
    return run_cli(capsys, "--config", config, "verify")


def named_columns(output: str) -> set[str]:
    """Columns named by the ✗ lines of ``sf2pg verify``."""
    lines = [line for line in output.splitlines() if line.startswith("✗")]
    return {name for line in lines for name in re.findall(r"column (.+?): ", line)}


def test_an_untouched_copy_of_every_type_verifies_green(loaded, capsys):
    _, config = loaded
    code, out = verify(capsys, config)
    assert code == 0, out
    assert "chunk(s) match" in out


def _quoted(column: str) -> str:
    """The target column of a source column, quoted (upper-case source names are lower-case there)."""
    target = column.lower() if column.upper() == column and " " not in column else column
    return '"' + target.replace('"', '""') + '"'


def _changed(world: World, column: str, expression: str) -> None:
    quoted = _quoted(column)
    world.pg_query(f"UPDATE tgt.all_types SET {quoted} = {expression} WHERE id = %s", (VICTIM,))
    assert world.pg_query(f"SELECT a.{quoted} IS DISTINCT FROM s.{quoted} FROM tgt.all_types a, public.saved s "
                          "WHERE a.id = s.id")[0][0], f"{expression} did not change {column}"  # fmt: skip


def _restore(world: World, column: str) -> None:
    quoted = _quoted(column)
    world.pg_query(f"UPDATE tgt.all_types a SET {quoted} = s.{quoted} FROM public.saved s WHERE a.id = s.id")


CASES = [(c, e) for c, e in CHANGES.items()] + [(c, e) for c, es in EDGE_CHANGES.items() for e in es]


@pytest.mark.parametrize(("column", "expression"), CASES, ids=[f"{c}:{e}" for c, e in CASES])
def test_one_changed_cell_fails_verify_naming_its_chunk_and_column(loaded, capsys, column: str, expression: str):
    world, config = loaded
    _changed(world, column, expression)
    try:
        code, out = verify(capsys, config)
    finally:
        _restore(world, column)
    assert code == 1, out
    assert named_columns(out) == {column}, out
    assert f"chunk {victim_chunk(config)}: column {column}: " in out


def test_a_missing_row_fails_verify_naming_its_chunk(loaded, capsys):
    world, config = loaded
    world.pg_query("DELETE FROM tgt.all_types WHERE id = %s", (VICTIM,))
    try:
        code, out = verify(capsys, config)
    finally:
        world.pg_query("INSERT INTO tgt.all_types SELECT * FROM public.saved")
    assert code == 1, out
    assert "target has 1 fewer rows than the source (900 vs 901)" in out
    [(source, target)] = re.findall(rf"chunk {victim_chunk(config)}: rows: source (\d+), target (\d+)", out)
    assert int(target) == int(source) - 1
    assert ", and with them the measures of 21 column(s)" in out


def test_an_extra_row_fails_verify(loaded, capsys):
    world, config = loaded
    world.pg_query("ALTER TABLE tgt.all_types DROP CONSTRAINT all_types_pkey")
    world.pg_query("INSERT INTO tgt.all_types SELECT * FROM public.saved")  # id 10, a second time
    try:
        code, out = verify(capsys, config)
    finally:
        world.pg_query("DELETE FROM tgt.all_types WHERE ctid = (SELECT max(ctid) FROM tgt.all_types WHERE id = %s)",
                       (VICTIM,))  # fmt: skip
        world.pg_query("ALTER TABLE tgt.all_types ADD PRIMARY KEY (id)")
    assert code == 1, out
    assert "target has 1 more rows than the source (902 vs 901)" in out
    [(source, target)] = re.findall(rf"chunk {victim_chunk(config)}: rows: source (\d+), target (\d+)", out)
    assert int(target) == int(source) + 1
    code, out = verify(capsys, config)
    assert code == 0, out

"""Schema drift followed: a column added in Snowflake arrives through sync and migrate, a NUMBER that grew
widens its target column, and a change sf2pg does not apply on its own fails naming the column, or is
ignored with a note when the config says so. Each change is reported by the CLI, in Dagster metadata and
in the ledger."""

from __future__ import annotations

from pathlib import Path

from dagster import DagsterInstance

from sf2pg.config.loading import parse_config
from sf2pg.dagster.runner import sync
from sf2pg.load import ledger
from sf2pg.load.target import ColumnRules, prepare_target
from sf2pg.plan.planning import source_columns
from sf2pg_tests.harness import World, source_rows, target_rows
from sf2pg_tests.test_cli import run_cli, write_config
from sf2pg_tests.test_load.test_migrate import run
from sf2pg_tests.test_sync.test_watermark_sensor import COLUMNS, TARGET, orders_config, seed_orders


def _changes(world: World) -> list[tuple]:
    return world.pg_query(
        "SELECT source_column, target_column, change, applied, type_before, type_after, detail "
        "FROM migration_status.schema_changes ORDER BY changed_at, source_column"
    )


def _column_types(world: World, table: str) -> dict[str, str]:
    rows = world.pg_query(
        "SELECT column_name, format_type(atttypid, atttypmod) FROM information_schema.columns c "
        "JOIN pg_attribute a ON a.attrelid = format('%%I.%%I', c.table_schema, c.table_name)::regclass "
        "AND a.attname = c.column_name WHERE table_schema = 'tgt' AND table_name = %s",
        (table,),
    )
    return dict(rows)


def test_a_column_added_in_snowflake_arrives_through_sync_and_each_report_says_so(world: World):
    table = seed_orders(world, 300)
    raw = orders_config(world)
    instance = DagsterInstance.ephemeral()
    assert run(world, raw, instance)[0].success
    world.sf_exec(
        f"ALTER TABLE {table} ADD COLUMN SEGMENT VARCHAR",
        # rows whose watermark moves carry the new column's values; the others keep NULL on both sides
        f"UPDATE {table} SET SEGMENT = 'gold ' || ID, UPDATED_AT = DATEADD(hour, 30, UPDATED_AT) WHERE ID % 7 = 0",
        f"INSERT INTO {table} VALUES (5000, '2024-01-03 00:00:00'::TIMESTAMP_NTZ, 'new', 1, 'silver')",
    )
    [outcome] = sync(parse_config(raw).tables(), instance)
    assert outcome.success, outcome.note
    assert "added column 'SEGMENT' (VARCHAR): added to the target as text" in outcome.metadata["schema_changes"]
    assert target_rows(world, "tgt", "orders", [*TARGET, "segment"]) == source_rows(
        world, "ORDERS", [*COLUMNS, "SEGMENT"]
    )
    assert world.pg_query("SELECT count(*) FROM tgt.orders WHERE segment LIKE 'gold %%'") == [(43,)]
    assert _changes(world) == [("SEGMENT", "segment", "added", True, None, "VARCHAR", "added to the target as text")]
    schema = outcome.metadata["dagster/column_schema"]
    assert [(c.name, c.type) for c in schema.columns][-1] == ("segment", "text")
    # nothing is left to fill: the rows that did not move hold NULL in Snowflake too, and the checks passed
    assert outcome.checks == {"row_count": True, "chunk_rows": True}


def test_values_given_to_unchanged_rows_arrive_when_migrate_reloads_the_chunks_loaded_before(
    world: World, tmp_path: Path, capsys
):
    table = seed_orders(world, 300)
    raw = orders_config(world, checks_after_load="cells")  # each load compares every cell
    config = write_config(tmp_path, raw)
    instance = DagsterInstance.ephemeral()
    assert run(world, raw, instance)[0].success
    chunks = len(world.pg_query("SELECT 1 FROM migration_status.chunk_state"))
    world.sf_exec(
        f"ALTER TABLE {table} ADD COLUMN SEGMENT VARCHAR",
        f"UPDATE {table} SET SEGMENT = 'basic'",  # a backfill in Snowflake that leaves every watermark alone
        f"UPDATE {table} SET NAME = 'moved', UPDATED_AT = '2024-01-01 04:59:30'::TIMESTAMP_NTZ WHERE ID = 3",
    )
    [outcome] = sync(parse_config(raw).tables(), instance)
    # the window brings the moved row, with its segment; the others hold NULL until their chunk reloads
    assert not outcome.success and any("SEGMENT" in line for line in outcome.check_failures), outcome.check_failures
    assert world.pg_query("SELECT name, segment FROM tgt.orders WHERE id = 3") == [("moved", "basic")]
    with world.stack.pg(world.pg_database) as conn:
        waiting = ledger.chunks_to_backfill(conn, "tgt", "orders")
    assert len(waiting) == chunks and all(columns == ["segment"] for columns in waiting.values())

    code, out = run_cli(capsys, "--config", config, "migrate")
    assert code == 0, out
    out = " ".join(out.split())
    assert f"{chunks} chunk(s) loaded before a column was added to the target are loaded again" in out
    assert target_rows(world, "tgt", "orders", [*TARGET, "segment"]) == source_rows(
        world, "ORDERS", [*COLUMNS, "SEGMENT"]
    )
    with world.stack.pg(world.pg_database) as conn:
        assert ledger.chunks_to_backfill(conn, "tgt", "orders") == {}
    code, out = run_cli(capsys, "--config", config, "migrate")
    assert code == 0 and "already loaded" in out  # filled: a plain re-run reads nothing


def test_with_the_default_row_check_sync_says_which_chunks_wait_for_a_reload_and_verify_names_the_column(
    world: World, tmp_path: Path, capsys
):
    table = seed_orders(world, 300)
    config = write_config(tmp_path, orders_config(world))  # checks_after_load: rows, the default
    assert run_cli(capsys, "--config", config, "migrate")[0] == 0
    chunks = len(world.pg_query("SELECT 1 FROM migration_status.chunk_state"))
    world.sf_exec(
        f"ALTER TABLE {table} ADD COLUMN SEGMENT VARCHAR",
        f"UPDATE {table} SET SEGMENT = 'basic'",  # leaves every watermark alone
        f"UPDATE {table} SET NAME = 'moved', UPDATED_AT = '2024-01-01 04:59:30'::TIMESTAMP_NTZ WHERE ID = 3",
    )
    code, out = run_cli(capsys, "--config", config, "sync")
    flat = " ".join(out.split())
    assert code == 0, out  # the row check after the window sees no cell
    assert f"note: src.orders: {chunks} chunk(s) loaded before a column was added hold NULL there" in flat
    code, out = run_cli(capsys, "--config", config, "verify")
    assert code == 1 and "SEGMENT" in out, out
    assert run_cli(capsys, "--config", config, "migrate")[0] == 0
    code, out = run_cli(capsys, "--config", config, "sync")
    assert code == 0 and "note:" not in out, out
    assert run_cli(capsys, "--config", config, "verify")[0] == 0


def test_a_column_added_before_a_migrate_fails_verify_until_migrate_adds_fills_and_reports_it(
    world: World, tmp_path: Path, capsys
):
    table = seed_orders(world, 300)
    config = write_config(tmp_path, orders_config(world))
    code, out = run_cli(capsys, "--config", config, "migrate")
    assert code == 0, out
    world.sf_exec(
        f"ALTER TABLE {table} ADD COLUMN REGION NUMBER(4,0)",
        f"UPDATE {table} SET REGION = ID % 9",
        f"ALTER TABLE {table} ALTER COLUMN AMOUNT SET DATA TYPE NUMBER(16,2)",
    )
    code, out = run_cli(capsys, "--config", config, "verify")  # the target does not hold them yet
    flat = " ".join(out.split())
    assert code == 1, out
    assert "column REGION: added in Snowflake since the last load: source NUMBER(4,0), target no such column" in flat
    assert "column AMOUNT: widened in Snowflake since the last load: source NUMBER(16,2), target numeric" in flat
    code, out = run_cli(capsys, "--config", config, "migrate")
    assert code == 0, out
    assert "schema: src.orders: added column 'REGION' (NUMBER(4,0)): added to the target as smallint" in out
    assert target_rows(world, "tgt", "orders", [*TARGET, "region"]) == source_rows(
        world, "ORDERS", [*COLUMNS, "REGION"]
    )
    assert run_cli(capsys, "--config", config, "verify")[0] == 0


def test_a_number_whose_precision_grew_widens_its_target_column_and_the_wide_value_loads(world: World):
    table = seed_orders(world, 200)
    raw = orders_config(world)
    instance = DagsterInstance.ephemeral()
    assert run(world, raw, instance)[0].success
    world.sf_exec(
        f"ALTER TABLE {table} ALTER COLUMN AMOUNT SET DATA TYPE NUMBER(16,2)",
        f"UPDATE {table} SET AMOUNT = 12345678901234.56 WHERE ID = 5",  # 14 digits before the point
    )
    outcome = run(world, raw, instance, reload=True)[0]  # the full load that used to fail
    assert outcome.success, outcome.error
    assert (
        "widened column 'AMOUNT' (NUMBER(12,2) -> NUMBER(16,2)): widened numeric(12,2) -> numeric(16,2)"
        in (outcome.metadata["schema_changes"])
    )
    assert _column_types(world, "orders")["amount"] == "numeric(16,2)"
    assert world.pg_query("SELECT amount::text FROM tgt.orders WHERE id = 5") == [("12345678901234.56",)]
    assert target_rows(world, "tgt", "orders", TARGET) == source_rows(world, "ORDERS", COLUMNS)
    again = run(world, raw, instance, reload=True)[0]
    assert again.success and "schema_changes" not in again.metadata  # a change is reported once


def test_a_table_loaded_before_its_columns_were_recorded_still_widens_a_number_that_grew(world: World):
    table = seed_orders(world, 200)
    raw = orders_config(world)
    instance = DagsterInstance.ephemeral()
    assert run(world, raw, instance)[0].success
    world.pg_query("UPDATE migration_status.table_state SET source_columns = NULL")  # as an older sf2pg left it
    world.sf_exec(
        f"ALTER TABLE {table} ALTER COLUMN AMOUNT SET DATA TYPE NUMBER(16,2)",
        f"UPDATE {table} SET AMOUNT = 12345678901234.56 WHERE ID = 5",
    )
    outcome = run(world, raw, instance, reload=True)[0]
    assert outcome.success, outcome.error
    assert (
        "widened column 'AMOUNT' (NUMBER(16,2)): widened numeric(12,2) -> numeric(16,2)"
        in (outcome.metadata["schema_changes"])
    )
    assert target_rows(world, "tgt", "orders", TARGET) == source_rows(world, "ORDERS", COLUMNS)


def test_a_text_length_that_grew_widens_a_varchar_target_unless_column_types_pins_it(world: World):
    table = f'"{world.sf_database}"."PUBLIC"."CODES"'
    world.sf_exec(f"CREATE TABLE {table} (ID NUMBER(9,0), CODE VARCHAR(5))", f"INSERT INTO {table} VALUES (1, 'abc')")
    raw = world.config([{"source": "CODES", "uniqueness_columns": ["ID"], "column_types": {"CODE": "varchar(5)"}}])
    instance = DagsterInstance.ephemeral()
    assert run(world, raw, instance)[0].success
    assert _column_types(world, "codes")["code"] == "character varying(5)"
    world.sf_exec(f"ALTER TABLE {table} ALTER COLUMN CODE SET DATA TYPE VARCHAR(12)")
    pinned = run(world, raw, instance, reload=True)[0]  # column_types says varchar(5): it stays
    assert pinned.success and "column_types keeps it varchar(5)" in pinned.metadata["schema_changes"]
    assert _column_types(world, "codes")["code"] == "character varying(5)"
    # the config no longer pins the length, and Snowflake's grew past it: the target follows
    del raw["sources"][0]["tables"][0]["column_types"]
    world.sf_exec(
        f"ALTER TABLE {table} ALTER COLUMN CODE SET DATA TYPE VARCHAR(14)", f"UPDATE {table} SET CODE = 'abcdefghijkl'"
    )
    outcome = run(world, raw, instance, reload=True)[0]
    assert outcome.success, outcome.error
    assert "widened varchar(5) -> varchar(14)" in outcome.metadata["schema_changes"]
    assert _column_types(world, "codes")["code"] == "character varying(14)"
    assert world.pg_query("SELECT code FROM tgt.codes") == [("abcdefghijkl",)]


def _unsafe_table(world: World) -> str:
    table = f'"{world.sf_database}"."PUBLIC"."ITEMS"'
    world.sf_exec(
        f"CREATE TABLE {table} (ID NUMBER(9,0), PRICE NUMBER(12,2), QTY NUMBER(9,0), NOTE VARCHAR)",
        f"INSERT INTO {table} SELECT SEQ4(), SEQ4() * 1.5, SEQ4(), 'n' || SEQ4() FROM TABLE(GENERATOR(ROWCOUNT => 40))",
    )
    return table


def test_changes_sf2pg_does_not_apply_fail_before_any_row_moves_naming_each_column(world: World):
    table = _unsafe_table(world)
    raw = world.config([{"source": "ITEMS", "uniqueness_columns": ["ID"]}])
    instance = DagsterInstance.ephemeral()
    assert run(world, raw, instance)[0].success
    world.sf_exec(
        f"ALTER TABLE {table} ALTER COLUMN PRICE SET DATA TYPE NUMBER(8,2)",
        f"ALTER TABLE {table} ALTER COLUMN QTY SET DATA TYPE VARCHAR",
        f"ALTER TABLE {table} DROP COLUMN NOTE",
        f"UPDATE {table} SET PRICE = 1, QTY = 'many'",
    )
    outcome = run(world, raw, instance, reload=True)[0]
    assert not outcome.success
    assert "table src.items (sources[0].tables[0])" in outcome.error
    assert "column 'PRICE' narrowed from NUMBER(12,2) to NUMBER(8,2): the target keeps numeric(12,2)" in outcome.error
    assert "column 'QTY' retyped from NUMBER(9,0) to VARCHAR" in outcome.error
    assert "column 'NOTE' was dropped from Snowflake" in outcome.error
    assert '"unsafe_schema_changes": "ignore"' in outcome.error
    assert world.pg_query("SELECT count(*) FROM tgt.items WHERE price = 1") == [(0,)]  # nothing moved
    assert _changes(world) == []


def test_changes_ignored_by_the_config_load_on_with_a_note_each_noted_once_in_the_ledger(world: World):
    table = _unsafe_table(world)
    raw = world.config([{"source": "ITEMS", "uniqueness_columns": ["ID"], "unsafe_schema_changes": "ignore"}])
    instance = DagsterInstance.ephemeral()
    assert run(world, raw, instance)[0].success
    world.sf_exec(
        f"ALTER TABLE {table} ALTER COLUMN PRICE SET DATA TYPE NUMBER(8,2)",
        f"ALTER TABLE {table} DROP COLUMN NOTE",
        f"UPDATE {table} SET PRICE = 2",
        f"INSERT INTO {table} (ID, PRICE, QTY) VALUES (100, 3, 7)",
    )
    for _ in range(2):
        outcome = run(world, raw, instance, reload=True)[0]
        assert outcome.success, outcome.error
        notes = outcome.metadata["schema_changes"]
        assert "ignored: narrowed column 'PRICE' (NUMBER(12,2) -> NUMBER(8,2)): the target keeps numeric(12,2)" in notes
        assert "ignored: dropped column 'NOTE' (VARCHAR): the target keeps 'note'; new rows hold NULL there" in notes
    assert world.pg_query("SELECT count(*), min(price), max(price) FROM tgt.items") == [(41, 2, 3)]
    assert world.pg_query("SELECT qty, note FROM tgt.items WHERE id = 100") == [(7, None)]  # kept, not filled
    assert [(c[0], c[2], c[3]) for c in _changes(world)] == [("NOTE", "dropped", False), ("PRICE", "narrowed", False)]


def test_an_ignored_change_of_type_family_leaves_the_column_out_of_the_load(world: World):
    table = _unsafe_table(world)
    rules = ColumnRules(unsafe_schema_changes="ignore", config_path="sources[0].tables[0]")
    spec = parse_config(world.config([{"source": "ITEMS", "uniqueness_columns": ["ID"]}])).tables()[0]
    assert run(world, world.config([{"source": "ITEMS", "uniqueness_columns": ["ID"]}]))[0].success
    world.sf_exec(f"ALTER TABLE {table} ALTER COLUMN QTY SET DATA TYPE VARCHAR")
    with world.stack.sf_connect() as sf, world.stack.pg(world.pg_database) as conn:
        columns = source_columns(sf, spec)
        target = prepare_target(conn, "tgt", "items", columns, ("ID",), None, "table src.items", rules=rules)
        again = prepare_target(conn, "tgt", "items", columns, ("ID",), None, "table src.items", rules=rules)
    for prepared in (target, again):  # seen, and left out, at every load until the source or the config changes
        assert [str(c) for c in prepared.changes] == [
            "ignored: retyped column 'QTY' (NUMBER(9,0) -> VARCHAR): the target keeps integer; not loaded"
        ]
        assert "qty" not in prepared.column_names and prepared.skipped_source_columns == ["QTY"]
    assert [(c[0], c[2], c[3]) for c in _changes(world)] == [("QTY", "retyped", False)]

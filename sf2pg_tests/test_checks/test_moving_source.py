"""On a source that keeps changing, the checks compare what the target should hold: the rows settled up
to the ledger's watermark H. Rows that moved past H, and new ones, are in flight and pass; a wrong
settled row still fails, naming its chunk and column."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from dagster import AssetSelection, DagsterInstance, materialize

from sf2pg.config.loading import parse_config
from sf2pg.dagster.assets import asset_key, build_table_asset
from sf2pg.dagster.checks import build_table_checks
from sf2pg.dagster.definitions import build_resources
from sf2pg.dagster.partitions import partitions_name
from sf2pg.plan.incremental import watermark_text
from sf2pg_tests.harness import World
from sf2pg_tests.test_cli import run_cli
from sf2pg_tests.test_load.test_migrate import run

START = dt.datetime(2024, 1, 1)


def seeded(world: World, tmp_path: Path, **table_keys) -> tuple[dict, str, DagsterInstance, dt.datetime]:
    """ORDERS (1,000 rows in two id chunks, watermark UPDATED_AT) loaded, and the ledger's watermark H set
    to the source's maximum, as a finished sync leaves it."""
    table = f'"{world.sf_database}"."PUBLIC"."ORDERS"'
    world.sf_exec(
        f"CREATE TABLE {table} (ID NUMBER(18,0), UPDATED_AT TIMESTAMP_NTZ, AMOUNT NUMBER(12,2), NOTE VARCHAR)",
        f"INSERT INTO {table} SELECT SEQ4() + 1, DATEADD(second, SEQ4(), '{START.isoformat()}'::TIMESTAMP_NTZ), "
        "(SEQ4() % 500) * 1.25, 'note ' || SEQ4() FROM TABLE(GENERATOR(ROWCOUNT => 1000))",
    )
    raw = world.config(
        [
            {
                "source": "ORDERS",
                "chunking_columns": ["ID"],
                "chunking_column_types": ["id"],
                "uniqueness_columns": ["ID"],
                "source_watermark": "UPDATED_AT",
                "target_watermark": "UPDATED_AT",  # spelled as in Snowflake; the target's is updated_at
                **table_keys,
            }
        ]
    )
    instance = DagsterInstance.ephemeral()
    outcome = run(world, raw, instance)[0]
    assert outcome.success, outcome.error
    high = world.sf_exec(f"SELECT MAX(UPDATED_AT) FROM {table}")[0][0]
    world.pg_query(
        "UPDATE migration_status.table_state SET watermark = %s WHERE target_schema = 'tgt' AND target_table = 'orders'",
        (watermark_text(high),),
    )
    path = tmp_path / "config.json"
    path.write_text(json.dumps(raw))
    return raw, str(path), instance, high


def run_checks(raw: dict, instance: DagsterInstance) -> dict:
    spec = parse_config(raw).tables()[0]
    keys = list(instance.get_dynamic_partitions(partitions_name(spec)))
    result = materialize(
        [build_table_asset(spec), *build_table_checks(spec)],
        selection=AssetSelection.checks_for_assets(asset_key(spec)),
        instance=instance,
        resources=build_resources(resolve_env=True),
        tags={"dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1]},
        raise_on_error=False,
    )
    return {(e.check_name, e.partition): e for e in result.get_asset_check_evaluations()}


def test_rows_past_the_watermark_are_in_flight_and_a_wrong_settled_row_still_fails(world, tmp_path, capsys):
    raw, config, instance, high = seeded(world, tmp_path, watermark_lookback=0)  # the boundary stays H
    table = f'"{world.sf_database}"."PUBLIC"."ORDERS"'
    later = (high + dt.timedelta(hours=1)).isoformat(sep=" ")
    world.sf_exec(
        # changed after the last load, in both chunks: the target still holds the old versions
        f"UPDATE {table} SET AMOUNT = AMOUNT + 100, NOTE = 'changed', UPDATED_AT = '{later}'::TIMESTAMP_NTZ "
        "WHERE ID IN (3, 600)",
        # new rows, inside a chunk and beyond every chunk
        f"INSERT INTO {table} SELECT 5000 + SEQ4(), '{later}'::TIMESTAMP_NTZ, 1, 'new' FROM TABLE(GENERATOR(ROWCOUNT => 4))",
    )
    world.pg_query("UPDATE tgt.orders SET note = 'half-way' WHERE id = 3")  # a moving row may differ too

    code, out = run_cli(capsys, "--config", config, "verify")
    assert code == 0, out
    assert f"compared the rows settled below watermark {high.isoformat(sep=' ')}; 7 source rows at or past it" in out
    evaluations = run_checks(raw, instance)
    assert all(e.passed for e in evaluations.values()), [e.description for e in evaluations.values()]
    chunk = evaluations[("chunk_fingerprint", "id_0000000001_0000000501")]
    # ids 3, 600, the four new ones, and the newest row, whose watermark is H itself (rows at H may
    # still be committed late: the next window reads them)
    assert chunk.metadata["moving_keys_left_out"].value == 7
    counts = evaluations[("row_count", None)]
    assert counts.metadata["moving_source_rows"].value == 7 and counts.metadata["source_rows"].value == 997
    assert "between 997 settled source rows" in counts.description

    world.pg_query("UPDATE tgt.orders SET amount = amount + 1 WHERE id = 700")  # settled: its change was loaded
    code, out = run_cli(capsys, "--config", config, "verify")
    assert code == 1, out
    assert "✗ src.orders chunk id_0000000501_0000001001: column AMOUNT: sum: source " in out
    failed = [e for e in run_checks(raw, instance).values() if not e.passed]
    assert [(e.check_name, e.partition) for e in failed] == [("chunk_fingerprint", "id_0000000501_0000001001")]
    assert failed[0].metadata["columns_that_differ"].value == ["AMOUNT"]
    assert failed[0].severity.value == "ERROR"


def test_a_change_committed_late_below_the_watermark_is_in_flight_until_a_sync_reads_it(world, tmp_path, capsys):
    _, config, _, high = seeded(world, tmp_path)  # the default lookback: 900 s, the newest 900 rows here
    table = f'"{world.sf_database}"."PUBLIC"."ORDERS"'
    late = (high - dt.timedelta(seconds=30)).isoformat(sep=" ")
    world.sf_exec(f"UPDATE {table} SET NOTE = 'late', UPDATED_AT = '{late}'::TIMESTAMP_NTZ WHERE ID = 950")
    world.pg_query("UPDATE tgt.orders SET amount = amount + 1 WHERE id = 5")  # settled long before: wrong
    capsys.readouterr()  # not the seeding load's log
    code, out = run_cli(capsys, "--config", config, "verify")
    flat = " ".join(out.split())
    lookback = (high - dt.timedelta(seconds=900)).isoformat(sep=" ")
    assert code == 1 and f"compared the rows settled below watermark {lookback}" in flat, out
    assert "✗ src.orders chunk id_0000000001_0000000501: column AMOUNT" in flat  # id 5
    assert "✗ src.orders chunk id_0000000501" not in flat  # id 950's late change is in flight, not a difference
    assert run_cli(capsys, "--config", config, "sync")[0] == 0  # reads the late change
    code, out = run_cli(capsys, "--config", config, "verify")
    flat = " ".join(out.split())
    assert code == 1 and f"compared the rows settled below watermark {high.isoformat(sep=' ')}" in flat, out
    assert "✗ src.orders chunk id_0000000501" not in flat


def test_without_the_watermark_the_same_changes_fail(world, tmp_path, capsys):
    """The control: the moving rows above are what the watermark lets pass."""
    _, config, _, high = seeded(world, tmp_path)
    later = (high + dt.timedelta(hours=1)).isoformat(sep=" ")
    world.sf_exec(
        f'UPDATE "{world.sf_database}"."PUBLIC"."ORDERS" SET AMOUNT = AMOUNT + 100, UPDATED_AT = \'{later}\'::TIMESTAMP_NTZ '
        "WHERE ID = 3"
    )
    world.pg_query("UPDATE migration_status.table_state SET watermark = NULL")
    code, out = run_cli(capsys, "--config", config, "verify")
    assert code == 1, out
    assert "✗ src.orders chunk id_0000000001_0000000501: column UPDATED_AT: " in out


def test_a_keyless_table_compares_the_rows_settled_on_each_side(world, tmp_path, capsys):
    raw, config, instance, high = seeded(world, tmp_path, uniqueness_columns=[], insert_only_mode=True)
    later = (high + dt.timedelta(minutes=5)).isoformat(sep=" ")
    # appended after the last load, inside the first chunk (a keyless table may repeat an id)
    world.sf_exec(
        f'INSERT INTO "{world.sf_database}"."PUBLIC"."ORDERS" SELECT 5, \'{later}\'::TIMESTAMP_NTZ, 9, \'late\''
    )
    code, out = run_cli(capsys, "--config", config, "verify")
    assert code == 0, out
    assert all(e.passed for e in run_checks(raw, instance).values())

    world.pg_query("UPDATE tgt.orders SET note = 'NOTE 10' WHERE id = 10")
    code, out = run_cli(capsys, "--config", config, "verify")
    assert code == 1, out
    assert "✗ src.orders chunk id_0000000001_0000000501: column NOTE: content hash differs" in out


def test_a_comparison_waits_for_a_load_between_its_source_read_and_its_commit(world, tmp_path):
    """Loads hold the table's lease shared from their read to their commit; a comparison holds it
    exclusively, so no load can commit between the comparison's source and target statements."""
    import threading
    import time

    import psycopg

    from sf2pg.dagster.runner import verify
    from sf2pg.load import locks

    raw, _, _, _ = seeded(world, tmp_path)
    spec = parse_config(raw).tables()[0]
    verdicts: list = []
    with psycopg.connect(dbname=world.pg_database) as load:  # a load between its read and its commit
        locks.xact_lock(load, locks.lease_key("tgt", "orders"), shared=True)
        comparison = threading.Thread(target=lambda: verdicts.extend(verify([spec], None)))
        comparison.start()
        time.sleep(3)
        assert comparison.is_alive() and not verdicts
        load.commit()
    comparison.join(120)
    assert [v.passed for v in verdicts] == [True]

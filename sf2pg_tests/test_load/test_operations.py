"""Operating a load: the planning job, rebuilding indexes after a crash, the monitoring queries."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from dagster import DagsterInstance

from sf2pg.cli.main import main
from sf2pg.config.loading import parse_config
from sf2pg.dagster.definitions import build_definitions
from sf2pg.dagster.partitions import partitions_name
from sf2pg.load import indexes, ledger
from sf2pg_tests.harness import World
from sf2pg_tests.test_cli import write_config
from sf2pg_tests.test_load.test_migrate import all_types_config, run, seed_all_types

REPO = Path(__file__).resolve().parents[2]


def test_the_planning_job_registers_every_tables_chunks_in_key_order(world: World):
    seed_all_types(world, 900)
    config = parse_config(all_types_config(world, "id"))
    defs = build_definitions(config, resolve_env=True)
    instance = DagsterInstance.ephemeral()
    result = defs.resolve_job_def("plan_chunks").execute_in_process(instance=instance)
    assert result.success
    keys = list(instance.get_dynamic_partitions(partitions_name(config.tables()[0])))
    assert len(keys) >= 2 and keys == sorted(keys)
    assert defs.resolve_job_def("plan_chunks").execute_in_process(instance=instance).success
    assert list(instance.get_dynamic_partitions(partitions_name(config.tables()[0]))) == keys  # idempotent


def test_restore_indexes_rebuilds_what_a_crashed_full_load_dropped(world: World, tmp_path: Path, capsys):
    seed_all_types(world, 300)
    raw = all_types_config(world)
    assert run(world, raw)[0].success
    world.pg_query("CREATE INDEX by_v ON tgt.all_types (v)")
    with psycopg.connect(dbname=world.pg_database, autocommit=True) as conn:
        assert indexes.drop_secondary_indexes(conn, "tgt", "all_types", "crashed-run") == ["by_v"]
    # ... and the process died here, before rebuilding
    assert world.pg_query("SELECT count(*) FROM pg_indexes WHERE indexname = 'by_v'") == [(0,)]
    with pytest.raises(SystemExit) as exit_info:
        main(["--config", write_config(tmp_path, raw), "restore-indexes"])
    assert exit_info.value.code == 0
    assert "rebuilt 1 index" in capsys.readouterr().out
    assert world.pg_query("SELECT count(*) FROM pg_indexes WHERE indexname = 'by_v'") == [(1,)]
    assert world.pg_query("SELECT count(*) FROM migration_status.saved_indexes") == [(0,)]


def test_the_original_tools_quick_status_query_works_on_the_ledger(world: World):
    seed_all_types(world, 600)
    assert run(world, all_types_config(world))[0].success
    queries = (REPO / "sql" / "QUICK_MONITORING.sql").read_text().split(";")
    quick = queries[0]
    assert "migration_table_status" in quick and "progress" in quick
    [(schema, table, progress, rows, status)] = world.pg_query(quick)
    assert (schema, progress, rows, status) == ("tgt", "100.0%", 601, "completed")
    assert table == f"{world.sf_database}.PUBLIC.ALL_TYPES"
    with psycopg.connect(dbname=world.pg_database, autocommit=True) as conn:
        for query in queries[1:]:
            if "SELECT" in query:
                conn.execute(query)  # every monitoring query runs
        assert ledger.table_status(conn)[0]["total_chunks"] >= 2

"""``sf2pg migrate`` killed with SIGKILL between chunks or mid-merge: whole chunks only, and a re-run ends exact.

(Mid-COPY is in test_load/test_chunk_transaction.py.) The loader is a real ``sf2pg`` process; the kill is real.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from dagster import AssetKey, DagsterInstance

from sf2pg.config.loading import parse_config
from sf2pg.dagster.partitions import partitions_name
from sf2pg_tests.harness import World
from sf2pg_tests.test_load.test_migrate import all_types_config, assert_exact, seed_all_types

CHUNK_CHANGES = """
SELECT c.chunk_key, count(*) FILTER (WHERE t.n_int = -1), count(*)
FROM migration_status.chunk_state c
JOIN tgt.all_types t ON t.id >= c.lower_bound::bigint AND t.id < c.upper_bound::bigint
WHERE c.lower_bound IS NOT NULL
GROUP BY 1
"""

SLOW_MERGE = """
CREATE FUNCTION tgt.slow_merge() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_sleep(3); RETURN NULL; END $$;
CREATE TRIGGER slow_merge AFTER UPDATE ON tgt.all_types FOR EACH STATEMENT EXECUTE FUNCTION tgt.slow_merge();
"""


def _sf2pg(tmp_path: Path, raw: dict, *args: str, stderr: int = subprocess.DEVNULL) -> subprocess.Popen:
    config = tmp_path / "config.json"
    config.write_text(json.dumps(raw))
    home = tmp_path / "dagster_home"
    home.mkdir(exist_ok=True)
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "sf2pg"), "--config", str(config), *args],
        env={**os.environ, "DAGSTER_HOME": str(home)},
        stdout=subprocess.DEVNULL,
        stderr=stderr,
    )


def _kill_when(child: subprocess.Popen, condition, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    try:
        while not condition():
            assert child.poll() is None, "the loader finished before it could be killed"
            assert time.monotonic() < deadline, "timed out waiting for the moment to kill"
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(30)
    finally:
        child.kill()


def _wait_for_idle_server(world: World) -> None:
    """The killed client's backend notices and rolls back; wait until nothing of it is left running."""
    deadline = time.monotonic() + 60
    query = (
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND state <> 'idle' "
        "AND pid <> pg_backend_pid()"
    )
    while world.pg_query(query) != [(0,)]:
        assert time.monotonic() < deadline, world.pg_query("SELECT query FROM pg_stat_activity")
        time.sleep(0.2)


def _completed(world: World) -> int:
    if world.pg_query("SELECT to_regclass('migration_status.chunk_state') IS NULL") == [(True,)]:
        return 0
    query = "SELECT count(*) FROM migration_status.chunk_state WHERE status = 'completed' AND error IS NULL"
    return world.pg_query(query)[0][0]


def _rerun_ends_exact_and_dagster_agrees_with_the_ledger(world: World, tmp_path: Path, raw: dict) -> None:
    rerun = _sf2pg(tmp_path, raw, "migrate")
    assert rerun.wait(300) == 0
    assert_exact(world)
    # a first load killed while its key was dropped gets the key back, and nothing stays saved
    key = "SELECT conname FROM pg_constraint WHERE conrelid = 'tgt.all_types'::regclass AND contype = 'p'"
    assert world.pg_query(key) == [("all_types_pkey",)]
    assert world.pg_query("SELECT count(*) FROM migration_status.saved_indexes") == [(0,)]
    spec = parse_config(raw).tables()[0]
    with DagsterInstance.from_config(str(tmp_path / "dagster_home")) as instance:
        keys = set(instance.get_dynamic_partitions(partitions_name(spec)))
        materialized = instance.get_materialized_partitions(AssetKey([spec.source_name, spec.pg_table]))
    ledger = {
        r[0] for r in world.pg_query("SELECT chunk_key FROM migration_status.chunk_state WHERE status = 'completed'")
    }
    assert keys == set(materialized) == ledger


def test_killed_between_chunks_the_target_holds_whole_chunks_and_a_rerun_ends_exact(world: World, tmp_path: Path):
    seed_all_types(world, 6000)
    raw = all_types_config(world, "id", rows_per_chunk=200, parallel_threads=1)
    _kill_when(_sf2pg(tmp_path, raw, "migrate"), lambda: _completed(world) >= 3)
    _wait_for_idle_server(world)
    loaded = world.pg_query(
        "SELECT c.chunk_key, c.rows_copied, count(t.id) FROM migration_status.chunk_state c "
        "LEFT JOIN tgt.all_types t ON t.id >= c.lower_bound::bigint AND t.id < c.upper_bound::bigint "
        "WHERE c.status = 'completed' GROUP BY 1, 2"
    )
    assert len(loaded) >= 3 and all(copied == present for _, copied, present in loaded)
    total = world.pg_query("SELECT count(*) FROM tgt.all_types")[0][0]
    assert total == sum(copied for _, copied, _ in loaded) < 6001  # nothing outside the committed chunks
    _rerun_ends_exact_and_dagster_agrees_with_the_ledger(world, tmp_path, raw)


def test_killed_mid_merge_every_chunk_is_all_old_or_all_new_and_a_rerun_ends_exact(world: World, tmp_path: Path):
    table = seed_all_types(world, 3000)
    raw = all_types_config(world, "id", rows_per_chunk=500, parallel_threads=1)
    first = _sf2pg(tmp_path, raw, "migrate")
    assert first.wait(300) == 0
    world.sf_exec(f"UPDATE {table} SET N_INT = -1")  # every chunk merges updates in the next load
    world.pg_query(SLOW_MERGE)
    merging = (
        "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE 'WITH ins AS (INSERT%%' "
        "AND datname = current_database()"
    )
    _kill_when(_sf2pg(tmp_path, raw, "migrate", "--reload"), lambda: world.pg_query(merging)[0][0] > 0)
    _wait_for_idle_server(world)
    world.pg_query("DROP TRIGGER slow_merge ON tgt.all_types")
    per_chunk = world.pg_query(CHUNK_CHANGES)
    assert all(changed in (0, rows) for _, changed, rows in per_chunk), per_chunk
    assert any(changed == 0 for _, changed, _ in per_chunk)  # the kill landed before the end
    _rerun_ends_exact_and_dagster_agrees_with_the_ledger(world, tmp_path, raw)


def test_a_killed_parallel_migrate_resumes_on_a_new_dagster_instance_and_reads_only_missing_chunks(
    world: World, tmp_path: Path
):
    seed_all_types(world, 6000)
    raw = all_types_config(world, "id", rows_per_chunk=200, parallel_threads=3)
    _kill_when(_sf2pg(tmp_path, raw, "migrate"), lambda: _completed(world) >= 6)
    _wait_for_idle_server(world)
    done = "SELECT chunk_key, run_id, completed_at FROM migration_status.chunk_state WHERE status = 'completed'"
    before = {key: (run_id, at) for key, run_id, at in world.pg_query(done)}
    planned = world.pg_query("SELECT count(*) FROM migration_status.chunk_state")[0][0]
    assert 6 <= len(before) < planned  # the ledger holds the whole plan, loaded or not
    shutil.rmtree(tmp_path / "dagster_home")  # Dagster's instance forgets everything

    rerun = _sf2pg(tmp_path, raw, "migrate")
    assert rerun.wait(300) == 0
    assert_exact(world)
    after = {key: (run_id, at) for key, run_id, at in world.pg_query(done)}
    assert len(after) == planned
    assert all(after[key] == before[key] for key in before)  # completed chunks were not read again
    spec = parse_config(raw).tables()[0]
    with DagsterInstance.from_config(str(tmp_path / "dagster_home")) as instance:
        materialized = set(instance.get_materialized_partitions(AssetKey([spec.source_name, spec.pg_table])))
    assert materialized == set(after)  # the new instance shows every chunk the target holds

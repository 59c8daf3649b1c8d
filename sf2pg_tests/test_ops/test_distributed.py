"""The distributed shape, locally: a multi-run backfill under a real dagster-daemon.

dagster-postgres storage shared by this process, the daemon and every run worker; the
QueuedRunCoordinator starting runs up to ``max_concurrent_runs``; each run a separate process
loading its own chunks (``max_partitions_per_run``), several at the same time, up to the source's
pool limit. Both limits bind: there are more runs than the run limit and, at one moment, more runs
than the pool limit. Concurrency is proven from facts the deployment records: run start/end times,
step start/end events and the pids that emitted them, and the ledger's ``run_id`` per chunk.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
import yaml
from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter
from dagster._core.execution.backfill import BulkActionStatus

from sf2pg.config.loading import parse_config
from sf2pg.dagster.assets import asset_key, build_table_asset, pool_name
from sf2pg.dagster.runner import plan_tables
from sf2pg.load.ledger import ensure_ledger
from sf2pg_tests.harness import World, dagster_deployment, running_daemon, source_rows, submit_backfill, target_rows

ROWS = 8000
ROWS_PER_CHUNK = 1000  # -> 8 chunks
PER_RUN = 2  # -> 4 runs
MAX_RUNS = 3  # below the number of runs, so the run queue binds; above the pool limit (2), so the pool binds
COLUMNS = ["ID", "GRP", "PAYLOAD", "AMOUNT", "UPDATED_AT"]


def seed_items(world: World) -> None:
    table = f'"{world.sf_database}"."PUBLIC"."ITEMS"'
    world.sf_exec(
        f"CREATE TABLE {table} (ID NUMBER(18,0), GRP VARCHAR, PAYLOAD VARCHAR, AMOUNT NUMBER(12,2), "
        "UPDATED_AT TIMESTAMP_NTZ)",
        f"INSERT INTO {table} SELECT SEQ4(), 'g' || (SEQ4() % 7), REPEAT('x', 200) || SEQ4(), SEQ4() * 1.25, "
        f"DATEADD(second, SEQ4(), '2024-01-01'::TIMESTAMP_NTZ) FROM TABLE(GENERATOR(ROWCOUNT => {ROWS}))",
    )


@contextmanager
def ledger_held(world: World) -> Iterator[Callable[[], int]]:
    """Hold a SHARE lock on the ledger table until the block ends.

    Every chunk writes its ledger row before it commits, so no load can finish while the lock is
    held: a load that started waits. This widens the loads' time windows so that their overlap does
    not hinge on how fast this machine is; it cannot make loads run at the same time by itself
    (that takes separate runs started together). Yields a function counting the sessions in the
    target database that wait on a lock right now.
    """
    with world.stack.pg(world.pg_database) as conn:
        ensure_ledger(conn)
    with psycopg.connect(dbname=world.pg_database) as conn:
        conn.execute("LOCK TABLE migration_status.chunk_state IN SHARE MODE")
        with world.stack.pg(world.pg_database) as probe:
            yield lambda: probe.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            ).fetchone()[0]
        conn.rollback()


def most_at_once(intervals: list[tuple[float, float]]) -> int:
    """The largest number of intervals open at one instant (an end at t closes before a start at t)."""
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    open_now = peak = 0
    for _, step in edges:
        open_now += step
        peak = max(peak, open_now)
    return peak


def test_a_multi_run_backfill_loads_chunks_in_parallel_run_processes_within_the_limits(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    seed_items(world)
    raw = world.config(
        [
            {
                "source": "ITEMS",
                "chunking_columns": ["ID"],
                "chunking_column_types": ["id"],
                "uniqueness_columns": ["ID"],
                "max_partitions_per_run": PER_RUN,
            }
        ],
        rows_per_chunk=ROWS_PER_CHUNK,
        parallel_threads=1,  # chunks of one run load one after the other: the parallelism is across runs
    )
    with dagster_deployment(world, tmp_path, raw, monkeypatch) as work:
        # The repo's dagster.yaml, with a run limit below the number of runs so that the queue binds.
        instance_yaml = work / "dagster_home" / "dagster.yaml"
        settings = yaml.safe_load(instance_yaml.read_text())
        settings["concurrency"]["runs"]["max_concurrent_runs"] = MAX_RUNS
        instance_yaml.write_text(yaml.safe_dump(settings))

        with DagsterInstance.get() as instance:
            concurrency = instance.get_concurrency_config()
            run_limit = concurrency.run_queue_config.max_concurrent_runs
            pool_limit = concurrency.pool_config.default_pool_limit
            assert (run_limit, pool_limit) == (MAX_RUNS, 2)

            config = parse_config(raw)
            [spec] = config.tables()
            [plan] = plan_tables([spec], instance).values()
            chunk_count = len(plan.chunks)
            assert chunk_count > MAX_RUNS * PER_RUN, chunk_count  # more runs than the run limit
            backfill_id = submit_backfill(instance, config, [asset_key(spec)])
            started = time.monotonic()
            with running_daemon(work) as daemon_log:
                with ledger_held(world) as waiting:
                    # until loads wait in two runs and a third run has started (its load waits for a pool slot)
                    while time.monotonic() < started + 120 and (
                        waiting() < pool_limit
                        or instance.get_runs_count(RunsFilter(statuses=[DagsterRunStatus.STARTED])) < MAX_RUNS
                    ):
                        time.sleep(0.5)
                status = BulkActionStatus.REQUESTED
                while time.monotonic() < started + 240:
                    status = instance.get_backfill(backfill_id).status
                    if status != BulkActionStatus.REQUESTED:
                        break
                    time.sleep(1)
                assert status == BulkActionStatus.COMPLETED_SUCCESS, (status, daemon_log())
            records = instance.get_run_records(RunsFilter(tags={"dagster/backfill": backfill_id}))
            assert all(r.dagster_run.status == DagsterRunStatus.SUCCESS for r in records)
            expected_runs = -(-chunk_count // PER_RUN)
            assert len(records) == expected_runs, [r.dagster_run.tags for r in records]

            # Runs: as many at once as the queue allows, never more.
            runs_at_once = most_at_once([(r.start_time, r.end_time) for r in records])
            assert runs_at_once == run_limit, runs_at_once

            # Loads (the table asset's step in each run): separate processes, overlapping in time.
            step_key = build_table_asset(spec).op.name
            loads, pids, pool_steps = {}, {}, []
            for record in records:
                run_id = record.dagster_run.run_id
                events = instance.all_logs(run_id, of_type={DagsterEventType.STEP_START, DagsterEventType.STEP_SUCCESS})
                begun = {}
                for entry in events:
                    if entry.dagster_event.event_type == DagsterEventType.STEP_START:
                        begun[entry.step_key] = entry.timestamp
                        if entry.step_key == step_key:
                            pids[run_id] = entry.dagster_event.pid
                    else:
                        span = (begun[entry.step_key], entry.timestamp)
                        pool_steps.append(span)  # the asset and its checks all hold a slot of pool_name(spec)
                        if entry.step_key == step_key:
                            loads[run_id] = span
            assert len(loads) == len(records) and len(set(pids.values())) == len(records), (loads, pids)
            # ... as many at once as the source's pool allows, never more, though more runs were running.
            loads_at_once = most_at_once(list(loads.values()))
            assert loads_at_once == pool_limit, loads
            assert most_at_once(pool_steps) == pool_limit, (pool_name(spec), pool_steps)

    # The ledger: every chunk loaded once, by one of the backfill's runs, at most PER_RUN per run.
    ledger = world.pg_query(
        "SELECT chunk_key, status, run_id, attempts FROM migration_status.chunk_state WHERE target_table = 'items'"
    )
    assert len(ledger) == chunk_count
    assert {(status, attempts) for _, status, _, attempts in ledger} == {("completed", 1)}
    per_run = Counter(run_id for _, _, run_id, _ in ledger)
    assert set(per_run) == set(loads) and max(per_run.values()) <= PER_RUN, per_run

    target = [c.lower() for c in COLUMNS]
    assert target_rows(world, "tgt", "items", target) == source_rows(world, "ITEMS", COLUMNS)
    print(
        f"{chunk_count} chunks in {len(records)} runs, {runs_at_once} runs and {loads_at_once} loads at once, "
        f"backfill {time.monotonic() - started:.0f}s"
    )

"""The benchmark's scenarios beyond raw load speed: ``DataFrame.to_sql``, orchestration overhead per
chunk, planning a skewed 5M-row table, and an incremental sync; each against the emulator (or the
embedded server) in the same run as the load-path figures.
"""

from __future__ import annotations

import contextlib
import functools
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from sf2pg.config.loading import parse_config
from sf2pg.config.model import AppConfig

SF_TABLE = '"BENCH_DB"."PUBLIC".{}'


def bench_config(
    database: str,
    schema: str,
    table: str,
    rows_per_chunk: int,
    threads: int = 4,
    chunking: tuple[str, str] = ("ID", "id"),
    batch_size: int = 50_000,
    **extra: Any,
) -> AppConfig:
    """A one-table config against the emulator's ``BENCH_DB.PUBLIC``; ``extra`` keys override the table's."""
    return parse_config(
        {
            "parallel_threads": threads,
            "batch_size": batch_size,
            "rows_per_chunk": rows_per_chunk,
            "sources": [
                {
                    "source_name": "bench",
                    "source_sf_database": "BENCH_DB",
                    "source_sf_schema": "PUBLIC",
                    "target_pg_database": database,
                    "target_pg_schema": schema,
                    "tables": [
                        {
                            "source": table,
                            "chunking_columns": [chunking[0]],
                            "chunking_column_types": [chunking[1]],
                            "uniqueness_columns": ["ID"],
                            **extra,
                        }
                    ],
                }
            ],
        }
    )


def fresh_schema(database: str, schema: str) -> None:
    """Drop a target schema and forget its tables in the ledger (the bench's server persists between runs)."""
    import psycopg

    with psycopg.connect(dbname=database, autocommit=True) as pg:
        pg.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        for table in ("table_state", "chunk_state", "saved_indexes"):
            if pg.execute("SELECT to_regclass(%s)", (f"migration_status.{table}",)).fetchone()[0]:
                pg.execute(f"DELETE FROM migration_status.{table} WHERE target_schema = %s", (schema,))


def seed(
    sf: Any, table: str, rows: int, ts_expr: str = "DATEADD(second, SEQ4(), '2024-01-01'::TIMESTAMP_NTZ)"
) -> float:
    """Create ``BENCH_DB.PUBLIC.<table>`` with ``rows`` generated rows in the emulator; returns seconds."""
    cur = sf.cursor()
    cur.execute('CREATE DATABASE IF NOT EXISTS "BENCH_DB"')
    cur.execute('CREATE SCHEMA IF NOT EXISTS "BENCH_DB"."PUBLIC"')
    t0 = time.perf_counter()
    cur.execute(
        f"CREATE OR REPLACE TABLE {SF_TABLE.format(table)} AS SELECT SEQ4() AS ID, {ts_expr} AS TS, "
        "(SEQ4() % 100000) / 100 AS AMOUNT, 'note ' || (SEQ4() % 997) AS NOTE, SEQ4() * 0.5 AS SCORE, "
        f"SEQ4() % 3 = 0 AS FLAG, {ts_expr} AS UPDATED_AT FROM TABLE(GENERATOR(ROWCOUNT => {rows}))"
    )
    return time.perf_counter() - t0


# ---- 1. DataFrame.to_sql ---------------------------------------------------------------------


def time_to_sql(url: str, data: pa.Table, ddl: str) -> float:
    """pandas ``DataFrame.to_sql`` (SQLAlchemy 2 + psycopg 3, default method, 10,000-row chunks) into a
    pre-created table of the benchmark's shape; the DataFrame is built untimed, as for the CSV contender."""
    import sqlalchemy as sa
    from sqlalchemy.dialects.postgresql import JSONB

    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE IF EXISTS bench.tosql_events")
            conn.exec_driver_sql(ddl.format(t="bench.tosql_events"))
        frame = data.to_pandas()
        frame.columns = [c.lower() for c in frame.columns]
        frame["payload"] = frame["payload"].map(json.loads)  # JSONB binds Python objects (json.dumps, timed)
        # without these, pandas binds numeric and JSON text as VARCHAR, which PostgreSQL refuses
        dtype = {"amount": sa.Numeric(12, 2), "payload": JSONB}
        t0 = time.perf_counter()
        frame.to_sql(
            "tosql_events", engine, schema="bench", if_exists="append", index=False, chunksize=10_000, dtype=dtype
        )
        seconds = time.perf_counter() - t0
        with engine.connect() as conn:
            loaded = conn.exec_driver_sql("SELECT count(*) FROM bench.tosql_events").scalar()
        assert loaded == data.num_rows, (loaded, data.num_rows)
        return seconds
    finally:
        engine.dispose()


# ---- time spent inside the Snowflake connector -------------------------------------------------


class SourceClock:
    """Wall time spent inside the Snowflake connector (login, execute, fetch, close), summed over threads."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.queries = 0
        self._lock = threading.Lock()

    def reset(self) -> None:
        with self._lock:
            self.seconds, self.queries = 0.0, 0

    def add(self, seconds: float, query: bool = False) -> None:
        with self._lock:
            self.seconds += seconds
            self.queries += query


@contextlib.contextmanager
def source_clock() -> Iterator[SourceClock]:
    """Patch the connector's cursor and connection so every call into it is timed (bench process only)."""
    from snowflake.connector.connection import SnowflakeConnection
    from snowflake.connector.cursor import SnowflakeCursor

    clock = SourceClock()
    originals = {
        (SnowflakeCursor, name): getattr(SnowflakeCursor, name)
        for name in ("execute", "fetchone", "fetchall", "fetch_arrow_batches")
    }
    originals.update({(SnowflakeConnection, name): getattr(SnowflakeConnection, name) for name in ("connect", "close")})

    def timed(fn: Any, query: bool) -> Any:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                clock.add(time.perf_counter() - t0, query)

        return wrapper

    def timed_batches(fn: Any) -> Any:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Iterator[Any]:
            t0 = time.perf_counter()
            iterator = iter(fn(*args, **kwargs))
            clock.add(time.perf_counter() - t0)
            while True:
                t0 = time.perf_counter()
                try:
                    item = next(iterator)
                except StopIteration:
                    clock.add(time.perf_counter() - t0)
                    return
                clock.add(time.perf_counter() - t0)
                yield item

        return wrapper

    for (cls, name), fn in originals.items():
        if name == "fetch_arrow_batches":
            setattr(cls, name, timed_batches(fn))
        else:
            setattr(cls, name, timed(fn, name == "execute"))
    try:
        yield clock
    finally:
        for (cls, name), fn in originals.items():
            setattr(cls, name, fn)


# ---- 2. orchestration overhead -----------------------------------------------------------------


def _run_migrate(config: AppConfig) -> dict:
    """``sf2pg migrate`` of the config's one table (1 loader thread), split into its parts."""
    from dagster import DagsterInstance

    # disposed here: a garbage-collected instance closes its SQLite storage from whatever thread
    with DagsterInstance.ephemeral() as instance:
        return _migrate_on(config, instance)


def _migrate_on(config: AppConfig, instance: Any) -> dict:
    import psycopg

    from sf2pg.dagster.runner import migrate

    spec = config.tables()[0]
    fresh_schema(spec.pg_database, spec.pg_schema)
    marks: dict[str, float] = {}
    t0 = time.perf_counter()
    with source_clock() as clock:
        [outcome] = migrate(
            config,
            config.tables(),
            instance,
            on_plan=lambda *_: (marks.setdefault("planned", time.perf_counter()), clock.reset()),
            log_level="WARNING",
        )
        end = time.perf_counter()
    assert outcome.success, outcome.error
    run = instance.get_runs(limit=1)[0]
    steps = {s.step_key: s.end_time - s.start_time for s in instance.get_run_step_stats(run.run_id)}
    checks = sum(v for k, v in steps.items() if "row_count" in k or "chunk_fingerprint" in k)
    with psycopg.connect(dbname=spec.pg_database) as pg:
        chunks, chunk_s, rows = pg.execute(
            "SELECT count(*), sum(duration_seconds), sum(rows_copied) FROM migration_status.chunk_state "
            "WHERE target_schema = %s AND target_table = %s",
            (spec.pg_schema, spec.pg_table),
        ).fetchone()
        target_rows = pg.execute(f"SELECT count(*) FROM {spec.pg_schema}.{spec.pg_table}").fetchone()[0]
    run_s = end - marks["planned"]
    return {
        "plan_s": marks["planned"] - t0,
        "run_s": run_s,
        "chunks": chunks,
        "rows": int(rows),
        "target_rows": target_rows,
        "chunk_loads_s": float(chunk_s),
        "check_steps_s": checks,
        "beyond_data_s": run_s - float(chunk_s) - checks,
        "source_s": clock.seconds,  # inside the Snowflake connector after planning (loads and checks)
        "source_statements": clock.queries,
        "steps_s": steps,
    }


def orchestration(database: str, rows: int, rows_per_chunk: int) -> dict:
    """A single-run backfill of ~rows/rows_per_chunk small chunks, and the same rows in one chunk."""
    from sf2pg.dagster.resources import snowflake_resource

    with snowflake_resource(resolve=True).get_connection() as sf:
        seed(sf, "SMALL_CHUNKS", rows)
    many = _run_migrate(bench_config(database, "orch_many", "SMALL_CHUNKS", rows_per_chunk, threads=1))
    one = _run_migrate(bench_config(database, "orch_one", "SMALL_CHUNKS", 100_000_000, threads=1))
    assert many["target_rows"] == one["target_rows"] == rows, (many, one)
    n = many["chunks"]
    return {
        "many": many,
        "one": one,
        "overhead_ms_per_chunk": 1000 * many["beyond_data_s"] / n,
        # stricter: everything but the Snowflake side and the checks, i.e. including each chunk's own
        # transaction, lock, ledger row and 100-row COPY
        "sf2pg_ms_per_chunk": 1000 * (many["run_s"] - many["source_s"] - many["check_steps_s"]) / n,
        "vs_one_chunk_ms_per_chunk": 1000 * (many["run_s"] - one["run_s"]) / (n - one["chunks"]),
    }


# ---- 3. planning a skewed table ----------------------------------------------------------------


def skewed_planning(rows: int, rows_per_chunk: int) -> dict:
    """Plan a table whose timestamps crowd its first days (day 1 holds ~23% of the rows)."""
    from sf2pg.dagster.resources import snowflake_resource
    from sf2pg.plan.planning import plan_table

    spec = bench_config("bench", "plan", "SKEWED", rows_per_chunk, chunking=("TS", "timestamp")).tables()[0]
    # ts = 2024-01-01 + 365 days * (i/rows)^4: the density falls off steeply after the first day
    skew = f"DATEADD(second, FLOOR(POWER(SEQ4() / {float(rows)}, 4) * 31536000)::INTEGER, '2024-01-01'::TIMESTAMP_NTZ)"
    with snowflake_resource(resolve=True).get_connection() as sf:
        seed_s = seed(sf, "SKEWED", rows, skew)
        densest = (
            sf.cursor()
            .execute(
                f"SELECT COUNT(*) FROM {SF_TABLE.format('SKEWED')} GROUP BY DATE_TRUNC('DAY', TS) ORDER BY 1 DESC LIMIT 1"
            )
            .fetchone()[0]
        )
        from sf2pg.plan.planning import source_columns

        columns = source_columns(sf, spec)
        t0 = time.perf_counter()
        plan = plan_table(
            sf, spec.sf_database, spec.sf_schema, spec.sf_table, columns,
            spec.chunking_column, spec.chunking_type, spec.source_filter, spec.rows_per_chunk,
        )  # fmt: skip
        seconds = time.perf_counter() - t0
    sizes = [c.estimated_rows or 0 for c in plan.chunks]
    assert sum(sizes) == rows, (sum(sizes), rows)
    return {
        "rows": rows,
        "seed_s": seed_s,
        "densest_day_rows": densest,
        "rows_per_chunk": rows_per_chunk,
        "queries": plan.source_queries,
        "seconds": seconds,
        "chunks": len(plan.chunks),
        "largest_chunk_rows": max(sizes),
        "smallest_chunk_rows": min(sizes),
    }


# ---- 4. incremental sync ---------------------------------------------------------------------


def incremental_sync(database: str, rows: int, changed: int) -> dict:
    """Full load of ``rows`` rows, then ``changed`` source rows updated and one ``sf2pg sync`` pass."""
    from dagster import DagsterInstance

    with DagsterInstance.ephemeral() as instance:  # disposed here, as in _run_migrate
        return _sync_on(database, rows, changed, instance)


def _sync_on(database: str, rows: int, changed: int, instance: Any) -> dict:
    import psycopg

    from sf2pg.dagster.resources import snowflake_resource
    from sf2pg.dagster.runner import migrate, sync

    config = bench_config(database, "sync", "SYNC_EVENTS", max(rows // 8, 1000), source_watermark="UPDATED_AT")
    step = rows // changed
    fresh_schema(database, "sync")
    with snowflake_resource(resolve=True).get_connection() as sf:
        seed(sf, "SYNC_EVENTS", rows)
    [loaded] = migrate(config, config.tables(), instance, log_level="WARNING")
    assert loaded.success, loaded.error
    with snowflake_resource(resolve=True).get_connection() as sf:
        cur = sf.cursor()
        cur.execute(
            f"UPDATE {SF_TABLE.format('SYNC_EVENTS')} SET UPDATED_AT = DATEADD(second, ID, '2025-06-01'::TIMESTAMP_NTZ), "
            f"NOTE = 'changed ' || ID WHERE ID % {step} = 0"
        )
    with source_clock() as clock:
        t0 = time.perf_counter()
        [outcome] = sync(config.tables(), instance, log_level="WARNING")
        wall = time.perf_counter() - t0
    assert outcome.success and outcome.window, outcome.note
    run = instance.get_runs(limit=1)[0]
    steps = {s.step_key: s.end_time - s.start_time for s in instance.get_run_step_stats(run.run_id)}
    with psycopg.connect(dbname=database) as pg:
        seen, total = pg.execute(
            "SELECT count(*) FILTER (WHERE note LIKE 'changed %%'), count(*) FROM sync.sync_events"
        ).fetchone()
    assert seen == rows // step and total == rows, (seen, total)
    return {
        "rows": rows,
        "changed": seen,
        "sync_s": wall,
        "source_s": clock.seconds,
        "source_queries": clock.queries,
        "own_s": wall - clock.seconds,
        "steps_s": steps,
        "load_s": outcome.metadata.get("duration_s"),
        "rows_updated": outcome.metadata.get("rows_updated"),
        "rows_inserted": outcome.metadata.get("rows_inserted"),
    }

"""Load a set of chunks of one table: prepare the target, run chunks in parallel, tidy up.

This is the mechanism behind the IO manager and the CLI; it knows nothing of Dagster.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from sf2pg.chunks import Chunk
from sf2pg.config import TableSpec
from sf2pg.errors import InputError
from sf2pg.extract import ChunkSource
from sf2pg.load import indexes, ledger
from sf2pg.load.chunk import ChunkResult, load_chunk
from sf2pg.load.conform import BadDataError, conform
from sf2pg.load.target import TargetSchemaError, TargetTable, prepare_target
from sf2pg.resources import PostgresResource, apply_bulk_session_settings
from sf2pg.typemap import SourceColumn

log = logging.getLogger("sf2pg")


class ChunkLoadError(RuntimeError):
    """One or more chunks failed; the others committed. Names each failed chunk and which side failed."""

    def __init__(self, message: str, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent  # every cause was bad input: retrying cannot help


@dataclass
class TableLoad:
    """What to load: handed from the asset to the IO manager, opened lazily chunk by chunk."""

    spec: TableSpec
    chunks: list[Chunk]
    source_columns: list[SourceColumn]
    source: ChunkSource  # where chunk rows come from (Snowflake, or in-memory for benchmarks)
    full_load: bool = False  # the run covers every partition of the table
    total_chunks: int | None = None  # how many partitions the table has in all (for the ledger)
    confirm_truncate: bool = False
    run_id: str | None = None


@dataclass
class TableLoadSummary:
    """What a load did, for Dagster metadata and the CLI."""

    table: str
    results: list[ChunkResult] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    truncated: bool = False
    indexes_rebuilt: list[str] = field(default_factory=list)
    skipped_source_columns: list[str] = field(default_factory=list)
    unfilled_target_columns: list[str] = field(default_factory=list)
    created_table: bool = False
    index_seconds: float = 0.0
    permanent_failures: int = 0

    @property
    def rows(self) -> int:
        return sum(r.rows_copied for r in self.results)

    @property
    def bytes(self) -> int:
        return sum(r.bytes_copied for r in self.results)

    @property
    def modes(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self.results:
            counts[r.mode] = counts.get(r.mode, 0) + 1
        return counts


def _where(spec: TableSpec, chunk: Chunk | None = None) -> str:
    place = f"table {spec.name} ({spec.config_path})"
    return f"{place}, chunk {chunk.key}" if chunk else place


def _side_of(exc: BaseException) -> str:
    if isinstance(exc, psycopg.Error):
        return "PostgreSQL (target)"
    if isinstance(exc, BadDataError):
        return "bad source data"
    module = type(exc).__module__
    return "Snowflake (source)" if module.startswith("snowflake") else "sf2pg"


class _TargetConnections:
    """One PostgreSQL connection per loader thread, with bulk-load session settings; closed together."""

    def __init__(self, postgres: PostgresResource, database: str) -> None:
        self._postgres, self._database = postgres, database
        self._local = threading.local()
        self._stack = ExitStack()
        self._lock = threading.Lock()

    def get(self) -> psycopg.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.closed or conn.broken:
            with self._lock:
                conn = self._local.conn = self._stack.enter_context(self._postgres.get_connection(self._database))
            apply_bulk_session_settings(conn)
        return conn

    def close(self) -> None:
        self._stack.close()


def load_table(
    job: TableLoad,
    postgres: PostgresResource,
    on_chunk: Callable[[ChunkResult], None] | None = None,
    logger: logging.Logger | Any = log,
) -> TableLoadSummary:
    """Load every chunk of ``job``; raises ``ChunkLoadError`` after the others finish if any failed."""
    spec = job.spec
    summary = TableLoadSummary(spec.name)
    t0 = time.perf_counter()
    source_columns = job.source_columns
    with postgres.get_connection(spec.pg_database) as control:
        ledger.ensure_ledger(control)
        target = prepare_target(
            control,
            spec.pg_schema,
            spec.pg_table,
            source_columns,
            spec.uniqueness_columns,
            spec.chunking_column,
            _where(spec),
        )
        summary.created_table = target.created
        summary.skipped_source_columns = target.skipped_source_columns
        summary.unfilled_target_columns = target.unfilled_target_columns
        loaded = [c.source for c in target.columns]
        with control.transaction():
            source_table = f"{spec.sf_database}.{spec.sf_schema}.{spec.sf_table}"
            known = ledger.owner(control, spec.pg_schema, spec.pg_table)
            if known and known != (spec.source_name, source_table):
                raise TargetSchemaError(
                    f"{_where(spec)}: {spec.pg_database}.{spec.pg_schema}.{spec.pg_table} is already loaded from "
                    f"{known[1]} by source {known[0]!r}; two sources loading one table would overwrite each other's "
                    "chunks (change `target`, or remove the other table's row from migration_status.table_state)"
                )
            ledger.register_table(
                control,
                spec.pg_schema,
                spec.pg_table,
                spec.source_name,
                source_table,
                total_chunks=job.total_chunks,
                pristine=True if target.created else None,
            )
            if target.created:  # a new (or re-created) table holds nothing the ledger may remember
                ledger.forget_chunks(control, spec.pg_schema, spec.pg_table)
        dropped: list[str] = []
        if job.full_load:
            if spec.truncate_onstart and job.confirm_truncate:
                _truncate(control, target, job.run_id)
                summary.truncated = True
                logger.info(f"{spec.name}: truncated before a full load (truncate_onstart, confirmed)")
            dropped = indexes.drop_secondary_indexes(control, spec.pg_schema, spec.pg_table, job.run_id)
            if dropped:
                logger.info(f"{spec.name}: dropped {len(dropped)} secondary index(es) for the load: {dropped}")
        try:
            _load_chunks(job, postgres, target, loaded, summary, on_chunk, logger)
        finally:
            if dropped:
                t_index = time.perf_counter()
                summary.indexes_rebuilt = indexes.restore_indexes(control, spec.pg_schema, spec.pg_table)
                summary.index_seconds = time.perf_counter() - t_index
            if job.full_load and summary.results:
                control.execute(sql.SQL("ANALYZE {}").format(target.ident))
    summary.seconds = time.perf_counter() - t0
    if summary.failures:
        listed = "; ".join(f"{key}: {err}" for key, err in list(summary.failures.items())[:5])
        raise ChunkLoadError(
            f"{len(summary.failures)} of {len(job.chunks)} chunk(s) of {spec.name} failed "
            f"(the other chunks committed; re-run the failed partitions): {listed}",
            permanent=summary.permanent_failures == len(summary.failures),
        )
    return summary


def _truncate(conn: psycopg.Connection, target: TargetTable, run_id: str | None) -> None:
    with conn.transaction():
        conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"sf2pg:{target.schema}.{target.table}",)
        )
        conn.execute(sql.SQL("TRUNCATE {}").format(target.ident))
        ledger.record_truncation(conn, target.schema, target.table, run_id)


def _load_chunks(
    job: TableLoad,
    postgres: PostgresResource,
    target: TargetTable,
    loaded: list[SourceColumn],
    summary: TableLoadSummary,
    on_chunk: Callable[[ChunkResult], None] | None,
    logger: Any,
) -> None:
    spec = job.spec
    connections = _TargetConnections(postgres, spec.pg_database)

    def run(chunk: Chunk) -> ChunkResult:
        try:
            return load_chunk(
                connections.get(),
                target,
                chunk,
                lambda: conform(
                    job.source.open(chunk, loaded), target, spec.batch_size, spec.nul_bytes, _where(spec, chunk)
                ),
                insert_only=spec.insert_only_mode,
                run_id=job.run_id,
                source_query=job.source.query_text(chunk, loaded),
            )
        except Exception as exc:
            message = f"{_side_of(exc)} failed: {exc}".strip()
            _note_failure(postgres, spec, chunk, message, job.run_id)
            raise ChunkLoadError(message, permanent=isinstance(exc, InputError)) from exc

    workers = max(1, min(spec.parallel_threads, len(job.chunks)))
    try:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sf2pg-chunk") as pool:
            futures = {pool.submit(run, chunk): chunk for chunk in job.chunks}
            for future in as_completed(futures):
                chunk = futures[future]
                try:
                    result = future.result()
                except ChunkLoadError as exc:
                    summary.failures[chunk.key] = str(exc)
                    summary.permanent_failures += exc.permanent
                    logger.error(f"{spec.name} chunk {chunk.key}: {exc}")
                    continue
                summary.results.append(result)
                logger.info(
                    f"{spec.name} chunk {chunk.key}: {result.mode}, {result.rows_copied} rows in {result.seconds:.2f}s"
                )
                if on_chunk:
                    on_chunk(result)
    finally:
        connections.close()
        job.source.close()


def _note_failure(postgres: PostgresResource, spec: TableSpec, chunk: Chunk, message: str, run_id: str | None) -> None:
    try:
        with postgres.get_connection(spec.pg_database) as conn:
            ledger.record_failure(conn, spec.pg_schema, spec.pg_table, chunk.key, message, run_id)
    except psycopg.Error:
        log.warning(f"{spec.name} chunk {chunk.key}: could not record the failure in the ledger")

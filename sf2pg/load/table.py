"""Load a set of chunks of one table: prepare the target, run chunks in parallel, tidy up.

This is the mechanism behind the IO manager and the CLI; it knows nothing of Dagster.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pyarrow as pa
from psycopg import sql

from sf2pg.chunks import Chunk
from sf2pg.config import TableSpec
from sf2pg.errors import InputError
from sf2pg.extract import ChunkSource
from sf2pg.load import indexes, keys, ledger, locks
from sf2pg.load.chunk import ChunkResult, load_chunk
from sf2pg.load.conform import BadDataError, conform
from sf2pg.load.target import TargetSchemaError, TargetTable, prepare_target
from sf2pg.resources import PostgresResource, apply_bulk_session_settings
from sf2pg.typemap import SourceColumn

log = logging.getLogger("sf2pg")


class ChunkInterrupted(RuntimeError):
    """The run was interrupted while this chunk loaded; its transaction rolled back."""


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
    table_chunks: tuple[int, int] = (0, 0)  # (loaded, failed) chunks of the whole table after this load

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
    module = type(exc).__module__
    return "Snowflake (source)" if module.startswith("snowflake") else "sf2pg"


class _TargetConnections:
    """One PostgreSQL connection per loader thread, with bulk-load session settings; closed together."""

    def __init__(self, postgres: PostgresResource, database: str) -> None:
        self._postgres, self._database = postgres, database
        self._local = threading.local()
        self._stack = ExitStack()
        self._lock = threading.Lock()
        self._all: list[psycopg.Connection] = []

    def get(self) -> psycopg.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.closed or conn.broken:
            with self._lock:
                conn = self._local.conn = self._stack.enter_context(self._postgres.get_connection(self._database))
                self._all.append(conn)
            apply_bulk_session_settings(conn)
        return conn

    def cancel_all(self) -> None:
        """Ask the server to cancel whatever each connection is running (from another thread)."""
        for conn in list(self._all):
            if not conn.closed:
                with contextlib.suppress(Exception):  # one that cannot be reached rolls back on its own
                    conn.cancel_safe(timeout=5)

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
        if job.full_load:
            if spec.truncate_onstart and job.confirm_truncate:
                _truncate(control, target, job.run_id)
                summary.truncated = True
                logger.info(f"{spec.name}: truncated before a full load (truncate_onstart, confirmed)")
            elif spec.truncate_onstart:
                logger.warning(
                    f"{spec.name}: truncate_onstart is set but this run did not confirm it (--confirm-truncate, "
                    "or run config confirm_truncate): merging chunk by chunk instead of truncating"
                )
        with _indexes_away_for_the_load(control, job, target, summary, logger):
            _load_chunks(job, postgres, target, loaded, summary, on_chunk, logger)
        if job.full_load and summary.results:
            control.execute(sql.SQL("ANALYZE {}").format(target.ident))
        summary.table_chunks = ledger.chunk_counts(control, spec.pg_schema, spec.pg_table)
    summary.seconds = time.perf_counter() - t0
    if summary.failures:
        listed = "; ".join(f"{key}: {err}" for key, err in list(summary.failures.items())[:5])
        raise ChunkLoadError(
            f"{len(summary.failures)} of {len(job.chunks)} chunk(s) of {spec.name} failed "
            f"(the other chunks committed; re-run the failed partitions): {listed}",
            permanent=summary.permanent_failures == len(summary.failures),
        )
    return summary


@contextlib.contextmanager
def _indexes_away_for_the_load(
    control: psycopg.Connection, job: TableLoad, target: TargetTable, summary: TableLoadSummary, logger: Any
) -> Iterator[None]:
    """A full load drops the secondary indexes (and a first load the primary key) and rebuilds them after.

    First, a key an interrupted first load left dropped is rebuilt, before anything merges. One load at
    a time holds a table's indexes away (a session lock on ``control``), so a concurrent load neither
    drops them too nor "repairs" a first load that is still running.
    """
    spec, schema, table = job.spec, target.schema, target.table
    key_away = indexes.saved_key(control, schema, table)
    owner = (key_away or job.full_load) and indexes.lock_indexes(control, schema, table)
    try:
        if key_away and not owner:
            raise ChunkLoadError(
                f"{_where(spec)}: another load of this table is running its first load, and the table's primary "
                "key is away until that load ends; this load would need it to merge by key. Retry once it has finished"
            )
        if key_away:
            rebuilt, emptied = keys.rebuild(control, target, spec.chunking_type, job.run_id)
            logger.warning(f"{spec.name}: rebuilt {rebuilt}, left dropped by an interrupted first load")
            for key, why in emptied.items():
                logger.warning(f"{spec.name} chunk {key}: {why}")
        dropped: list[str] = []
        if job.full_load and owner:
            first_load = keys.can_defer(control, target) and not any(c.is_incremental for c in job.chunks)
            dropped = indexes.drop_secondary_indexes(control, schema, table, job.run_id, primary_key=first_load)
            if dropped:
                logger.info(f"{spec.name}: dropped {len(dropped)} index(es) until the load ends: {dropped}")
        elif job.full_load:
            logger.info(f"{spec.name}: another full load of this table holds its indexes away: they stay as they are")
        try:
            yield
        finally:
            if dropped:
                t_index = time.perf_counter()
                summary.indexes_rebuilt, emptied = keys.rebuild(control, target, spec.chunking_type, job.run_id)
                summary.index_seconds = time.perf_counter() - t_index
                summary.failures.update(emptied)
                summary.results = [r for r in summary.results if r.key not in emptied]
    finally:
        if owner:
            indexes.unlock_indexes(control, schema, table)


def _truncate(conn: psycopg.Connection, target: TargetTable, run_id: str | None) -> None:
    with conn.transaction():
        locks.xact_lock(conn, locks.table_key(target.schema, target.table))
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
    stop = threading.Event()  # set when the run is interrupted: in-flight chunks roll back, queued ones never start

    def batches(chunk: Chunk, batch_size: int) -> Iterator[pa.RecordBatch]:
        source = ahead.take(chunk)  # opened ahead while an earlier chunk loaded, or opened now
        try:
            stream = conform(source, target, batch_size, spec.nul_bytes, _where(spec, chunk))
            for n, batch in enumerate(stream):
                if stop.is_set():
                    raise ChunkInterrupted("stopped between batches")
                if n == 0:  # this chunk's rows are flowing: start the next chunk's query meanwhile
                    ahead.open_next()
                yield batch
        finally:
            _close(source)

    def run(chunk: Chunk) -> ChunkResult:
        try:
            return attempt(chunk)
        finally:
            ahead.discard(chunk)

    def attempt(chunk: Chunk) -> ChunkResult:
        batch_size, notes = spec.batch_size, []
        while True:
            try:
                if stop.is_set():
                    raise ChunkInterrupted("stopped before the chunk started")
                return load_chunk(
                    connections.get(),
                    target,
                    chunk,
                    functools.partial(batches, chunk, batch_size),
                    insert_only=spec.insert_only_mode,
                    run_id=job.run_id,
                    source_query=job.source.query_text(chunk, loaded),
                    fallback="; ".join(notes) or None,
                )
            except Exception as exc:
                smaller = _smaller_batches(batch_size, len(notes))
                if smaller and _is_resource_error(exc) and not stop.is_set():
                    note = f"{type(exc).__name__} with batches of {batch_size} rows: retried with {smaller}"
                    logger.warning(f"{spec.name} chunk {chunk.key}: {note} ({exc})")
                    batch_size = smaller
                    notes.append(note)
                    continue
                message = _failure_message(exc, stop.is_set(), batch_size, len(notes))
                _note_failure(postgres, spec, chunk, message, job.run_id)
                raise ChunkLoadError(message, permanent=isinstance(exc, InputError)) from exc

    workers = max(1, min(spec.parallel_threads, len(job.chunks)))
    ahead = _ReadAhead(job.source, job.chunks, loaded, READ_AHEAD * workers)
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sf2pg-chunk")
    try:
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
                + (f" (fallback: {result.fallback})" if result.fallback else "")
            )
            if on_chunk:
                on_chunk(result)
    except BaseException:  # interrupted (Dagster run termination, Ctrl-C): nothing half-written may stay
        stop.set()
        pool.shutdown(wait=False, cancel_futures=True)
        connections.cancel_all()  # statements in flight on the server stop now; their transactions roll back
        logger.warning(f"{spec.name}: interrupted; in-flight chunks rolled back, queued chunks not started")
        raise
    finally:
        pool.shutdown(wait=True)
        ahead.close()
        connections.close()
        job.source.close()


def _failure_message(exc: Exception, interrupted: bool, batch_size: int, tiers_taken: int) -> str:
    """What failed, for the ledger and the run's error: which side, or why no side is to blame."""
    if isinstance(exc, BadDataError):
        return f"bad source data: {exc}"
    if interrupted:
        return f"interrupted: the run was stopped and the chunk rolled back ({exc})"
    if _is_resource_error(exc):
        return (
            f"{_side_of(exc)} ran out of memory or size: {type(exc).__name__}: {exc} (batches of {batch_size} "
            f"rows, after {tiers_taken} smaller tier(s); lower rows_per_chunk or batch_size)"
        )
    return f"{_side_of(exc)} failed: {exc}".strip()


def _close(stream: object) -> None:
    close = getattr(stream, "close", None)
    if close:
        close()


class _ReadAhead:
    """Opens the next chunk's source stream while earlier chunks load, so its query overlaps their COPY.

    Each chunk whose rows have started flowing opens at most the next one, and at most ``limit`` opened
    streams wait unread at a time, so memory holds the loading chunks' prefetched batches plus those of
    ``limit`` waiting streams. Chunks are opened ahead in ``chunks`` order (the pool's submission order).
    """

    def __init__(self, source: ChunkSource, chunks: list[Chunk], columns: list[SourceColumn], limit: int) -> None:
        self._source, self._columns, self.limit = source, columns, limit
        self._order, self._next = chunks, 0
        self._started: set[str] = set()
        self._opened: dict[str, Iterator[pa.Table | pa.RecordBatch]] = {}
        self._lock = threading.Lock()
        self._closed = False

    def take(self, chunk: Chunk) -> Iterator[pa.Table | pa.RecordBatch]:
        """The chunk's stream opened ahead, else a fresh one (a retry always re-reads afresh)."""
        with self._lock:
            self._started.add(chunk.key)
            stream = self._opened.pop(chunk.key, None)
        return stream if stream is not None else self._source.open(chunk, self._columns)

    def open_next(self) -> None:
        with self._lock:
            while self._next < len(self._order) and self._order[self._next].key in self._started:
                self._next += 1
            if self._closed or self._next >= len(self._order) or len(self._opened) >= self.limit:
                return
            chunk = self._order[self._next]
            self._started.add(chunk.key)
            # under the lock: open() only starts a background reader, it does not wait for rows
            self._opened[chunk.key] = self._source.open(chunk, self._columns)

    def discard(self, chunk: Chunk) -> None:
        """Close the chunk's stream if it was opened ahead but never read (the chunk failed or stopped first)."""
        with self._lock:
            stream = self._opened.pop(chunk.key, None)
        _close(stream)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            opened, self._opened = list(self._opened.values()), {}
        for stream in opened:
            _close(stream)


# Chunk streams opened ahead per loader thread (see _ReadAhead): one lets every loader's next chunk
# query start as soon as a query slot frees up (the Snowflake source runs at most parallel_threads at
# once), during the current chunk's COPY; memory then holds at most twice the loaders' streams.
READ_AHEAD = 1

_RESOURCE_ERRORS = (
    MemoryError,
    pa.ArrowMemoryError,
    pa.ArrowCapacityError,
    psycopg.errors.OutOfMemory,
    psycopg.errors.ProgramLimitExceeded,
)
_MIN_BATCH_ROWS = 1024
_BATCH_TIERS = 2


def _is_resource_error(exc: BaseException) -> bool:
    """Memory or size trouble that smaller batches can cure (anywhere in the cause chain)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:  # a context chain can loop back on itself
        if isinstance(exc, _RESOURCE_ERRORS):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def _smaller_batches(batch_size: int, tiers_taken: int) -> int | None:
    """The next, eight times smaller, batch size; ``None`` once the tiers or the floor are used up."""
    if tiers_taken >= _BATCH_TIERS or batch_size <= _MIN_BATCH_ROWS:
        return None
    return max(batch_size // 8, _MIN_BATCH_ROWS)


def _note_failure(postgres: PostgresResource, spec: TableSpec, chunk: Chunk, message: str, run_id: str | None) -> None:
    try:
        with postgres.get_connection(spec.pg_database) as conn:
            ledger.record_failure(conn, spec.pg_schema, spec.pg_table, chunk.key, message, run_id)
    except psycopg.Error:
        log.warning(f"{spec.name} chunk {chunk.key}: could not record the failure in the ledger")

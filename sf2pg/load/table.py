"""Load a set of chunks of one table: prepare the target, run chunks in parallel, tidy up.

A run may also carry an incremental window (a sync): it loads first, then any of the run's chunks not
loaded yet, then delete detection when the table asks for it. This is the mechanism behind the IO
manager and the CLI; it knows nothing of Dagster.

Why one module: load_table's steps (prepare, window, chunks in parallel, tidy up) share one run's state; the lease and the read-ahead are in ``read_ahead``.
"""

from __future__ import annotations

import contextlib
import dataclasses
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

from sf2pg.config.model import TableSpec
from sf2pg.config.typemap import SourceColumn
from sf2pg.errors import InputError
from sf2pg.load import deletes, indexes, keys, ledger, locks
from sf2pg.load.chunk import ChunkResult, load_chunk, load_window
from sf2pg.load.conform import BadDataError, conform
from sf2pg.load.postgres import Connects, apply_bulk_session_settings
from sf2pg.load.read_ahead import ChunkInterrupted, ReadAhead, TableLease, close_stream
from sf2pg.load.target import ColumnRules, TargetSchemaError, TargetTable, prepare_target
from sf2pg.plan.chunks import Chunk, parse_watermark, watermark_text
from sf2pg.plan.incremental import Window
from sf2pg.source.extract import ChunkSource

log = logging.getLogger("sf2pg")


class ChunkLoadError(RuntimeError):
    """One or more chunks failed; the others committed. Names each failed chunk and which side failed."""

    def __init__(self, message: str, permanent: bool = False, summary: TableLoadSummary | None = None) -> None:
        super().__init__(message)
        self.permanent = permanent  # every cause was bad input: retrying cannot help
        self.summary = summary  # what committed before the failure (the caller reports those chunks)


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
    window: Window | None = None  # a sync run: this window loads first, then the run's chunks not loaded yet
    start_watermark: str | None = None  # the source's maximum watermark, read before anything else
    start_rows: int | None = None  # the source's row count read with it
    start_recent_hash: int | None = None  # and its recent-rows hash (``sf2pg.plan.incremental.recent_rows_hash``)
    table_chunks: list[Chunk] = field(default_factory=list)  # every chunk of the table (for delete detection)


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
    window: ChunkResult | None = None  # the sync window's own numbers
    kept: list[str] = field(default_factory=list)  # chunks of the run left as they were (already loaded)
    rows_deleted_missing: int = 0  # rows delete detection removed
    schema_changes: list[str] = field(default_factory=list)  # what the source's column changes did to the target
    target_columns: list[tuple[str, str, str]] = field(default_factory=list)  # (column, PostgreSQL type, source)

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


def _refuses_for_good(exc: psycopg.Error) -> bool:
    """A refusal of the target's DDL that no retry changes: SQLSTATE class 42 (a name that is not a
    table, a column repeated, a permission missing) or 0A (a feature PostgreSQL lacks)."""
    return (exc.sqlstate or "")[:2] in ("42", "0A")


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

    def __init__(self, postgres: Connects, database: str) -> None:
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
    postgres: Connects,
    on_chunk: Callable[[ChunkResult], None] | None = None,
    logger: logging.Logger | Any = log,
) -> TableLoadSummary:
    """Load every chunk of ``job``; raises ``ChunkLoadError`` after the others finish if any failed."""
    spec = job.spec
    summary = TableLoadSummary(spec.name)
    t0 = time.perf_counter()
    source_columns = job.source_columns
    with contextlib.closing(job.source), postgres.get_connection(spec.pg_database) as control:
        source_table = f"{spec.sf_database}.{spec.sf_schema}.{spec.sf_table}"
        ledger.claim_table(control, spec.pg_schema, spec.pg_table, spec.source_name, source_table, _where(spec))
        try:
            target = prepare_target(
                control,
                spec.pg_schema,
                spec.pg_table,
                source_columns,
                spec.uniqueness_columns,
                spec.chunking_column,
                _where(spec),
                spec.source_watermark,
                rules=ColumnRules.of(spec),
                run_id=job.run_id,
            )
        except psycopg.Error as exc:
            if not _refuses_for_good(exc):
                raise
            raise TargetSchemaError(
                f"{_where(spec)}: PostgreSQL refuses the target table: {type(exc).__name__}: {exc}"
            ) from None
        summary.schema_changes = [str(c) for c in target.changes]
        for change in target.changes:
            (logger.info if change.applied else logger.warning)(f"{spec.name}: schema: {change}")
        summary.target_columns = [
            (c.target, target.pg_types.get(c.target, c.load_type.pg_type), c.source.name) for c in target.columns
        ]
        summary.created_table = target.created
        summary.skipped_source_columns = target.skipped_source_columns
        summary.unfilled_target_columns = target.unfilled_target_columns
        loaded = [c.source for c in target.columns]
        with control.transaction():
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
                ledger.reset_chunks(control, spec.pg_schema, spec.pg_table)
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
        chunks = _chunks_to_load(control, job, summary)
        if job.start_watermark is not None and chunks:
            _settle_before_reading(control, job, target)
        if job.window is not None:
            _load_the_window(job, postgres, target, loaded, summary, logger)
        job = dataclasses.replace(job, chunks=chunks)
        with _indexes_away_for_the_load(control, job, target, summary, logger):
            _load_chunks(job, postgres, target, loaded, summary, on_chunk, logger)
        if job.full_load and summary.results:
            control.execute(sql.SQL("ANALYZE {}").format(target.ident))
        if job.window is not None and spec.delete_detection == "keys" and not summary.failures:
            try:
                summary.rows_deleted_missing = deletes.detect_deletes(
                    control, target, job.table_chunks, job.source, spec, _where(spec)
                )
            except deletes.DeleteGuardError as exc:
                summary.failures["delete detection"] = str(exc)
                summary.permanent_failures += 1
        summary.table_chunks = ledger.chunk_counts(control, spec.pg_schema, spec.pg_table)
    summary.seconds = time.perf_counter() - t0
    if summary.failures:
        raise ChunkLoadError(
            _failures_message(job, summary),
            permanent=summary.permanent_failures == len(summary.failures),
            summary=summary,
        )
    return summary


def _failures_message(job: TableLoad, summary: TableLoadSummary) -> str:
    if list(summary.failures) == ["delete detection"]:  # everything loaded; the guard refused
        return summary.failures["delete detection"]
    listed = "; ".join(
        f"{key if ' ' in key else 'chunk ' + key}: {err}" for key, err in list(summary.failures.items())[:5]
    )
    return (
        f"{len(summary.failures)} of {len(job.chunks) + (job.window is not None)} chunk(s) of {job.spec.name} "
        f"failed (the other chunks committed; re-run the failed partitions): {listed}"
    )


def _chunks_to_load(control: psycopg.Connection, job: TableLoad, summary: TableLoadSummary) -> list[Chunk]:
    """The run's chunks, less those this run already committed (a retry of its step) and, in a sync run,
    those loaded before (the window keeps them current)."""
    done = ledger.completed_by_run(control, job.spec.pg_schema, job.spec.pg_table, job.run_id) if job.run_id else set()
    if job.window is not None:
        states = ledger.chunk_states(control, job.spec.pg_schema, job.spec.pg_table)
        done |= {c.key for c in job.chunks if states.get(c.key) == "completed"}
    summary.kept = [c.key for c in job.chunks if c.key in done]
    return [c for c in job.chunks if c.key not in done and not c.is_incremental]


def _settle_before_reading(control: psycopg.Connection, job: TableLoad, target: TargetTable) -> None:
    """Before the first chunk reads Snowflake: the settled watermark may not be above what the source
    held when the chunks were planned (rows written since may lie beyond every chunk) nor above what
    it holds now, so the first sync after this load starts where the load's view of the table began."""
    spec = job.spec
    floor = None
    if ledger.settled_watermark(control, spec.pg_schema, spec.pg_table) is None and ledger.loaded_keys(
        control, spec.pg_schema, spec.pg_table
    ):
        from sf2pg.plan.incremental import legacy_floor  # a table loaded by sf2pg before 0.2

        value = legacy_floor(control, spec, target.watermark_column.source) if target.watermark_column else None
        floor = None if value is None else watermark_text(value)
    read_from = job.start_watermark
    planned = ledger.planned_watermark(control, spec.pg_schema, spec.pg_table)
    if planned is not None and parse_watermark(planned) < parse_watermark(read_from):  # type: ignore[arg-type]
        read_from = planned  # rows written after the plan may lie beyond every chunk of this load
    ledger.start_load(
        control,
        spec.pg_schema,
        spec.pg_table,
        read_from,  # type: ignore[arg-type]
        job.start_rows,
        floor,
        job.start_recent_hash if read_from == job.start_watermark else None,
    )


def _load_the_window(
    job: TableLoad,
    postgres: Connects,
    target: TargetTable,
    loaded: list[SourceColumn],
    summary: TableLoadSummary,
    logger: Any,
) -> None:
    """The sync window, in its own transaction (``load_window``); a failure is the run's failure."""
    spec, window = job.spec, job.window
    assert window is not None
    chunk = window.as_chunk()
    where = _where(spec, chunk)
    try:
        with postgres.get_connection(spec.pg_database) as conn:
            apply_bulk_session_settings(conn)
            summary.window = load_window(
                conn,
                target,
                chunk,
                lambda: conform(job.source.open(chunk, loaded), target, spec.batch_size, spec.nul_bytes, where),
                low=watermark_text(window.low),
                source_rows=window.source_rows,
                recent_hash=window.recent_hash,
                insert_only=spec.insert_only_mode,
                run_id=job.run_id,
            )
    except Exception as exc:
        message = _failure_message(exc, False, spec.batch_size, 0)
        summary.failures[chunk.key] = message
        summary.permanent_failures += _is_permanent(exc)
        logger.error(f"{spec.name} window {chunk.key}: {message}")
        return
    w = summary.window
    logger.info(
        f"{spec.name} window {watermark_text(window.read_from)} .. {watermark_text(window.high)}: "
        f"{w.rows_copied} rows read, {w.rows_inserted} inserted, {w.rows_updated} updated in {w.seconds:.2f}s"
    )


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
            repaired = keys.rebuild(control, target, spec.chunking_type, job.run_id)
            logger.warning(f"{spec.name}: rebuilt {repaired.names}, left dropped by an interrupted first load")
            for key, why in repaired.failed.items():
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
                rebuilt = keys.rebuild(control, target, spec.chunking_type, job.run_id)
                summary.indexes_rebuilt = rebuilt.names
                summary.index_seconds = time.perf_counter() - t_index
                summary.failures.update(rebuilt.failed)
                summary.permanent_failures += len(rebuilt.permanent)
                summary.results = [r for r in summary.results if r.key not in rebuilt.failed]
    finally:
        if owner:
            indexes.unlock_indexes(control, schema, table)


def _truncate(conn: psycopg.Connection, target: TargetTable, run_id: str | None) -> None:
    with conn.transaction():
        locks.xact_lock(conn, locks.table_key(target.schema, target.table))
        locks.hold_lease_exclusive(conn, target.schema, target.table)  # no window is between read and commit
        conn.execute(sql.SQL("TRUNCATE {}").format(target.ident))
        ledger.record_truncation(conn, target.schema, target.table, run_id)


def _load_chunks(
    job: TableLoad,
    postgres: Connects,
    target: TargetTable,
    loaded: list[SourceColumn],
    summary: TableLoadSummary,
    on_chunk: Callable[[ChunkResult], None] | None,
    logger: Any,
) -> None:
    spec = job.spec
    if not job.chunks:
        return
    connections = _TargetConnections(postgres, spec.pg_database)
    lease = TableLease(postgres, spec.pg_database, target.schema, target.table)
    stop = threading.Event()  # set when the run is interrupted: in-flight chunks roll back, queued ones never start

    def batches(chunk: Chunk, batch_size: int) -> Iterator[pa.RecordBatch]:
        source = ahead.take(chunk, stop)  # opened ahead while an earlier chunk loaded, or opened now
        try:
            stream = conform(source, target, batch_size, spec.nul_bytes, _where(spec, chunk))
            for n, batch in enumerate(stream):
                if stop.is_set():
                    raise ChunkInterrupted("stopped between batches")
                if n == 0:  # this chunk's rows are flowing: start the next chunk's query meanwhile
                    ahead.open_next()
                yield batch
        finally:
            close_stream(source)

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
                conn = connections.get()
                if not notes:
                    ledger.mark_running(conn, spec.pg_schema, spec.pg_table, chunk.key, job.run_id)
                return load_chunk(
                    conn,
                    target,
                    chunk,
                    functools.partial(batches, chunk, batch_size),
                    insert_only=spec.insert_only_mode,
                    run_id=job.run_id,
                    source_query=job.source.query_text(chunk, loaded),
                    fallback="; ".join(notes) or None,
                    read_watermark=job.start_watermark,
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
                raise ChunkLoadError(message, permanent=_is_permanent(exc)) from exc

    workers = max(1, min(spec.parallel_threads, len(job.chunks)))
    ahead = ReadAhead(job.source, job.chunks, loaded, READ_AHEAD * workers, lease)
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
        lease.close()
        connections.close()


def _is_permanent(exc: BaseException) -> bool:
    """A failure no retry can fix: bad input (config, schema, data), or a value PostgreSQL refuses
    (class 22: data exceptions such as jsonb's ``\\u0000``, a numeric overflow; class 23: constraints)."""
    if isinstance(exc, InputError):
        return True
    if isinstance(exc, psycopg.errors.DataError | psycopg.errors.IntegrityError):
        return True
    cause = exc.__cause__ or exc.__context__
    return isinstance(cause, psycopg.errors.DataError | psycopg.errors.IntegrityError)


def _failure_message(exc: Exception, interrupted: bool, batch_size: int, tiers_taken: int) -> str:
    """What failed, for the ledger and the run's error: which side, or why no side is to blame."""
    if isinstance(exc, BadDataError):
        return f"bad source data: {exc}"
    if isinstance(exc, psycopg.errors.DataError | psycopg.errors.IntegrityError) and not interrupted:
        where = f" ({exc.diag.context.strip()})" if exc.diag.context else ""
        column = f" in column {exc.diag.column_name!r}" if exc.diag.column_name else ""
        return f"PostgreSQL (target) refused a value{column}: {exc.diag.message_primary or exc}{where}"
    if isinstance(exc, InputError) and not interrupted:
        return f"bad input: {exc}"
    if interrupted:
        return f"interrupted: the run was stopped and the chunk rolled back ({exc})"
    if _is_resource_error(exc):
        return (
            f"{_side_of(exc)} ran out of memory or size: {type(exc).__name__}: {exc} (batches of {batch_size} "
            f"rows, after {tiers_taken} smaller tier(s); lower rows_per_chunk or batch_size)"
        )
    return f"{_side_of(exc)} failed: {exc}".strip()


# Chunk streams opened ahead per loader thread (see ReadAhead): one lets every loader's next chunk
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


def _note_failure(postgres: Connects, spec: TableSpec, chunk: Chunk, message: str, run_id: str | None) -> None:
    try:
        with postgres.get_connection(spec.pg_database) as conn:
            ledger.record_failure(conn, spec.pg_schema, spec.pg_table, chunk.key, message, run_id)
    except psycopg.Error:
        log.warning(f"{spec.name} chunk {chunk.key}: could not record the failure in the ledger")

"""A chunk's rows from Snowflake: its query run and its Arrow batches streamed, converted ahead of the
reader on a thread of their own (``Prefetched``), over the run's sessions. The SQL is built in
``sf2pg.source.statements``."""

from __future__ import annotations

import functools
import queue
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack
from typing import Any, Protocol

import pyarrow as pa

from sf2pg.config.typemap import SourceColumn
from sf2pg.errors import InputError
from sf2pg.plan.chunks import Chunk
from sf2pg.source.snowflake_connection import end_quietly, end_together
from sf2pg.source.snowflake_session import query_tag
from sf2pg.source.statements import chunk_query

# Result chunks a stream holds converted, ahead of its reader. An item is one whole Snowflake result chunk
# (tens of MB late in a large result), not a batch_size batch: see docs/OPTIMIZATION.md, 'Memory'.
STREAM_READ_AHEAD = 2
STATEMENT_TIMED_OUT = 630  # Snowflake's error for a statement cancelled at STATEMENT_TIMEOUT_IN_SECONDS


class StatementTimeoutError(InputError):
    """Snowflake cancelled a query at its statement timeout: the same query would run as long again, so it
    is not retried."""


def stream_query(
    conn: Any,
    query: str,
    executed: Callable[[], None] | None = None,
    statement_params: Mapping[str, Any] | None = None,
) -> Iterator[pa.Table]:
    """Arrow tables from ``fetch_arrow_batches``; the cursor closes when the stream ends or is closed.

    ``executed`` is called once the query has run, before its results are fetched. ``statement_params``
    (e.g. its ``QUERY_TAG``) travel with the query and apply to it alone. No client-side timeout: a
    long query is bounded by the session's ``STATEMENT_TIMEOUT_IN_SECONDS``, on the server."""
    from snowflake.connector.errors import ProgrammingError  # loaded already: ``conn`` is the connector's

    cur = conn.cursor()
    try:
        try:
            if statement_params:
                cur.execute(query, _statement_params=dict(statement_params))
            else:
                cur.execute(query)
        except ProgrammingError as exc:
            if exc.errno != STATEMENT_TIMED_OUT:
                raise
            raise StatementTimeoutError(
                f"Snowflake cancelled the query at its statement timeout ({exc.raw_msg}); not retried, as it would "
                "run as long again: raise SNOWFLAKE_STATEMENT_TIMEOUT_IN_SECONDS (a lower STATEMENT_TIMEOUT_IN_SECONDS "
                "on the warehouse, user or account also applies) or lower rows_per_chunk"
            ) from exc
        if executed:
            executed()
        yield from cur.fetch_arrow_batches()
    finally:
        cur.close()


_DONE = object()


class Prefetched(Iterator[Any]):
    """Runs ``source`` in a background thread, ``depth`` items ahead, so extracting overlaps loading.

    The thread starts at construction, not at the first ``next()``: a stream opened ahead (see the
    loader's read-ahead) runs its query while nobody reads it yet. Memory stays bounded by ``depth``
    items. ``close()`` stops the producer, whether or not anything was read.
    """

    def __init__(self, produce: Callable[[threading.Event], Iterator[Any]], depth: int = 4) -> None:
        """``produce(stop)`` makes the source in the background thread; it may watch ``stop`` while it waits."""
        self._items: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._finished = False
        self._thread = threading.Thread(target=self._produce, args=(produce,), name="sf2pg-extract", daemon=True)
        self._thread.start()

    def _produce(self, produce: Callable[[threading.Event], Iterator[Any]]) -> None:
        source: Iterator[Any] = iter(())
        try:
            source = produce(self._stop)
            for item in source:
                while not self._stop.is_set():
                    try:
                        self._items.put(item, timeout=0.2)
                        break
                    except queue.Full:
                        continue
                if self._stop.is_set():
                    break
            self._items.put(_DONE)
        except BaseException as exc:  # handed to the consumer, re-raised there
            self._items.put(exc)
        finally:
            close = getattr(source, "close", None)
            if close:
                close()

    def __next__(self) -> Any:
        if self._finished:
            raise StopIteration
        item = self._items.get()
        if item is _DONE or isinstance(item, BaseException):
            self.close()
            if item is _DONE:
                raise StopIteration
            raise item
        return item

    def close(self) -> None:
        """Stop the producer and wait for it (it closes its source, e.g. the cursor, on the way out)."""
        self._finished = True
        self._stop.set()
        while self._thread.is_alive():
            try:
                self._items.get_nowait()
            except queue.Empty:
                self._thread.join(0.05)


class ChunkSource(Protocol):
    """Where a chunk's rows come from. The loader only needs these three calls."""

    def query_text(self, chunk: Chunk, columns: list[SourceColumn]) -> str: ...

    def open(self, chunk: Chunk, columns: list[SourceColumn]) -> Iterator[pa.Table | pa.RecordBatch]: ...

    def close(self) -> None: ...


class SnowflakeChunkSource:
    """Chunks streamed from Snowflake, prefetched a few batches ahead, each stream on a session of its own.

    Sessions are pooled: a stream takes an idle one (or opens one) and gives it back when it ends, so a
    loader may open its next chunk's stream while its current one is still being read, and never shares
    a session between two running queries. A session that failed is closed, not given back.

    With ``max_queries``, at most that many streams have a query running at once; a stream opened
    beyond that waits (without a session) until one of those queries has run. Fetching the results
    does not count: it needs no warehouse, and it waits on the reader, so counting it could leave a
    chunk's retry waiting on a stream that waits on the same loader. A table's load passes its
    ``parallel_threads``, so streams opened ahead never raise the warehouse's concurrency.
    """

    def __init__(
        self,
        snowflake: Any,
        database: str,
        schema: str,
        table: str,
        chunk_column: SourceColumn | None,
        source_filter: str | None,
        watermark: SourceColumn | None = None,
        max_queries: int | None = None,
        tag: Mapping[str, str] | None = None,
    ) -> None:
        """``tag``: fields added to each chunk query's QUERY_TAG (which names sf2pg, table and chunk),
        e.g. the run's id."""
        self._snowflake = snowflake  # anything with a get_connection() context manager
        self._tag = dict(tag or {})
        self._slots = threading.BoundedSemaphore(max_queries) if max_queries else None
        self._watermark = watermark
        self._where = (database, schema, table)
        self._chunk_column = chunk_column
        self._filter = source_filter
        self._lock = threading.Lock()
        self._idle: list[tuple[Any, ExitStack]] = []
        self._busy: list[ExitStack] = []
        self._closed = False

    def query_text(self, chunk: Chunk, columns: list[SourceColumn]) -> str:
        return chunk_query(*self._where, columns, self._chunk_column, chunk, self._filter, self._watermark)

    def open(self, chunk: Chunk, columns: list[SourceColumn]) -> Prefetched:
        # The query starts now, in the background: the prefetch thread takes a session and reads ahead.
        tag = query_tag(table=".".join(self._where), chunk=chunk.key, **self._tag)
        stream = functools.partial(self._stream, self.query_text(chunk, columns), {"QUERY_TAG": tag})
        return Prefetched(stream, depth=STREAM_READ_AHEAD)

    def _acquire(self) -> tuple[Any, ExitStack]:
        with self._lock:
            if self._closed:
                raise RuntimeError("the chunk source is closed")
            if self._idle:
                conn, stack = self._idle.pop()
                self._busy.append(stack)
                return conn, stack
        stack = ExitStack()  # log in outside the lock: other streams need not wait for it
        try:
            conn = stack.enter_context(self._snowflake.get_connection())
        except BaseException:
            stack.close()
            raise
        with self._lock:
            self._busy.append(stack)
        return conn, stack

    def _release(self, conn: Any, stack: ExitStack, healthy: bool) -> None:
        with self._lock:
            self._busy.remove(stack)
            if healthy and not self._closed:
                self._idle.append((conn, stack))
                return
        if not healthy:
            end_quietly(conn.close)  # first, so that a run's session pool does not hand it on either
        stack.close()

    def _stream(self, query: str, statement_params: Mapping[str, Any], stop: threading.Event) -> Iterator[pa.Table]:
        if not self._take_slot(stop):
            return  # the reader stopped before the query could start: nobody reads this stream
        holding = [self._slots is not None]

        def free_slot() -> None:  # once the query has run (or failed)
            if holding[0]:
                holding[0] = False
                self._slots.release()  # type: ignore[union-attr]

        try:
            conn, stack = self._acquire()
            healthy = False
            try:
                yield from stream_query(conn, query, free_slot, statement_params)
                healthy = True
            except GeneratorExit:  # the reader stopped early; the cursor closed, the session is fine
                healthy = True
                raise
            finally:
                self._release(conn, stack, healthy)  # a failed session is replaced for the next chunk
        finally:
            free_slot()

    def _take_slot(self, stop: threading.Event) -> bool:
        """Wait for a query slot; False if the reader stopped meanwhile (nobody will read the stream)."""
        if self._slots is None:
            return True
        while not self._slots.acquire(timeout=0.1):
            if stop.is_set():
                return False
            if self._closed:
                raise RuntimeError("the chunk source is closed")
        if stop.is_set():
            self._slots.release()
            return False
        return True

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        end_together([stack.close for _, stack in idle])

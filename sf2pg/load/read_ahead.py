"""A table load's hold on the table's lease and its read-ahead: the next chunk's source stream opened
while earlier chunks load, under the chunk's lease (``sf2pg.load.locks``)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import ExitStack

import psycopg
import pyarrow as pa

from sf2pg.config.typemap import SourceColumn
from sf2pg.load import locks
from sf2pg.load.postgres import Connects
from sf2pg.plan.chunks import Chunk
from sf2pg.source.extract import ChunkSource


class ChunkInterrupted(RuntimeError):
    """The run was interrupted while this chunk loaded; its transaction rolled back."""


def close_stream(stream: object) -> None:
    close = getattr(stream, "close", None)
    if close:
        close()


class TableLease:
    """This load's hold on the table's lease (see ``sf2pg.load.locks``): shared, taken before a chunk's
    Snowflake read and given back after its transaction ends, so a window never commits between a
    chunk's read and its commit. With it goes the chunk's read lock, so two runs loading one chunk
    commit in the order they read.

    Held on a connection of its own. Every call is a non-waiting try, so no thread ever blocks on the
    server while holding the connection another thread needs to give its hold back."""

    def __init__(self, postgres: Connects, database: str, schema: str, table: str) -> None:
        self._postgres, self._database, self._schema, self._table = postgres, database, schema, table
        self._mutex = threading.Lock()
        self._stack = ExitStack()
        self._conn: psycopg.Connection | None = None

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = self._stack.enter_context(self._postgres.get_connection(self._database))
        return self._conn

    def try_take(self, chunk_key: str) -> bool:
        with self._mutex:
            conn = self._connection()
            lease = locks.lease_key(self._schema, self._table)
            if not locks.try_lock(conn, lease, shared=True):
                return False
            if locks.try_lock(conn, locks.read_key(self._schema, self._table, chunk_key)):
                return True
            locks.unlock(conn, lease, shared=True)
            return False

    def take(self, chunk_key: str, stop: threading.Event) -> None:
        """Wait for the lease: a window or check holds it, or another run is between its read and its
        commit of this chunk."""
        while not self.try_take(chunk_key):
            if stop.wait(0.05):
                raise ChunkInterrupted("stopped while waiting for the table's lease")

    def give_back(self, chunk_key: str) -> None:
        with self._mutex:
            if self._conn is None or self._conn.closed:
                return
            locks.unlock(self._conn, locks.read_key(self._schema, self._table, chunk_key))
            locks.unlock(self._conn, locks.lease_key(self._schema, self._table), shared=True)

    def close(self) -> None:
        """Ends the session, which gives back whatever it still holds."""
        with self._mutex:
            self._stack.close()
            self._conn = None


class ReadAhead:
    """Opens the next chunk's source stream while earlier chunks load, so its query overlaps their COPY.

    Each chunk whose rows have started flowing opens at most the next one, and at most ``limit`` opened
    streams wait unread at a time, so memory holds the loading chunks' prefetched batches plus those of
    ``limit`` waiting streams. Chunks are opened ahead in ``chunks`` order (the pool's submission order).
    A stream is opened only under the chunk's lease; opening ahead never waits for it.
    """

    def __init__(
        self, source: ChunkSource, chunks: list[Chunk], columns: list[SourceColumn], limit: int, lease: TableLease
    ) -> None:
        self._source, self._columns, self.limit, self._lease = source, columns, limit, lease
        self._order, self._next = chunks, 0
        self._started: set[str] = set()
        self._leased: set[str] = set()
        self._opened: dict[str, Iterator[pa.Table | pa.RecordBatch]] = {}
        self._lock = threading.Lock()
        self._closed = False

    def take(self, chunk: Chunk, stop: threading.Event) -> Iterator[pa.Table | pa.RecordBatch]:
        """The chunk's stream opened ahead, else a fresh one (a retry always re-reads afresh)."""
        with self._lock:
            self._started.add(chunk.key)
            stream = self._opened.pop(chunk.key, None)
            leased = chunk.key in self._leased
        if stream is not None:
            return stream
        if not leased:
            self._lease.take(chunk.key, stop)
            with self._lock:
                self._leased.add(chunk.key)
        return self._source.open(chunk, self._columns)

    def open_next(self) -> None:
        with self._lock:
            while self._next < len(self._order) and self._order[self._next].key in self._started:
                self._next += 1
            if self._closed or self._next >= len(self._order) or len(self._opened) >= self.limit:
                return
            chunk = self._order[self._next]
            if not self._lease.try_take(chunk.key):
                return  # a window waits for the lease (or another run loads this chunk): read later
            self._started.add(chunk.key)
            self._leased.add(chunk.key)
            # under the lock: open() only starts a background reader, it does not wait for rows
            self._opened[chunk.key] = self._source.open(chunk, self._columns)

    def discard(self, chunk: Chunk) -> None:
        """The chunk's transaction has ended: close its stream if it was opened ahead but never read, and
        give back its lease."""
        with self._lock:
            stream = self._opened.pop(chunk.key, None)
            leased = chunk.key in self._leased
            self._leased.discard(chunk.key)
        close_stream(stream)
        if leased:
            self._lease.give_back(chunk.key)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            opened, self._opened = list(self._opened.values()), {}
            leased, self._leased = list(self._leased), set()
        for stream in opened:
            close_stream(stream)
        for key in leased:
            self._lease.give_back(key)

"""The Snowflake chunk source's concurrency: streams start their query when opened, at most
``max_queries`` queries run at once, a stream nobody reads yet does not hold a query slot, and the
sessions end together.

Pure logic: a stand-in connection counts queries (the data path is tested end to end elsewhere)."""

from __future__ import annotations

import contextlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa

from sf2pg.config.typemap import SourceColumn
from sf2pg.plan.chunks import Chunk
from sf2pg.source.extract import SnowflakeChunkSource

COLUMNS = [SourceColumn("ID", "NUMBER", 18, 0)]


class CountingSnowflake:
    """``get_connection()`` like dagster-snowflake's; every query takes ``seconds`` and yields ``batches``;
    ending a session takes ``logout_seconds``."""

    def __init__(self, seconds: float = 0.05, batches: int = 1, logout_seconds: float = 0.0) -> None:
        self.seconds, self.batches, self.logout_seconds = seconds, batches, logout_seconds
        self.running = self.most = self.queries = self.ended = 0
        self.lock = threading.Lock()
        self.executed = threading.Event()

    @contextlib.contextmanager
    def get_connection(self):
        yield self
        time.sleep(self.logout_seconds)  # dagster-snowflake commits, then the connector logs out
        with self.lock:
            self.ended += 1

    def cursor(self):
        return _Cursor(self)

    def close(self) -> None:  # a stream that failed closes its session
        pass


class _Cursor:
    def __init__(self, sf: CountingSnowflake) -> None:
        self.sf = sf

    def execute(self, query: str, **_: object) -> None:  # _statement_params: the chunk's QUERY_TAG
        with self.sf.lock:
            self.sf.running += 1
            self.sf.queries += 1
            self.sf.most = max(self.sf.most, self.sf.running)
        time.sleep(self.sf.seconds)
        with self.sf.lock:
            self.sf.running -= 1
        self.sf.executed.set()

    def fetch_arrow_batches(self):
        for n in range(self.sf.batches):
            yield pa.table({"ID": [n]})

    def close(self) -> None:
        pass


def source(sf: CountingSnowflake, max_queries: int | None) -> SnowflakeChunkSource:
    return SnowflakeChunkSource(sf, "DB", "PUBLIC", "T", COLUMNS[0], None, max_queries=max_queries)


def chunk(n: int) -> Chunk:
    return Chunk(f"id_{n}_{n + 1}", n, n + 1)


def test_a_stream_runs_its_query_as_soon_as_it_is_opened_before_anyone_reads_it():
    sf = CountingSnowflake()
    src = source(sf, None)
    stream = src.open(chunk(0), COLUMNS)
    assert sf.executed.wait(5)  # read-ahead relies on this: the query runs while the loader still COPYs
    assert [t.num_rows for t in stream] == [1]
    src.close()


def test_a_table_load_never_runs_more_queries_at_once_than_its_threads():
    sf = CountingSnowflake(seconds=0.05)
    src = source(sf, 2)
    streams = [src.open(chunk(n), COLUMNS) for n in range(8)]  # all opened at once, as read-ahead may
    with ThreadPoolExecutor(8) as pool:
        rows = list(pool.map(lambda s: sum(t.num_rows for t in s), streams))
    assert rows == [1] * 8 and sf.queries == 8
    assert sf.most == 2
    src.close()


def test_a_stream_nobody_reads_yet_does_not_hold_a_query_slot():
    # one slot; the first stream's rows wait unread (more batches than the prefetch holds): a chunk's
    # retry must still get its query run, or the loader would wait on itself
    sf = CountingSnowflake(seconds=0.01, batches=20)
    src = source(sf, 1)
    unread = src.open(chunk(0), COLUMNS)
    retry = src.open(chunk(1), COLUMNS)
    assert sum(t.num_rows for t in retry) == 20
    assert sum(t.num_rows for t in unread) == 20
    src.close()


def test_closing_a_stream_that_waits_for_a_slot_returns_at_once():
    sf = CountingSnowflake(seconds=1.0)
    src = source(sf, 1)
    running = src.open(chunk(0), COLUMNS)
    waiting = src.open(chunk(1), COLUMNS)
    t0 = time.perf_counter()
    waiting.close()  # e.g. the run was stopped: the waiting stream never starts its query
    assert time.perf_counter() - t0 < 0.5
    assert sum(t.num_rows for t in running) == 1
    assert sf.queries == 1
    src.close()


def test_closing_the_source_ends_its_sessions_at_once_not_one_after_another():
    sf = CountingSnowflake(seconds=0.2, logout_seconds=0.3)
    src = source(sf, None)
    streams = [src.open(chunk(n), COLUMNS) for n in range(4)]  # four queries at once: four sessions
    assert [sum(t.num_rows for t in s) for s in streams] == [1] * 4
    t0 = time.perf_counter()
    src.close()  # at the end of a table load, before its key and indexes are built
    assert sf.ended == 4
    assert time.perf_counter() - t0 < 0.9  # one after another: 1.2 s

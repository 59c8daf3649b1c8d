"""Results served as real Snowflake serves them: an inline first chunk, then growing chunks the connector
downloads in parallel, each with its own Arrow types (integer width per chunk's values, decimal128 past
int64, timestamps in microseconds when a chunk holds one beyond nanoseconds' range). Every batch is cast
to the one target schema, and loads, syncs and verifies over such results are exact.

Real connector, emulator over HTTP (its chunk sizes come from the suite's ``EMULATOR_SETTINGS``)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pyarrow as pa
from dagster import DagsterInstance

from sf2pg.config.loading import parse_config
from sf2pg.config.typemap import SourceColumn
from sf2pg.dagster.resources import snowflake_resource
from sf2pg.dagster.runner import migrate, sync, verify
from sf2pg.devstack.result_chunks import ChunkSizes
from sf2pg.load.conform import conform
from sf2pg.load.target import prepare_target
from sf2pg.plan.chunks import Chunk
from sf2pg.source.extract import STREAM_READ_AHEAD, SnowflakeChunkSource, stream_query
from sf2pg.source.snowflake_connection import DEFAULT_PREFETCH_THREADS
from sf2pg_tests.conftest import EMULATOR_SETTINGS
from sf2pg_tests.harness import World, source_rows, target_rows

DRIFT_DDL = """CREATE OR REPLACE TABLE {table} (
    ID NUMBER(38,0), N_SMALL NUMBER(4,0), AMOUNT NUMBER(38,2), EVENT_AT TIMESTAMP_NTZ,
    UPDATED_AT TIMESTAMP_NTZ, NOTE VARCHAR)"""
# In ID order, the result chunks' IDs fit int8, int16, int32 and int64 (chunks end at rows 40, 100, 220, 460); every 50th AMOUNT is beyond int64
# unscaled (decimal128 for its chunk); ten EVENT_ATs lie in 2700, beyond nanosecond timestamps.
DRIFT_ROWS = """INSERT INTO {table}
SELECT CASE WHEN i < 100 THEN i WHEN i < 220 THEN i * 100 WHEN i < 460 THEN i * 1000000
            ELSE i * 10000000000 END + {id_offset},
       i % 1000,
       CASE WHEN i % 50 = 7 THEN CAST('1000000000000000000000000000' AS NUMBER(38,2)) + i ELSE i * 1.25 END,
       CASE WHEN i BETWEEN 400 AND 409 THEN DATEADD(day, i, '2700-01-01'::TIMESTAMP_NTZ)
            ELSE DATEADD(second, i, '2024-01-01 00:00:00.123456'::TIMESTAMP_NTZ) END,
       DATEADD(minute, i + {minutes}, '2024-03-01'::TIMESTAMP_NTZ),
       CASE WHEN i % 3 = 0 THEN NULL ELSE 'note ' || i END
FROM (SELECT SEQ4() AS i FROM TABLE(GENERATOR(ROWCOUNT => {n})))"""
COLUMNS = ["ID", "N_SMALL", "AMOUNT", "EVENT_AT", "UPDATED_AT", "NOTE"]


def seed_drift(world: World, n: int = 1000, later: bool = False) -> str:
    """The table (or, ``later``, more rows: new keys, watermarks past the first ones)."""
    table = f'"{world.sf_database}"."PUBLIC"."DRIFT"'
    if not later:
        world.sf_exec(DRIFT_DDL.format(table=table))
    offsets = {"id_offset": 10**15, "minutes": 5000} if later else {"id_offset": 0, "minutes": 0}
    world.sf_exec(DRIFT_ROWS.format(table=table, n=n, **offsets))
    return table


def test_a_large_result_arrives_in_growing_chunks_each_with_its_own_arrow_types(world: World):
    table = seed_drift(world)
    cur = world.sf.cursor()
    cur.execute(f"SELECT ID, AMOUNT, EVENT_AT FROM {table} ORDER BY ID")
    counts = [b.rowcount for b in cur.get_result_batches()]
    assert counts[:4] == [40, 60, 120, 240] and sum(counts) == 1000  # inline, then downloads growing
    cur.close()
    batches = list(stream_query(world.sf, f"SELECT ID, AMOUNT, EVENT_AT FROM {table} ORDER BY ID"))
    assert len(batches) == len(counts)
    ids = [b.schema.field("ID").type for b in batches]
    assert ids[0] == pa.int8() and {pa.int16(), pa.int32(), pa.int64()} <= set(ids)  # width per chunk
    assert {b.schema.field("AMOUNT").type for b in batches} == {pa.decimal128(38, 2)}
    units = [b.schema.field("EVENT_AT").type.unit for b in batches]
    assert "ns" in units and "us" in units  # the chunk holding year 2700 cannot be nanoseconds


def test_every_chunk_is_cast_to_the_one_target_schema_exactly(world: World):
    table = seed_drift(world)
    columns = [
        SourceColumn("ID", "NUMBER", 38, 0),
        SourceColumn("N_SMALL", "NUMBER", 4, 0),
        SourceColumn("AMOUNT", "NUMBER", 38, 2),
        SourceColumn("EVENT_AT", "TIMESTAMP_NTZ"),
    ]
    with world.stack.pg(world.pg_database) as pg:
        target = prepare_target(pg, "tgt", "drift", columns, ["ID"], None, "test")
    query = f"SELECT ID, N_SMALL, AMOUNT, EVENT_AT FROM {table} ORDER BY ID"
    out = list(conform(stream_query(world.sf, query), target, 1000, "fail", "test"))
    assert {b.schema for b in out} == {target.arrow_schema}
    got = pa.Table.from_batches(out).to_pylist()
    expected = world.sf_exec(query)
    assert [tuple(r.values()) for r in got] == [tuple(r) for r in expected]


def test_migrate_sync_and_verify_over_multichunk_results_with_type_drift(world: World):
    table = seed_drift(world)
    raw = world.config(
        [
            {
                "source": "DRIFT",
                "chunking_columns": ["UPDATED_AT"],
                "chunking_column_types": ["timestamp"],
                "uniqueness_columns": ["ID"],
                "source_watermark": "UPDATED_AT",
            }
        ],
        rows_per_chunk=450,  # each chunk's query returns several result chunks of different types
    )
    config = parse_config(raw)
    instance = DagsterInstance.ephemeral()
    [loaded] = migrate(config, config.tables(), instance)
    assert loaded.success, loaded.error
    assert len(loaded.plan.chunks) >= 2
    target = [c.lower() for c in COLUMNS]
    assert target_rows(world, "tgt", "drift", target) == source_rows(world, "DRIFT", COLUMNS)

    seed_drift(world, n=700, later=True)  # new rows past the watermark, in new widths
    world.sf_exec(f"UPDATE {table} SET NOTE = 'changed', UPDATED_AT = '2024-06-01'::TIMESTAMP_NTZ WHERE ID < 50")
    [synced] = sync(config.tables(), instance)
    assert synced.success, synced.note
    assert synced.window is not None
    assert target_rows(world, "tgt", "drift", target) == source_rows(world, "DRIFT", COLUMNS)

    [verdict] = verify(config.tables(), instance)
    assert verdict.passed, verdict


def _settled(count: Callable[[], int]) -> int:
    """The count once it has stopped changing for a second (the stream's threads have filled their buffers)."""
    last, since = count(), time.monotonic()
    deadline = since + 60
    while time.monotonic() - since < 1.0 and time.monotonic() < deadline:
        time.sleep(0.1)
        now = count()
        if now != last:
            last, since = now, time.monotonic()
    return last


def test_a_stream_nobody_reads_holds_a_few_chunks_not_its_whole_result(world: World):
    """What bounds a load's memory: an unread stream (one opened ahead) downloads at most its read-ahead
    (``STREAM_READ_AHEAD`` converted chunks, the inline one among them) plus the connector's
    ``client_prefetch_threads`` chunks, then waits; reading it fetches the rest. Counted, not timed."""
    table = f'"{world.sf_database}"."PUBLIC"."WIDE"'
    world.sf_exec(
        f"CREATE TABLE {table} (ID NUMBER(9,0), NOTE VARCHAR)",
        f"INSERT INTO {table} SELECT SEQ4(), 'row ' || SEQ4() FROM TABLE(GENERATOR(ROWCOUNT => 6000))",
    )
    snowflake = snowflake_resource(resolve=True)
    columns = [SourceColumn("ID", "NUMBER", 9, 0), SourceColumn("NOTE", "TEXT")]
    source = SnowflakeChunkSource(snowflake, world.sf_database, "PUBLIC", "WIDE", None, None)
    emulator = world.stack.emulator
    remote = len(ChunkSizes.from_env(EMULATOR_SETTINGS).split(6000)) - 1  # 27 chunks to download
    before = emulator.downloads()
    stream = source.open(Chunk("all", None, None), columns)
    try:
        ahead = _settled(emulator.downloads) - before
        assert 0 < ahead <= STREAM_READ_AHEAD + DEFAULT_PREFETCH_THREADS < remote
        assert sum(batch.num_rows for batch in stream) == 6000
        assert emulator.downloads() - before == remote  # every chunk but the inline one, once
    finally:
        stream.close()
        source.close()


def test_the_emulators_chunks_grow_and_honour_client_result_chunk_size():
    sizes = ChunkSizes(inline_rows=40, first_rows=60, max_rows=240)
    assert sizes.split(1000) == [40, 60, 120, 240, 240, 240, 60]
    assert sizes.split(1000, most_rows=100) == [40, 60, *[100] * 9]
    assert sizes.split(30) == [30] and sizes.split(0) == [0]

"""A partitioned PostgreSQL target: its indexes and its partitions' indexes come back from a full load all
present, under their own names, attached and valid; so does a first load's primary key."""

from __future__ import annotations

from dagster import DagsterInstance

from sf2pg_tests.harness import World, source_rows, target_rows
from sf2pg_tests.test_load.test_migrate import run

COLUMNS = ["ID", "TS", "KIND", "V"]


def _seed(world: World) -> None:
    table = f'"{world.sf_database}"."PUBLIC"."EVENTS"'
    world.sf_exec(
        f"CREATE TABLE {table} (ID NUMBER(9,0), TS TIMESTAMP_NTZ, KIND VARCHAR, V NUMBER(9,0))",
        f"INSERT INTO {table} SELECT SEQ4(), DATEADD(hour, SEQ4() * 7, '2023-11-01'::TIMESTAMP_NTZ), "
        "'k' || (SEQ4() % 5), SEQ4() FROM TABLE(GENERATOR(ROWCOUNT => 600))",
    )


def _partitioned_target(world: World) -> None:
    world.pg_query(
        "CREATE SCHEMA tgt; "
        "CREATE TABLE tgt.events (id integer, ts timestamp, kind text, v integer, PRIMARY KEY (id, ts)) "
        "PARTITION BY RANGE (ts); "
        "CREATE TABLE tgt.events_2023 PARTITION OF tgt.events FOR VALUES FROM ('2023-01-01') TO ('2024-01-01'); "
        # a partition partitioned again: its index is a partitioned index of its own
        "CREATE TABLE tgt.events_2024 PARTITION OF tgt.events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01') "
        "PARTITION BY RANGE (ts); "
        "CREATE TABLE tgt.events_2024_q1 PARTITION OF tgt.events_2024 FOR VALUES FROM ('2024-01-01') TO ('2024-04-01'); "
        "CREATE TABLE tgt.events_2024_rest PARTITION OF tgt.events_2024 DEFAULT; "
        "CREATE TABLE tgt.events_later PARTITION OF tgt.events DEFAULT; "
        "CREATE INDEX events_kind ON tgt.events (kind, v); "
        'CREATE INDEX "Events V" ON tgt.events (v); '
        "CREATE INDEX events_2023_local ON tgt.events_2023 (v DESC)"  # a partition's own index
    )


def _indexes(world: World) -> list[tuple]:
    """Every index of the table's partition tree: name, table, valid, the index it is attached to."""
    return world.pg_query(
        """
        SELECT i.relname, t.relname, x.indisvalid, parent.relname
        FROM pg_partition_tree('tgt.events') tree
        JOIN pg_index x ON x.indrelid = tree.relid
        JOIN pg_class i ON i.oid = x.indexrelid
        JOIN pg_class t ON t.oid = x.indrelid
        LEFT JOIN pg_inherits h ON h.inhrelid = i.oid
        LEFT JOIN pg_class parent ON parent.oid = h.inhparent
        ORDER BY 1
        """
    )


def _config(world: World, **keys) -> dict:
    table = {
        "source": "EVENTS",
        "chunking_columns": ["TS"],
        "chunking_column_types": ["timestamp"],
        "uniqueness_columns": ["ID", "TS"],
        **keys,
    }
    return world.config([table], rows_per_chunk=150)


def test_a_full_load_keeps_every_index_of_a_partitioned_target_valid_and_attached(world: World):
    _seed(world)
    _partitioned_target(world)
    before = _indexes(world)
    assert len(before) == 19 and all(valid for _, _, valid, _ in before)
    raw = _config(world)
    instance = DagsterInstance.ephemeral()
    for reload in (False, True):  # the first load, then a full reload: both drop and rebuild the indexes
        outcome = run(world, raw, instance, reload=reload)[0]
        assert outcome.success, outcome.error
        assert sorted(outcome.metadata["indexes_rebuilt"].split(", ")) == ["Events V", "events_kind"]
        assert _indexes(world) == before
    assert world.pg_query("SELECT count(*) FROM migration_status.saved_indexes") == [(0,)]
    assert target_rows(world, "tgt", "events", [c.lower() for c in COLUMNS]) == source_rows(world, "EVENTS", COLUMNS)


def test_a_truncating_first_load_of_a_partitioned_target_rebuilds_its_primary_key_on_every_partition(world: World):
    _seed(world)
    _partitioned_target(world)
    before = _indexes(world)
    world.pg_query("INSERT INTO tgt.events VALUES (99999, '2023-12-01', 'stray', 0)")
    outcome = run(world, _config(world, truncate_onstart=True), confirm_truncate=True)[0]
    assert outcome.success, outcome.error
    assert outcome.metadata["truncated"] and "events_pkey" in outcome.metadata["indexes_rebuilt"]
    after = _indexes(world)
    assert [(n, t, v) for n, t, v, _ in after if not n.endswith("pkey")] == [
        (n, t, v) for n, t, v, _ in before if not n.endswith("pkey")
    ]
    keys = [(t, v, p) for n, t, v, p in after if n.endswith("pkey")]
    assert len(keys) == 6 and all(valid for _, valid, _ in keys)  # the parent's and each partition's, attached
    assert target_rows(world, "tgt", "events", [c.lower() for c in COLUMNS]) == source_rows(world, "EVENTS", COLUMNS)

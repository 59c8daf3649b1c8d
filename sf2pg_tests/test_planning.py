"""Planner arithmetic: pure logic, no servers."""

from __future__ import annotations

import datetime as dt
import itertools
from decimal import Decimal

import pytest

from sf2pg.plan.chunks import (
    ALL_KEY,
    END_DATE,
    END_TIMESTAMP,
    NULL_KEY,
    Bucket,
    chunk_key,
    chunking_type_problem,
    is_endless,
    parse_chunk_key,
    sf_range,
)
from sf2pg.plan.planning import buckets_from_rows, plan_chunks, replace_dense, tile

D = dt.datetime


def day_buckets(counts: dict[str, int]) -> list[Bucket]:
    out = []
    for day, n in counts.items():
        start = D.fromisoformat(day)
        out.append(Bucket(start, start + dt.timedelta(days=1), n))
    return out


def test_keys_are_readable_sortable_and_round_trip():
    key = chunk_key("timestamp", D(2024, 1, 1), D(2024, 1, 8))
    assert key == "2024-01-01T000000_2024-01-08T000000"
    assert parse_chunk_key("timestamp", key).upper == D(2024, 1, 8)
    id_key = chunk_key("id", 0, 1_000_000)
    assert id_key == "id_0000000000_0001000000"
    assert parse_chunk_key("id", id_key).lower == 0
    assert chunk_key("date", dt.date(2024, 1, 1), dt.date(2024, 2, 1)) == "2024-01-01_2024-02-01"
    assert sorted([chunk_key("id", 5, 100), chunk_key("id", 100, 2000)]) == [
        chunk_key("id", 5, 100),
        chunk_key("id", 100, 2000),
    ]
    for bad in ("...", "|", ",", "[", "]"):
        assert bad not in key and bad not in id_key


def test_keys_of_timezone_aware_bounds_are_written_in_utc():
    aware = D(2024, 1, 1, 2, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert chunk_key("timestamp", aware, D(2024, 1, 2)).startswith("2024-01-01T000000_")


def test_buckets_merge_into_contiguous_chunks_near_the_target():
    buckets = day_buckets({"2024-01-01": 100, "2024-01-02": 100, "2024-01-05": 100, "2024-01-09": 100})
    chunks = tile("timestamp", buckets, 200)
    assert [c.estimated_rows for c in chunks] == [200, 200]
    assert chunks[0].upper == chunks[1].lower == D(2024, 1, 5)  # the empty days fold in: no gap
    assert chunks[-1].upper == D(2024, 1, 10)


def test_a_bucket_denser_than_the_target_is_a_chunk_of_its_own():
    buckets = day_buckets({"2024-01-01": 10, "2024-01-02": 5000, "2024-01-03": 10})
    assert [c.estimated_rows for c in tile("timestamp", buckets, 100)] == [10, 5000, 10]


def test_dense_buckets_are_replaced_by_finer_ones_in_order():
    coarse = day_buckets({"2024-01-01": 10, "2024-01-02": 300})
    finer = [
        Bucket(D(2024, 1, 2, 0, 0), D(2024, 1, 2, 0, 1), 150),
        Bucket(D(2024, 1, 2, 5, 0), D(2024, 1, 2, 5, 1), 150),
    ]
    merged = replace_dense(coarse, [coarse[1]], finer)
    chunks = tile("timestamp", merged, 160)
    assert [c.estimated_rows for c in chunks] == [160, 150]
    assert chunks[-1].upper == D(2024, 1, 2, 5, 1)


def test_sparse_ids_give_few_chunks_with_no_gaps():
    rows = [(0, 100, 1, 100), (2000, 100, 1_000_000, 1_000_099), (4095, 100, 9_000_000_000, 9_000_000_099)]
    buckets, nulls = buckets_from_rows("id", rows)
    chunks = tile("id", buckets, 150)
    assert [(c.lower, c.upper) for c in chunks] == [
        (1, 1_000_000),
        (1_000_000, 9_000_000_000),
        (9_000_000_000, 9_000_000_100),
    ]
    assert nulls == 0


def test_nulls_get_their_own_partition_after_the_ranges():
    chunks, new = plan_chunks("timestamp", day_buckets({"2024-01-01": 10}), 7, 100)
    assert [c.key for c in chunks][-1] == NULL_KEY
    assert chunks[-1].estimated_rows == 7
    assert new == [c.key for c in chunks]


def test_a_table_without_chunking_column_is_one_partition():
    chunks, new = plan_chunks(None, [], 42, 100)
    assert [c.key for c in chunks] == [ALL_KEY] and new == [ALL_KEY]


def test_replanning_keeps_existing_chunks_and_adds_only_at_the_edges():
    first, _ = plan_chunks("timestamp", day_buckets({"2024-01-02": 100, "2024-01-03": 100}), 0, 100)
    grown = day_buckets({"2024-01-01": 50, "2024-01-02": 300, "2024-01-03": 100, "2024-01-07": 80})
    chunks, new = plan_chunks("timestamp", grown, 0, 100, existing_keys=[c.key for c in first])
    keys = [c.key for c in chunks]
    assert all(c.key in keys for c in first)  # nothing dropped, nothing re-cut
    assert new == [
        "2024-01-01T000000_2024-01-02T000000",  # ends where the covered range starts
        "2024-01-04T000000_2024-01-08T000000",  # starts where the covered range ends
    ]
    for a, b in itertools.pairwise(chunks):
        assert a.upper == b.lower


def test_replanning_unchanged_data_adds_nothing():
    buckets = day_buckets({"2024-01-01": 80, "2024-01-02": 90, "2024-01-03": 70})
    first, _ = plan_chunks("timestamp", buckets, 3, 100)
    again, new = plan_chunks("timestamp", buckets, 3, 100, existing_keys=[c.key for c in first])
    assert new == [] and [c.key for c in again] == [c.key for c in first]


def test_a_key_of_another_kind_is_rejected():
    with pytest.raises(ValueError, match="not a chunk key"):
        parse_chunk_key("id", "2024-01-01T000000_2024-01-02T000000")


def test_keys_of_years_before_1000_and_of_the_open_end_round_trip():
    first = chunk_key("date", dt.date(1, 1, 1), dt.date(2024, 1, 1))
    assert first == "0001-01-01_2024-01-01"
    assert parse_chunk_key("date", first).lower == dt.date(1, 1, 1)
    last = chunk_key("timestamp", D(9999, 12, 31), END_TIMESTAMP)
    assert last == "9999-12-31T000000_infinity"
    assert is_endless(parse_chunk_key("timestamp", last).upper)
    assert is_endless(parse_chunk_key("date", "9999-12-31_infinity").upper)


def test_keys_written_with_short_years_before_still_parse():
    assert parse_chunk_key("date", "1-01-01_2024-01-01").lower == dt.date(1, 1, 1)
    assert parse_chunk_key("timestamp", "999-05-01T000000_2024-01-01T000000").lower == D(999, 5, 1)


def test_the_open_end_is_above_every_value_and_leaves_snowflake_predicates_unbounded():
    end, last_day = END_DATE, dt.date.max
    assert last_day < end and end > last_day and not end < last_day and end == END_DATE  # both operand orders
    assert D.max < END_TIMESTAMP
    assert max([D(2024, 1, 1), END_TIMESTAMP, D.max]) is END_TIMESTAMP
    assert str(END_DATE) == "infinity"
    assert sf_range('"D"', dt.date(9999, 12, 31), END_DATE, "DATE") == "\"D\" >= CAST('9999-12-31' AS DATE)"


def test_the_last_days_python_can_name_end_at_the_open_bound():
    buckets, _ = buckets_from_rows("date", [(dt.date(9999, 12, 31), 3), (dt.date(1, 1, 1), 2)])
    assert [(b.start, b.rows) for b in buckets] == [(dt.date(1, 1, 1), 2), (dt.date(9999, 12, 31), 3)]
    assert is_endless(buckets[-1].end)
    [chunk] = tile("date", buckets, 10)
    assert chunk.key == "0001-01-01_infinity"


def test_fractional_and_negative_ids_round_down_into_whole_buckets():
    rows = [(0, 3, Decimal("-2.5"), Decimal("-0.5")), (1, 2, Decimal("-0.25"), Decimal("0.75")), (9, 1, 7.5, 7.5)]
    buckets, _ = buckets_from_rows("id", rows)
    assert [(b.start, b.end, b.rows) for b in buckets] == [(-3, 0, 3), (-1, 1, 2), (7, 8, 1)]
    chunks = tile("id", buckets, 100)
    assert [(c.lower, c.upper) for c in chunks] == [(-3, 8)]  # -2.5 is inside, as is 7.5


@pytest.mark.parametrize(
    ("kind", "sf_type", "fits"),
    [("timestamp", "TIMESTAMP_LTZ", True), ("timestamp", "DATE", False), ("date", "DATE", True),
     ("date", "TIMESTAMP_NTZ", False), ("id", "NUMBER", True), ("id", "TEXT", False), ("id", "FLOAT", False)],
)  # fmt: skip
def test_a_chunking_type_fits_only_the_snowflake_types_it_plans_exactly(kind, sf_type, fits):
    assert (chunking_type_problem(kind, sf_type) is None) == fits


def test_unset_rows_per_chunk_gives_two_chunks_per_thread_between_100k_and_1m_rows():
    from sf2pg.plan.planning import auto_chunk_rows

    assert auto_chunk_rows(1_000_000, 4) == 125_000  # 8 chunks: every thread busy, and one more each
    assert auto_chunk_rows(50_000_000, 4) == 1_000_000  # a big table: chunks stay small enough to retry
    assert auto_chunk_rows(300_000, 4) == 100_000  # a small one: no chunk so small its overhead shows
    assert auto_chunk_rows(0, 4) == 100_000
    assert auto_chunk_rows(1_000_000, 1) == 500_000


def test_a_1m_row_table_without_rows_per_chunk_plans_enough_chunks_for_its_threads():
    from sf2pg.plan.planning import auto_chunk_rows

    # the distribution query's ID buckets: (bucket, rows, smallest ID, largest ID)
    buckets, _ = buckets_from_rows("id", [(i, 250, i * 250, i * 250 + 249) for i in range(4096)])
    assert sum(b.rows for b in buckets) == 1_024_000
    chunks = tile("id", buckets, auto_chunk_rows(1_024_000, 4))
    assert 8 <= len(chunks) <= 9

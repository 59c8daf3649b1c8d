"""A source that changes while sf2pg works: a writer keeps updating, inserting and deleting rows in the
emulator while ``sf2pg migrate`` runs with several threads and between ``sf2pg sync`` passes. Once the
writer stops and a sync or two run, the target equals the source row for row, and every command
exited 0 (its checks passed on the moving source too)."""

from __future__ import annotations

import datetime as dt
import threading
import time
from pathlib import Path

import pytest

from sf2pg.cli.main import main
from sf2pg_tests.harness import Stack, World, source_rows, target_rows
from sf2pg_tests.test_cli import write_config

COLUMNS = ["ID", "UPDATED_AT", "NAME", "AMOUNT"]
TARGET = ["id", "updated_at", "name", "amount"]
ROWS = 3000


class Writer(threading.Thread):
    """Changes the table like an application would, stamping every change with the real time:
    updates spread over every chunk, inserts beyond the planned range, rows committed late with the
    newest watermark already there, and either (``deletes``) deletes of old rows or, keyed, updates
    committed late with a watermark just below the newest (which move neither its maximum nor its count)."""

    def __init__(self, stack: Stack, table: str, keyed: bool, deletes: bool) -> None:
        super().__init__(daemon=True)
        self.stack, self.table, self.keyed, self.deletes = stack, table, keyed, deletes
        self.stop = threading.Event()
        self.changes = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        sf = self.stack.sf_connect()
        cur = sf.cursor()
        next_id, n = ROWS, 0
        try:
            while not self.stop.is_set():
                now = dt.datetime.now(dt.UTC).replace(tzinfo=None).isoformat(sep=" ")
                stamp = f"'{now}'::TIMESTAMP_NTZ"
                step = n % 4
                if step == 0 and self.keyed:  # updates across every chunk move their watermark forward
                    cur.execute(
                        f"UPDATE {self.table} SET NAME = 'update {n}', AMOUNT = {n}, UPDATED_AT = {stamp} "
                        f"WHERE ID % 97 = {n % 97} AND ID < {ROWS}"
                    )
                elif step == 1 or (step == 0 and not self.keyed):  # inserts beyond the planned range
                    cur.execute(
                        f"INSERT INTO {self.table} VALUES ({next_id}, {stamp}, 'new {n}', {n}), "
                        f"({next_id + 1}, {stamp}, 'new {n}', {n})"
                    )
                    next_id += 2
                elif step == 2:  # committed late, stamped with the newest watermark already in the table
                    cur.execute(
                        f"INSERT INTO {self.table} SELECT {next_id}, MAX(UPDATED_AT), 'late {n}', {n} FROM {self.table}"
                    )
                    next_id += 1
                elif step == 3 and self.deletes:
                    cur.execute(f"DELETE FROM {self.table} WHERE ID = {(n * 37) % ROWS}")
                elif step == 3 and self.keyed:  # committed late, stamped a little before the newest row
                    late = f"(SELECT DATEADD(millisecond, -500, MAX(UPDATED_AT)) FROM {self.table})"
                    cur.execute(  # a row's own watermark still only grows (as sync requires)
                        f"UPDATE {self.table} SET NAME = 'late update {n}', UPDATED_AT = {late} "
                        f"WHERE ID = {(n * 53) % ROWS} AND UPDATED_AT < {late}"
                    )
                self.changes += 1
                n += 1
                time.sleep(0.02)
        except BaseException as exc:  # the test reports it
            self.error = exc
        finally:
            sf.close()


def exit_code(*argv: str) -> int:
    with pytest.raises(SystemExit) as exited:
        main(list(argv))
    return exited.value.code


@pytest.mark.parametrize(
    "kind", ["keyed", "keyed with delete detection", "append-only"], ids=["keyed", "deletes", "append_only"]
)
def test_the_target_equals_the_source_after_a_writer_changes_it_during_migrate_and_between_syncs(
    world: World, tmp_path: Path, kind: str
):
    table = f'"{world.sf_database}"."PUBLIC"."EVENTS"'
    world.sf_exec(
        f"CREATE TABLE {table} (ID NUMBER(18,0), UPDATED_AT TIMESTAMP_NTZ, NAME VARCHAR, AMOUNT NUMBER(12,2))",
        f"INSERT INTO {table} SELECT SEQ4(), DATEADD(second, SEQ4(), '2024-01-01 00:00:00'::TIMESTAMP_NTZ), "
        f"'row ' || SEQ4(), SEQ4() * 1.5 FROM TABLE(GENERATOR(ROWCOUNT => {ROWS}))",
    )
    keyed = kind != "append-only"
    spec = {
        "source": "EVENTS",
        "chunking_columns": ["ID"],
        "chunking_column_types": ["id"],
        "uniqueness_columns": ["ID"] if keyed else [],
        "insert_only_mode": not keyed,
        "source_watermark": "UPDATED_AT",
        "parallel_threads": 4,
    }
    if kind == "keyed with delete detection":
        spec["delete_detection"] = "keys"
    config = write_config(tmp_path, world.config([spec], rows_per_chunk=300, batch_size=1000))
    writer = Writer(world.stack, table, keyed, deletes=kind == "keyed with delete detection")
    writer.start()
    try:
        while writer.changes < 5:  # the writer is busy before the first chunk is read
            time.sleep(0.01)
        started = writer.changes
        assert exit_code("--config", config, "migrate") == 0
        assert writer.changes > started, "the source did not change during the migration"
        for _ in range(3):
            assert exit_code("--config", config, "sync") == 0  # its checks pass on the moving source
            assert exit_code("--config", config, "verify") == 0
    finally:
        writer.stop.set()
        writer.join(30)
    assert writer.error is None, writer.error
    assert exit_code("--config", config, "sync") == 0
    assert exit_code("--config", config, "sync") == 0
    assert exit_code("--config", config, "verify") == 0
    assert target_rows(world, "tgt", "events", TARGET) == source_rows(world, "EVENTS", COLUMNS)

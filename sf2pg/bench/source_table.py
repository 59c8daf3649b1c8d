"""The whole-command benchmark's source: one table in the emulator, its changes, and the reads that time it.

Every contender copies this table. Its columns are the mix a real table has (an integer key, a
timestamp watermark, text with NULLs and empty strings, a decimal, a float, a boolean, a date and a
VARIANT), and every value follows from the row's key, so a run is the same on every machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SF_DATABASE = "BENCH_DB"
SF_SCHEMA = "PUBLIC"
SF_TABLE = "CMD_EVENTS"
QUALIFIED = f'"{SF_DATABASE}"."{SF_SCHEMA}"."{SF_TABLE}"'

# name, Snowflake type, the PostgreSQL type a faithful copy holds (the reference copy's column)
COLUMNS: list[tuple[str, str, str]] = [
    ("ID", "NUMBER(18,0) NOT NULL", "bigint"),
    ("UPDATED_AT", "TIMESTAMP_NTZ NOT NULL", "timestamp"),
    ("NOTE", "VARCHAR", "text"),
    ("AMOUNT", "NUMBER(12,2)", "numeric(12,2)"),
    ("SCORE", "FLOAT", "double precision"),
    ("FLAG", "BOOLEAN", "boolean"),
    ("DAY", "DATE", "date"),
    ("PAYLOAD", "VARIANT", "jsonb"),
]
NAMES = ", ".join(name for name, _, _ in COLUMNS)
WATERMARK = "UPDATED_AT"
KEY = "ID"


def _row_values(i: str, updated_at: str, note: str) -> str:
    """The SELECT list of one row from its key expression ``i`` (NULLs and empty strings included)."""
    return (
        f"{i}, {updated_at}, "
        f"CASE WHEN {i} % 17 = 0 THEN NULL WHEN {i} % 31 = 0 THEN '' ELSE {note} END, "
        f"CASE WHEN {i} % 19 = 0 THEN NULL ELSE ({i} % 1000000) / 100 END, "
        f"{i} * 0.5 + 0.25, "
        f"CASE WHEN {i} % 23 = 0 THEN NULL ELSE {i} % 3 = 0 END, "
        f"DATEADD(day, {i} % 3650, '2015-01-01'::DATE), "
        f'CASE WHEN {i} % 29 = 0 THEN NULL ELSE PARSE_JSON(\'{{"id": \' || {i} || \', "tags": ["a", "b"], "w": 1.5}}\') END'
    )


def _generated(rows: int, first_id: int) -> str:
    return f"(SELECT SEQ4() + {first_id} AS I FROM TABLE(GENERATOR(ROWCOUNT => {rows})))"


def seed_statements(rows: int) -> list[str]:
    """(Re)create the table with keys 1..rows; watermarks from 2024-01-01, about a second apart."""
    columns = ", ".join(f"{name} {sf_type}" for name, sf_type, _ in COLUMNS)
    values = _row_values(
        "I", "DATEADD(millisecond, I * 1003, '2024-01-01 00:00:00'::TIMESTAMP_NTZ)", "'note ' || (I % 997) || ' héllo'"
    )
    return [
        f'CREATE DATABASE IF NOT EXISTS "{SF_DATABASE}"',
        f'CREATE SCHEMA IF NOT EXISTS "{SF_DATABASE}"."{SF_SCHEMA}"',
        f"CREATE OR REPLACE TABLE {QUALIFIED} ({columns})",
        f"INSERT INTO {QUALIFIED} SELECT {values} FROM {_generated(rows, 1)}",
    ]


@dataclass(frozen=True)
class Change:
    """One round's changes: ``updates`` existing rows and ``inserts`` new ones, all with watermarks at or
    after ``since`` (later than every watermark before), so a sync has exactly these rows to load."""

    round_no: int
    rows: int  # the table's seeded rows (keys 1..rows)
    updates: int
    inserts: int

    @property
    def since(self) -> str:
        """The earliest watermark this round writes: one day per round from 2030-01-01."""
        return f"DATEADD(day, {self.round_no}, '2030-01-01 00:00:00'::TIMESTAMP_NTZ)"

    @property
    def first_new_id(self) -> int:
        return self.rows + 1 + self.round_no * self.inserts

    def statements(self) -> list[str]:
        step = max(self.rows // max(self.updates, 1), 1)
        update = (
            f"UPDATE {QUALIFIED} SET UPDATED_AT = DATEADD(millisecond, ID * 7 % 80000000, {self.since}), "
            f"NOTE = 'changed in round {self.round_no}', AMOUNT = AMOUNT + 1 "
            # distinct rows each round (for up to `step` rounds), exactly `updates` of them
            f"WHERE ID % {step} = {self.round_no % step} AND ID <= {step * self.updates}"
        )
        values = _row_values(
            "I",
            f"DATEADD(millisecond, (I - {self.first_new_id}) * 1003, {self.since})",
            f"'new in round {self.round_no}'",
        )
        insert = f"INSERT INTO {QUALIFIED} SELECT {values} FROM {_generated(self.inserts, self.first_new_id)}"
        return [s for s, n in ((update, self.updates), (insert, self.inserts)) if n]

    @property
    def changed(self) -> int:
        return self.updates + self.inserts


def split_changes(changed: int) -> tuple[int, int]:
    """A round's changed rows as updates and inserts: half each (an odd one is an update)."""
    return changed - changed // 2, changed // 2


def read_all_query() -> str:
    return f"SELECT {NAMES} FROM {QUALIFIED}"


def read_changed_query(change: Change) -> str:
    return f"SELECT {NAMES} FROM {QUALIFIED} WHERE {WATERMARK} >= {change.since}"


def execute(sf: Any, statements: list[str]) -> None:
    cur = sf.cursor()
    try:
        for statement in statements:
            cur.execute(statement)
    finally:
        cur.close()

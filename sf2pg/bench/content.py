"""Exact content: every contender's target compared with the source, every row and every column.

The source is read once per state with the connector and written by plain CSV ``COPY`` (not sf2pg's
load path) into a reference table of faithful types. A target then equals the source when both
``reference EXCEPT ALL target`` and ``target EXCEPT ALL reference`` are empty, each target column
cast to the reference column's type first (tools choose their own types: ``timestamptz`` or
``text`` for a timestamp, ``text`` or ``jsonb`` for a VARIANT), with the session in UTC. ``EXCEPT
ALL`` counts duplicates, so a missing, extra, doubled or altered row shows either way.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from psycopg import sql

from sf2pg.bench.source_table import COLUMNS, read_all_query

REFERENCE_SCHEMA = "bench_reference"
REFERENCE_TABLE = "source_rows"


@dataclass
class Verdict:
    """What the comparison of one target with the reference found."""

    target: str
    rows: int | None = None  # rows the target holds
    expected_rows: int | None = None
    differing_rows: int | None = None  # rows of either side without an equal row on the other
    problems: list[str] = field(default_factory=list)

    @property
    def exact(self) -> bool:
        return not self.problems and self.differing_rows == 0 and self.rows == self.expected_rows

    def summary(self) -> str:
        if self.exact:
            return f"exact ({self.rows:,} rows)"
        if self.problems:
            return "; ".join(self.problems)
        return f"{self.differing_rows:,} differing rows ({self.rows:,} rows, source {self.expected_rows:,})"


def _canonical(batch: pa.Table) -> pa.Table:
    """The connector's batch as the reference's CSV needs it: the key as an integer (not ``12.0``-like text)."""
    return batch.set_column(0, batch.schema.names[0], pc.cast(batch.column(0), pa.int64()))


def build_reference(sf: Any, database: str) -> int:
    """Copy the source's current rows into the reference table (untimed); returns its row count."""
    names = [name.lower() for name, _, _ in COLUMNS]
    ddl = sql.SQL("CREATE TABLE {}.{} ({})").format(
        sql.Identifier(REFERENCE_SCHEMA),
        sql.Identifier(REFERENCE_TABLE),
        sql.SQL(", ").join(
            sql.SQL("{} {}").format(sql.Identifier(n), sql.SQL(t)) for n, (_, _, t) in zip(names, COLUMNS, strict=True)
        ),
    )
    copy = sql.SQL("COPY {}.{} FROM STDIN (FORMAT csv)").format(
        sql.Identifier(REFERENCE_SCHEMA), sql.Identifier(REFERENCE_TABLE)
    )
    options = pacsv.WriteOptions(include_header=False, quoting_style="needed")  # NULL unquoted, '' quoted
    cur = sf.cursor()
    try:
        cur.execute(read_all_query())
        with psycopg.connect(dbname=database, autocommit=True) as pg:
            pg.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(REFERENCE_SCHEMA)))
            pg.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(REFERENCE_SCHEMA)))
            pg.execute(ddl)
            with pg.cursor().copy(copy) as out:
                for batch in cur.fetch_arrow_batches():
                    buffer = io.BytesIO()
                    pacsv.write_csv(_canonical(batch), buffer, options)
                    out.write(buffer.getvalue())
            pg.execute(
                sql.SQL("ANALYZE {}.{}").format(sql.Identifier(REFERENCE_SCHEMA), sql.Identifier(REFERENCE_TABLE))
            )
            return pg.execute(
                sql.SQL("SELECT count(*) FROM {}.{}").format(
                    sql.Identifier(REFERENCE_SCHEMA), sql.Identifier(REFERENCE_TABLE)
                )
            ).fetchone()[0]
    finally:
        cur.close()


def compare(database: str, schema: str, table: str, label: str | None = None) -> Verdict:
    """Compare ``schema.table`` with the reference: row count, then every row and column both ways."""
    verdict = Verdict(label or f"{schema}.{table}")
    with psycopg.connect(dbname=database, autocommit=True) as pg:
        pg.execute("SET TimeZone = 'UTC'")  # timestamptz columns cast to the UTC wall time Snowflake holds
        pg.execute("SET work_mem = '256MB'")
        found = {
            name.lower(): name
            for (name,) in pg.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s",
                (schema, table),
            )
        }
        if not found:
            verdict.problems.append(f"no table {schema}.{table}")
            return verdict
        missing = [name.lower() for name, _, _ in COLUMNS if name.lower() not in found]
        if missing:
            verdict.problems.append("columns missing: " + ", ".join(missing))
            return verdict
        reference = sql.SQL("SELECT {} FROM {}.{}").format(
            sql.SQL(", ").join(sql.Identifier(name.lower()) for name, _, _ in COLUMNS),
            sql.Identifier(REFERENCE_SCHEMA),
            sql.Identifier(REFERENCE_TABLE),
        )
        target = sql.SQL("SELECT {} FROM {}.{}").format(
            sql.SQL(", ").join(
                sql.SQL("CAST({} AS {})").format(sql.Identifier(found[name.lower()]), sql.SQL(pg_type))
                for name, _, pg_type in COLUMNS
            ),
            sql.Identifier(schema),
            sql.Identifier(table),
        )
        count = sql.SQL("SELECT count(*) FROM {}.{}")
        verdict.rows = pg.execute(count.format(sql.Identifier(schema), sql.Identifier(table))).fetchone()[0]
        verdict.expected_rows = pg.execute(
            count.format(sql.Identifier(REFERENCE_SCHEMA), sql.Identifier(REFERENCE_TABLE))
        ).fetchone()[0]
        try:
            verdict.differing_rows = pg.execute(
                sql.SQL(
                    "SELECT (SELECT count(*) FROM ({a} EXCEPT ALL {b}) d) + (SELECT count(*) FROM ({b} EXCEPT ALL {a}) e)"
                ).format(a=reference, b=target)
            ).fetchone()[0]
        except psycopg.Error as exc:  # a column whose values do not even cast: not the source's content
            verdict.problems.append(f"a column does not cast to the source's type: {str(exc).splitlines()[0]}")
    return verdict

"""Binary COPY from a stream of Arrow batches (pgpq encodes, psycopg streams)."""

from __future__ import annotations

from collections.abc import Iterable

import psycopg
import pyarrow as pa
from psycopg import sql

from sf2pg.load.target import TargetTable


def copy_batches(
    cur: psycopg.Cursor, table: sql.Composable, target: TargetTable, batches: Iterable[pa.RecordBatch]
) -> tuple[int, int]:
    """COPY the batches into ``table`` (the target or a staging table); returns (rows, bytes)."""
    encoder = target.encoder()
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT binary)").format(
        table, sql.SQL(", ").join(map(sql.Identifier, target.column_names))
    )
    rows = nbytes = 0
    with cur.copy(statement) as copy:
        header = encoder.write_header()
        copy.write(header)
        nbytes += len(header)
        for batch in batches:
            payload = encoder.write_batch(batch)
            copy.write(payload)
            rows += batch.num_rows
            nbytes += len(payload)
        trailer = encoder.finish()
        copy.write(trailer)
        nbytes += len(trailer)
    return rows, nbytes

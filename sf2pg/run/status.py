"""What ``sf2pg status`` reports per table: the ledger's progress, the rows the target holds.

Tables carry the name every other command uses (``source.target``, as in ``migrate`` and ``verify``).
Rows are counted in the target table itself: the ledger's ``total_rows_copied`` adds up what each
chunk's last load copied, which counts a row loaded again by an incremental window twice. A count
that would take longer than ``COUNT_TIMEOUT_MS`` (a very large table) gives way to PostgreSQL's
estimate, marked as one.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from sf2pg.config.model import AppConfig
from sf2pg.load.ledger import table_status
from sf2pg.load.postgres import Postgres

COUNT_TIMEOUT_MS = 5000


def table_statuses(config: AppConfig, postgres: Postgres) -> list[dict[str, Any]]:
    """One row per table the ledger knows in the config's target databases, then enabled tables it does not."""
    specs = config.tables()
    rows: list[dict[str, Any]] = []
    for database in dict.fromkeys(s.pg_database for s in specs):
        with postgres.get_connection(database) as conn:
            ledger = table_status(conn)
            seen = {(r["target_schema"], r["target_table"]) for r in ledger}
            for row in ledger:
                held, estimated = target_rows(conn, row["target_schema"], row["target_table"])
                rows.append(
                    {
                        "table": f"{row['source_name']}.{row['target_table']}",
                        "database": database,
                        **row,
                        "target_rows": held,
                        "target_rows_estimated": estimated,
                    }
                )
            for spec in specs:
                if spec.pg_database == database and (spec.pg_schema, spec.pg_table) not in seen:
                    held, estimated = target_rows(conn, spec.pg_schema, spec.pg_table)
                    rows.append(
                        {
                            "table": spec.name,
                            "database": database,
                            "target_schema": spec.pg_schema,
                            "target_table": spec.pg_table,
                            "source_name": spec.source_name,
                            "source_table": f"{spec.sf_database}.{spec.sf_schema}.{spec.sf_table}",
                            "total_chunks": 0,
                            "completed_chunks": 0,
                            "failed_chunks": 0,
                            "total_rows_copied": 0,
                            "status": "not loaded",
                            "target_rows": held,
                            "target_rows_estimated": estimated,
                        }
                    )
    return rows


def target_rows(conn: psycopg.Connection, schema: str, table: str) -> tuple[int | None, bool]:
    """(rows in ``schema.table``, whether that is PostgreSQL's estimate); (None, False) if there is no table."""
    with conn.transaction():
        exists = conn.execute("SELECT to_regclass(%s)", [sql.Identifier(schema, table).as_string(conn)]).fetchone()
        if not exists or exists[0] is None:
            return None, False
        conn.execute(sql.SQL("SET LOCAL statement_timeout = {}").format(sql.Literal(COUNT_TIMEOUT_MS)))
        try:
            with conn.transaction():  # a savepoint: the estimate still runs after a cancelled count
                count = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, table)))
                return count.fetchone()[0], False
        except psycopg.errors.QueryCanceled:
            estimate = conn.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass", [exists[0]])
            value = estimate.fetchone()[0]
            return (max(value, 0), True) if value is not None else (None, False)

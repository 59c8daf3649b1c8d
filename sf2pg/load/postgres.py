"""Connections to a PostgreSQL target, by libpq's conventions, and the settings a loading session gets.

Plain Python (no Dagster): commands that only read the ledger (``sf2pg status``) start in a fraction of
a second. ``sf2pg.dagster.resources.PostgresResource`` is the same thing as a Dagster resource.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Protocol

import psycopg

DEFAULT_CONNECT_TIMEOUT = 10  # seconds; libpq's own default waits for the operating system (minutes)


class Connects(Protocol):
    """What the loader needs of its target: a ``Postgres`` here, or Dagster's ``PostgresResource``."""

    def get_connection(self, dbname: str, autocommit: bool = True) -> AbstractContextManager[psycopg.Connection]: ...


class PostgresUnreachable(psycopg.OperationalError):
    """A PostgreSQL server that cannot be reached or refuses the login; the message names host and port."""


@dataclass(frozen=True)
class Postgres:
    """Where the targets are. Unset fields fall back to libpq's own variables (PGHOST, PGPORT, ...)."""

    host: str | None = None
    port: int | None = None
    user: str | None = None
    password: str | None = None
    sslmode: str | None = None
    connect_timeout: int | None = None
    application_name: str = "sf2pg"

    @contextmanager
    def get_connection(self, dbname: str, autocommit: bool = True) -> Iterator[psycopg.Connection]:
        """A connection to ``dbname``; closed (and any open transaction rolled back) on exit."""
        params = {
            k: v
            for k, v in {
                "host": self.host,
                "port": self.port,
                "user": self.user,
                "password": self.password,
                "sslmode": self.sslmode,
            }.items()
            if v is not None
        }
        timeout = self.connect_timeout or os.environ.get("PGCONNECT_TIMEOUT") or DEFAULT_CONNECT_TIMEOUT
        try:
            conn = psycopg.connect(
                dbname=dbname,
                application_name=self.application_name,
                autocommit=autocommit,
                connect_timeout=int(timeout),
                **params,
            )
        except psycopg.OperationalError as exc:
            raise PostgresUnreachable(self._unreachable(dbname, exc)) from None
        try:
            yield conn
        finally:
            conn.close()

    def _unreachable(self, dbname: str, exc: psycopg.OperationalError) -> str:
        """Where sf2pg tried (host, port, database, user) and libpq's reason, on one line; never the password."""
        host = self.host or os.environ.get("PGHOST") or "localhost"
        port = self.port or os.environ.get("PGPORT") or 5432
        user = self.user or os.environ.get("PGUSER") or getpass.getuser()  # libpq's default: the OS user
        reason = " ".join(str(exc).split())
        return (
            f"cannot connect to PostgreSQL at {host}:{port} (database {dbname!r}, user {user!r}): {reason} "
            "(check PGHOST, PGPORT, PGUSER, PGPASSWORD or ~/.pgpass, PGSSLMODE)"
        )


def apply_bulk_session_settings(conn: psycopg.Connection) -> None:
    """Session settings for a loading connection (see docs/OPTIMIZATION.md for each one's effect)."""
    # A crash may lose the last few commits, but each lost commit takes its ledger row with it,
    # so the ledger never claims a chunk that is not there; re-running the chunk restores it.
    conn.execute("SET synchronous_commit = off")
    conn.execute("SET temp_buffers = '256MB'")  # staging tables for merges stay in memory
    conn.execute("SET work_mem = '256MB'")  # the merge's anti-join and hash aggregates
    conn.execute("SET maintenance_work_mem = '1GB'")  # index rebuilds after a bulk load
    conn.execute("SET jit = off")  # JIT compile time outweighs its gain on short merge statements

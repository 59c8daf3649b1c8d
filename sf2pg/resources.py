"""Connections: Snowflake through dagster-snowflake, PostgreSQL through libpq conventions.

Secrets are read from the environment (``EnvVar`` in Dagster), never from the config file, and
never echoed: connection errors are re-raised without connection parameters.
"""

from __future__ import annotations

import functools
import getpass
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import psycopg
import snowflake.connector
from dagster import ConfigurableResource, EnvVar, InitResourceContext
from dagster_snowflake import SnowflakeResource
from pydantic import Field, PrivateAttr

from sf2pg.errors import InputError

log = logging.getLogger("sf2pg")

# Session settings every Snowflake connection gets. UTC makes watermark and chunk bounds portable.
SNOWFLAKE_SESSION = {
    "TIMEZONE": "UTC",
    "GEOGRAPHY_OUTPUT_FORMAT": "GeoJSON",
    "GEOMETRY_OUTPUT_FORMAT": "GeoJSON",
    "CLIENT_OUT_OF_BAND_TELEMETRY_ENABLED": False,
}


class SnowflakeSettingsError(InputError):
    """A required SNOWFLAKE_* variable is not set."""


def _snowflake_extra_args(env: Mapping[str, str]) -> dict[str, Any]:
    extra: dict[str, Any] = {
        "session_parameters": dict(SNOWFLAKE_SESSION),
        # scaled NUMBER would otherwise arrive as float64
        "arrow_number_to_decimal": True,
    }
    if env.get("SNOWFLAKE_HOST"):
        extra["host"] = env["SNOWFLAKE_HOST"]
    if env.get("SNOWFLAKE_PORT"):
        extra["port"] = int(env["SNOWFLAKE_PORT"])
    if env.get("SNOWFLAKE_PROTOCOL"):
        extra["protocol"] = env["SNOWFLAKE_PROTOCOL"]
    return extra


class RunSnowflakeResource(SnowflakeResource):
    """dagster-snowflake's resource, keeping its sessions for the rest of the run.

    A run logs in for the asset body, for each loader thread and for each check, and a login costs
    0.3 to 1 s against Snowflake. A run's steps execute one after another in one process (build.py),
    so a session one step is done with serves the next; all of them end with the run. A session whose
    work failed, or that sat idle for ``SESSION_IDLE_SECONDS``, is ended instead of reused. A failure
    also ends every other session of the run as it comes back (after an outage they are likely dead
    too), so a retry starts on fresh ones. Outside a run (the CLI's planning, ``verify``) every
    ``get_connection()`` is a session of its own, as before.
    """

    _idle: list[tuple[Any, float]] | None = PrivateAttr(default=None)
    _generation: int = PrivateAttr(default=0)  # a failure starts a new one; older sessions are not reused
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        self._idle = []

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        with self._lock:
            idle, self._idle = self._idle or [], None
        end_together([_logout(conn) for conn, _ in idle])

    @contextmanager
    def get_connection(self, raw_conn: bool = True) -> Iterator[Any]:
        if self._idle is None or self.connector is not None or not self.autocommit:
            with super().get_connection(raw_conn) as conn:
                yield conn
            return
        generation = self._generation
        conn = self._take() or snowflake.connector.connect(**self._connection_args)
        try:
            yield conn
        except BaseException:
            self._end_idle()
            end_quietly(_logout(conn))
            raise
        self._give_back(conn, generation)

    def _take(self) -> Any | None:
        stale = []
        with self._lock:
            while self._idle:
                conn, since = self._idle.pop()
                if time.monotonic() - since < SESSION_IDLE_SECONDS and not conn.is_closed():
                    break
                stale.append(conn)
            else:
                conn = None
        end_together([_logout(c) for c in stale])
        return conn

    def _give_back(self, conn: Any, generation: int) -> None:
        if conn.is_closed():  # its user found it broken (a failed chunk stream closes its session)
            self._end_idle()
            return
        with self._lock:
            if self._idle is not None and generation == self._generation:
                self._idle.append((conn, time.monotonic()))
                return
        end_quietly(_logout(conn))  # the run has ended, or a failure since it was taken

    def _end_idle(self) -> None:
        with self._lock:
            self._generation += 1
            idle, self._idle = self._idle or [], ([] if self._idle is not None else None)
        end_together([_logout(conn) for conn, _ in idle])


def _logout(conn: Any) -> Callable[[], Any]:
    """A pooled session's close, without the connector's retries: a dead network must not hold up the
    end of a run (or a Ctrl-C) for the connector's three attempts."""
    return functools.partial(conn.close, retry=False)


# Not reused after this long idle: below the shortest idle timeout a Snowflake session policy can set
# (5 minutes; the default is 4 hours), e.g. for the checks after a long index rebuild.
SESSION_IDLE_SECONDS = 240.0


def end_together(closers: list[Callable[[], Any]]) -> None:
    """Run every session's close at once: each is a round trip to Snowflake (its logout). A logout that
    fails (the network is gone) is not the work's failure: Snowflake ends the session itself later."""
    if len(closers) < 2:
        for close in closers:
            end_quietly(close)
        return
    with ThreadPoolExecutor(max_workers=len(closers), thread_name_prefix="sf2pg-logout") as pool:
        list(pool.map(end_quietly, closers))


def end_quietly(close: Callable[[], Any]) -> None:
    """End a session; a logout that fails only goes to the debug log."""
    try:
        close()
    except Exception as exc:  # the connector's messages carry no credentials
        log.debug("ending a Snowflake session failed: %s", exc)


def snowflake_resource(env: Mapping[str, str] | None = None, resolve: bool = False) -> SnowflakeResource:
    """SnowflakeResource from SNOWFLAKE_* variables.

    ``resolve=False`` (Dagster definitions) keeps secrets as ``EnvVar`` so they are read at run
    time and never stored in run config; ``resolve=True`` reads the values now (CLI use).
    """
    env = os.environ if env is None else env
    if resolve:
        missing = [n for n in ("SNOWFLAKE_ACCOUNT", "SNOWFLAKE_USER") if not env.get(n)]
        if not (env.get("SNOWFLAKE_PASSWORD") or env.get("SNOWFLAKE_PRIVATE_KEY_PATH")):
            missing.append("SNOWFLAKE_PASSWORD or SNOWFLAKE_PRIVATE_KEY_PATH")
        if missing:
            raise SnowflakeSettingsError(
                f"Snowflake connection settings missing from the environment: {', '.join(missing)} "
                "(see docs/CONFIGURATION.md, 'Connections')"
            )

    def var(name: str) -> Any:
        if name not in env:
            return None
        return env[name] if resolve else EnvVar(name)

    auth: dict[str, Any] = {}
    if env.get("SNOWFLAKE_PRIVATE_KEY_PATH"):
        auth["private_key_path"] = var("SNOWFLAKE_PRIVATE_KEY_PATH")
        if env.get("SNOWFLAKE_PRIVATE_KEY_PASSPHRASE"):
            auth["private_key_password"] = var("SNOWFLAKE_PRIVATE_KEY_PASSPHRASE")
    elif "SNOWFLAKE_PASSWORD" in env or not resolve:
        # In definitions the EnvVar is read at run time, so the code location loads without secrets.
        auth["password"] = var("SNOWFLAKE_PASSWORD") if resolve else EnvVar("SNOWFLAKE_PASSWORD")
    optional = {
        "warehouse": var("SNOWFLAKE_WAREHOUSE"),
        "role": var("SNOWFLAKE_ROLE"),
    }
    return RunSnowflakeResource(
        account=var("SNOWFLAKE_ACCOUNT") if resolve else EnvVar("SNOWFLAKE_ACCOUNT"),
        user=var("SNOWFLAKE_USER") if resolve else EnvVar("SNOWFLAKE_USER"),
        timezone="UTC",
        # sf2pg only reads: with autocommit set, a session ends without dagster-snowflake's COMMIT round trip
        autocommit=True,
        network_timeout=int(env.get("SNOWFLAKE_NETWORK_TIMEOUT", "60")),
        login_timeout=int(env.get("SNOWFLAKE_LOGIN_TIMEOUT", "30")),
        additional_snowflake_connection_args=_snowflake_extra_args(env),
        **auth,
        **{k: v for k, v in optional.items() if v is not None},
    )


class PostgresUnreachable(psycopg.OperationalError):
    """A PostgreSQL server that cannot be reached or refuses the login; the message names host and port."""


DEFAULT_CONNECT_TIMEOUT = 10  # seconds; libpq's own default waits for the operating system (minutes)


class PostgresResource(ConfigurableResource):
    """The PostgreSQL target. Unset fields fall back to libpq's own variables (PGHOST, PGPORT, ...)."""

    host: str | None = Field(default=None, description="Server host; default PGHOST.")
    port: int | None = Field(default=None, description="Server port; default PGPORT.")
    user: str | None = Field(default=None, description="Role; default PGUSER.")
    password: str | None = Field(default=None, description="Password; default PGPASSWORD or ~/.pgpass.")
    sslmode: str | None = Field(default=None, description="SSL mode; default PGSSLMODE.")
    connect_timeout: int | None = Field(
        default=None,
        description=f"Seconds to wait for a connection; default PGCONNECT_TIMEOUT, else {DEFAULT_CONNECT_TIMEOUT}.",
    )
    application_name: str = Field(default="sf2pg", description="Shown in pg_stat_activity.")

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

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

from sf2pg.snowflake_session import (
    DEFAULT_RETRY_SECONDS,
    SNOWFLAKE_SESSION,
    SnowflakeSettingsError,
    check_reachable,
    endpoint_of,
    env_int,
    query_tag,
    retry_budget,
    session_parameters,
)

__all__ = ["SNOWFLAKE_SESSION", "SnowflakeSettingsError"]  # their home is sf2pg.snowflake_session

log = logging.getLogger("sf2pg")

# One variable chooses how sf2pg authenticates, and only one may be set (see docs/CONFIGURATION.md).
AUTH_VARIABLES = (
    "SNOWFLAKE_PASSWORD",
    "SNOWFLAKE_PRIVATE_KEY_PATH",
    "SNOWFLAKE_PRIVATE_KEY",
    "SNOWFLAKE_PAT",
    "SNOWFLAKE_OAUTH_TOKEN",
)
# Chunks the connector downloads ahead of the reader, per stream (its default is 4; see OPTIMIZATION.md).
DEFAULT_PREFETCH_THREADS = 2


def _snowflake_extra_args(env: Mapping[str, str]) -> dict[str, Any]:
    extra: dict[str, Any] = {
        "session_parameters": session_parameters(env),
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

    token: str | None = Field(
        default=None, description="Programmatic access token or OAuth token (SNOWFLAKE_PAT, SNOWFLAKE_OAUTH_TOKEN)."
    )
    network_retry_seconds: int = Field(
        default=DEFAULT_RETRY_SECONDS, description="Seconds a failing request is retried (SNOWFLAKE_NETWORK_TIMEOUT)."
    )

    _idle: list[tuple[Any, float]] | None = PrivateAttr(default=None)
    _run_id: str | None = PrivateAttr(default=None)
    _generation: int = PrivateAttr(default=0)  # a failure starts a new one; older sessions are not reused
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        self._idle = []
        self._run_id = context.run_id

    @property
    def _connection_args(self) -> Mapping[str, Any]:
        """dagster-snowflake's connect arguments, without ``network_timeout`` (it cancels long queries
        client-side; see sf2pg/snowflake_session.py), with the token and the retry budget."""
        args = dict(super()._connection_args)
        args.pop("network_timeout", None)
        token = self._resolved_config_dict.get("token")
        if token:
            args["token"] = token
        host, port = endpoint_of(args)
        args["backoff_policy"] = retry_budget(self.network_retry_seconds, f"{host}:{port}")
        return args

    def _snowflake_private_key(self, config: Mapping[str, Any]) -> bytes:
        """The key in DER; a key that does not load is named by its variable (and never shown)."""
        source = "SNOWFLAKE_PRIVATE_KEY_PATH" if config.get("private_key_path") else "SNOWFLAKE_PRIVATE_KEY"
        config = dict(config)
        inline = config.get("private_key")
        if isinstance(inline, str) and "-----BEGIN" in inline and "\n" not in inline:
            config["private_key"] = inline.replace("\\n", "\n")  # a PEM whose newlines were escaped as \n
        try:
            return super()._snowflake_private_key(config)
        except (ValueError, TypeError, OSError) as exc:
            hint = (
                "the file cannot be read" if isinstance(exc, OSError) else "it is not a PEM (or base64 PEM) private key"
            )
            raise SnowflakeSettingsError(
                f"{source}: the private key cannot be loaded: {hint}, or SNOWFLAKE_PRIVATE_KEY_PASSPHRASE does "
                "not open it (see docs/CONFIGURATION.md, 'Connections')"
            ) from None

    def _connect(self) -> Any:
        """A new session: check the endpoint answers (fast, names host and port), then log in."""
        args = dict(self._connection_args)
        host, port = endpoint_of(args)
        check_reachable(host, port, str(args.get("protocol") or "https"), min(5.0, float(self.login_timeout or 5)))
        if self._run_id:  # queries outside a chunk (planning, checks) are found by the run's id
            args["session_parameters"] = {**args["session_parameters"], "QUERY_TAG": query_tag(run_id=self._run_id)}
        return snowflake.connector.connect(**args)

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        with self._lock:
            idle, self._idle = self._idle or [], None
        end_together([_logout(conn) for conn, _ in idle])

    @contextmanager
    def get_connection(self, raw_conn: bool = True) -> Iterator[Any]:
        if self._idle is None or self.connector is not None or not self.autocommit:
            if self.connector is None:  # dagster-snowflake's own path, through sf2pg's connect
                conn = self._connect()
                try:
                    yield conn
                    if not self.autocommit:
                        conn.commit()
                finally:
                    end_quietly(conn.close)
                return
            with super().get_connection(raw_conn) as conn:
                yield conn
            return
        generation = self._generation
        conn = self._take() or self._connect()
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


def _auth(chosen: str | None, var: Callable[[str], Any], passphrase: bool) -> dict[str, Any]:
    """The resource fields for the one authentication variable that is set."""
    keyed = {"private_key_password": var("SNOWFLAKE_PRIVATE_KEY_PASSPHRASE")} if passphrase else {}
    if chosen == "SNOWFLAKE_PRIVATE_KEY_PATH":
        return {"private_key_path": var(chosen), **keyed}
    if chosen == "SNOWFLAKE_PRIVATE_KEY":
        return {"private_key": var(chosen), **keyed}
    if chosen == "SNOWFLAKE_PAT":
        return {"authenticator": "PROGRAMMATIC_ACCESS_TOKEN", "token": var(chosen)}
    if chosen == "SNOWFLAKE_OAUTH_TOKEN":
        return {"authenticator": "OAUTH", "token": var(chosen)}
    # A password, or nothing yet: in definitions the EnvVar is read at run time, so the code location loads
    # without secrets.
    return {"password": var("SNOWFLAKE_PASSWORD") if chosen else EnvVar("SNOWFLAKE_PASSWORD")}


def snowflake_resource(env: Mapping[str, str] | None = None, resolve: bool = False) -> SnowflakeResource:
    """SnowflakeResource from SNOWFLAKE_* variables.

    ``resolve=False`` (Dagster definitions) keeps secrets as ``EnvVar`` so they are read at run
    time and never stored in run config; ``resolve=True`` reads the values now (CLI use).
    """
    env = os.environ if env is None else env
    chosen = [n for n in AUTH_VARIABLES if env.get(n)]
    if len(chosen) > 1:
        raise SnowflakeSettingsError(
            f"Snowflake authentication is ambiguous: {', '.join(chosen)} are all set; set only one "
            "(see docs/CONFIGURATION.md, 'Connections')"
        )
    if resolve:
        missing = [n for n in ("SNOWFLAKE_ACCOUNT", "SNOWFLAKE_USER") if not env.get(n)]
        if not chosen:
            missing.append("one of " + ", ".join(AUTH_VARIABLES))
        if missing:
            raise SnowflakeSettingsError(
                f"Snowflake connection settings missing from the environment: {', '.join(missing)} "
                "(see docs/CONFIGURATION.md, 'Connections')"
            )

    def var(name: str) -> Any:
        if name not in env:
            return None
        return env[name] if resolve else EnvVar(name)

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
        network_retry_seconds=env_int(env, "SNOWFLAKE_NETWORK_TIMEOUT", DEFAULT_RETRY_SECONDS),
        login_timeout=env_int(env, "SNOWFLAKE_LOGIN_TIMEOUT", 30),
        client_prefetch_threads=env_int(env, "SNOWFLAKE_CLIENT_PREFETCH_THREADS", DEFAULT_PREFETCH_THREADS) or 1,
        additional_snowflake_connection_args=_snowflake_extra_args(env),
        **_auth(chosen[0] if chosen else None, var, bool(env.get("SNOWFLAKE_PRIVATE_KEY_PASSPHRASE"))),
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

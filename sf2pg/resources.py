"""Connections: Snowflake through dagster-snowflake, PostgreSQL through libpq conventions.

Secrets are read from the environment (``EnvVar`` in Dagster), never from the config file, and
never echoed: connection errors are re-raised without connection parameters.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import psycopg
from dagster import ConfigurableResource, EnvVar, InitResourceContext
from pydantic import Field, PrivateAttr

from sf2pg.postgres import DEFAULT_CONNECT_TIMEOUT, Postgres, PostgresUnreachable, apply_bulk_session_settings
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


class SnowflakeResource(ConfigurableResource):
    """Snowflake sessions through the connector, keeping them for the rest of a run.

    Built on the connector directly rather than on dagster-snowflake's resource, whose module imports
    Snowpark and ``snowflake.core`` (4-8 s in every process that touches Snowflake: each CLI command,
    code server, run worker and sensor tick), for a class sf2pg uses only to connect.

    A run logs in for the asset body, for each loader thread and for each check, and a login costs
    0.3 to 1 s against Snowflake. A run's steps execute one after another in one process (build.py),
    so a session one step is done with serves the next; all of them end with the run. A session whose
    work failed, or that sat idle for ``SESSION_IDLE_SECONDS``, is ended instead of reused. A failure
    also ends every other session of the run as it comes back (after an outage they are likely dead
    too), so a retry starts on fresh ones. Outside a run (the CLI's planning, ``verify``) every
    ``get_connection()`` is a session of its own.
    """

    account: str = Field(description="Snowflake account identifier (SNOWFLAKE_ACCOUNT).")
    user: str = Field(description="User to log in as (SNOWFLAKE_USER).")
    password: str | None = Field(default=None, description="Password (SNOWFLAKE_PASSWORD).")
    private_key: str | None = Field(default=None, description="PEM private key text (SNOWFLAKE_PRIVATE_KEY).")
    private_key_path: str | None = Field(default=None, description="Private key file (SNOWFLAKE_PRIVATE_KEY_PATH).")
    private_key_password: str | None = Field(
        default=None, description="Passphrase of the private key (SNOWFLAKE_PRIVATE_KEY_PASSPHRASE)."
    )
    authenticator: str | None = Field(default=None, description="Connector authenticator (PAT, OAuth).")
    token: str | None = Field(
        default=None, description="Programmatic access token or OAuth token (SNOWFLAKE_PAT, SNOWFLAKE_OAUTH_TOKEN)."
    )
    warehouse: str | None = Field(default=None, description="Warehouse (SNOWFLAKE_WAREHOUSE).")
    role: str | None = Field(default=None, description="Role (SNOWFLAKE_ROLE).")
    timezone: str = Field(default="UTC", description="Session time zone (sf2pg compares bounds in UTC).")
    autocommit: bool = Field(default=True, description="sf2pg only reads: no COMMIT round trip at logout.")
    login_timeout: int | None = Field(default=None, description="Seconds a login may take (SNOWFLAKE_LOGIN_TIMEOUT).")
    client_prefetch_threads: int | None = Field(
        default=None, description="Result chunks downloaded ahead per stream (SNOWFLAKE_CLIENT_PREFETCH_THREADS)."
    )
    network_retry_seconds: int = Field(
        default=DEFAULT_RETRY_SECONDS, description="Seconds a failing request is retried (SNOWFLAKE_NETWORK_TIMEOUT)."
    )
    additional_snowflake_connection_args: dict[str, Any] | None = Field(
        default=None, description="More keyword arguments for snowflake.connector.connect (session parameters...)."
    )

    _idle: list[tuple[Any, float]] | None = PrivateAttr(default=None)
    _run_id: str | None = PrivateAttr(default=None)
    _generation: int = PrivateAttr(default=0)  # a failure starts a new one; older sessions are not reused
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        self._idle = []
        self._run_id = context.run_id

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        with self._lock:
            idle, self._idle = self._idle or [], None
        end_together([_logout(conn) for conn, _ in idle])

    @property
    def _connection_args(self) -> dict[str, Any]:
        """The connector's arguments: never ``network_timeout`` (it cancels long queries client-side;
        see sf2pg/snowflake_session.py), with the retry budget and the one way to authenticate."""
        config = self._resolved_config_dict
        args: dict[str, Any] = {
            k: config[k]
            for k in (
                "account", "user", "password", "role", "warehouse", "autocommit", "client_prefetch_threads",
                "login_timeout", "timezone", "authenticator", "token",
            )
            if config.get(k) is not None
        }  # fmt: skip
        if config.get("private_key") is not None or config.get("private_key_path") is not None:
            args["private_key"] = _private_key_der(config)
        args["application"] = "sf2pg"
        args.update(config.get("additional_snowflake_connection_args") or {})
        host, port = endpoint_of(args)
        args["backoff_policy"] = retry_budget(self.network_retry_seconds, f"{host}:{port}")
        return args

    def _connect(self) -> Any:
        """A new session: check the endpoint answers (fast, names host and port), then log in."""
        import snowflake.connector

        args = self._connection_args
        host, port = endpoint_of(args)
        check_reachable(host, port, str(args.get("protocol") or "https"), min(5.0, float(self.login_timeout or 5)))
        if self._run_id:  # queries outside a chunk (planning, checks) are found by the run's id
            args["session_parameters"] = {
                **args.get("session_parameters", {}),
                "QUERY_TAG": query_tag(run_id=self._run_id),
            }
        return snowflake.connector.connect(**args)

    @contextmanager
    def get_connection(self, raw_conn: bool = True) -> Iterator[Any]:
        """A session (``raw_conn`` is accepted for dagster-snowflake's signature; it is always raw)."""
        if self._idle is None:  # outside a run: a session of its own
            conn = self._connect()
            try:
                yield conn
            finally:
                end_quietly(conn.close)
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


RunSnowflakeResource = SnowflakeResource  # the name earlier code and tests use


def _private_key_der(config: Mapping[str, Any]) -> bytes:
    """The key in DER (what the connector takes); a key that does not load is named by its variable
    (and never shown). PEM text may have its newlines escaped as ``\\n``, or be base64 of a PEM."""
    import base64

    from cryptography.hazmat.primitives import serialization

    source = "SNOWFLAKE_PRIVATE_KEY_PATH" if config.get("private_key_path") else "SNOWFLAKE_PRIVATE_KEY"
    try:
        if config.get("private_key_path"):
            with open(config["private_key_path"], "rb") as key_file:
                pem = key_file.read()
        else:
            text = config["private_key"]
            if "-----BEGIN" in text and "\n" not in text:
                text = text.replace("\\n", "\n")  # a PEM whose newlines were escaped
            pem = text.encode()
        passphrase = config.get("private_key_password")
        password = passphrase.encode() if passphrase else None
        try:
            key = serialization.load_pem_private_key(pem, password=password)
        except ValueError:
            key = serialization.load_pem_private_key(base64.b64decode(pem), password=password)
    except (ValueError, TypeError, OSError) as exc:
        hint = "the file cannot be read" if isinstance(exc, OSError) else "it is not a PEM (or base64 PEM) private key"
        raise SnowflakeSettingsError(
            f"{source}: the private key cannot be loaded: {hint}, or SNOWFLAKE_PRIVATE_KEY_PASSPHRASE does "
            "not open it (see docs/CONFIGURATION.md, 'Connections')"
        ) from None
    return key.private_bytes(
        encoding=serialization.Encoding.DER,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    )


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
    return SnowflakeResource(
        account=var("SNOWFLAKE_ACCOUNT") if resolve else EnvVar("SNOWFLAKE_ACCOUNT"),
        user=var("SNOWFLAKE_USER") if resolve else EnvVar("SNOWFLAKE_USER"),
        timezone="UTC",
        autocommit=True,  # sf2pg only reads: a session ends without a COMMIT round trip
        network_retry_seconds=env_int(env, "SNOWFLAKE_NETWORK_TIMEOUT", DEFAULT_RETRY_SECONDS),
        login_timeout=env_int(env, "SNOWFLAKE_LOGIN_TIMEOUT", 30),
        client_prefetch_threads=env_int(env, "SNOWFLAKE_CLIENT_PREFETCH_THREADS", DEFAULT_PREFETCH_THREADS) or 1,
        additional_snowflake_connection_args=_snowflake_extra_args(env),
        **_auth(chosen[0] if chosen else None, var, bool(env.get("SNOWFLAKE_PRIVATE_KEY_PASSPHRASE"))),
        **{k: v for k, v in optional.items() if v is not None},
    )


class PostgresResource(ConfigurableResource):
    """The PostgreSQL target, as a Dagster resource (``sf2pg.postgres.Postgres`` is the same without Dagster).
    Unset fields fall back to libpq's own variables (PGHOST, PGPORT, ...)."""

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

    @property
    def settings(self) -> Postgres:
        return Postgres(
            self.host, self.port, self.user, self.password, self.sslmode, self.connect_timeout, self.application_name
        )

    @contextmanager
    def get_connection(self, dbname: str, autocommit: bool = True) -> Iterator[psycopg.Connection]:
        """A connection to ``dbname``; closed (and any open transaction rolled back) on exit."""
        with self.settings.get_connection(dbname, autocommit) as conn:
            yield conn


__all__ = ["PostgresUnreachable", "apply_bulk_session_settings"]  # kept importable from here

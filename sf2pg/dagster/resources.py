"""Dagster resources for the two ends: Snowflake sessions and PostgreSQL connections.

Each is a thin ``ConfigurableResource`` over the plain mechanism (``sf2pg.source.snowflake_connection``,
``sf2pg.load.postgres``), so Dagster's config and ``EnvVar`` secrets apply while the CLI's own runs use the
same code without Dagster. Secrets are read from the environment, never from the config file, and never
echoed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import psycopg
from dagster import ConfigurableResource, EnvVar, InitResourceContext
from pydantic import Field, PrivateAttr

from sf2pg.load.postgres import DEFAULT_CONNECT_TIMEOUT, Postgres
from sf2pg.source.snowflake_connection import (
    SessionPool,
    SnowflakeSettings,
    connection_fields,
)
from sf2pg.source.snowflake_session import DEFAULT_RETRY_SECONDS


class SnowflakeResource(ConfigurableResource):
    """Snowflake sessions through the connector, keeping them for the rest of a run (``SessionPool``).

    Built on the connector directly rather than on dagster-snowflake's resource, whose module imports
    Snowpark and ``snowflake.core`` (4-8 s in every process that touches Snowflake: each CLI command,
    code server, run worker and sensor tick), for a class sf2pg uses only to connect. A run's steps
    execute one after another in one process (definitions.py), so a session one step is done with serves the
    next; outside a run every ``get_connection()`` is a session of its own.
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

    _pool: SessionPool | None = PrivateAttr(default=None)

    @property
    def settings(self) -> SnowflakeSettings:
        """The resolved settings (``EnvVar`` secrets read now)."""
        return SnowflakeSettings(**{k: v for k, v in self._resolved_config_dict.items() if v is not None})

    def setup_for_execution(self, context: InitResourceContext) -> None:
        settings, run_id = self.settings, context.run_id
        self._pool = SessionPool(lambda: settings.connect(run_id))

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    @contextmanager
    def get_connection(self, raw_conn: bool = True) -> Iterator[Any]:
        if self._pool is not None:
            with self._pool.get_connection() as conn:
                yield conn
            return
        with self.settings.get_connection() as conn:
            yield conn


def snowflake_resource(env: Mapping[str, str] | None = None, resolve: bool = False) -> SnowflakeResource:
    """SnowflakeResource from SNOWFLAKE_* variables.

    ``resolve=False`` (Dagster definitions) keeps secrets as ``EnvVar`` so they are read at run
    time and never stored in run config; ``resolve=True`` reads the values now (CLI use).
    """
    env = os.environ if env is None else env

    def var(name: str) -> Any:
        if resolve:
            return env.get(name)
        return EnvVar(name)

    fields = connection_fields(env, var, resolve)
    return SnowflakeResource(**{k: v for k, v in fields.items() if v is not None})


class PostgresResource(ConfigurableResource):
    """The PostgreSQL target, as a Dagster resource (``sf2pg.load.postgres.Postgres`` is the same without Dagster).
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

"""Connections: Snowflake through dagster-snowflake, PostgreSQL through libpq conventions.

Secrets are read from the environment (``EnvVar`` in Dagster), never from the config file, and
never echoed: connection errors are re-raised without connection parameters.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import psycopg
from dagster import ConfigurableResource, EnvVar
from dagster_snowflake import SnowflakeResource
from pydantic import Field

from sf2pg.errors import InputError

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
    return SnowflakeResource(
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


class PostgresResource(ConfigurableResource):
    """The PostgreSQL target. Unset fields fall back to libpq's own variables (PGHOST, PGPORT, ...)."""

    host: str | None = Field(default=None, description="Server host; default PGHOST.")
    port: int | None = Field(default=None, description="Server port; default PGPORT.")
    user: str | None = Field(default=None, description="Role; default PGUSER.")
    password: str | None = Field(default=None, description="Password; default PGPASSWORD or ~/.pgpass.")
    sslmode: str | None = Field(default=None, description="SSL mode; default PGSSLMODE.")
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
        try:
            conn = psycopg.connect(
                dbname=dbname, application_name=self.application_name, autocommit=autocommit, **params
            )
        except psycopg.OperationalError as exc:
            # libpq's message names host, port and user but never the password.
            raise psycopg.OperationalError(f"cannot connect to PostgreSQL database {dbname!r}: {exc}") from None
        try:
            yield conn
        finally:
            conn.close()


def apply_bulk_session_settings(conn: psycopg.Connection) -> None:
    """Session settings for a loading connection (see docs/OPTIMIZATION.md for each one's effect)."""
    # A crash may lose the last few commits, but each lost commit takes its ledger row with it,
    # so the ledger never claims a chunk that is not there; re-running the chunk restores it.
    conn.execute("SET synchronous_commit = off")
    conn.execute("SET temp_buffers = '256MB'")  # staging tables for merges stay in memory
    conn.execute("SET work_mem = '256MB'")  # the merge's anti-join and hash aggregates
    conn.execute("SET maintenance_work_mem = '1GB'")  # index rebuilds after a bulk load
    conn.execute("SET jit = off")  # JIT compile time outweighs its gain on short merge statements

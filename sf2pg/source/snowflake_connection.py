"""Snowflake logins and the sessions a run reuses, on the connector alone (no Dagster, no Snowpark).

``connection_fields`` reads the SNOWFLAKE_* variables once, for the Dagster resource
(``sf2pg.dagster.resources.SnowflakeResource``, which keeps secrets as ``EnvVar`` until a run starts) and for
the CLI's own runs (``sessions_from_env``) alike. ``SnowflakeSettings.connect`` logs in;
``SessionPool`` keeps a run's sessions for its later work.
"""

from __future__ import annotations

import base64
import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sf2pg.source.snowflake_session import (
    DEFAULT_RETRY_SECONDS,
    SnowflakeSettingsError,
    check_reachable,
    endpoint_of,
    env_int,
    query_tag,
    retry_budget,
    session_parameters,
)

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
# Not reused after this long idle: below the shortest idle timeout a Snowflake session policy can set
# (5 minutes; the default is 4 hours), e.g. for the checks after a long index rebuild.
SESSION_IDLE_SECONDS = 240.0


def connection_fields(env: Mapping[str, str], var: Callable[[str], Any], resolve: bool) -> dict[str, Any]:
    """The connection's fields from SNOWFLAKE_* variables; ``var(name)`` gives a variable's value (or a
    Dagster ``EnvVar`` for it). ``resolve``: the values are needed now, so missing ones are an error."""
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
    fields = {
        "account": var("SNOWFLAKE_ACCOUNT"),
        "user": var("SNOWFLAKE_USER"),
        "timezone": "UTC",
        "autocommit": True,  # sf2pg only reads: a session ends without a COMMIT round trip
        "network_retry_seconds": env_int(env, "SNOWFLAKE_NETWORK_TIMEOUT", DEFAULT_RETRY_SECONDS),
        "login_timeout": env_int(env, "SNOWFLAKE_LOGIN_TIMEOUT", 30),
        "client_prefetch_threads": env_int(env, "SNOWFLAKE_CLIENT_PREFETCH_THREADS", DEFAULT_PREFETCH_THREADS) or 1,
        "additional_snowflake_connection_args": _extra_args(env),
        **_auth(chosen[0] if chosen else None, var, bool(env.get("SNOWFLAKE_PRIVATE_KEY_PASSPHRASE"))),
    }
    for key, name in (("warehouse", "SNOWFLAKE_WAREHOUSE"), ("role", "SNOWFLAKE_ROLE")):
        if env.get(name) is not None:
            fields[key] = var(name)
    return fields


def _extra_args(env: Mapping[str, str]) -> dict[str, Any]:
    extra: dict[str, Any] = {
        "session_parameters": session_parameters(env),
        "arrow_number_to_decimal": True,  # scaled NUMBER would otherwise arrive as float64
    }
    if env.get("SNOWFLAKE_HOST"):
        extra["host"] = env["SNOWFLAKE_HOST"]
    if env.get("SNOWFLAKE_PORT"):
        extra["port"] = int(env["SNOWFLAKE_PORT"])
    if env.get("SNOWFLAKE_PROTOCOL"):
        extra["protocol"] = env["SNOWFLAKE_PROTOCOL"]
    return extra


def _auth(chosen: str | None, var: Callable[[str], Any], passphrase: bool) -> dict[str, Any]:
    """The fields for the one authentication variable that is set."""
    keyed = {"private_key_password": var("SNOWFLAKE_PRIVATE_KEY_PASSPHRASE")} if passphrase else {}
    if chosen == "SNOWFLAKE_PRIVATE_KEY_PATH":
        return {"private_key_path": var(chosen), **keyed}
    if chosen == "SNOWFLAKE_PRIVATE_KEY":
        return {"private_key": var(chosen), **keyed}
    if chosen == "SNOWFLAKE_PAT":
        return {"authenticator": "PROGRAMMATIC_ACCESS_TOKEN", "token": var(chosen)}
    if chosen == "SNOWFLAKE_OAUTH_TOKEN":
        return {"authenticator": "OAUTH", "token": var(chosen)}
    # A password, or nothing yet: in Dagster definitions it is read at run time, so the code location
    # loads without secrets.
    return {"password": var("SNOWFLAKE_PASSWORD")}


@dataclass(frozen=True)
class SnowflakeSettings:
    """How to log in (resolved values; never printed: the dataclass's repr leaves the secrets out)."""

    account: str
    user: str
    password: str | None = field(default=None, repr=False)
    private_key: str | None = field(default=None, repr=False)
    private_key_path: str | None = None
    private_key_password: str | None = field(default=None, repr=False)
    authenticator: str | None = None
    token: str | None = field(default=None, repr=False)
    warehouse: str | None = None
    role: str | None = None
    timezone: str = "UTC"
    autocommit: bool = True
    login_timeout: int | None = None
    client_prefetch_threads: int | None = None
    network_retry_seconds: int = DEFAULT_RETRY_SECONDS
    additional_snowflake_connection_args: Mapping[str, Any] | None = None

    def connection_args(self) -> dict[str, Any]:
        """The connector's arguments: never ``network_timeout`` (it cancels long queries client-side; see
        sf2pg/source/snowflake_session.py), with the retry budget and the one way to authenticate."""
        args: dict[str, Any] = {
            k: getattr(self, k)
            for k in (
                "account", "user", "password", "role", "warehouse", "autocommit", "client_prefetch_threads",
                "login_timeout", "timezone", "authenticator", "token",
            )
            if getattr(self, k) is not None
        }  # fmt: skip
        if self.private_key is not None or self.private_key_path is not None:
            args["private_key"] = private_key_der(self.private_key, self.private_key_path, self.private_key_password)
        args["application"] = "sf2pg"
        args.update(self.additional_snowflake_connection_args or {})
        host, port = endpoint_of(args)
        args["backoff_policy"] = retry_budget(self.network_retry_seconds, f"{host}:{port}")
        return args

    def connect(self, run_id: str | None = None) -> Any:
        """A new session: check the endpoint answers (fast, names host and port), then log in. Queries
        outside a chunk (planning, checks) carry the run's id in their QUERY_TAG."""
        import snowflake.connector

        args = self.connection_args()
        host, port = endpoint_of(args)
        check_reachable(host, port, str(args.get("protocol") or "https"), min(5.0, float(self.login_timeout or 5)))
        if run_id:
            args["session_parameters"] = {**args.get("session_parameters", {}), "QUERY_TAG": query_tag(run_id=run_id)}
        return snowflake.connector.connect(**args)

    @contextmanager
    def get_connection(self, raw_conn: bool = True) -> Iterator[Any]:
        """A session of its own, ended on exit (``raw_conn`` only matches dagster-snowflake's signature)."""
        conn = self.connect()
        try:
            yield conn
        finally:
            end_quietly(conn.close)


def sessions_from_env(env: Mapping[str, str] | None = None) -> SnowflakeSettings:
    """The settings SNOWFLAKE_* variables give, read now (the CLI's own runs)."""
    env = os.environ if env is None else env
    return SnowflakeSettings(**connection_fields(env, env.get, resolve=True))


class SessionPool:
    """A run's Snowflake sessions, kept for its later work.

    A run logs in for its planning, for each loader thread and for each check, and a login costs 0.3 to
    1 s against Snowflake; a session one part of the run is done with serves the next, and all of them
    end with the run (``close``). A session whose work failed, or that sat idle for
    ``SESSION_IDLE_SECONDS``, is ended instead of reused. A failure also ends every other session of the
    run as it comes back (after an outage they are likely dead too), so a retry starts on fresh ones.
    """

    def __init__(self, connect: Callable[[], Any]) -> None:
        self._connect = connect
        self._idle: list[tuple[Any, float]] | None = []
        self._generation = 0  # a failure starts a new one; older sessions are not reused
        self._lock = threading.Lock()

    @contextmanager
    def get_connection(self, raw_conn: bool = True) -> Iterator[Any]:
        generation = self._generation
        conn = self._take() or self._connect()
        try:
            yield conn
        except BaseException:
            self._end_idle()
            end_quietly(logout(conn))
            raise
        self._give_back(conn, generation)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle or [], None
        end_together([logout(conn) for conn, _ in idle])

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
        end_together([logout(c) for c in stale])
        return conn

    def _give_back(self, conn: Any, generation: int) -> None:
        if conn.is_closed():  # its user found it broken (a failed chunk stream closes its session)
            self._end_idle()
            return
        with self._lock:
            if self._idle is not None and generation == self._generation:
                self._idle.append((conn, time.monotonic()))
                return
        end_quietly(logout(conn))  # the run has ended, or a failure since it was taken

    def _end_idle(self) -> None:
        with self._lock:
            self._generation += 1
            idle, self._idle = self._idle or [], ([] if self._idle is not None else None)
        end_together([logout(conn) for conn, _ in idle])


def private_key_der(inline: str | None, path: str | None, passphrase: str | None) -> bytes:
    """The key in DER (what the connector takes); a key that does not load is named by its variable (and
    never shown). PEM text may have its newlines escaped as ``\\n``, or be base64 of a PEM."""
    from cryptography.hazmat.primitives import serialization

    source = "SNOWFLAKE_PRIVATE_KEY_PATH" if path else "SNOWFLAKE_PRIVATE_KEY"
    try:
        if path:
            with open(path, "rb") as key_file:
                pem = key_file.read()
        else:
            text = inline or ""
            if "-----BEGIN" in text and "\n" not in text:
                text = text.replace("\\n", "\n")  # a PEM whose newlines were escaped
            pem = text.encode()
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


def logout(conn: Any) -> Callable[[], Any]:
    """A pooled session's close, without the connector's retries: a dead network must not hold up the
    end of a run (or a Ctrl-C) for the connector's three attempts."""
    return functools.partial(conn.close, retry=False)


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

"""How sf2pg's Snowflake sessions behave: the parameters they pin, how queries are tagged and timed out,
how long a failing request is retried, and how an unreachable account is told apart early.

The connector's ``network_timeout`` is deliberately never set: besides bounding a request's retries,
it arms a client-side cancel of every query that runs longer (``SnowflakeCursor``'s "timebomb"),
which on a real warehouse would cancel a large table's planning query, a poorly pruned chunk query
or a fingerprint scan queued behind other work, and the retry would be cancelled again. Long
statements are bounded on the server instead (``STATEMENT_TIMEOUT_IN_SECONDS``), and failing requests
by a retry budget in the backoff policy (``retry_budget``).
"""

from __future__ import annotations

import json
import random
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.request import getproxies, proxy_bypass

from sf2pg.errors import InputError


class SnowflakeSettingsError(InputError):
    """A SNOWFLAKE_* variable is missing, contradicts another one, or holds something unusable."""


# Parameters every session gets, each one something sf2pg's queries or its type handling rely on;
# pinned, so an account or user default cannot change what a load reads.
SNOWFLAKE_SESSION: dict[str, Any] = {
    "TIMEZONE": "UTC",  # watermark and chunk bounds are UTC; TIMESTAMP_LTZ values arrive in UTC
    "QUOTED_IDENTIFIERS_IGNORE_CASE": False,  # every name is quoted and must match exactly
    "PYTHON_CONNECTOR_QUERY_RESULT_FORMAT": "ARROW",  # chunks stream with fetch_arrow_batches
    "ROWS_PER_RESULTSET": 0,  # no row cap: a capped chunk query would silently load part of its chunk
    # result chunks of at most 16 MB uncompressed (Snowflake's smallest; its default is 160): what a stream
    # holds is a few chunks, so this bounds a load's memory (docs/OPTIMIZATION.md, 'Memory')
    "CLIENT_RESULT_CHUNK_SIZE": 16,
    # chunk bounds are sent as ISO literals (CAST('2024-01-01 00:00:00' AS TIMESTAMP_NTZ))
    "DATE_INPUT_FORMAT": "AUTO",
    "TIME_INPUT_FORMAT": "AUTO",
    "TIMESTAMP_INPUT_FORMAT": "AUTO",
    # text renderings of dates and times (JSON-format results, values cast to text) stay ISO and exact
    "DATE_OUTPUT_FORMAT": "YYYY-MM-DD",
    "TIME_OUTPUT_FORMAT": "HH24:MI:SS.FF9",
    "TIMESTAMP_OUTPUT_FORMAT": "YYYY-MM-DD HH24:MI:SS.FF9 TZHTZM",
    "TIMESTAMP_NTZ_OUTPUT_FORMAT": "YYYY-MM-DD HH24:MI:SS.FF9",
    "TIMESTAMP_LTZ_OUTPUT_FORMAT": "YYYY-MM-DD HH24:MI:SS.FF9 TZHTZM",
    "TIMESTAMP_TZ_OUTPUT_FORMAT": "YYYY-MM-DD HH24:MI:SS.FF9 TZHTZM",
    "GEOGRAPHY_OUTPUT_FORMAT": "GeoJSON",
    "GEOMETRY_OUTPUT_FORMAT": "GeoJSON",
    "CLIENT_OUT_OF_BAND_TELEMETRY_ENABLED": False,
}

# One hour: every statement sf2pg sends (a chunk's SELECT, a table's planning aggregate, a chunk's
# fingerprint) takes seconds to minutes on a suitable warehouse, so an hour means something is wrong
# (no pruning, a far too small warehouse), and it caps what one such statement costs at a
# warehouse-hour instead of Snowflake's default of two days. 0 leaves the account's setting.
DEFAULT_STATEMENT_TIMEOUT_SECONDS = 3600
# Seconds a request that keeps failing (refused, reset, HTTP 5xx) is retried before the work fails and
# the run's retry takes over; a query that is merely running long is not a failing request.
DEFAULT_RETRY_SECONDS = 60
# A TCP connect to the account (or its proxy) before each login: an unreachable account fails in this
# many seconds, naming host and port, instead of after the connector's login retries.
REACHABLE_TIMEOUT_SECONDS = 5.0
QUERY_TAG_LIMIT = 2000  # Snowflake's maximum QUERY_TAG length


def session_parameters(env: Mapping[str, str]) -> dict[str, Any]:
    """The pinned parameters, the statement timeout from ``SNOWFLAKE_STATEMENT_TIMEOUT_IN_SECONDS``
    and the sessions' query tag."""
    parameters = {**SNOWFLAKE_SESSION, "QUERY_TAG": query_tag()}
    timeout = env_int(env, "SNOWFLAKE_STATEMENT_TIMEOUT_IN_SECONDS", DEFAULT_STATEMENT_TIMEOUT_SECONDS)
    if timeout > 0:
        parameters["STATEMENT_TIMEOUT_IN_SECONDS"] = timeout
    return parameters


def query_tag(**fields: Any) -> str:
    """A ``QUERY_TAG`` an admin can filter and cost by: compact JSON naming sf2pg and what the query is for
    (``TRY_PARSE_JSON(query_tag):app = 'sf2pg'`` in ``QUERY_HISTORY``)."""
    tag = {"app": "sf2pg", **{k: str(v) for k, v in fields.items() if v is not None}}
    text = json.dumps(tag, separators=(",", ":"), ensure_ascii=False)
    while len(text) > QUERY_TAG_LIMIT:  # a very long table name: shorten the longest value
        longest = max(tag, key=lambda k: len(tag[k]))
        tag[longest] = tag[longest][: len(tag[longest]) - (len(text) - QUERY_TAG_LIMIT) - 1] + "…"
        text = json.dumps(tag, separators=(",", ":"), ensure_ascii=False)
    return text


def env_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SnowflakeSettingsError(f"{name} must be a whole number of seconds, found {raw[:20]!r}") from None
    if value < 0:
        raise SnowflakeSettingsError(f"{name} must be 0 or more, found {value}")
    return value


def retry_budget(seconds: float, endpoint: str) -> Callable[[], Iterator[int]]:
    """A connector ``backoff_policy``: the usual jittered exponential pauses (1 to 16 s) between retries of
    one request, and an error naming ``endpoint`` once the request has kept failing for ``seconds``.

    The connector makes a fresh generator per request (and per chunk download) and advances it once up
    front, then once per failed attempt, so the clock starts at the first failure."""

    def policy() -> Iterator[int]:
        yield 1
        failing_since = time.monotonic()
        pause = 1
        while True:
            if time.monotonic() - failing_since >= seconds:
                from snowflake.connector.errorcode import ER_FAILED_TO_REQUEST
                from snowflake.connector.errors import OperationalError

                raise OperationalError(
                    msg=f"a request to Snowflake at {endpoint} kept failing for {seconds:g} s (refused, reset "
                    "or a server error); giving up (SNOWFLAKE_NETWORK_TIMEOUT sets how long)",
                    errno=ER_FAILED_TO_REQUEST,
                    send_telemetry=False,
                )
            pause = min(16, pause * 2)
            yield max(1, int(pause / 2 + random.uniform(0, pause / 2)))

    return policy


def endpoint_of(args: Mapping[str, Any]) -> tuple[str, int]:
    """The host and port the connector will talk to, from its connect arguments."""
    from snowflake.connector.util_text import construct_hostname

    host = args.get("host") or construct_hostname(args.get("region"), str(args.get("account") or ""))
    return str(host), int(args.get("port") or 443)


def check_reachable(host: str, port: int, protocol: str = "https", timeout: float = REACHABLE_TIMEOUT_SECONDS) -> None:
    """Fail at once, naming host and port, when nothing answers there (or at the proxy in between).

    The connector is imported only where an error is raised: this module is imported wherever sessions
    are configured (every Dagster process loading the code location), and the connector costs 0.5 s."""
    via = ""
    proxy = getproxies().get(protocol)
    if proxy and not proxy_bypass(host):
        from urllib.parse import urlsplit

        parts = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        via = f" through the proxy at {parts.hostname}:{parts.port or 80} ({protocol}_proxy)"
        target = (parts.hostname or "", parts.port or 80)
    else:
        target = (host, port)
    try:
        with socket.create_connection(target, timeout=timeout):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        if isinstance(exc, TimeoutError):
            reason = f"no answer within {timeout:g} s"
        from snowflake.connector.errorcode import ER_FAILED_TO_CONNECT_TO_DB
        from snowflake.connector.errors import OperationalError

        raise OperationalError(
            msg=f"Snowflake at {host}:{port}{via} cannot be reached: {reason} (check SNOWFLAKE_ACCOUNT, "
            "or SNOWFLAKE_HOST and SNOWFLAKE_PORT, and that this machine may connect there)",
            errno=ER_FAILED_TO_CONNECT_TO_DB,
            send_telemetry=False,
        ) from None

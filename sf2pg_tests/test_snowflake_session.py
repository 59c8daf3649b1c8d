"""What every Snowflake session is pinned to, how its queries are tagged and timed out, and how an
unreachable account or a failing request ends the work.

Over the wire where the emulator can tell (it records what each login and statement sent); the
retry budget's arithmetic is pure logic. The one slow test here is the query that runs over a minute:
its queries start before the session's first test (conftest), so its minute passes meanwhile.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable

import pytest
from dagster import DagsterInstance
from snowflake.connector.errors import OperationalError, ProgrammingError

from sf2pg.config.loading import parse_config
from sf2pg.dagster.resources import snowflake_resource
from sf2pg.dagster.runner import migrate
from sf2pg.devstack.emulator import free_port
from sf2pg.source.extract import StatementTimeoutError, stream_query
from sf2pg.source.snowflake_session import SNOWFLAKE_SESSION, SnowflakeSettingsError, retry_budget
from sf2pg_tests.harness import Stack, World


def _last_login(stack: Stack) -> dict:
    return stack.emulator.logins()[-1]


def test_every_session_is_pinned_and_tagged_and_never_arms_a_client_side_cancel(stack: Stack):
    with snowflake_resource(resolve=True).get_connection() as conn:
        conn.cursor().execute("SELECT 1")
    login = _last_login(stack)
    sent = login["session_parameters"]
    assert {k: sent[k] for k in SNOWFLAKE_SESSION} == SNOWFLAKE_SESSION
    assert sent["QUOTED_IDENTIFIERS_IGNORE_CASE"] is False and sent["PYTHON_CONNECTOR_QUERY_RESULT_FORMAT"] == "ARROW"
    assert sent["STATEMENT_TIMEOUT_IN_SECONDS"] == 3600
    assert json.loads(sent["QUERY_TAG"]) == {"app": "sf2pg"}
    assert login["network_timeout"] is None  # the connector's timebomb would cancel long queries
    assert sent["CLIENT_PREFETCH_THREADS"] == 2


def test_the_statement_timeout_comes_from_the_environment_and_zero_leaves_the_accounts(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("SNOWFLAKE_STATEMENT_TIMEOUT_IN_SECONDS", "0")
    with snowflake_resource(resolve=True).get_connection():
        pass
    assert "STATEMENT_TIMEOUT_IN_SECONDS" not in _last_login(stack)["session_parameters"]
    monkeypatch.setenv("SNOWFLAKE_STATEMENT_TIMEOUT_IN_SECONDS", "an hour")
    with pytest.raises(SnowflakeSettingsError, match="SNOWFLAKE_STATEMENT_TIMEOUT_IN_SECONDS must be a whole number"):
        snowflake_resource(resolve=True)


def test_a_query_running_past_its_statement_timeout_is_cancelled_by_snowflake_and_not_retried(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("SNOWFLAKE_STATEMENT_TIMEOUT_IN_SECONDS", "1")
    with snowflake_resource(resolve=True).get_connection() as conn, pytest.raises(StatementTimeoutError) as caught:
        list(stream_query(conn, "SELECT SYSTEM$WAIT(3)"))
    message = str(caught.value)
    assert "timeout of 1 second(s)" in message and "SNOWFLAKE_STATEMENT_TIMEOUT_IN_SECONDS" in message


def test_chunk_queries_name_table_and_chunk_and_a_runs_other_queries_name_the_run(world: World):
    world.sf_exec(
        f'CREATE TABLE "{world.sf_database}"."PUBLIC"."TAGGED" (ID NUMBER(9,0))',
        f'INSERT INTO "{world.sf_database}"."PUBLIC"."TAGGED" SELECT SEQ4() FROM TABLE(GENERATOR(ROWCOUNT => 300))',
    )
    raw = world.config([{"source": "TAGGED", "chunking_columns": ["ID"], "chunking_column_types": ["id"]}])
    config = parse_config(raw)
    seen = len(world.stack.emulator.queries())
    instance = DagsterInstance.ephemeral()
    [outcome] = migrate(config, config.tables(), instance)
    assert outcome.success, outcome.error
    sent = world.stack.emulator.queries()[seen:]
    table = f"{world.sf_database}.PUBLIC.TAGGED"
    chunk_tags = [json.loads(q["query_tag"]) for q in sent if q["sql"].startswith('SELECT "ID" FROM')]
    assert sorted(t["chunk"] for t in chunk_tags) == sorted(c.key for c in outcome.plan.chunks)
    assert all(t["app"] == "sf2pg" and t["table"] == table for t in chunk_tags)
    [run] = instance.get_runs()
    in_run = [json.loads(q["query_tag"]) for q in sent if "information_schema.columns" in q["sql"]]
    assert {"app": "sf2pg", "run_id": run.run_id} in in_run  # the asset body's describe, in the run


def test_an_unreachable_account_fails_at_once_naming_host_and_port(stack: Stack, monkeypatch: pytest.MonkeyPatch):
    port = free_port()
    monkeypatch.setenv("SNOWFLAKE_HOST", "127.0.0.1")
    monkeypatch.setenv("SNOWFLAKE_PORT", str(port))
    started = time.monotonic()
    refused = f"Snowflake at 127.0.0.1:{port} cannot be reached: Connection refused"
    with pytest.raises(OperationalError, match=refused), snowflake_resource(resolve=True).get_connection():
        pass
    assert time.monotonic() - started < 10  # not the connector's 30 s of login retries


def test_a_session_whose_snowflake_goes_away_gives_up_after_the_retry_budget(tmp_path, monkeypatch: pytest.MonkeyPatch):
    """Over the wire: the connector really takes sf2pg's backoff policy, and its give-up reaches the caller."""
    from sf2pg.devstack.emulator import start_emulator

    own = start_emulator(None, log_path=tmp_path / "emulator.log")
    for key, value in {**own.env(), "SNOWFLAKE_NETWORK_TIMEOUT": "2"}.items():
        monkeypatch.setenv(key, value)
    try:
        with snowflake_resource(resolve=True).get_connection() as conn:
            own.stop()  # Snowflake goes away while the session is open
            with pytest.raises(OperationalError, match=f"127.0.0.1:{own.port} kept failing for 2 s"):
                conn.cursor().execute("SELECT 1")
    finally:
        own.stop()


def test_a_request_that_keeps_failing_gives_up_after_the_retry_budget_naming_the_endpoint():
    pauses = retry_budget(0.2, "myorg-myaccount.snowflakecomputing.com:443")()
    assert next(pauses) == 1  # the connector takes one pause up front, before anything failed
    assert 1 <= next(pauses) <= 16  # first failure: the budget starts
    time.sleep(0.25)
    with pytest.raises(
        OperationalError, match=re.escape("myorg-myaccount.snowflakecomputing.com:443 kept failing for 0.2 s")
    ):
        next(pauses)


LONG_QUERY = "SELECT SYSTEM$WAIT(65)"


def start_the_minute_long_queries(stack: Stack) -> Callable[[], tuple[tuple, list[BaseException]]]:
    """Send the same 65-second query on a session of sf2pg's and on one with ``network_timeout=60``
    (what sf2pg used to set), each from a thread; returns the wait for both outcomes. conftest starts
    them before the session's first test and runs the test below last, so the minute passes while
    the rest of the suite runs."""
    outcomes: dict[str, object] = {}
    cancelled: list[BaseException] = []

    def run_ours() -> None:
        try:
            with snowflake_resource(resolve=True).get_connection() as conn:
                outcomes["ours"] = conn.cursor().execute(LONG_QUERY).fetchone()
        except Exception as exc:
            outcomes["ours"] = exc

    def run_theirs() -> None:
        conn = stack.sf_connect(network_timeout=60)
        try:
            conn.cursor().execute(LONG_QUERY)
        except ProgrammingError as exc:
            cancelled.append(exc)
        finally:
            conn.close()

    threads = [threading.Thread(target=run, daemon=True) for run in (run_ours, run_theirs)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 30  # both logged in and sent before any test counts logins or statements
    while sum(q["sql"] == LONG_QUERY for q in stack.emulator.queries()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)

    def outcome() -> tuple[tuple, list[BaseException]]:
        for thread in threads:
            thread.join(90)
        return outcomes.get("ours"), cancelled  # type: ignore[return-value]

    return outcome


def test_a_query_running_longer_than_a_minute_completes_where_the_connectors_timeout_would_cancel_it(
    minute_long_queries: Callable[[], tuple[tuple, list[BaseException]]],
):
    """On real Snowflake the planning query of a large table or a fingerprint scan on a queued warehouse
    can run for minutes. sf2pg's sessions let it; a session with ``network_timeout=60`` (what sf2pg
    used to set) has the connector cancel it client-side, which the emulator reproduces."""
    ours, cancelled = minute_long_queries()
    assert ours == ("waited 65 seconds",)
    # 000604: the connector's timer sent an abort-request at 60 s (the emulator cancels nothing on its own)
    assert cancelled and cancelled[0].errno == 604 and "SQL execution canceled" in str(cancelled[0])

"""Which failures of a table's step Dagster is asked to retry, and after how long."""

import pytest
from dagster import DagsterExecutionInterruptedError, Failure, RetryRequested

from sf2pg.dagster.retries import STEP_RETRIES, retried_on_failure
from sf2pg.errors import InputError


def test_a_failure_that_may_pass_requests_the_policys_retries_with_growing_waits():
    waits = []
    for previous_attempts in (0, 1):
        with pytest.raises(RetryRequested) as caught, retried_on_failure(previous_attempts):
            raise ConnectionError("server closed the connection")
        assert caught.value.max_retries == STEP_RETRIES.max_retries
        assert isinstance(caught.value.__cause__, ConnectionError)  # shown in the UI with the retry
        waits.append(caught.value.seconds_to_wait)
    assert 0 < waits[0] < waits[1]


def test_bad_input_fails_at_once_without_retries():
    with pytest.raises(Failure) as caught, retried_on_failure(0):
        raise InputError("config.sources[0].tables[1].chunking_columns: no column 'ID2' in SRC.T")
    assert not caught.value.allow_retries
    assert "ID2" in str(caught.value)


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, DagsterExecutionInterruptedError])
def test_an_interrupt_stays_an_interrupt_so_a_terminated_run_stops(interrupt):
    with pytest.raises(interrupt), retried_on_failure(0):
        raise interrupt()


def test_a_decision_already_made_passes_through():
    with pytest.raises(Failure) as caught, retried_on_failure(0):
        raise Failure("permanent", allow_retries=False)
    assert not caught.value.allow_retries


def test_a_failure_that_allows_retries_is_retried_as_a_declared_policy_would():
    with pytest.raises(RetryRequested) as caught, retried_on_failure(0):
        raise Failure("the warehouse is suspended")
    assert isinstance(caught.value.__cause__, Failure)


def test_a_retry_is_announced_with_the_failure_and_when_the_next_attempt_starts():
    from sf2pg.run import progress

    class Listener:
        def __init__(self):
            self.retries = []

        def on_table_started(self, table):
            pass

        def on_chunk(self, table, result):
            pass

        def on_retry(self, event):
            self.retries.append(event)

    listener = Listener()
    unsubscribe = progress.subscribe(listener)
    try:
        for previous_attempts in range(STEP_RETRIES.max_retries + 1):
            with pytest.raises(RetryRequested), retried_on_failure(previous_attempts):
                raise ConnectionError("server closed\n  the connection")
    finally:
        unsubscribe()
    # one announcement per retry that will happen; the last failure is the step's, not a retry
    assert [(e.attempt, e.attempts) for e in listener.retries] == [(1, 3), (2, 3)]
    first = listener.retries[0]
    assert first.reason == "server closed the connection"  # one line
    assert 0 <= first.seconds <= 2 * STEP_RETRIES.delay  # the wait the retry request carries


SHOP = {
    "sources": [
        {
            "source_name": "shop",
            "source_sf_database": "SHOP_DB",
            "source_sf_schema": "PUBLIC",
            "target_pg_database": "shop",
            "target_pg_schema": "sales",
            "tables": [{"source": "ORDERS"}],
        }
    ]
}


def test_the_cli_prints_a_line_per_retry_naming_the_table_and_the_next_attempt(capsys):
    from sf2pg.cli.main import _LoadProgress
    from sf2pg.config.loading import parse_config
    from sf2pg.run.progress import RetryScheduled

    class Plan:
        chunks, new_keys, source_queries = ["a", "b"], [], 1

    class Chunk:
        key, mode, rows_copied, seconds = "a", "copy", 10, 0.5

    display = _LoadProgress()
    display.on_plan(parse_config(SHOP).tables()[0], Plan())
    display.on_chunk("shop.orders", Chunk())
    display.on_retry(RetryScheduled(("shop", "orders"), 1, 3, 7.2, "cannot connect to PostgreSQL at db:5432"))
    out = capsys.readouterr().out
    assert "shop.orders: attempt 1 of 3 failed: cannot connect to PostgreSQL at db:5432" in out
    assert "attempt 2 starts at" in out and "(in 7 s)" in out
    # the next attempt loads the chunks again: the table's count and clock start over
    assert display.rows["shop.orders"] == 0 and "shop.orders" not in display.started
    assert display.progress.tasks[0].completed == 0


def test_a_retry_in_a_real_run_is_announced_in_the_run_log_and_to_the_display(world, monkeypatch):
    from dagster import DagsterInstance, RetryPolicy, materialize

    from sf2pg.config.loading import parse_config
    from sf2pg.dagster import retries
    from sf2pg.dagster.assets import IO_MANAGER_KEY, build_table_asset
    from sf2pg.dagster.definitions import build_resources
    from sf2pg.dagster.io_manager import PostgresCopyIOManager
    from sf2pg.dagster.partitions import partitions_name
    from sf2pg.dagster.resources import PostgresResource
    from sf2pg.dagster.runner import plan_tables
    from sf2pg.run import progress
    from sf2pg_tests.test_load.test_migrate import all_types_config, seed_all_types

    seed_all_types(world, 50)
    [spec] = parse_config(all_types_config(world)).tables()
    monkeypatch.setattr(retries, "STEP_RETRIES", RetryPolicy(max_retries=1, delay=0))  # no wait in a test
    instance = DagsterInstance.ephemeral()
    plan_tables([spec], instance)
    resources = build_resources(resolve_env=True)
    resources[IO_MANAGER_KEY] = PostgresCopyIOManager(postgres=PostgresResource(host="127.0.0.1", port=9))
    events: list = []

    class Listener:
        def on_table_started(self, table):
            pass

        def on_chunk(self, table, result):
            pass

        def on_retry(self, event):
            events.append(event)

    unsubscribe = progress.subscribe(Listener())
    try:
        result = materialize(
            [build_table_asset(spec)],
            instance=instance,
            resources=resources,
            partition_key=instance.get_dynamic_partitions(partitions_name(spec))[0],
            raise_on_error=False,
        )
    finally:
        unsubscribe()
    assert not result.success  # the target stays unreachable: the one retry fails too
    [event] = events
    assert event.asset_key == ("src", "all_types") and (event.attempt, event.attempts) == (1, 2)
    assert "cannot connect to PostgreSQL at 127.0.0.1:9" in event.reason
    messages = [e.user_message for e in instance.all_logs(result.run_id)]
    assert any(m.startswith("src.all_types: attempt 1 of 2 failed (cannot connect to PostgreSQL") for m in messages)

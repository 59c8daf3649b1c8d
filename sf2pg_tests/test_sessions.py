"""A run's Snowflake sessions: one a step is done with serves the next, and none outlives the run.

Real connector, real emulator (over the wire); the resource's lifecycle is driven as Dagster drives it.
"""

from __future__ import annotations

import pytest
from dagster import build_init_resource_context

from sf2pg.dagster.resources import snowflake_resource
from sf2pg_tests.harness import Stack


@pytest.fixture
def run_resource(stack: Stack):
    resource = snowflake_resource(resolve=True)
    context = build_init_resource_context()
    resource.setup_for_execution(context)  # what Dagster does when a run starts
    yield resource
    resource.teardown_after_execution(context)


def _select_one(conn) -> int:
    return conn.cursor().execute("SELECT 1").fetchone()[0]


def test_a_session_one_step_is_done_with_serves_the_next(run_resource):
    with run_resource.get_connection() as first:
        assert _select_one(first) == 1
    with run_resource.get_connection() as second:
        assert second is first and _select_one(second) == 1


def test_sessions_in_use_at_once_are_distinct(run_resource):
    with run_resource.get_connection() as a, run_resource.get_connection() as b:
        assert a is not b and _select_one(a) == _select_one(b) == 1


def test_a_session_whose_work_failed_is_ended_and_so_are_the_idle_ones(run_resource):
    with run_resource.get_connection() as idle, run_resource.get_connection() as failing:
        pass
    assert not idle.is_closed()
    with pytest.raises(RuntimeError), run_resource.get_connection() as failing:
        raise RuntimeError("the query failed")
    assert failing.is_closed() and idle.is_closed()
    with run_resource.get_connection() as fresh:  # after an outage the next step logs in again
        assert fresh not in (idle, failing) and _select_one(fresh) == 1


def test_a_session_closed_by_its_user_is_not_handed_on(run_resource):
    with run_resource.get_connection() as broken:
        broken.close()  # what a chunk stream does with a session whose query failed
    with run_resource.get_connection() as next_one:
        assert next_one is not broken and _select_one(next_one) == 1


def test_every_session_ends_with_the_run(stack: Stack):
    resource = snowflake_resource(resolve=True)
    context = build_init_resource_context()
    resource.setup_for_execution(context)
    with resource.get_connection() as a, resource.get_connection() as b:
        pass
    resource.teardown_after_execution(context)
    assert a.is_closed() and b.is_closed()


def test_outside_a_run_every_session_is_its_own_and_ends_on_exit(stack: Stack):
    resource = snowflake_resource(resolve=True)  # the CLI's planning and verify use it this way
    with resource.get_connection() as first:
        assert _select_one(first) == 1
    assert first.is_closed()


def test_a_session_taken_before_a_failure_elsewhere_ends_when_it_comes_back(run_resource):
    # nested on purpose: the failure must stay inside, so that ``older`` itself comes back healthy
    with run_resource.get_connection() as older:  # noqa: SIM117 (e.g. a loader's, while another's query fails)
        with pytest.raises(RuntimeError), run_resource.get_connection():
            raise RuntimeError("the source went away")
    assert older.is_closed()  # the retry starts on fresh sessions


def test_a_session_idle_too_long_is_ended_instead_of_reused(run_resource, monkeypatch: pytest.MonkeyPatch):
    with run_resource.get_connection() as idle:
        pass
    monkeypatch.setattr("sf2pg.source.snowflake_connection.SESSION_IDLE_SECONDS", 0.0)  # as if 4 minutes had passed
    with run_resource.get_connection() as fresh:
        assert fresh is not idle and _select_one(fresh) == 1
    assert idle.is_closed()

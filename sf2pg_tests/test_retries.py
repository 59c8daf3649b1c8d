"""Which failures of a table's step Dagster is asked to retry, and after how long."""

import pytest
from dagster import DagsterExecutionInterruptedError, Failure, RetryRequested

from sf2pg.errors import InputError
from sf2pg.retries import STEP_RETRIES, retried_on_failure


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

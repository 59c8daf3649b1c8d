"""How a table's step retries: Dagster's ``RetryPolicy`` semantics, requested by sf2pg itself.

Runs execute their steps in the run worker's own process (``definitions.py``), and there Dagster applies
an op's ``RetryPolicy`` to run termination as well (dagster-io/dagster#15026): a load stopped with
*Terminate* would start over instead of stopping. So the table asset declares no policy; its body and
the IO manager request the same retries for failures that may pass, and an interrupt stays an
interrupt (the run ends canceled, its in-flight chunks rolled back).

A retry is announced when it is decided, naming the table, the failure and when the next attempt
starts: in the run's log (the Dagster UI) and to the CLI's live display (``progress``), so a load
that waits out a failure does not look hung.
"""

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from dagster import AssetExecutionContext, Backoff, DagsterError, Failure, Jitter, RetryPolicy, RetryRequested

from sf2pg.errors import RETRIES, RETRY_DELAY_S, InputError, retry_delay, retry_reason
from sf2pg.run import progress

log = logging.getLogger("sf2pg")

# the policy of sf2pg.errors, as Dagster spells it
STEP_RETRIES = RetryPolicy(
    max_retries=RETRIES, delay=RETRY_DELAY_S, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS
)


@contextmanager
def retried_on_failure(previous_attempts: int) -> Iterator[None]:
    """Turn a failure inside into a Dagster retry request, except bad input (retrying cannot fix it).

    ``KeyboardInterrupt`` and Dagster's interrupt are ``BaseException``s and pass through untouched.
    """
    try:
        yield
    except (RetryRequested, DagsterError):
        raise  # already a retry request, or Dagster's own
    except Failure as exc:
        if not exc.allow_retries:
            raise
        raise _retry(previous_attempts, exc) from exc
    except InputError as exc:
        raise Failure(str(exc), allow_retries=False) from None
    except Exception as exc:
        raise _retry(previous_attempts, exc) from exc


def _retry(previous_attempts: int, exc: BaseException) -> RetryRequested:
    seconds = retry_delay(previous_attempts + 1)
    if previous_attempts < STEP_RETRIES.max_retries:  # else Dagster fails the step: nothing is coming
        _announce(previous_attempts + 1, seconds, exc)
    return RetryRequested(max_retries=STEP_RETRIES.max_retries, seconds_to_wait=seconds)


def _announce(attempt: int, seconds: float, exc: BaseException) -> None:
    attempts = STEP_RETRIES.max_retries + 1
    reason = retry_reason(exc)
    try:
        context = AssetExecutionContext.get()  # the table's step: its body or its IO manager
        key, logger = tuple(context.asset_key.path), context.log
    except Exception:  # not inside an asset step
        key, logger = (), log
    logger.warning(
        f"{'.'.join(key) or 'step'}: attempt {attempt} of {attempts} failed ({reason}); "
        f"attempt {attempt + 1} starts in {seconds:.0f} s"
    )
    progress.retry_scheduled(progress.RetryScheduled(key, attempt, attempts, seconds, reason))

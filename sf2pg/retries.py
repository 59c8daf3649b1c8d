"""How a table's step retries: Dagster's ``RetryPolicy`` semantics, requested by sf2pg itself.

Runs execute their steps in the run worker's own process (``build.py``), and there Dagster applies
an op's ``RetryPolicy`` to run termination as well (dagster-io/dagster#15026): a load stopped with
*Terminate* would start over instead of stopping. So the table asset declares no policy; its body and
the IO manager request the same retries for failures that may pass, and an interrupt stays an
interrupt (the run ends canceled, its in-flight chunks rolled back).
"""

from collections.abc import Iterator
from contextlib import contextmanager

from dagster import Backoff, DagsterError, Failure, Jitter, RetryPolicy, RetryRequested

from sf2pg.errors import InputError

# 2 retries, after 0-10 s then 10-20 s (exponential with jitter): time for a restarted server or a dropped session.
STEP_RETRIES = RetryPolicy(max_retries=2, delay=5, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS)


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
        raise _retry(previous_attempts) from exc
    except InputError as exc:
        raise Failure(str(exc), allow_retries=False) from None
    except Exception as exc:
        raise _retry(previous_attempts) from exc


def _retry(previous_attempts: int) -> RetryRequested:
    return RetryRequested(
        max_retries=STEP_RETRIES.max_retries, seconds_to_wait=STEP_RETRIES.calculate_delay(previous_attempts + 1)
    )

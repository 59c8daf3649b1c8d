"""Error families. ``InputError`` marks problems a retry cannot fix (config, schema, data), so the
Dagster layer fails them at once instead of spending the retry policy on them."""

from __future__ import annotations

import random


class InputError(ValueError):
    """Bad input: the message names the config path, table, column or chunk at fault."""


# How a table's load is retried, in Dagster (``sf2pg.dagster.retries``) and in the CLI's runs without it
# (``sf2pg.run.runners``): 2 retries, after 0-10 s then 10-20 s (exponential with jitter), time for a
# restarted server or a dropped session.
RETRIES = 2
RETRY_DELAY_S = 5.0


def retry_delay(attempt: int) -> float:
    """Seconds before retry ``attempt`` (from 1): Dagster's exponential backoff with plus-minus jitter."""
    return ((2**attempt) - 1) * RETRY_DELAY_S + (2 * random.random() - 1) * RETRY_DELAY_S


def retry_reason(exc: BaseException) -> str:
    """A failure as one line of at most 300 characters, for a retry's announcement."""
    reason = " ".join(str(exc).split()) or type(exc).__name__
    return reason if len(reason) <= 300 else reason[:297] + "..."

"""Error families. ``InputError`` marks problems a retry cannot fix (config, schema, data), so the
Dagster layer fails them at once instead of spending the retry policy on them."""

from __future__ import annotations


class InputError(ValueError):
    """Bad input: the message names the config path, table, column or chunk at fault."""

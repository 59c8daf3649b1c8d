"""Quoting and naming rules for identifiers on both sides.

PostgreSQL names are always composed with ``psycopg.sql.Identifier``; this module covers the
Snowflake side (which has no driver helper) and the Snowflake -> PostgreSQL naming rule, which is
held here and nowhere else (``pg_name_for``, and ``pg_column_match`` to find a name in a table).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

_UNQUOTED_SNOWFLAKE = re.compile(r"^[A-Z_][A-Z0-9_$]*$")

PG_MAX_NAME_BYTES = 63  # NAMEDATALEN - 1: PostgreSQL silently cuts longer names to this
_HASH_HEX = 8  # 32 bits of SHA-256 tell apart names that share their first 54 bytes


def sf_quote(name: str) -> str:
    """Quote one Snowflake identifier exactly as stored (double quotes doubled)."""
    return '"' + name.replace('"', '""') + '"'


def sf_qualified(*parts: str) -> str:
    """``"DB"."SCHEMA"."TABLE"`` from stored names."""
    return ".".join(sf_quote(p) for p in parts)


def pg_name_for(snowflake_name: str) -> str:
    """The PostgreSQL name for a Snowflake name: unquoted-style names (stored upper-case) become
    lower-case, quoted ones keep their spelling, and a result over 63 bytes is shortened by
    ``pg_fit`` (deterministic, so every later load finds the same column)."""
    return pg_fit(_cased(snowflake_name), snowflake_name)


def _cased(snowflake_name: str) -> str:
    return snowflake_name.lower() if _UNQUOTED_SNOWFLAKE.match(snowflake_name) else snowflake_name


def pg_fit(name: str, seed: str | None = None) -> str:
    """``name`` when it fits PostgreSQL's 63 bytes; else its first 54 bytes (cut on a UTF-8 character
    boundary), ``_`` and 8 hex digits of the SHA-256 of ``seed`` (default: ``name``).

    PostgreSQL would cut the name itself, differently in different statements' eyes: a later lookup
    by the full name then finds nothing. The hash keeps two long names that share a prefix apart."""
    if len(name.encode()) <= PG_MAX_NAME_BYTES:
        return name
    digest = hashlib.sha256((seed if seed is not None else name).encode()).hexdigest()[:_HASH_HEX]
    return _cut(name, PG_MAX_NAME_BYTES - _HASH_HEX - 1) + "_" + digest


def pg_truncated(name: str) -> str:
    """What PostgreSQL itself makes of a long name (its first 63 bytes on a character boundary): how
    a target created before sf2pg shortened names holds such a column."""
    return _cut(name, PG_MAX_NAME_BYTES)


def _cut(name: str, max_bytes: int) -> str:
    return name.encode()[:max_bytes].decode(errors="ignore")


def pg_column_match(existing: Iterable[str], snowflake_name: str) -> str | None:
    """The column of an existing PostgreSQL table that a Snowflake column (or a configured name)
    loads into: the mapped name, else the name PostgreSQL's own cut gave it, else a unique
    case-insensitive match; None when the table has no such column."""
    names = list(existing)
    mapped = pg_name_for(snowflake_name)
    cut = (pg_truncated(_cased(snowflake_name)), pg_truncated(snowflake_name))
    for candidate in dict.fromkeys((mapped, snowflake_name, *cut)):
        if candidate in names:
            return candidate
    folded = [n for n in names if n.casefold() in (mapped.casefold(), snowflake_name.casefold())]
    return folded[0] if len(folded) == 1 else None


def sf_string(value: str) -> str:
    """A Snowflake string literal (for metadata queries that cannot bind parameters)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"

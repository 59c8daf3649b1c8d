"""Quoting and naming rules for identifiers on both sides.

PostgreSQL names are always composed with ``psycopg.sql.Identifier``; this module covers the
Snowflake side (which has no driver helper) and the Snowflake -> PostgreSQL naming rule.
"""

from __future__ import annotations

import re

_UNQUOTED_SNOWFLAKE = re.compile(r"^[A-Z_][A-Z0-9_$]*$")


def sf_quote(name: str) -> str:
    """Quote one Snowflake identifier exactly as stored (double quotes doubled)."""
    return '"' + name.replace('"', '""') + '"'


def sf_qualified(*parts: str) -> str:
    """``"DB"."SCHEMA"."TABLE"`` from stored names."""
    return ".".join(sf_quote(p) for p in parts)


def pg_name_for(snowflake_name: str) -> str:
    """Unquoted-style Snowflake names (stored upper-case) become lower-case; quoted ones keep their spelling."""
    return snowflake_name.lower() if _UNQUOTED_SNOWFLAKE.match(snowflake_name) else snowflake_name


def sf_string(value: str) -> str:
    """A Snowflake string literal (for metadata queries that cannot bind parameters)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"

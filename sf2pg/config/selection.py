"""The tables a command line names (``SOURCE``, ``-t TABLE``), checked before any work starts.

A name that matches nothing is the command line's mistake, not the config's: it is said so, with a
did-you-mean, and a name that matches a disabled table or source says that it is disabled and where.
Names are a table's target name, its Snowflake name, or ``source.target`` (``select_tables``).
"""

from __future__ import annotations

import difflib
import re

from sf2pg.config.model import AppConfig, TableSpec
from sf2pg.errors import InputError


class SelectionError(InputError):
    """A ``SOURCE`` or ``-t`` on the command line that names no enabled table."""


def _names(spec: TableSpec) -> set[str]:
    return {spec.pg_table, spec.sf_table, spec.name}


def check_selection(config: AppConfig, source: str | None, tables: list[str] | None, origin: str) -> None:
    """Raise ``SelectionError`` unless ``source`` and every ``tables`` name select an enabled table."""
    if source:
        _check_source(config, source, origin)
    everything = [s for s in config.tables(enabled_only=False) if source in (None, s.source_name)]
    enabled = {s.config_path for s in config.tables() if source in (None, s.source_name)}
    for name in tables or []:
        matches = [s for s in everything if name in _names(s)]
        if any(s.config_path in enabled for s in matches):
            continue
        if matches:
            spec = matches[0]
            i = int(re.match(r"sources\[(\d+)\]", spec.config_path).group(1))  # type: ignore[union-attr]
            off = (
                f'sources[{i}] ("{spec.source_name}") has "enabled": false'
                if not config.sources[i].enabled
                else f'{spec.config_path} has "enabled": false'
            )
            raise SelectionError(f"table {spec.name} is disabled: {off} in {origin}; set it to true to load the table")
        known = sorted({n for s in everything if s.config_path in enabled for n in (s.pg_table, s.name)})
        close = difflib.get_close_matches(name, known, n=1)
        where = f"source {source!r}" if source else origin
        hint = f"did you mean {close[0]!r}?" if close else f"enabled tables: {', '.join(known) or 'none'}"
        raise SelectionError(
            f"-t {name}: no table of that name in {where} ({hint}); a table is named by its target, "
            "its Snowflake name or source.target"
        )


def _check_source(config: AppConfig, source: str, origin: str) -> None:
    for i, candidate in enumerate(config.sources):
        if candidate.source_name == source:
            if not candidate.enabled:
                raise SelectionError(
                    f'source {source} is disabled: sources[{i}] has "enabled": false in {origin}; '
                    "set it to true to load its tables"
                )
            return
    names = [s.source_name for s in config.sources]
    close = difflib.get_close_matches(source, names, n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"sources: {', '.join(names)}"
    raise SelectionError(f"no source named {source!r} in {origin} ({hint})")


def select_tables(config: AppConfig, source: str | None, tables: list[str] | None) -> list[TableSpec]:
    """Enabled tables of one source (or all), optionally narrowed to target or source table names."""
    if source:
        config.source(source)  # a clear error for an unknown source
    specs = [s for s in config.tables() if source in (None, s.source_name)]
    if tables:
        wanted = set(tables)
        unknown = wanted - {s.pg_table for s in specs} - {s.sf_table for s in specs} - {s.name for s in specs}
        if unknown:
            raise config.unknown_table(sorted(unknown), source, [n for s in specs for n in (s.pg_table, s.sf_table)])
        specs = [s for s in specs if {s.pg_table, s.sf_table, s.name} & wanted]
    return specs

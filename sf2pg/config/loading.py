"""Reading a config: which file (``--config``, ``$SF2PG_CONFIG``, the default), JSON into the models of
``sf2pg.config.model``, and every problem found in one pass, in file order, each with its path and a hint
(pydantic's errors translated, and the rules that span keys or need a parser)."""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from sf2pg.config.identifiers import PG_MAX_NAME_BYTES, pg_name_for
from sf2pg.config.model import (
    BOUNDS,
    CHUNKING_TYPES,
    DEFAULT_CONFIG_PATH,
    ECHO_LIMIT,
    ENV_VAR,
    SOURCE_NAME,
    AppConfig,
    ConfigError,
    ConfigProblem,
    SourceConfig,
    TableConfig,
    echo,
)
from sf2pg.config.typemap import parse_declared

# ---- loading -----------------------------------------------------------------------------------


def config_path(cli_value: str | Path | None = None) -> Path:
    """``--config`` value, else ``$SF2PG_CONFIG``, else ``config/config.json`` (relative to the cwd)."""
    if cli_value:
        return Path(cli_value)
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR])
    return DEFAULT_CONFIG_PATH


def _chosen_by(path: str | Path | None) -> str:
    if path:
        return "given with --config"
    if os.environ.get(ENV_VAR):
        return f"from ${ENV_VAR}"
    return f"the default, relative to {Path.cwd()}"


def load_config(path: str | Path | None = None) -> AppConfig:
    """Read and validate a config file; ``ConfigError`` lists every problem."""
    resolved = config_path(path)
    origin = str(resolved)

    def fail(message: str, hint: str | None = None) -> ConfigError:
        return ConfigError(origin, [ConfigProblem("(file)", message, hint)])

    try:
        text = resolved.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise fail(
            f"no config file at {resolved} ({_chosen_by(path)})",
            f"pass --config PATH or set {ENV_VAR}; config/example.full.json shows every key",
        ) from None
    except UnicodeDecodeError:
        raise fail("is not UTF-8 text", "save the file as UTF-8 JSON") from None
    except OSError as exc:
        raise fail(f"cannot read {resolved} ({_chosen_by(path)}): {exc.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise fail(
            f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}",
            "JSON allows no comments and no trailing commas",
        ) from None
    return parse_config(data, origin)


def parse_config(data: object, origin: str = "<config>") -> AppConfig:
    """Validate already-parsed JSON; ``ConfigError`` lists every problem, in file order."""
    if not isinstance(data, dict):
        found = type(data).__name__ if data is not None else "null"
        raise ConfigError(
            origin,
            [ConfigProblem("(top level)", f"must be a JSON object, found {found}", "see config/example.full.json")],
        )
    problems: list[ConfigProblem] = []
    config: AppConfig | None = None
    try:
        config = AppConfig.model_validate(data)
    except ValidationError as exc:
        problems += [_problem_from(error) for error in exc.errors()]  # type: ignore[arg-type]
    # rules that span keys still run when pydantic failed elsewhere, so one pass finds everything
    problems += _rule_problems(data)
    if problems:
        unique = list(dict.fromkeys(problems))
        raise ConfigError(origin, sorted(unique, key=_file_order))
    assert config is not None
    config._origin = origin
    return config


# ---- pydantic errors -> problems ---------------------------------------------------------------

_LEVEL_KEYS = {
    "top": list(AppConfig.model_fields),
    "source": list(SourceConfig.model_fields),
    "table": list(TableConfig.model_fields),
}
_LEVEL_WHERE = {"top": "at the top level", "source": "in a source", "table": "in a table"}

_TYPE_NAMES = {
    "string": "a string",
    "int": "a whole number",
    "bool": "true or false",
    "list": "a list",
    "dict": "an object",
    "model": "an object",
    "model_attributes": "an object",
}


def _path_of(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            name = str(part) if len(str(part)) <= ECHO_LIMIT else str(part)[: ECHO_LIMIT - 3] + "..."
            out += f".{name}" if out else name
    return out or "(top level)"


def _level_of(loc: tuple[Any, ...]) -> str:
    """Which model a location's last key belongs to."""
    parents = loc[:-1]
    if "tables" in parents:
        return "table"
    return "source" if "sources" in parents else "top"


def _file_order(problem: ConfigProblem) -> tuple[int, ...]:
    """Source index, then table index: problems group by where they are in the file."""
    return tuple(int(n) for n in re.findall(r"(?:^|\.)(?:sources|tables)\[(\d+)\]", problem.path))


def _unknown_key(loc: tuple[Any, ...], path: str) -> ConfigProblem:
    level = _level_of(loc)
    key = str(loc[-1])
    allowed = _LEVEL_KEYS[level]
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    if key not in allowed and (home := next((lv for lv, keys in _LEVEL_KEYS.items() if key in keys), None)):
        hint = f"`{key}` belongs {_LEVEL_WHERE[home]}, not {_LEVEL_WHERE[level]}"
    elif close:
        hint = f"did you mean `{close[0]}`?"
    else:
        hint = f"allowed keys {_LEVEL_WHERE[level]}: {', '.join(allowed)}"
    return ConfigProblem(path, "unknown key", hint)


def _problem_from(error: dict[str, Any]) -> ConfigProblem:
    # drop pydantic's synthetic loc parts (validator and union branch names)
    loc = tuple(p for p in error["loc"] if not (isinstance(p, str) and p.startswith(("function-", "literal["))))
    path = _path_of(loc)
    kind: str = error["type"]
    found = echo(error.get("input"))
    key = next((p for p in reversed(loc) if isinstance(p, str)), "")
    if kind == "extra_forbidden":
        return _unknown_key(loc, path)
    if kind == "missing":
        field = _model_field(loc)
        return ConfigProblem(path, "is required", field.description if field else None)
    if kind == "literal_error":
        return ConfigProblem(path, f"{found} is not allowed", f"use one of {error['ctx']['expected']}")
    if kind in ("greater_than_equal", "less_than_equal"):
        ctx = error.get("ctx", {})
        low, high = BOUNDS.get(key, (ctx.get("ge"), ctx.get("le")))
        if high is None:
            return ConfigProblem(path, f"must be at least {low}, found {found}")
        if low is None:
            return ConfigProblem(path, f"must be at most {high}, found {found}")
        return ConfigProblem(path, f"must be between {low} and {high}, found {found}")
    if kind == "string_too_short":
        return ConfigProblem(path, "must not be empty")
    if kind == "too_short":
        return ConfigProblem(path, f"must have at least {error['ctx']['min_length']} entry, found none")
    if kind.endswith("_type"):
        expected = _TYPE_NAMES.get(kind.removesuffix("_type"), kind.removesuffix("_type"))
        return ConfigProblem(path, f"must be {expected}, found {found}")
    return ConfigProblem(path, f"{error['msg']} (found {found})")


def _model_field(loc: tuple[Any, ...]) -> Any:
    fields = {"top": AppConfig, "source": SourceConfig, "table": TableConfig}[_level_of(loc)].model_fields
    return fields.get(str(loc[-1])) if loc else None


# ---- rules that pydantic field types cannot express ---------------------------------------------


def _objects(value: Any) -> Iterator[tuple[int, dict[str, Any]]]:
    """Index and item of every object in a JSON list (anything else was already reported)."""
    if isinstance(value, list):
        for i, item in enumerate(value):
            if isinstance(item, dict):
                yield i, item


def _usable_table(raw: dict[str, Any]) -> tuple[TableConfig | None, set[str]]:
    """The table without its invalid keys (already reported), and those keys, so rules can skip them."""
    try:
        return TableConfig.model_validate(raw), set()
    except ValidationError as exc:
        bad = {str(error["loc"][0]) for error in exc.errors() if error["loc"]}
    try:
        return TableConfig.model_validate({k: v for k, v in raw.items() if k not in bad}), bad
    except ValidationError:
        return None, bad


def _rule_problems(data: dict[str, Any]) -> list[ConfigProblem]:
    """Duplicates across the file and per-table combinations, checked on whatever parts are valid."""
    problems: list[ConfigProblem] = []
    names: dict[str, str] = {}
    targets: dict[tuple[str, str, str], str] = {}
    for i, source in _objects(data.get("sources")):
        name = source.get("source_name")
        if isinstance(name, str) and name:
            if name in names:
                problems.append(
                    ConfigProblem(
                        f"sources[{i}].source_name",
                        f"{echo(name)} is already used by {names[name]}",
                        "source names become Dagster asset key prefixes and must be unique",
                    )
                )
            else:
                names[name] = f"sources[{i}]"
            if not SOURCE_NAME.match(name):
                problems.append(
                    ConfigProblem(
                        f"sources[{i}].source_name",
                        f"{echo(name)} must start with a letter and hold only letters, digits and underscores",
                        "it becomes a Dagster asset key part and group name",
                    )
                )
        pg_schema = source.get("target_pg_schema")
        if isinstance(pg_schema, str) and len(pg_schema.encode()) > PG_MAX_NAME_BYTES:
            problems.append(_too_long(f"sources[{i}].target_pg_schema", pg_schema))
        source_enabled = source.get("enabled") is not False
        for j, raw in _objects(source.get("tables")):
            path = f"sources[{i}].tables[{j}]"
            table, bad = _usable_table(raw)
            if table is None:
                continue
            problems += _table_problems(table, path, bad)
            place = (source.get("target_pg_database"), source.get("target_pg_schema"))
            if bad & {"enabled", "target"} or not (source_enabled and table.enabled):
                continue
            if not all(isinstance(p, str) for p in place):
                continue
            key = (str(place[0]), str(place[1]), table.target or pg_name_for(table.source))
            if key in targets:
                problems.append(
                    ConfigProblem(
                        f"{path}.target",
                        f"PostgreSQL table {'.'.join(key)} is already the target of {targets[key]}",
                        "two tables loading one target would overwrite each other's chunks; give one a different `target`",
                    )
                )
            else:
                targets[key] = path
    return problems


def _too_long(path: str, name: str) -> ConfigProblem:
    return ConfigProblem(
        path,
        f"{echo(name)} is {len(name.encode())} bytes; PostgreSQL names hold at most {PG_MAX_NAME_BYTES}",
        "a longer name would be cut by PostgreSQL and not found again; choose a shorter one",
    )


def _table_problems(table: TableConfig, path: str, invalid: set[str]) -> list[ConfigProblem]:
    """Rules across a table's keys; a rule that reads an ``invalid`` key is skipped, not guessed."""
    problems: list[ConfigProblem] = []
    if table.target and len(table.target.encode()) > PG_MAX_NAME_BYTES:
        problems.append(_too_long(f"{path}.target", table.target))
    names = {"source": table.source, "target": table.target, "source_watermark": table.source_watermark}
    names |= {"target_watermark": table.target_watermark}
    names |= {
        f"{key}[{n}]": c
        for key in ("chunking_columns", "uniqueness_columns")
        for n, c in enumerate(getattr(table, key))
    }
    for key, name in names.items():
        if name and "\x00" in name:
            problems.append(
                ConfigProblem(f"{path}.{key}", "holds a NUL character (\\u0000)", "PostgreSQL names cannot hold one")
            )
    seen: dict[str, int] = {}
    for n, column in enumerate(table.uniqueness_columns):
        if column.casefold() in seen:
            problems.append(
                ConfigProblem(
                    f"{path}.uniqueness_columns[{n}]",
                    f"{echo(column)} repeats uniqueness_columns[{seen[column.casefold()]}]",
                    "name each key column once (names differing only in case are one PostgreSQL column)",
                )
            )
        seen.setdefault(column.casefold(), n)
    for column, declared in table.column_types.items():
        try:
            parse_declared(declared)
        except ValueError as exc:
            problems.append(
                ConfigProblem(
                    f"{path}.column_types.{column}",
                    str(exc),
                    "e.g. bigint, numeric(18,2), varchar(200), text, json (see docs/TYPES.md#choosing-a-columns-type)",
                )
            )
    columns, kinds = table.chunking_columns, table.chunking_column_types
    if len(kinds) != len(columns) and not invalid & {"chunking_columns", "chunking_column_types"}:
        problems.append(
            ConfigProblem(
                f"{path}.chunking_column_types",
                f"has {len(kinds)} entries for {len(columns)} chunking_columns",
                f"give one type per chunking column, each one of {', '.join(CHUNKING_TYPES)}",
            )
        )
    if table.source_filter is not None:
        problems += _filter_problems(table.source_filter, f"{path}.source_filter")
        if table.truncate_onstart and "truncate_onstart" not in invalid:
            problems.append(
                ConfigProblem(
                    f"{path}.truncate_onstart",
                    "cannot be combined with source_filter: truncating drops rows the filter never reloads",
                    "set truncate_onstart to false, or remove source_filter",
                )
            )
    if table.delete_detection and not table.uniqueness_columns and "uniqueness_columns" not in invalid:
        problems.append(
            ConfigProblem(
                f"{path}.delete_detection",
                "compares key sets, but the table has no uniqueness_columns",
                "add uniqueness_columns, or drop delete_detection",
            )
        )
    if table.delete_detection and table.insert_only_mode and not invalid & {"delete_detection", "insert_only_mode"}:
        problems.append(
            ConfigProblem(
                f"{path}.delete_detection",
                "cannot be combined with insert_only_mode, which leaves rows in the target untouched",
                "drop one of them",
            )
        )
    keyless = table.source_watermark and not table.uniqueness_columns and "uniqueness_columns" not in invalid
    if keyless and not table.insert_only_mode and "insert_only_mode" not in invalid:
        problems.append(
            ConfigProblem(
                f"{path}.source_watermark",
                "incremental sync merges by key, but the table has no uniqueness_columns",
                "add uniqueness_columns; or set insert_only_mode for append-only sync; "
                "or drop source_watermark and reload in full",
            )
        )
    if table.target_watermark and not table.source_watermark and "source_watermark" not in invalid:
        problems.append(
            ConfigProblem(
                f"{path}.target_watermark",
                "is set without source_watermark",
                "set source_watermark to the Snowflake column it mirrors, or remove target_watermark",
            )
        )
    return problems


def _filter_problems(text: str, path: str) -> list[ConfigProblem]:
    """A filter is pasted into a WHERE clause, so it must parse as exactly one boolean expression.

    sqlglot is imported here, not at the top: only a config with a filter pays for it (50 ms)."""
    import sqlglot
    from sqlglot import exp

    statements = (exp.DDL, exp.DML, exp.Drop, exp.Command, exp.Alter, exp.Use, exp.Set, exp.Transaction)
    if not text.strip():
        return [ConfigProblem(path, "is empty", 'remove the key, or write a condition such as "ID > 0"')]
    example = 'write only the condition, e.g. "ID > 1000000", with no statement separators or comments'
    try:
        tokens = sqlglot.tokenize(text, read="snowflake")
        parsed = [node for node in sqlglot.parse(text, read="snowflake") if node is not None]
    except sqlglot.errors.SqlglotError as exc:
        reason = str(exc).splitlines()[0][:120]
        return [ConfigProblem(path, f"is not a valid SQL expression ({reason})", example)]
    if any(token.comments for token in tokens):
        return [ConfigProblem(path, "must be a single boolean expression; comments are not allowed", example)]
    if len(parsed) != 1 or ";" in (t.text for t in tokens):
        return [ConfigProblem(path, "must be a single boolean expression; `;` is not allowed", example)]
    [node] = parsed
    if node.find(*statements):
        return [
            ConfigProblem(path, f"must be a condition, not a statement ({node.find(*statements).key.upper()})", example)
        ]
    while isinstance(node, exp.Paren):
        node = node.this
    if not isinstance(node, exp.Predicate | exp.Connector | exp.Not | exp.Boolean | exp.Func):
        return [ConfigProblem(path, f"must be a boolean condition, but {text.strip()!r} is not one", example)]
    return []

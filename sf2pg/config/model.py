"""The migration config: the original tool's ``config.json`` shape, validated with pydantic.

A bad file gets one message per problem, each naming its path (``sources[0].tables[2].chunking_columns``)
with a hint, so a user fixes everything in one pass. Table settings inherit from the source, then the
top level, then the defaults; the rest of sf2pg only sees the resolved ``TableSpec``.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple, cast

import sqlglot
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator
from sqlglot import exp

from sf2pg.config.identifiers import PG_MAX_NAME_BYTES, pg_name_for
from sf2pg.config.typemap import parse_declared

DEFAULT_CONFIG_PATH = Path("config/config.json")
ENV_VAR = "SF2PG_CONFIG"

DEFAULT_PARALLEL_THREADS = 4
DEFAULT_BATCH_SIZE = 50_000
# rows_per_chunk unset: enough chunks for 2 per thread, each of MIN_AUTO_CHUNK_ROWS to DEFAULT_ROWS_PER_CHUNK
# rows (sf2pg.plan.planning.auto_chunk_rows)
DEFAULT_ROWS_PER_CHUNK = 1_000_000
MIN_AUTO_CHUNK_ROWS = 100_000

# Inclusive bounds of the tuning keys; rows_per_chunk goes down to 100 so tests can plan many small chunks.
BOUNDS: dict[str, tuple[int, int]] = {
    "parallel_threads": (1, 64),
    "batch_size": (1_000, 1_000_000),
    "rows_per_chunk": (100, 100_000_000),
}
CHUNKING_TYPES = ("timestamp", "date", "id", "integer")

_SOURCE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_ECHO_LIMIT = 60


class ConfigProblem(NamedTuple):
    """One thing wrong with a config, located by its JSON path."""

    path: str
    message: str
    hint: str | None = None

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" + (f" (hint: {self.hint})" if self.hint else "")


class ConfigError(Exception):
    """Every problem found in a config, one line each, so nothing is fixed blind."""

    def __init__(self, origin: str, problems: list[ConfigProblem]) -> None:
        self.origin = origin
        self.problems = problems
        super().__init__(str(self))

    def __str__(self) -> str:
        count = len(self.problems)
        lines = [f"{self.origin}: {count} problem{'' if count == 1 else 's'}"]
        lines += [f"  {problem}" for problem in self.problems]
        return "\n".join(lines)


# ---- models: the JSON as written -------------------------------------------------------------

NonEmpty = Annotated[str, Field(min_length=1)]
ChunkingTypeName = Literal["timestamp", "date", "id", "integer"]
WideIntegers = Literal["numeric", "bigint", "bigint_when_fits"]
UnsafeSchemaChanges = Literal["fail", "ignore"]


def _wide_integers(default: str | None = None) -> Any:
    return Field(
        default=default,
        description="NUMBER(p,0) columns wider than 18 digits (Snowflake's INT): numeric(p,0), bigint, "
        "or bigint when the planner's MIN and MAX fit",
    )


def _unsafe_schema_changes(default: str | None = None) -> Any:
    return Field(
        default=default,
        description="a source column narrowed, changed type family or dropped: fail the load, or ignore the change "
        "with a note (the target keeps its column)",
    )


def _tuning(key: str, description: str, default: int | None = None) -> Any:
    low, high = BOUNDS[key]
    return Field(default=default, ge=low, le=high, description=description)


class _Strict(BaseModel):
    # strict: a JSON "4" is not silently taken as 4, and 1 is not taken as true
    model_config = ConfigDict(extra="forbid", strict=True)

    @model_validator(mode="before")
    @classmethod
    def _null_means_unset(cls, data: Any) -> Any:
        """JSON ``null`` on an optional key means "not set", as in the original tool's examples."""
        if not isinstance(data, dict):
            return data
        fields = cls.model_fields
        return {k: v for k, v in data.items() if v is not None or k not in fields or fields[k].is_required()}


class TableConfig(_Strict):
    """One table, as in the original tool, plus sf2pg's own keys."""

    enabled: bool = True
    source: NonEmpty = Field(description="the Snowflake table name, as Snowflake stores it")
    target: NonEmpty | None = Field(default=None, description="the PostgreSQL table name")
    chunking_columns: list[NonEmpty] = Field(default_factory=list)
    chunking_column_types: list[ChunkingTypeName] = Field(default_factory=list)
    uniqueness_columns: list[NonEmpty] = Field(default_factory=list)
    source_watermark: NonEmpty | None = None
    target_watermark: NonEmpty | None = None
    truncate_onstart: bool = False
    insert_only_mode: bool = False
    source_filter: str | None = None
    parallel_threads: int | None = _tuning("parallel_threads", "threads for this table")
    batch_size: int | None = _tuning("batch_size", "rows per Arrow batch sent to COPY")
    rows_per_chunk: int | None = _tuning("rows_per_chunk", "target rows per planned chunk")
    nul_bytes: Literal["fail", "strip"] = "fail"
    blocking_checks: bool = Field(
        default=True, description="a failed chunk check stops downstream assets in the same run"
    )
    checks_after_load: Literal["rows", "cells"] = Field(
        default="rows",
        description="the chunk check each load runs: 'rows' (row counts and bounds per chunk) or 'cells' "
        "(every cell, which reads each chunk again on both sides); sf2pg verify always compares every cell",
    )
    delete_detection: Literal["keys"] | None = Field(
        default=None, description="compare key sets per chunk and delete target rows gone from the source"
    )
    delete_max_ratio: float = Field(
        default=0.1, gt=0, le=1, description="refuse to delete more than this share of a chunk's rows"
    )
    watermark_lookback: int | None = Field(
        default=None,
        ge=0,
        description="margin re-read below the settled watermark, in its unit (seconds, days, or units); "
        "null: 900 seconds for a timestamp watermark, 1 day for a date, 0 for a number",
    )
    max_partitions_per_run: int | None = Field(
        default=None, ge=1, description="split a backfill into runs of at most this many chunks; null: one run"
    )
    column_types: dict[NonEmpty, NonEmpty] = Field(
        default_factory=dict,
        description="Snowflake column name -> PostgreSQL type it is created as (bigint, varchar(200), json, ...)",
    )
    wide_integers: WideIntegers | None = _wide_integers()
    unsafe_schema_changes: UnsafeSchemaChanges | None = _unsafe_schema_changes()


class SourceConfig(_Strict):
    """One Snowflake schema copied into one PostgreSQL schema."""

    source_name: NonEmpty = Field(description="a short name; it becomes the Dagster asset key prefix and group")
    enabled: bool = True
    source_sf_database: NonEmpty = Field(description="the Snowflake database to read from")
    source_sf_schema: NonEmpty = Field(description="the Snowflake schema to read from")
    target_pg_database: NonEmpty = Field(description="the PostgreSQL database to load into")
    target_pg_schema: NonEmpty = Field(description="the PostgreSQL schema to load into")
    parallel_threads: int | None = _tuning("parallel_threads", "threads for this source's tables")
    batch_size: int | None = _tuning("batch_size", "rows per Arrow batch sent to COPY")
    rows_per_chunk: int | None = _tuning("rows_per_chunk", "target rows per planned chunk")
    sensor_running: bool = False
    sensor_interval_seconds: int = Field(default=300, ge=30, description="least seconds between sensor evaluations")
    wide_integers: WideIntegers | None = _wide_integers()
    unsafe_schema_changes: UnsafeSchemaChanges | None = _unsafe_schema_changes()
    tables: list[TableConfig] = Field(default_factory=list)


class AppConfig(_Strict):
    """The whole file: defaults for every table, and the sources."""

    parallel_threads: int = _tuning("parallel_threads", "threads per table", DEFAULT_PARALLEL_THREADS)
    batch_size: int = _tuning("batch_size", "rows per Arrow batch sent to COPY", DEFAULT_BATCH_SIZE)
    rows_per_chunk: int | None = _tuning(
        "rows_per_chunk", "target rows per planned chunk; unset: 2 chunks per thread, 100,000 to 1,000,000 rows each"
    )
    wide_integers: WideIntegers = _wide_integers("numeric")
    unsafe_schema_changes: UnsafeSchemaChanges = _unsafe_schema_changes("fail")
    sources: list[SourceConfig] = Field(min_length=1, description="the sources to copy, at least one")

    _origin: str = PrivateAttr(default="<config>")

    def tables(self, enabled_only: bool = True) -> list[TableSpec]:
        """Resolved tables in file order; ``enabled_only`` skips disabled sources and disabled tables."""
        specs = []
        for i, source in enumerate(self.sources):
            for j, table in enumerate(source.tables):
                if enabled_only and not (source.enabled and table.enabled):
                    continue
                specs.append(_resolve(self, source, table, f"sources[{i}].tables[{j}]"))
        return specs

    def source(self, name: str) -> SourceConfig:
        """The source called ``name``; an unknown name is a ``ConfigError`` with a did-you-mean."""
        for source in self.sources:
            if source.source_name == name:
                return source
        names = [s.source_name for s in self.sources]
        close = difflib.get_close_matches(name, names, n=1)
        hint = f"did you mean `{close[0]}`?" if close else f"known sources: {', '.join(names)}"
        raise ConfigError(self._origin, [ConfigProblem("sources", f"no source named {_echo(name)}", hint)])

    def unknown_table(self, names: list[str], source: str | None, known: list[str]) -> ConfigError:
        """The error for ``--table`` names that match no enabled table, with a did-you-mean."""
        close = [m for n in names for m in difflib.get_close_matches(n, known, n=1)]
        hint = f"did you mean `{close[0]}`?" if close else "tables are named by target, Snowflake name or source.target"
        where = f"source {source!r}" if source else "any source"
        return ConfigError(self._origin, [ConfigProblem("tables", f"no enabled table named {names} in {where}", hint)])


# ---- resolved tables: what the rest of sf2pg uses ----------------------------------------------


@dataclass(frozen=True)
class TableSpec:
    """A table's effective settings after inheritance."""

    source_name: str
    sf_database: str
    sf_schema: str
    sf_table: str
    pg_database: str
    pg_schema: str
    pg_table: str
    chunking_column: str | None
    chunking_type: Literal["timestamp", "date", "id"] | None
    extra_chunking_columns: tuple[str, ...]
    uniqueness_columns: tuple[str, ...]
    source_watermark: str | None
    target_watermark: str | None
    truncate_onstart: bool
    insert_only_mode: bool
    source_filter: str | None
    parallel_threads: int
    batch_size: int
    rows_per_chunk: int | None  # None: sized by the plan (sf2pg.plan.planning.auto_chunk_rows)
    nul_bytes: Literal["fail", "strip"]
    config_path: str
    watermark_lookback: int | None = None  # None: the default for the watermark's type (sf2pg.plan.incremental)
    blocking_checks: bool = True
    checks_after_load: Literal["rows", "cells"] = "rows"
    delete_detection: Literal["keys"] | None = None
    delete_max_ratio: float = 0.1
    max_partitions_per_run: int | None = None
    column_types: tuple[tuple[str, str], ...] = ()  # (Snowflake column as configured, PostgreSQL type)
    wide_integers: Literal["numeric", "bigint", "bigint_when_fits"] = "numeric"
    unsafe_schema_changes: Literal["fail", "ignore"] = "fail"

    @property
    def asset_key_path(self) -> list[str]:
        """The table asset's key, ``[source_name, target]``, with characters Dagster cannot use in op
        names as ``_`` (a target named ``Fact Visits`` is the asset ``analytics/Fact_Visits``)."""
        return [re.sub(r"[^A-Za-z0-9_]", "_", part) for part in (self.source_name, self.pg_table)]

    @property
    def name(self) -> str:
        return f"{self.source_name}.{self.pg_table}"


def _resolve(top: AppConfig, source: SourceConfig, table: TableConfig, path: str) -> TableSpec:
    def inherit(key: str) -> Any:
        for level in (table, source):
            if getattr(level, key) is not None:
                return getattr(level, key)
        return getattr(top, key)

    kinds = table.chunking_column_types
    kind = None if not kinds else ("id" if kinds[0] == "integer" else kinds[0])
    watermark = table.source_watermark
    return TableSpec(
        source_name=source.source_name,
        sf_database=source.source_sf_database,
        sf_schema=source.source_sf_schema,
        sf_table=table.source,
        pg_database=source.target_pg_database,
        pg_schema=source.target_pg_schema,
        pg_table=table.target or pg_name_for(table.source),
        chunking_column=table.chunking_columns[0] if table.chunking_columns else None,
        chunking_type=cast(Literal["timestamp", "date", "id"] | None, kind),
        extra_chunking_columns=tuple(table.chunking_columns[1:]),
        uniqueness_columns=tuple(table.uniqueness_columns),
        source_watermark=watermark,
        target_watermark=table.target_watermark or (pg_name_for(watermark) if watermark else None),
        truncate_onstart=table.truncate_onstart,
        insert_only_mode=table.insert_only_mode,
        source_filter=table.source_filter,
        parallel_threads=inherit("parallel_threads"),
        batch_size=inherit("batch_size"),
        rows_per_chunk=inherit("rows_per_chunk"),
        nul_bytes=table.nul_bytes,
        config_path=path,
        watermark_lookback=table.watermark_lookback,
        blocking_checks=table.blocking_checks,
        checks_after_load=table.checks_after_load,
        delete_detection=table.delete_detection,
        delete_max_ratio=table.delete_max_ratio,
        max_partitions_per_run=table.max_partitions_per_run,
        column_types=tuple(table.column_types.items()),
        wide_integers=inherit("wide_integers"),
        unsafe_schema_changes=inherit("unsafe_schema_changes"),
    )


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


def _echo(value: Any) -> str:
    """A value as JSON, cut short so a message never carries a large (or secret-sized) blob."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= _ECHO_LIMIT else text[: _ECHO_LIMIT - 3] + "..."


def _path_of(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            name = str(part) if len(str(part)) <= _ECHO_LIMIT else str(part)[: _ECHO_LIMIT - 3] + "..."
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
    found = _echo(error.get("input"))
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
                        f"{_echo(name)} is already used by {names[name]}",
                        "source names become Dagster asset key prefixes and must be unique",
                    )
                )
            else:
                names[name] = f"sources[{i}]"
            if not _SOURCE_NAME.match(name):
                problems.append(
                    ConfigProblem(
                        f"sources[{i}].source_name",
                        f"{_echo(name)} must start with a letter and hold only letters, digits and underscores",
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
        f"{_echo(name)} is {len(name.encode())} bytes; PostgreSQL names hold at most {PG_MAX_NAME_BYTES}",
        "a longer name would be cut by PostgreSQL and not found again; choose a shorter one",
    )


def _table_problems(table: TableConfig, path: str, invalid: set[str]) -> list[ConfigProblem]:
    """Rules across a table's keys; a rule that reads an ``invalid`` key is skipped, not guessed."""
    problems: list[ConfigProblem] = []
    if table.target and len(table.target.encode()) > PG_MAX_NAME_BYTES:
        problems.append(_too_long(f"{path}.target", table.target))
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
    """A filter is pasted into a WHERE clause, so it must parse as exactly one boolean expression."""
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
    if node.find(*_STATEMENTS):
        return [
            ConfigProblem(
                path, f"must be a condition, not a statement ({node.find(*_STATEMENTS).key.upper()})", example
            )
        ]
    while isinstance(node, exp.Paren):
        node = node.this
    if not isinstance(node, exp.Predicate | exp.Connector | exp.Not | exp.Boolean | exp.Func):
        return [ConfigProblem(path, f"must be a boolean condition, but {text.strip()!r} is not one", example)]
    return []


_STATEMENTS = (exp.DDL, exp.DML, exp.Drop, exp.Command, exp.Alter, exp.Use, exp.Set, exp.Transaction)

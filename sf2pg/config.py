"""The migration config: the original tool's ``config.json`` shape, validated with pydantic.

A bad file gets one message per problem, each naming its path (``sources[0].tables[2].chunking_columns``)
with a hint; unknown keys suggest the closest known one. Table settings inherit from the source,
then the top level, then the defaults.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

DEFAULT_CONFIG_PATH = Path("config/config.json")
ENV_VAR = "SF2PG_CONFIG"

DEFAULT_PARALLEL_THREADS = 4
DEFAULT_BATCH_SIZE = 50_000
DEFAULT_ROWS_PER_CHUNK = 1_000_000

_UNQUOTED = re.compile(r"^[A-Z_][A-Z0-9_$]*$")
_SOURCE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


class ConfigProblem(NamedTuple):
    path: str
    message: str
    hint: str | None = None

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" + (f" (hint: {self.hint})" if self.hint else "")


class ConfigError(Exception):
    """Every problem found in a config file, one line each."""

    def __init__(self, origin: str, problems: list[ConfigProblem]) -> None:
        self.origin = origin
        self.problems = problems
        super().__init__(str(self))

    def __str__(self) -> str:
        count = len(self.problems)
        lines = [f"{self.origin}: {count} problem{'s' if count != 1 else ''}"]
        lines += [f"  {p}" for p in self.problems]
        return "\n".join(lines)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


ChunkingTypeName = Literal["timestamp", "date", "id", "integer"]


class TableConfig(_Strict):
    """One table, as in the original tool, plus sf2pg's own keys."""

    enabled: bool = True
    source: str = Field(min_length=1, description="Snowflake table name as Snowflake stores it.")
    target: str | None = Field(default=None, description="PostgreSQL table; default: source, lower-cased if unquoted.")
    chunking_columns: list[str] = Field(default_factory=list)
    chunking_column_types: list[ChunkingTypeName] = Field(default_factory=list)
    uniqueness_columns: list[str] = Field(default_factory=list)
    source_watermark: str | None = None
    target_watermark: str | None = None
    truncate_onstart: bool = False
    insert_only_mode: bool = False
    source_filter: str | None = None
    parallel_threads: int | None = Field(default=None, ge=1, le=64)
    batch_size: int | None = Field(default=None, ge=1000, le=1_000_000)
    rows_per_chunk: int | None = Field(default=None, ge=100, le=100_000_000)
    nul_bytes: Literal["fail", "strip"] = "fail"
    watermark_lookback: int = Field(default=0, ge=0)

    @field_validator("source_filter")
    @classmethod
    def _single_expression(cls, value: str | None) -> str | None:
        if value is None:
            return value
        for marker, name in ((";", "';'"), ("--", "'--'"), ("/*", "'/*'")):
            if marker in value:
                raise ValueError(
                    f"must be a single boolean expression; {name} is not allowed "
                    '(hint: write only the condition, e.g. "id > 1000000")'
                )
        if not value.strip():
            raise ValueError('is empty (hint: remove the key, or write a condition such as "id > 0")')
        return value


class SourceConfig(_Strict):
    source_name: str = Field(min_length=1)
    enabled: bool = True
    source_sf_database: str = Field(min_length=1)
    source_sf_schema: str = Field(min_length=1)
    target_pg_database: str = Field(min_length=1)
    target_pg_schema: str = Field(min_length=1)
    parallel_threads: int | None = Field(default=None, ge=1, le=64)
    batch_size: int | None = Field(default=None, ge=1000, le=1_000_000)
    rows_per_chunk: int | None = Field(default=None, ge=100, le=100_000_000)
    sensor_running: bool = False
    sensor_interval_seconds: int = Field(default=300, ge=30)
    tables: list[TableConfig] = Field(default_factory=list)

    @field_validator("source_name")
    @classmethod
    def _asset_key_safe(cls, value: str) -> str:
        if not _SOURCE_NAME.match(value):
            raise ValueError(
                f"{value!r} must start with a letter and hold only letters, digits and underscores "
                "(hint: it becomes a Dagster asset key part and group name)"
            )
        return value


class AppConfig(_Strict):
    parallel_threads: int = Field(default=DEFAULT_PARALLEL_THREADS, ge=1, le=64)
    batch_size: int = Field(default=DEFAULT_BATCH_SIZE, ge=1000, le=1_000_000)
    rows_per_chunk: int = Field(default=DEFAULT_ROWS_PER_CHUNK, ge=100, le=100_000_000)
    sources: list[SourceConfig] = Field(min_length=1)

    def tables(self, enabled_only: bool = True) -> list[TableSpec]:
        """Resolved tables in file order (enabled sources' enabled tables unless ``enabled_only=False``)."""
        specs = []
        for i, source in enumerate(self.sources):
            for j, table in enumerate(source.tables):
                if enabled_only and not (source.enabled and table.enabled):
                    continue
                specs.append(_resolve(self, source, table, f"sources[{i}].tables[{j}]"))
        return specs

    def source(self, name: str) -> SourceConfig:
        for source in self.sources:
            if source.source_name == name:
                return source
        names = [s.source_name for s in self.sources]
        close = difflib.get_close_matches(name, names, n=1)
        hint = f"did you mean `{close[0]}`?" if close else f"known sources: {', '.join(names)}"
        raise ConfigError("sources", [ConfigProblem("sources", f"no source named {name!r}", hint)])


@dataclass(frozen=True)
class TableSpec:
    """A table's effective settings after inheritance: what the rest of sf2pg uses."""

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
    rows_per_chunk: int
    nul_bytes: Literal["fail", "strip"]
    config_path: str
    watermark_lookback: int = 0

    @property
    def asset_key_path(self) -> list[str]:
        return [self.source_name, self.pg_table]

    @property
    def name(self) -> str:
        return f"{self.source_name}.{self.pg_table}"


def default_target_name(snowflake_name: str) -> str:
    return snowflake_name.lower() if _UNQUOTED.match(snowflake_name) else snowflake_name


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
        pg_table=table.target or default_target_name(table.source),
        chunking_column=table.chunking_columns[0] if table.chunking_columns else None,
        chunking_type=kind,  # type: ignore[arg-type]
        extra_chunking_columns=tuple(table.chunking_columns[1:]),
        uniqueness_columns=tuple(table.uniqueness_columns),
        source_watermark=watermark,
        target_watermark=table.target_watermark or (default_target_name(watermark) if watermark else None),
        truncate_onstart=table.truncate_onstart,
        insert_only_mode=table.insert_only_mode,
        source_filter=table.source_filter,
        parallel_threads=inherit("parallel_threads"),
        batch_size=inherit("batch_size"),
        rows_per_chunk=inherit("rows_per_chunk"),
        nul_bytes=table.nul_bytes,
        config_path=path,
        watermark_lookback=table.watermark_lookback,
    )


# ---- loading and validation ------------------------------------------------------------------


def config_path(cli_value: str | Path | None = None) -> Path:
    """``--config`` value, else ``$SF2PG_CONFIG``, else ``config/config.json``."""
    if cli_value:
        return Path(cli_value)
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR])
    return DEFAULT_CONFIG_PATH


def load_config(path: str | Path | None = None) -> AppConfig:
    """Read and validate a config file; ``ConfigError`` lists every problem."""
    how = "--config" if path else (ENV_VAR if os.environ.get(ENV_VAR) else "the default path")
    resolved = config_path(path)
    origin = str(resolved)
    try:
        text = resolved.read_text()
    except FileNotFoundError:
        raise ConfigError(
            origin,
            [ConfigProblem("(file)", f"no config file at {resolved} (chosen by {how})",
                           f"pass --config PATH or set {ENV_VAR}; config/example.full.json shows every key")],
        ) from None  # fmt: skip
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            origin,
            [ConfigProblem("(file)", f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}")],
        ) from None
    return parse_config(data, origin)


_LEVEL_KEYS = {
    "top": set(AppConfig.model_fields),
    "source": set(SourceConfig.model_fields),
    "table": set(TableConfig.model_fields),
}


def _level_of(loc: tuple) -> str:
    if "tables" in loc[:-1]:
        return "table"
    if "sources" in loc[:-1]:
        return "source"
    return "top"


def _path_of(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


_TYPE_NAMES = {
    "str": "a string",
    "int": "a whole number",
    "bool": "true or false",
    "list": "a list",
    "dict": "an object",
}


def _problem_from(error: dict) -> ConfigProblem:
    loc = tuple(p for p in error["loc"] if not (isinstance(p, str) and p.startswith(("function-", "literal["))))
    path = _path_of(loc)
    kind = error["type"]
    if kind == "extra_forbidden":
        allowed = _LEVEL_KEYS[_level_of(loc)]
        close = difflib.get_close_matches(str(loc[-1]), sorted(allowed), n=1, cutoff=0.6)
        hint = f"did you mean `{close[0]}`?" if close else f"allowed keys: {', '.join(sorted(allowed))}"
        return ConfigProblem(path, "unknown key", hint)
    if kind == "missing":
        return ConfigProblem(path, "is required", None)
    if kind == "literal_error":
        expected = error.get("ctx", {}).get("expected", "")
        return ConfigProblem(path, f"{_short(error.get('input'))} is not allowed", f"use one of {expected}")
    if kind == "value_error":
        message = str(error["msg"]).removeprefix("Value error, ")
        hint = None
        if "(hint: " in message:
            message, hint = message.split(" (hint: ", 1)
            hint = hint.rstrip(")")
        return ConfigProblem(path, message, hint)
    if kind.endswith("_type") or kind.endswith("_parsing"):
        expected = _TYPE_NAMES.get(kind.split("_")[0], kind.split("_")[0])
        return ConfigProblem(path, f"must be {expected}, found {_short(error.get('input'))}")
    return ConfigProblem(path, f"{error['msg']} (found {_short(error.get('input'))})")


def parse_config(data: object, origin: str = "<config>") -> AppConfig:
    """Validate a parsed config; ``ConfigError`` lists every problem."""
    if not isinstance(data, dict):
        raise ConfigError(
            origin, [ConfigProblem("(top level)", "must be a JSON object", "see config/example.full.json")]
        )
    try:
        config = AppConfig.model_validate(data)
    except ValidationError as exc:
        problems = list(dict.fromkeys(_problem_from(e) for e in exc.errors()))  # type: ignore[arg-type]
        raise ConfigError(origin, problems) from None
    problems = _cross_checks(config)
    if problems:
        raise ConfigError(origin, problems)
    return config


def _cross_checks(config: AppConfig) -> list[ConfigProblem]:
    problems: list[ConfigProblem] = []
    seen_sources: dict[str, int] = {}
    targets: dict[tuple[str, str, str], str] = {}
    for i, source in enumerate(config.sources):
        if source.source_name in seen_sources:
            problems.append(
                ConfigProblem(f"sources[{i}].source_name", f"{source.source_name!r} is already used by sources[{seen_sources[source.source_name]}]")
            )  # fmt: skip
        seen_sources.setdefault(source.source_name, i)
        for j, table in enumerate(source.tables):
            path = f"sources[{i}].tables[{j}]"
            if len(table.chunking_column_types) != len(table.chunking_columns):
                problems.append(
                    ConfigProblem(
                        f"{path}.chunking_column_types",
                        f"has {len(table.chunking_column_types)} entries for "
                        f"{len(table.chunking_columns)} chunking_columns",
                        "give one type (timestamp, date, id) per chunking column",
                    )
                )
            if table.truncate_onstart and table.source_filter:
                problems.append(
                    ConfigProblem(
                        f"{path}.truncate_onstart",
                        "cannot be combined with source_filter: truncating drops rows the filter never reloads",
                        "drop truncate_onstart, or move the filter into a view",
                    )
                )
            if table.source_watermark and not table.uniqueness_columns and not table.insert_only_mode:
                problems.append(
                    ConfigProblem(
                        f"{path}.source_watermark",
                        "incremental sync merges by key, but the table has no uniqueness_columns",
                        "add uniqueness_columns; or set insert_only_mode for append-only sync; "
                        "or drop source_watermark and reload in full",
                    )
                )
            if table.source_watermark and not table.uniqueness_columns and table.watermark_lookback:
                problems.append(
                    ConfigProblem(
                        f"{path}.watermark_lookback",
                        "re-reading rows without uniqueness_columns would duplicate them",
                        "set it to 0 for append-only sync, or add uniqueness_columns",
                    )
                )
            if table.target_watermark and not table.source_watermark:
                problems.append(ConfigProblem(f"{path}.target_watermark", "is set without source_watermark"))
            if not (source.enabled and table.enabled):
                continue
            key = (
                source.target_pg_database,
                source.target_pg_schema,
                table.target or default_target_name(table.source),
            )
            if key in targets:
                problems.append(
                    ConfigProblem(
                        f"{path}.target",
                        f"PostgreSQL table {'.'.join(key)} is already the target of {targets[key]}",
                        "two tables loading one target would overwrite each other's chunks",
                    )
                )
            targets.setdefault(key, path)
    return problems

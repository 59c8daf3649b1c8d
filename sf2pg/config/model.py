"""The migration config: the original tool's ``config.json`` shape, validated with pydantic.

Reading a file and its problems (one message per problem, each naming its path, with a hint) are in
``sf2pg.config.loading``. Table settings inherit from the source, then the
top level, then the defaults; the rest of sf2pg only sees the resolved ``TableSpec``.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple, cast

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from sf2pg.config.identifiers import pg_name_for

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

SOURCE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
ECHO_LIMIT = 60


def echo(value: Any) -> str:
    """A value as JSON, cut short so a message never carries a large (or secret-sized) blob."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= ECHO_LIMIT else text[: ECHO_LIMIT - 3] + "..."


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
        raise ConfigError(self._origin, [ConfigProblem("sources", f"no source named {echo(name)}", hint)])

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

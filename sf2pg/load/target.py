"""The target table: create it from the source columns, or reconcile with the one that exists.

Every decision about columns is made here, before any row moves: which columns load, which are
skipped, the exact Arrow type each must arrive in for binary COPY, and what a change of the source's
columns since the previous load does to the target (``sf2pg.load.drift``): a new column is added, a
NUMBER or VARCHAR that grew widens its column, and anything else fails the load naming the column,
unless the table's ``unsafe_schema_changes`` says to ignore it.

Why one module: preparing a target (create, widen, add, keys) is one decision over the existing table's columns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import psycopg
import pyarrow as pa
from pgpq import ArrowToPostgresBinaryEncoder
from psycopg import sql

from sf2pg.config.identifiers import pg_column_match, pg_fit, pg_name_for
from sf2pg.config.typemap import (
    IncompatibleTypeError,
    PgColumn,
    SourceColumn,
    TargetType,
    UnsupportedTypeError,
    column_type,
    holds,
    load_type_for_existing,
    pg_type_name,
    widened_type,
)
from sf2pg.errors import InputError
from sf2pg.load import drift, ledger, locks
from sf2pg.load.indexes import saved_key
from sf2pg.source.statements import UnknownColumnError, find_column

if TYPE_CHECKING:
    from sf2pg.config.model import TableSpec


class TargetSchemaError(InputError):
    """The source and target cannot be reconciled; raised before any row moves."""


class SchemaDriftError(TargetSchemaError):
    """The source's columns changed in a way sf2pg does not apply on its own (narrowed, retyped, dropped)."""


@dataclass(frozen=True)
class ColumnRules:
    """How a table's columns are typed and how changes of its source are followed (from its config)."""

    column_types: tuple[tuple[str, str], ...] = ()  # (Snowflake column as configured, PostgreSQL type)
    wide_integers: str = "numeric"
    unsafe_schema_changes: str = "fail"
    config_path: str = ""  # where the table is in the config, for messages

    @classmethod
    def of(cls, spec: TableSpec) -> ColumnRules:
        return cls(spec.column_types, spec.wide_integers, spec.unsafe_schema_changes, spec.config_path)

    def overrides(self, columns: list[SourceColumn], where: str) -> dict[str, str]:
        """Source column name -> declared type; a configured name the source lacks is an error."""
        out = {}
        for name, declared in self.column_types:
            try:
                out[find_column(columns, name, "column_types", where).name] = declared
            except UnknownColumnError as exc:
                raise TargetSchemaError(f"{exc} ({self.config_path}.column_types)") from None
        return out


@dataclass(frozen=True)
class ColumnPlan:
    """One column that loads: where it comes from, where it goes, and how it travels."""

    source: SourceColumn
    target: str
    load_type: TargetType


@dataclass
class TargetTable:
    """A prepared target table and how a source batch maps onto it."""

    schema: str
    table: str
    columns: list[ColumnPlan]
    key_columns: list[str]  # target names of the uniqueness columns
    chunk_column: ColumnPlan | None
    created: bool = False
    skipped_source_columns: list[str] = field(default_factory=list)
    unfilled_target_columns: list[str] = field(default_factory=list)
    watermark_column: ColumnPlan | None = None  # where the source watermark loads (guards merges, windows)
    changes: list[drift.SchemaChange] = field(default_factory=list)  # what this load did about schema drift
    schema_version: int = 0  # the ledger's version of the table's columns after those changes
    pg_types: dict[str, str] = field(default_factory=dict)  # target column -> its PostgreSQL type, as in the table

    @property
    def ident(self) -> sql.Composed:
        return sql.Identifier(self.schema, self.table)

    @property
    def column_names(self) -> list[str]:
        return [c.target for c in self.columns]

    @property
    def arrow_schema(self) -> pa.Schema:
        return pa.schema([pa.field(c.target, c.load_type.arrow_type) for c in self.columns])

    def encoder(self) -> ArrowToPostgresBinaryEncoder:
        schema = self.arrow_schema
        builders = {c.target: c.load_type.encoder(schema.field(c.target)) for c in self.columns}
        return ArrowToPostgresBinaryEncoder.new_with_encoders(schema, builders)

    @property
    def has_unique_key(self) -> bool:
        return bool(self.key_columns)


def plan_columns(
    source_columns: list[SourceColumn],
    where: str,
    rules: ColumnRules | None = None,
    ranges: dict[str, tuple] | None = None,
) -> list[tuple[SourceColumn, str, TargetType]]:
    """Target name and type for every source column (the type map, ``column_types`` and the
    ``wide_integers`` policy with the planner's ``ranges``); unsupported types, overrides that cannot
    hold a column and two columns with one PostgreSQL name fail here, naming the columns."""
    rules = rules or ColumnRules()
    overrides = rules.overrides(source_columns, where)
    planned, names = [], {}
    for col in source_columns:
        try:
            mapped = column_type(col, overrides.get(col.name), rules.wide_integers, (ranges or {}).get(col.name))
        except UnsupportedTypeError as exc:
            raise TargetSchemaError(f"{where}: {exc}") from exc
        except IncompatibleTypeError as exc:
            raise TargetSchemaError(f"{where}: {rules.config_path}.column_types: {exc}") from exc
        name = pg_name_for(col.name)
        if name in names:
            raise TargetSchemaError(
                f"{where}: source columns {names[name]!r} and {col.name!r} both map to the PostgreSQL name {name!r}"
            )
        names[name] = col.name
        planned.append((col, name, mapped))
    return planned


def existing_columns(conn: psycopg.Connection, schema: str, table: str) -> dict[str, PgColumn]:
    """The target table's columns as PostgreSQL holds them, in table order (none if it does not exist);
    find a source column among them with ``pg_column_match``."""
    rows = conn.execute(
        "SELECT column_name, data_type, numeric_precision, numeric_scale, character_maximum_length "
        "FROM information_schema.columns WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
        (schema, table),
    ).fetchall()
    return {r[0]: PgColumn(*r[1:]) for r in rows}


def _unique_index_exists(conn: psycopg.Connection, schema: str, table: str, columns: list[str]) -> bool:
    rows = conn.execute(
        """
        SELECT array_agg(a.attname ORDER BY a.attname)
        FROM pg_index i
        JOIN pg_class c ON c.oid = i.indrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = ANY(i.indkey)
        WHERE n.nspname = %s AND c.relname = %s AND i.indisunique AND i.indpred IS NULL
        GROUP BY i.indexrelid
        """,
        (schema, table),
    ).fetchall()
    return sorted(columns) in [sorted(r[0]) for r in rows]


def prepare_target(
    conn: psycopg.Connection,
    schema: str,
    table: str,
    source_columns: list[SourceColumn],
    uniqueness_columns: tuple[str, ...],
    chunking_column: str | None,
    where: str,
    watermark_column: str | None = None,
    *,
    rules: ColumnRules | None = None,
    run_id: str | None = None,
    keys_only: bool = False,
) -> TargetTable:
    """Create the schema and table if missing; otherwise follow the source's schema changes since the
    previous load and map onto the columns both sides share.

    ``where`` names the table in errors (e.g. ``analytics.fact_visits (sources[0].tables[0])``).
    Runs in its own transaction and commits, so a created table is visible to the chunk loaders; the
    columns seen and the changes made are kept in the ledger in the same transaction. ``keys_only``
    (rebuilding a key before a run) follows no change and records nothing: the run that loads does.
    """
    rules = rules or ColumnRules()
    key_sources = [find_column(source_columns, k, "uniqueness", where) for k in uniqueness_columns]
    chunk_source = find_column(source_columns, chunking_column, "chunking", where) if chunking_column else None
    watermark_source = find_column(source_columns, watermark_column, "watermark", where) if watermark_column else None

    with conn.transaction():
        # concurrent runs on one table would race to create (or alter) it: one prepares, the others wait
        locks.xact_lock(conn, locks.table_key(schema, table))
        has_ledger = ledger.is_current(conn) and not keys_only  # validate --connect may meet an older ledger
        seen, version = ledger.source_columns(conn, schema, table) if has_ledger else (None, 0)
        wants_ranges = has_ledger and rules.wide_integers == "bigint_when_fits"
        planned = plan_columns(
            source_columns, where, rules, ledger.column_ranges(conn, schema, table) if wants_ranges else None
        )
        by_source = {c.name: (c, name, t) for c, name, t in planned}
        existing = existing_columns(conn, schema, table)
        if not existing:
            _create_table(conn, schema, table, planned, [by_source[k.name][1] for k in key_sources])
            columns = [ColumnPlan(c, name, t) for c, name, t in planned]
            target = TargetTable(schema, table, columns, [by_source[k.name][1] for k in key_sources], None, True)
            target.pg_types = {name: t.pg_type for _, name, t in planned}
            remembered = source_columns
        else:
            previous = drift.from_json(seen) if seen is not None else None
            # columns not recorded yet (loaded before the ledger kept them): a column that can no longer hold what its
            # loads held must have grown in Snowflake since
            loaded_before = has_ledger and previous is None and bool(ledger.loaded_keys(conn, schema, table))
            target, remembered = _reconcile(
                conn, schema, table, planned, existing, key_sources, where, previous, rules, keys_only, loaded_before
            )
        target.schema_version = version + any(c.applied for c in target.changes)
        if has_ledger:
            ledger.record_source_columns(conn, schema, table, drift.to_json(remembered), target.schema_version)
            ledger.record_schema_changes(conn, schema, table, target.schema_version, target.changes, run_id)
    target.chunk_column = next((c for c in target.columns if chunk_source and c.source == chunk_source), None)
    if chunk_source and target.chunk_column is None:
        raise TargetSchemaError(f"{where}: chunking column {chunk_source.name!r} has no column in the target table")
    target.watermark_column = next((c for c in target.columns if c.source == watermark_source), None)
    if watermark_source and target.watermark_column is None:
        raise TargetSchemaError(
            f"{where}: watermark column {watermark_source.name!r} has no column in the target table; "
            "sync needs it to compare and to order writes"
        )
    return target


def _create_table(conn: psycopg.Connection, schema: str, table: str, planned: list, key_names: list[str]) -> None:
    column_defs = [sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(t.pg_type)) for _, name, t in planned]
    if key_names:
        column_defs.append(sql.SQL("PRIMARY KEY ({})").format(sql.SQL(", ").join(map(sql.Identifier, key_names))))
    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
    conn.execute(
        sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(
            sql.Identifier(schema, table), sql.SQL(", ").join(column_defs)
        )
    )


def _reconcile(
    conn: psycopg.Connection,
    schema: str,
    table: str,
    planned: list,
    existing: dict[str, PgColumn],
    key_sources: list[SourceColumn],
    where: str,
    previous: list[SourceColumn] | None,
    rules: ColumnRules,
    lenient: bool = False,
    loaded_before: bool = False,
) -> tuple[TargetTable, list[SourceColumn]]:
    """Map the source onto an existing table, after following the source's changes since ``previous``
    (None: the first load that records them, which compares nothing, except that a column of a table
    sf2pg ``loaded_before`` that cannot hold the source any more is taken as grown). Returns the table
    and the source columns to remember: ignored changes keep their old entry, so they are seen (and
    noted) again. ``lenient`` leaves out a column that cannot load instead of failing (only the keys
    are needed)."""
    if previous is not None:
        changes = {c.name: c for c in drift.source_changes(previous, [p[0] for p in planned])}
    else:
        changes = (
            {c.name: drift.SourceChange("widened", None, c) for c in _grown(planned, existing)} if loaded_before else {}
        )
    followed = _follow_changes(conn, schema, table, planned, existing, changes, where, rules)
    columns, skipped, problems = [], [], []
    for col, _, mapped in planned:
        if col.name in followed.skip:
            skipped.append(col.name)
            continue
        target_name = pg_column_match(existing, col.name)
        if target_name is None:
            skipped.append(col.name)
            continue
        pg = existing[target_name]
        try:
            columns.append(
                ColumnPlan(col, target_name, load_type_for_existing(mapped, pg.data_type, pg.precision, pg.scale))
            )
        except IncompatibleTypeError as exc:
            if not lenient:
                problems.append(f"column {col.name!r} -> {target_name!r}: {exc}")
    if problems:
        raise TargetSchemaError(f"{where}: the existing target table cannot hold the source: " + "; ".join(problems))
    if not columns:
        raise TargetSchemaError(f"{where}: the existing target table shares no column with the source")
    loaded = {c.source.name: c.target for c in columns}
    missing_keys = [k.name for k in key_sources if k.name not in loaded]
    if missing_keys:
        raise TargetSchemaError(f"{where}: uniqueness columns {missing_keys} are missing in the target table")
    key_names = [loaded[k.name] for k in key_sources]
    if key_names and not _unique_index_exists(conn, schema, table, key_names) and not saved_key(conn, schema, table):
        # ON CONFLICT needs a unique index on exactly the uniqueness columns (unless the loader is about to
        # rebuild the primary key an interrupted first load dropped).
        conn.execute(
            sql.SQL("CREATE UNIQUE INDEX IF NOT EXISTS {} ON {} ({})").format(
                sql.Identifier(pg_fit(f"{table}_sf2pg_key")),
                sql.Identifier(schema, table),
                sql.SQL(", ").join(map(sql.Identifier, key_names)),
            )
        )
    unfilled = [name for name in existing if name not in set(loaded.values())]
    target = TargetTable(schema, table, columns, key_names, None, False, skipped, unfilled)
    target.changes = followed.reported
    target.pg_types = {name: pg.ddl for name, pg in existing.items()}
    remembered = [followed.keep.get(col.name, col) for col, _, _ in planned] + followed.kept_dropped
    return target, remembered


def _grown(planned: list, existing: dict[str, PgColumn]) -> list[SourceColumn]:
    """Source columns whose existing target column cannot hold them but can be widened to."""
    out = []
    for col, _, wanted in planned:
        target = pg_column_match(existing, col.name)
        if target is None:
            continue
        pg = existing[target]
        try:
            load_type_for_existing(wanted, pg.data_type, pg.precision, pg.scale)
        except IncompatibleTypeError:
            if widened_type(pg, wanted, col) is not None:
                out.append(col)
    return out


@dataclass
class _Followed:
    """What following the source's changes decided."""

    reported: list[drift.SchemaChange] = field(default_factory=list)
    skip: set[str] = field(default_factory=set)  # source columns not loaded (an ignored type change)
    keep: dict[str, SourceColumn] = field(default_factory=dict)  # ignored: remember the column as it was
    kept_dropped: list[SourceColumn] = field(default_factory=list)  # ignored drops, remembered as they were


def _follow_changes(
    conn: psycopg.Connection,
    schema: str,
    table: str,
    planned: list,
    existing: dict[str, PgColumn],
    changes: dict[str, drift.SourceChange],
    where: str,
    rules: ColumnRules,
) -> _Followed:
    """Decide every change first, then (when none is refused) apply them: ``ALTER TABLE ... ADD COLUMN``
    for a new column, ``ALTER COLUMN ... TYPE`` for one that grew past its target column. ``existing``
    is updated to what the table then holds."""
    out = _Followed()
    statements: list[sql.Composable] = []
    refused: list[str] = []
    ident = sql.Identifier(schema, table)
    pinned = set(rules.overrides([p[0] for p in planned], where))  # column_types: the config decides the type

    def unsafe(change: drift.SourceChange, target: str | None, why: str, skip: bool) -> None:
        if rules.unsafe_schema_changes != "ignore":
            refused.append(f"column {change.name!r} {_summary(change)}: {why}")
            return
        out.reported.append(drift.describe(change, target, False, why + ("; not loaded" if skip else "")))
        if change.after is None:
            out.kept_dropped.append(change.before)  # type: ignore[arg-type]
        else:
            out.keep[change.name] = change.before  # type: ignore[assignment]
        if skip:
            out.skip.add(change.name)

    for col, name, wanted in planned:
        change = changes.get(col.name)
        if change is None:
            continue
        target = pg_column_match(existing, col.name)
        if change.kind == "added":
            if target is None:
                statements.append(
                    sql.SQL("ALTER TABLE {} ADD COLUMN {} {}").format(
                        ident, sql.Identifier(name), sql.SQL(wanted.pg_type)
                    )
                )
                existing[name] = _as_existing(wanted)
                out.reported.append(drift.describe(change, name, True, f"added to the target as {wanted.pg_type}"))
            else:
                out.reported.append(drift.describe(change, target, True, f"the target already had {target!r}"))
            continue
        if target is None:
            continue  # a column the target never had: nothing to follow
        pg = existing[target]
        if change.kind == "widened":
            if col.name in pinned and _same_type(pg, wanted):
                out.reported.append(drift.describe(change, target, True, f"column_types keeps it {pg.ddl}"))
                continue
            if holds(pg, wanted, col):
                out.reported.append(drift.describe(change, target, True, f"the target's {pg.ddl} already holds it"))
                continue
            wider = widened_type(pg, wanted, col)
            if wider is None:
                unsafe(change, target, f"the target's {pg.ddl} cannot be widened to hold it", skip=False)
                continue
            statements.append(
                sql.SQL("ALTER TABLE {} ALTER COLUMN {} TYPE {}").format(ident, sql.Identifier(target), sql.SQL(wider))
            )
            existing[target] = PgColumn(pg_type_name(wider))
            out.reported.append(drift.describe(change, target, True, f"widened {pg.ddl} -> {wider}"))
        elif change.kind == "narrowed":
            if _same_type(pg, wanted):
                continue  # the target was narrowed to match already
            unsafe(change, target, f"the target keeps {pg.ddl}", skip=False)
        elif _same_type(pg, wanted):
            continue  # retyped, and the target was changed to match already
        else:  # retyped: loads on only if the target can still hold it
            try:
                load_type_for_existing(wanted, pg.data_type, pg.precision, pg.scale)
                loadable = True
            except IncompatibleTypeError:
                loadable = False
            unsafe(change, target, f"the target keeps {pg.ddl}", skip=not loadable)
    for change in changes.values():
        if change.kind == "dropped":
            target = pg_column_match(existing, change.name)
            if target is not None:
                unsafe(change, target, f"the target keeps {target!r}; new rows hold NULL there", skip=False)
    if refused:
        raise SchemaDriftError(
            f"{where}: the Snowflake table's columns changed in a way sf2pg does not apply on its own: "
            + "; ".join(refused)
            + f' (set "unsafe_schema_changes": "ignore" at {rules.config_path or "the table"} to load on with a note, '
            "or change the target table yourself; see docs/TYPES.md#schema-changes)"
        )
    for statement in statements:
        conn.execute(statement)
    if statements:  # the real shapes, as information_schema now reports them
        existing.update(existing_columns(conn, schema, table))
    return out


def _summary(change: drift.SourceChange) -> str:
    described = drift.describe(change, None, False, "")
    if change.kind == "dropped":
        return f"was dropped from Snowflake (it was {described.before})"
    return f"{change.kind} from {described.before} to {described.after}"


def _as_existing(t: TargetType) -> PgColumn:
    """A column about to be added or altered, as ``information_schema`` will describe it."""
    return PgColumn(pg_type_name(t.pg_type))


def _same_type(pg: PgColumn, t: TargetType) -> bool:
    return pg.ddl.replace(" ", "") == t.pg_type.replace(" ", "") or (
        pg_type_name(t.pg_type) == pg.data_type and "(" not in t.pg_type and "(" not in pg.ddl
    )

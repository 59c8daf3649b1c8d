"""The CLI's commands over tables: plan, then load each table's chunks in ranged runs; sync; verify.

What to load is decided here, the same way whatever executes it: an *executor* (``sf2pg.run.runners``)
gives each command its registry of partitions and its runner. Without one, a table's contiguous range
of chunks runs directly in this process through the engine (``DirectExecutor``); the Dagster layer's
executor (``sf2pg.dagster.runner``) runs it as a Dagster job on an instance instead. The caller chooses
(the CLI: Dagster when ``DAGSTER_HOME`` is set), so this module knows nothing of Dagster.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from psycopg import sql

from sf2pg.config.model import AppConfig, TableSpec
from sf2pg.errors import InputError
from sf2pg.load import drift, ledger
from sf2pg.load.postgres import Connects, Postgres
from sf2pg.plan import planning
from sf2pg.plan.chunks import watermark_text
from sf2pg.plan.planning import Plan
from sf2pg.run.runners import DirectExecutor, Executor, Registry, Runner, RunResult, snowflake_sessions
from sf2pg.source.snowflake_connection import sessions_from_env


@dataclass
class TableOutcome:
    """What a headless run did to one table."""

    spec: TableSpec
    plan: Plan | None = None
    success: bool = False
    error: str | None = None
    metadata: dict = field(default_factory=dict)
    checks: dict[str, bool] = field(default_factory=dict)  # check name -> passed
    check_failures: list[str] = field(default_factory=list)  # one line per failed check evaluation
    note: str = ""


@dataclass
class CommandContext:
    """What a command's tables run with: where their partitions are known, what runs their loads, and
    the command's own Snowflake sessions (planning, windows, checks) and PostgreSQL."""

    registry: Registry
    runner: Runner
    snowflake: Any  # get_connection(): the command's Snowflake sessions, shared by its queries
    postgres: Connects


@contextmanager
def command_context(executor: Executor | None, log_level: str = "INFO") -> Iterator[CommandContext]:
    """The command's sessions, and its runs on ``executor`` (directly in this process without one)."""
    executor = DirectExecutor() if executor is None else executor
    postgres = Postgres()
    run_id = uuid.uuid4().hex
    with snowflake_sessions(sessions_from_env(), run_id) as snowflake:
        yield CommandContext(
            executor.registry(postgres), executor.runner(snowflake, postgres, run_id, log_level), snowflake, postgres
        )


def plan_tables(
    specs: list[TableSpec],
    executor: Executor | None = None,
    on_plan: Callable[[TableSpec, Plan], None] | None = None,
    refused: dict[str, str] | None = None,
) -> dict[str, Plan]:
    """Plan every table (one aggregated query each), keep the plan in the ledger, register new chunks
    with the executor's registry (see ``_plan``)."""
    with command_context(executor) as context:
        return _plan(context, specs, on_plan, refused)


def _plan(
    context: CommandContext,
    specs: list[TableSpec],
    on_plan: Callable[[TableSpec, Plan], None] | None = None,
    refused: dict[str, str] | None = None,
) -> dict[str, Plan]:
    """With ``refused``, a table whose input is bad (its Snowflake table missing, its target loaded by
    another source...) is noted there and the others are planned; without it, the error is raised."""
    plans = {}
    with context.snowflake.get_connection() as conn:
        for spec in specs:
            try:
                plans[spec.name] = planning.replan(spec, conn, context.postgres, context.registry.order(spec))
            except InputError as exc:
                if refused is None:
                    raise
                refused[spec.name] = str(exc)
                continue
            context.registry.register(spec, plans[spec.name].chunks)
            if on_plan:
                on_plan(spec, plans[spec.name])
    return plans


def _note_run(result: RunResult, outcome: TableOutcome | SyncOutcome) -> None:
    """The run's totals and every check evaluation; a failed check is one line naming its chunk and what
    differs."""
    if result.success:
        _add_metadata(outcome.metadata, result.metadata)
    for check in result.checks:
        outcome.checks[check.name] = outcome.checks.get(check.name, True) and check.passed
        if not check.passed:
            where = f" chunk {check.partition}" if check.partition else ""
            outcome.check_failures.append(f"check {check.name} failed{where}: {check.description or 'mismatch'}")


def _ranges(order: list[str], wanted: set[str]) -> list[list[str]]:
    """Maximal runs of consecutive partitions (in the registry's order) that are all wanted."""
    out: list[list[str]] = []
    previous_wanted = False
    for key in order:
        if key in wanted:
            if previous_wanted:
                out[-1].append(key)
            else:
                out.append([key])
        previous_wanted = key in wanted
    return out


def _add_metadata(total: dict, more: dict) -> None:
    for key, value in more.items():
        if isinstance(value, int | float) and not isinstance(value, bool) and key in total:
            total[key] += value
        elif key == "mode" and key in total:
            total[key] = f"{total[key]}; {value}"
        else:
            total.setdefault(key, value)


def migrate(
    config: AppConfig,
    specs: list[TableSpec],
    executor: Executor | None = None,
    confirm_truncate: bool = False,
    on_plan: Callable[[TableSpec, Plan], None] | None = None,
    on_table_done: Callable[[TableOutcome], None] | None = None,
    log_level: str = "INFO",
    reload: bool = False,
) -> list[TableOutcome]:
    """Plan, then load each table's chunks that are not loaded yet (all of them with ``reload``, or with
    ``confirm_truncate`` for a ``truncate_onstart`` table), one run per contiguous range of them (a
    single run for a first load). A chunk that completed stays as it is: a re-run after a failure or a
    kill reads only what is missing."""
    with command_context(executor, log_level) as context:
        refused: dict[str, str] = {}
        plans = _plan(context, specs, on_plan, refused)
        outcomes = []
        for spec in specs:
            if spec.name in refused:
                outcomes.append(TableOutcome(spec, None, success=False, error=refused[spec.name]))
                continue
            outcome = _migrate_table(context, spec, plans[spec.name], confirm_truncate, reload)
            outcomes.append(outcome)
            if on_table_done:
                on_table_done(outcome)
    return outcomes


def _migrate_table(
    context: CommandContext, spec: TableSpec, plan: Plan, confirm_truncate: bool, reload: bool
) -> TableOutcome:
    postgres = context.postgres
    outcome = TableOutcome(spec, plan, success=True)
    order = context.registry.order(spec)
    _tidy_up_after_an_interrupted_load(spec, postgres, context.snowflake)
    if reload or (confirm_truncate and spec.truncate_onstart):  # truncating means loading it all again
        with postgres.get_connection(spec.pg_database) as conn:
            ledger.request_reload(conn, spec.pg_schema, spec.pg_table)
    context.registry.report_loaded(spec)
    backfill = _to_backfill(postgres, spec, plan) & set(order)
    todo = (_to_load(postgres, spec) | backfill) & set(order)
    if order and not todo:
        outcome.note = f"all {len(order)} chunk(s) already loaded (--reload loads them again)"
    elif backfill:
        outcome.note = (
            f"{len(backfill)} chunk(s) loaded before a column was added to the target are loaded again, "
            "to fill it for their rows that have not changed since"
        )
    ranges = _ranges(order, todo)
    for n, keys in enumerate(ranges, start=1):
        # the whole table's row count is judged once its last range is in, not while others are missing
        result = context.runner.run("migrate", spec, keys, order, {}, confirm_truncate, check_table=n == len(ranges))
        if not result.success:
            outcome.success = False
            outcome.error = result.error
        _note_run(result, outcome)
    if outcome.success:
        missing = [k for k in order if _states(postgres, spec).get(k) != "completed"]
        if missing:
            outcome.success = False
            outcome.error = f"{len(missing)} of {len(order)} chunk(s) are not loaded: {', '.join(missing[:5])}"
    if outcome.check_failures:
        outcome.success = False
        outcome.error = outcome.error or "; ".join(outcome.check_failures[:5])
    return outcome


def _to_backfill(postgres: Connects, spec: TableSpec, plan: Plan) -> set[str]:
    """Chunks loaded before a column the target gained since (their unchanged rows hold NULL there):
    those the ledger knows of, or every chunk when the source has a column no load has seen yet (the
    run's load adds it)."""
    with postgres.get_connection(spec.pg_database) as conn:
        known = set(ledger.chunks_to_backfill(conn, spec.pg_schema, spec.pg_table))
        seen, _ = ledger.source_columns(conn, spec.pg_schema, spec.pg_table)
        previous = drift.from_json(seen) if seen is not None else None
        if drift.columns_not_seen(previous, plan.source_columns):
            known |= set(ledger.loaded_keys(conn, spec.pg_schema, spec.pg_table))
    return known


def _to_load(postgres: Connects, spec: TableSpec) -> set[str]:
    _states(postgres, spec)  # a dropped target is planned again first
    with postgres.get_connection(spec.pg_database) as conn:
        return ledger.to_load(conn, spec.pg_schema, spec.pg_table)


def _tidy_up_after_an_interrupted_load(spec: TableSpec, postgres: Connects, snowflake: Any) -> None:
    """Indexes (and key) a killed full load left dropped are rebuilt first (``keys.rebuild_after_interrupted_load``)."""
    from sf2pg.load import keys

    def columns() -> list:
        with snowflake.get_connection() as sf:
            return planning.source_columns(sf, spec)

    keys.rebuild_after_interrupted_load(postgres, spec, columns)


def _states(postgres: Connects, spec: TableSpec) -> dict[str, str]:
    """The ledger's chunk states; a target table dropped since holds nothing, whatever they said."""
    with postgres.get_connection(spec.pg_database) as conn:
        states = ledger.chunk_states(conn, spec.pg_schema, spec.pg_table)
        name = sql.Identifier(spec.pg_schema, spec.pg_table).as_string(conn)
        gone = conn.execute("SELECT to_regclass(%s) IS NULL", (name,)).fetchone()[0]
        if gone and "completed" in states.values():
            with conn.transaction():
                ledger.reset_chunks(conn, spec.pg_schema, spec.pg_table)
            states = ledger.chunk_states(conn, spec.pg_schema, spec.pg_table)
        return states


def _verify_chunks(context: CommandContext, spec: TableSpec, sf_conn: Any) -> list:
    """The table's chunks as the registry and the ledger know them; planned afresh (and not recorded)
    if neither does."""
    chunks = planning.known_chunks(spec, context.postgres, context.registry.order(spec))
    if chunks:
        return chunks
    return planning.replan(spec, sf_conn, None).chunks


def verify(specs: list[TableSpec], executor: Executor | None = None) -> list:
    """Row counts and per-chunk fingerprints for each table (the asset checks, headless)."""
    from sf2pg.reconcile.counts import verify_table

    verdicts = []
    with command_context(executor) as context, context.snowflake.get_connection() as sf:
        for spec in specs:
            with context.postgres.get_connection(spec.pg_database) as pg:
                chunks = _verify_chunks(context, spec, sf)
                verdict = verify_table(sf, pg, spec, planning.source_columns(sf, spec), chunks)
                # a chunk found different is reloaded by the next `sf2pg migrate`, once the cause is fixed
                ledger.record_checks(pg, spec.pg_schema, spec.pg_table, {c.key: c.passed for c in verdict.chunks})
                verdicts.append(verdict)
    return verdicts


@dataclass
class SyncOutcome:
    """What one incremental pass did to one table."""

    spec: TableSpec
    window: str | None = None  # the watermark range loaded, if any
    note: str = ""
    success: bool = True
    metadata: dict = field(default_factory=dict)
    deleted: int = 0  # rows removed by delete detection
    checks: dict[str, bool] = field(default_factory=dict)
    check_failures: list[str] = field(default_factory=list)
    awaiting_reload: int = 0  # chunks loaded before a column was added: their unchanged rows hold NULL there


def sync(specs: list[TableSpec], executor: Executor | None = None, log_level: str = "INFO") -> list[SyncOutcome]:
    """One incremental pass: the sensor's decision (``plan_window``) and its run, per table."""
    with command_context(executor, log_level) as context:
        return [_sync_table(context, spec) for spec in specs]


def _sync_table(context: CommandContext, spec: TableSpec) -> SyncOutcome:
    if not spec.source_watermark:
        return SyncOutcome(spec, note="no source_watermark: not synced")
    outcome = _sync_window(context, spec)
    with context.postgres.get_connection(spec.pg_database) as conn:
        outcome.awaiting_reload = len(ledger.chunks_to_backfill(conn, spec.pg_schema, spec.pg_table))
    return outcome


def _sync_window(context: CommandContext, spec: TableSpec) -> SyncOutcome:
    from sf2pg.plan.incremental import plan_window, window_range

    chunks = planning.known_chunks(spec, context.postgres, context.registry.order(spec))
    context.registry.register(spec, chunks)  # a new instance learns the plan from the ledger
    with context.snowflake.get_connection() as sf, context.postgres.get_connection(spec.pg_database) as pg:
        plan = plan_window(sf, pg, spec, planning.source_columns(sf, spec), chunks)
    if plan.window is None:
        return SyncOutcome(spec, note=plan.note or "up to date", success=plan.loaded)
    context.registry.register(spec, plan.new_chunks)
    order = context.registry.order(spec)
    found = window_range(spec, plan, order)
    if found is None:
        return SyncOutcome(spec, note=plan.note or "up to date", success=plan.loaded)
    keys = order[order.index(found[0]) : order.index(found[1]) + 1]
    result = context.runner.run("sync", spec, keys, order, plan.tags)
    window = plan.window
    outcome = SyncOutcome(spec, f"{watermark_text(window.read_from)} .. {watermark_text(window.high)}")
    outcome.success = result.success
    if result.success:
        _note_run(result, outcome)
        outcome.deleted = int(outcome.metadata.get("rows_deleted_by_delete_detection", 0))
    else:
        outcome.note = result.error or "run failed"
        _note_run(result, outcome)
    if outcome.check_failures:
        outcome.success = False
        outcome.note = outcome.note or "; ".join(outcome.check_failures[:5])
    return outcome

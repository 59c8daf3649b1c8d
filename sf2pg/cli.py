"""The ``sf2pg`` command line: validate, plan, migrate, sync, verify, status, restore-indexes, demo, dev."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from sf2pg import progress as progress_hook
from sf2pg.config import AppConfig, ConfigError, config_path, load_config

console = Console()
err_console = Console(stderr=True)


# ---- helpers ---------------------------------------------------------------------------------


def _load(args: argparse.Namespace) -> AppConfig:
    return load_config(args.config)  # resolves flag, then $SF2PG_CONFIG, then the default, and says which


# Dagster's console log of in-process runs stays silent: the CLI prints progress, one line per failed
# table and notes of its own, instead of Dagster's events with their tracebacks.
LOG_LEVEL = "CRITICAL"


def _quiet_dagster() -> None:
    """In-process runs log every Dagster event; the CLI shows its own progress instead."""
    for name in ("dagster", "snowflake.connector", "fakesnow"):
        logging.getLogger(name).setLevel(logging.WARNING)


class _LoadProgress:
    """Live per-table progress on a terminal; plain lines otherwise."""

    def __init__(self) -> None:
        self.live = console.is_terminal
        self.tasks: dict[str, Any] = {}
        self.rows: dict[str, int] = {}
        self.started: dict[str, float] = {}
        self.progress = Progress(
            TextColumn("[bold]{task.fields[table]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("chunks  {task.fields[rows]:>12,} rows  {task.fields[rate]:>10,.0f} rows/s"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            disable=not self.live,
        )

    def __enter__(self) -> _LoadProgress:
        self.progress.__enter__()
        self._unsubscribe = progress_hook.subscribe(self.on_chunk)
        return self

    def __exit__(self, *exc: object) -> None:
        self._unsubscribe()
        self.progress.__exit__(*exc)

    def on_plan(self, spec: Any, plan: Any) -> None:
        self.tasks[spec.name] = self.progress.add_task("", total=len(plan.chunks), table=spec.name, rows=0, rate=0.0)
        self.rows[spec.name] = 0
        self.started[spec.name] = time.monotonic()
        if not self.live:
            console.print(
                f"planned {spec.name}: {len(plan.chunks)} chunk(s) ({len(plan.new_keys)} new) "
                f"with {plan.source_queries} source quer{'y' if plan.source_queries == 1 else 'ies'}"
            )

    def on_chunk(self, table: str, result: Any) -> None:
        self.rows[table] = self.rows.get(table, 0) + result.rows_copied
        elapsed = max(time.monotonic() - self.started.get(table, time.monotonic()), 1e-6)
        if table in self.tasks:
            self.progress.update(self.tasks[table], advance=1, rows=self.rows[table], rate=self.rows[table] / elapsed)
        if not self.live:
            console.print(
                f"{table}: chunk {result.key} {result.mode} {result.rows_copied} rows in {result.seconds:.2f}s"
            )


# ---- commands --------------------------------------------------------------------------------


def cmd_validate(args: argparse.Namespace) -> int:
    config = _load(args)
    specs = config.tables()
    console.print(f"[green]config OK[/]: {config_path(args.config)} — {len(specs)} enabled table(s)")
    if not args.connect:
        return 0
    from sf2pg.preflight import check_connections

    problems = check_connections(config)
    for problem in problems:
        err_console.print(f"✗ {problem}", highlight=False, markup=False, soft_wrap=True)
    if problems:
        return 1
    console.print("[green]connections OK[/]: every source table and named column exists; targets reachable")
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from sf2pg.runs import dagster_instance, plan_tables, select_tables

    config = _load(args)
    specs = select_tables(config, args.source, args.table)
    instance = None if args.no_register else dagster_instance()
    plans = plan_tables(specs, instance)
    for spec in specs:
        plan = plans[spec.name]
        table = Table(title=f"{spec.name}: {len(plan.chunks)} chunk(s), {plan.source_queries} source query(ies)")
        for column in ("key", "lower", "upper", "estimated rows", "new"):
            table.add_column(column, justify="right" if column == "estimated rows" else "left")
        new = set(plan.new_keys)
        for chunk in plan.chunks:
            table.add_row(
                chunk.key,
                "" if chunk.lower is None else str(chunk.lower),
                "" if chunk.upper is None else str(chunk.upper),
                f"{chunk.estimated_rows:,}",
                "yes" if chunk.key in new else "",
            )
        console.print(table)
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from sf2pg.runs import dagster_instance, migrate, select_tables

    _quiet_dagster()
    config = _load(args)
    specs = select_tables(config, args.source, args.table)
    instance = dagster_instance()
    t0 = time.monotonic()
    with _LoadProgress() as display:
        outcomes = migrate(config, specs, instance, args.confirm_truncate, on_plan=display.on_plan, log_level=LOG_LEVEL)
    print_migration_summary(outcomes, time.monotonic() - t0)
    for o in outcomes:
        if o.success and o.spec.truncate_onstart and not o.metadata.get("truncated"):
            console.print(
                f"note: {o.spec.name}: truncate_onstart is set, but truncation needs --confirm-truncate and a load "
                "of every partition; the chunks were merged instead",
                highlight=False,
            )
        if o.metadata.get("fallbacks"):
            console.print(
                f"note: {o.spec.name}: {o.metadata['fallbacks']} chunk(s) needed a fallback "
                "(see the fallback column of migration_status.chunk_state)",
                highlight=False,
            )
    failed = [o for o in outcomes if not o.success]
    for outcome in failed:
        err_console.print(f"✗ {outcome.spec.name}: {outcome.error}", highlight=False, markup=False, soft_wrap=True)
    return 1 if failed else 0


def print_migration_summary(outcomes: list, seconds: float) -> None:
    table = Table(title=f"sf2pg migrate — {seconds:.1f}s")
    for column in ("table", "chunks", "rows", "mode", "rows/s", "status"):
        table.add_column(column, justify="right" if column in ("chunks", "rows", "rows/s") else "left")
    for o in outcomes:
        md = o.metadata
        table.add_row(
            o.spec.name,
            str(len(o.plan.chunks)) if o.plan else "",
            f"{md.get('rows', 0):,}",
            str(md.get("mode", "")),
            f"{md.get('rows_per_s', 0):,.0f}",
            "[green]ok[/]" if o.success else "[red]failed[/]",
        )
    console.print(table)


def cmd_sync(args: argparse.Namespace) -> int:
    from sf2pg.runs import dagster_instance, select_tables, sync

    _quiet_dagster()
    config = _load(args)
    outcomes = sync(select_tables(config, args.source, args.table), dagster_instance(), log_level=LOG_LEVEL)
    table = Table(title="sf2pg sync: one incremental pass")
    for column in ("table", "window", "rows", "inserted", "updated", "deleted", "status"):
        table.add_column(column, justify="right" if column in ("rows", "inserted", "updated", "deleted") else "left")
    for o in outcomes:
        md = o.metadata
        table.add_row(
            o.spec.name,
            o.window or "",
            f"{md.get('rows', 0):,}" if o.window else "",
            f"{md.get('rows_inserted', 0):,}" if o.window else "",
            f"{md.get('rows_updated', 0):,}" if o.window else "",
            f"{o.deleted:,}",
            ("[green]loaded[/]" if o.window else o.note) if o.success else "[red]failed[/]",
        )
    console.print(table)
    for o in outcomes:
        if not o.success:
            err_console.print(f"✗ {o.spec.name}: {o.note}", highlight=False, markup=False, soft_wrap=True)
    return 0 if all(o.success for o in outcomes) else 1


def cmd_verify(args: argparse.Namespace) -> int:
    from sf2pg.runs import dagster_instance, select_tables, verify

    config = _load(args)
    verdicts = verify(select_tables(config, args.source, args.table), dagster_instance())
    table = Table(title="sf2pg verify: source vs target")
    for column in ("table", "chunk", "source rows", "target rows", "status", "columns that differ"):
        table.add_column(column, justify="right" if "rows" in column else "left")
    for v in verdicts:
        counts = v.counts
        source = f"{v.source_rows:,}" + (f" (+{v.moving_rows:,} moving)" if v.watermark is not None else "")
        table.add_row(v.table, "(whole table)", source, f"{v.target_rows:,}", _status(counts.passed), "")
        for c in v.chunks:
            if args.all_chunks or not c.passed:
                columns = "(rows differ)" if c.rows_differ else ", ".join(c.columns)
                table.add_row("", c.key, f"{c.source_rows:,}", f"{c.target_rows:,}", _status(c.passed), columns)
    console.print(table)
    failed = [v for v in verdicts if not v.passed]
    for v in failed:
        if not v.counts.passed:
            err_console.print(f"✗ {v.table}: {v.counts.summary()}", highlight=False, markup=False, soft_wrap=True)
        for c in v.failed_chunks:
            err_console.print(
                f"✗ {v.table} chunk {c.key}: {c.summary()}", highlight=False, markup=False, soft_wrap=True
            )
    for v in verdicts:
        if v.watermark is not None:
            console.print(
                f"{v.table}: compared the rows settled up to watermark {v.watermark}; "
                f"{v.moving_rows:,} source rows past it are in flight",
                highlight=False,
                soft_wrap=True,
            )
    if not failed:
        total = sum(len(v.chunks) for v in verdicts)
        console.print(f"[green]all {len(verdicts)} table(s) and {total} chunk(s) match[/]")
    return 1 if failed else 0


def _status(ok: bool) -> str:
    return "[green]ok[/]" if ok else "[red]MISMATCH[/]"


def cmd_status(args: argparse.Namespace) -> int:
    from sf2pg.load.ledger import table_status
    from sf2pg.resources import PostgresResource

    config = _load(args)
    postgres = PostgresResource()
    rows: list[dict] = []
    for database in dict.fromkeys(s.pg_database for s in config.tables()):
        with postgres.get_connection(database) as conn:
            for row in table_status(conn):
                rows.append({"database": database, **row})
    if args.json:
        print(json.dumps(rows, default=str, indent=2))
        return 0
    table = Table(title="sf2pg status (from the migration_status ledger)")
    for column in ("database", "table", "progress", "chunks", "failed", "rows", "status"):
        table.add_column(column)
    for r in rows:
        pct = 100.0 * r["completed_chunks"] / r["total_chunks"] if r["total_chunks"] else 0.0
        table.add_row(
            r["database"],
            f"{r['target_schema']}.{r['target_table']}",
            f"{pct:.1f}%",
            f"{r['completed_chunks']}/{r['total_chunks']}",
            str(r["failed_chunks"]),
            f"{r['total_rows_copied']:,}",
            r["status"],
        )
    console.print(table)
    return 0


def cmd_restore_indexes(args: argparse.Namespace) -> int:
    import psycopg

    from sf2pg.load.indexes import lock_indexes, restore_indexes
    from sf2pg.load.ledger import ensure_ledger
    from sf2pg.resources import PostgresResource
    from sf2pg.runs import select_tables

    config = _load(args)
    postgres = PostgresResource()
    failed = 0
    for spec in select_tables(config, args.source, args.table):
        with postgres.get_connection(spec.pg_database) as conn:
            ensure_ledger(conn)
            if not lock_indexes(conn, spec.pg_schema, spec.pg_table):
                console.print(f"{spec.name}: skipped: a load of this table is running and rebuilds them when it ends")
                continue
            try:
                rebuilt = restore_indexes(conn, spec.pg_schema, spec.pg_table)
            except psycopg.errors.UniqueViolation as exc:  # only a first load's primary key can meet this
                failed += 1
                console.print(
                    f"[red]{spec.name}: the primary key cannot be rebuilt: {exc.diag.message_detail or exc}[/red] "
                    f"(the interrupted first load received a key twice). Run `sf2pg migrate -t {spec.pg_table}`: "
                    "it empties and fails the chunks holding repeated keys, then rebuilds the key"
                )
                continue
        console.print(f"{spec.name}: rebuilt {len(rebuilt)} index(es) {rebuilt if rebuilt else ''}")
    return 1 if failed else 0


def cmd_demo(args: argparse.Namespace) -> int:
    from sf2pg.demo import run_demo

    _quiet_dagster()
    return run_demo(scale=args.scale, keep_running=args.keep_running)


def cmd_dev(args: argparse.Namespace) -> int:
    from sf2pg.demo import run_dev

    return run_dev(port=args.port)


# ---- parser ----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sf2pg",
        description="Copy and keep in sync Snowflake tables in PostgreSQL, on Dagster.",
    )
    parser.add_argument(
        "--config",
        metavar="PATH",
        help="config file (default: $SF2PG_CONFIG, else config/config.json)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Callable, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(func=func)
        return p

    def tables_args(p: argparse.ArgumentParser, source_required: bool = False) -> None:
        p.add_argument(
            "source", nargs=None if source_required else "?", help="source_name (default: every enabled source)"
        )
        p.add_argument("--table", "-t", action="append", help="only this table (target or source name); repeatable")

    p = add(
        "validate", cmd_validate, "Check the config; with --connect also check Snowflake tables/columns and targets."
    )
    p.add_argument("--connect", action="store_true", help="also connect: every source table and column must exist")
    p = add("plan", cmd_plan, "Plan chunks (one aggregated query per table), print them, register them with Dagster.")
    tables_args(p)
    p.add_argument("--no-register", action="store_true", help="print the plan without registering partitions")
    p = add(
        "migrate", cmd_migrate, "Plan and load every partition of the selected tables headless; non-zero on failure."
    )
    tables_args(p)
    p.add_argument(
        "--confirm-truncate",
        action="store_true",
        help="allow truncate_onstart tables to be truncated before this full load",
    )
    p = add("sync", cmd_sync, "One incremental pass: load each table's new watermark window; non-zero on failure.")
    tables_args(p)
    p = add("verify", cmd_verify, "Run the reconciliation checks headless; exit non-zero on any mismatch.")
    tables_args(p)
    p.add_argument("--all-chunks", action="store_true", help="list passing chunks too")
    p = add("status", cmd_status, "Per-table progress from the migration_status ledger.")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p = add(
        "restore-indexes",
        cmd_restore_indexes,
        "Rebuild the indexes (and a first load's primary key) a crashed full load left dropped.",
    )
    tables_args(p)
    p = add("demo", cmd_demo, "Start embedded PostgreSQL + Snowflake emulator, seed demo data, migrate, summarise.")
    p.add_argument("--scale", type=float, default=1.0, help="demo data size factor (default 1.0 ≈ 210k rows)")
    p.add_argument("--keep-running", action="store_true", help="leave both servers running afterwards")
    p = add("dev", cmd_dev, "Set up the demo stack, then start the Dagster UI (dagster dev) pointed at it.")
    p.add_argument("--port", type=int, default=3000, help="Dagster UI port (default 3000)")
    return parser


def _quiet_warnings() -> None:
    """Dagster's beta/preview notices (backfill policies, partitioned checks) and platformdirs' runtime-dir
    notice say nothing a CLI user can act on; Dagster's own processes still show them."""
    warnings.filterwarnings("ignore", message=r".*is currently in (beta|preview)")
    warnings.filterwarnings("ignore", message=r"XDG_RUNTIME_DIR is not set")


def main(argv: list[str] | None = None) -> None:
    _quiet_warnings()
    args = build_parser().parse_args(argv)
    try:
        code = args.func(args)
    except ConfigError as exc:
        err_console.print("[red]invalid config[/]", end=" ")
        err_console.print(str(exc), highlight=False, markup=False, soft_wrap=True)
        code = 2
    except KeyboardInterrupt:
        loading = args.command in ("migrate", "sync", "demo")
        err_console.print(
            "interrupted: chunks in flight rolled back, completed chunks kept; run the same command again to finish"
            if loading
            else "interrupted"
        )
        code = 130
    except Exception as exc:  # a clear one-line error, never a traceback with connection details
        err_console.print("[red]error:[/]", end=" ")
        err_console.print(f"{type(exc).__name__}: {exc}", highlight=False, markup=False, soft_wrap=True)
        code = 1
    sys.exit(code)


if __name__ == "__main__":
    main()

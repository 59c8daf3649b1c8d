"""The ``sf2pg`` command line: validate, plan, migrate, sync, verify, status, restore-indexes, demo, dev.

Why one module: the argument parser and one handler per subcommand, side by side; what they print lives in ``display``.
"""

from __future__ import annotations

import argparse
import difflib
import json
import logging
import os
import re
import sys
import time
import warnings
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from typing import Any, NoReturn

from rich.table import Table

from sf2pg.cli.display import _LoadProgress, console, err_console, print_migration_summary, print_schema_changes
from sf2pg.cli.executor import executor_from_env
from sf2pg.config.loading import config_path, load_config
from sf2pg.config.model import AppConfig, ConfigError

# ---- helpers ---------------------------------------------------------------------------------

# commands that read or load target tables: an unreachable PostgreSQL stops them before any work
_TARGET_COMMANDS = {"plan", "migrate", "sync", "verify", "status", "restore-indexes"}


def _load(args: argparse.Namespace) -> AppConfig:
    """The command's config, with its SOURCE/-t selection checked and, for commands that touch the
    targets, each target database reached once: a mistake is one clear line before any work starts."""
    from sf2pg.config.selection import check_selection

    config = load_config(args.config)  # resolves flag, then $SF2PG_CONFIG, then the default, and says which
    check_selection(config, getattr(args, "source", None), getattr(args, "table", None), str(config_path(args.config)))
    if args.command in _TARGET_COMMANDS:
        _reach_targets(config)
    return config


def _reach_targets(config: AppConfig) -> None:
    """Connect once to every target database (a few milliseconds each), so a PostgreSQL that cannot be
    reached fails the command at once, naming host and port, instead of after a run's retries."""
    from sf2pg.load.postgres import Postgres

    postgres = Postgres()
    for database in dict.fromkeys(s.pg_database for s in config.tables()):
        with postgres.get_connection(database):
            pass


# Dagster's console log of in-process runs stays silent: the CLI prints progress, one line per failed
# table and notes of its own, instead of Dagster's events with their tracebacks.
LOG_LEVEL = "CRITICAL"


def _quiet_dagster() -> None:
    """In-process runs log every Dagster event, runs without Dagster their chunks' failures and retries;
    the CLI shows its own progress and one line per failed table instead."""
    for name in ("dagster", "snowflake.connector", "fakesnow"):
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("sf2pg.run").setLevel(LOG_LEVEL)


# ---- commands --------------------------------------------------------------------------------


def cmd_validate(args: argparse.Namespace) -> int:
    config = _load(args)
    specs = config.tables()
    console.print(f"[green]config OK[/]: {config_path(args.config)} — {len(specs)} enabled table(s)")
    if not args.connect:
        return 0
    from sf2pg.config.preflight import check_connections

    problems = check_connections(config)
    for problem in problems:
        err_console.print(f"✗ {problem}", highlight=False, markup=False, soft_wrap=True)
    if problems:
        return 1
    console.print("[green]connections OK[/]: every source table and named column exists; targets reachable")
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from sf2pg.config.selection import select_tables
    from sf2pg.run.commands import plan_tables

    config = _load(args)
    specs = select_tables(config, args.source, args.table)
    executor = None if args.no_register else executor_from_env()
    plans = plan_tables(specs, executor)
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
    from sf2pg.config.selection import select_tables
    from sf2pg.run.commands import migrate

    _quiet_dagster()
    config = _load(args)
    specs = select_tables(config, args.source, args.table)
    executor = executor_from_env()
    t0 = time.monotonic()
    with _LoadProgress() as display:
        outcomes = migrate(
            config,
            specs,
            executor,
            args.confirm_truncate,
            on_plan=display.on_plan,
            log_level=LOG_LEVEL,
            reload=args.reload,
        )
    print_migration_summary(outcomes, time.monotonic() - t0)
    for o in outcomes:
        print_schema_changes(o)
        if o.note:
            console.print(f"note: {o.spec.name}: {o.note}", highlight=False)
        if o.metadata and o.spec.truncate_onstart and not o.metadata.get("truncated"):
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
        for line in outcome.check_failures[:20]:
            err_console.print(f"  {line}", highlight=False, markup=False, soft_wrap=True)
    return 1 if failed else 0


def cmd_sync(args: argparse.Namespace) -> int:
    from sf2pg.config.selection import select_tables
    from sf2pg.run.commands import sync

    _quiet_dagster()
    config = _load(args)
    outcomes = sync(select_tables(config, args.source, args.table), executor_from_env(), log_level=LOG_LEVEL)
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
        print_schema_changes(o)
        if o.awaiting_reload:
            console.print(
                f"note: {o.spec.name}: {o.awaiting_reload} chunk(s) loaded before a column was added hold NULL there "
                "for their rows that have not changed since (a window reads only changed rows); `sf2pg migrate` "
                "reloads them",
                highlight=False,
                markup=False,
                soft_wrap=True,
            )
    for o in outcomes:
        if not o.success:
            err_console.print(f"✗ {o.spec.name}: {o.note}", highlight=False, markup=False, soft_wrap=True)
            for line in o.check_failures[:20]:
                err_console.print(f"  {line}", highlight=False, markup=False, soft_wrap=True)
    return 0 if all(o.success for o in outcomes) else 1


def cmd_verify(args: argparse.Namespace) -> int:
    from sf2pg.config.selection import select_tables
    from sf2pg.run.commands import verify

    config = _load(args)
    verdicts = verify(select_tables(config, args.source, args.table), executor_from_env())
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
                f"{v.table}: compared the rows settled below watermark {v.watermark}; "
                f"{v.moving_rows:,} source rows at or past it are in flight (the next sync reads them; while "
                "the source has changed since the last sync, the rows within the lookback count as in flight too)",
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
    from sf2pg.load.postgres import Postgres
    from sf2pg.run.status import table_statuses

    config = _load(args)
    rows = table_statuses(config, Postgres())
    if args.json:
        print(json.dumps(rows, default=str, indent=2))
        return 0
    table = Table(title="sf2pg status (chunks from the migration_status ledger, rows counted in the target)")
    for column in ("table", "target", "progress", "chunks", "failed", "target rows", "status"):
        table.add_column(column, justify="right" if column in ("chunks", "failed", "target rows") else "left")
    for r in rows:
        pct = 100.0 * r["completed_chunks"] / r["total_chunks"] if r["total_chunks"] else 0.0
        held = (
            "no table"
            if r["target_rows"] is None
            else f"{'~' if r['target_rows_estimated'] else ''}{r['target_rows']:,}"
        )
        table.add_row(
            r["table"],
            f"{r['database']}.{r['target_schema']}.{r['target_table']}",
            f"{pct:.1f}%",
            f"{r['completed_chunks']}/{r['total_chunks']}",
            str(r["failed_chunks"]),
            held,
            r["status"],
        )
    console.print(table)
    if any(r["target_rows_estimated"] for r in rows):
        console.print("~: PostgreSQL's estimate (the exact count took too long)", highlight=False)
    return 0


def cmd_restore_indexes(args: argparse.Namespace) -> int:
    import psycopg

    from sf2pg.config.selection import select_tables
    from sf2pg.load.indexes import lock_indexes, restore_indexes
    from sf2pg.load.ledger import ensure_ledger
    from sf2pg.load.postgres import Postgres

    config = _load(args)
    postgres = Postgres()
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
    from sf2pg.cli import demo

    if args.demo_action == "env":
        demo.print_env(demo.running_stack_env())
        return 0
    if args.demo_action == "stop":
        stopped = demo.stop_demo_stack()
        console.print("demo stack stopped" if stopped else "no demo stack was running")
        return 0
    _quiet_dagster()
    return demo.run_demo(scale=args.scale, keep_running=args.keep_running, config_file=args.config)


def cmd_dev(args: argparse.Namespace) -> int:
    from sf2pg.cli.demo import run_dev

    return run_dev(port=args.port, config_file=args.config)


# ---- parser ----------------------------------------------------------------------------------


def _version() -> str:
    try:
        return version("sf2pg")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


class _Parser(argparse.ArgumentParser):
    """argparse, plus a "did you mean" for a mistyped command or option."""

    def error(self, message: str) -> NoReturn:
        super().error(message + _did_you_mean(self, message))


def _did_you_mean(parser: argparse.ArgumentParser, message: str) -> str:
    commands = [
        name for a in parser._actions if isinstance(a, argparse._SubParsersAction) for name in a.choices
    ]  # fmt: skip
    options = {o for a in parser._actions for o in a.option_strings}
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            options |= {o for sub in a.choices.values() for b in sub._actions for o in b.option_strings}
    if m := re.search(r"invalid choice: '([^']*)'", message):
        wrong, known = [m.group(1)], commands
    elif m := re.search(r"unrecognized arguments: (.*)", message):
        wrong, known = [w.split("=")[0] for w in m.group(1).split() if w.startswith("-")], sorted(options)
    else:
        return ""
    hints = [(w, close[0]) for w in wrong if (close := difflib.get_close_matches(w, known, n=1, cutoff=0.6))]
    if len(hints) == 1 and len(wrong) == 1:
        return f" (did you mean '{hints[0][1]}'?)"
    return f" (did you mean {', '.join(f'{right!r} for {w!r}' for w, right in hints)}?)" if hints else ""


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="sf2pg",
        description="Copy and keep in sync Snowflake tables in PostgreSQL, on Dagster.",
    )
    config_help = "config file (default: $SF2PG_CONFIG, else config/config.json)"
    parser.add_argument("--config", metavar="PATH", help=config_help)
    parser.add_argument("--version", action="version", version=f"sf2pg {_version()}")
    # Global options work after the command too (`sf2pg migrate --config x`): each command accepts them,
    # and SUPPRESS keeps a command that was not given one from resetting the value given before it.
    common = _Parser(add_help=False)
    common.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS, help=config_help)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Callable, help_text: str, into: Any = sub) -> argparse.ArgumentParser:
        p = into.add_parser(name, help=help_text, description=help_text, parents=[common])
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
        "migrate",
        cmd_migrate,
        "Plan, then load the chunks of the selected tables not loaded yet (resumes; --reload loads all); "
        "non-zero on failure.",
    )
    tables_args(p)
    p.add_argument(
        "--confirm-truncate",
        action="store_true",
        help="truncate truncate_onstart tables and load them again in full (implies --reload for them)",
    )
    p.add_argument(
        "--reload",
        action="store_true",
        help="load every chunk again (default: resume, loading only chunks not loaded yet)",
    )
    p = add("sync", cmd_sync, "One incremental pass: load each table's new watermark window; non-zero on failure.")
    tables_args(p)
    p = add("verify", cmd_verify, "Run the reconciliation checks headless; exit non-zero on any mismatch.")
    tables_args(p)
    p.add_argument("--all-chunks", action="store_true", help="list passing chunks too")
    p = add("status", cmd_status, "Per-table progress from the migration_status ledger, and rows in each target.")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p = add(
        "restore-indexes",
        cmd_restore_indexes,
        "Rebuild the indexes (and a first load's primary key) a crashed full load left dropped.",
    )
    tables_args(p)
    p = add(
        "demo",
        cmd_demo,
        "Start embedded PostgreSQL + Snowflake emulator, seed demo data, migrate, summarise "
        "(needs the demo extra: pip install 'sf2pg[demo]'); 'demo env' and 'demo stop' reach a stack left running.",
    )
    p.add_argument("--scale", type=float, default=1.0, help="demo data size factor (default 1.0 ≈ 210k rows)")
    p.add_argument(
        "--keep-running",
        action="store_true",
        help='leave both servers running afterwards; then eval "$(sf2pg demo env)" and use any command on them',
    )
    demo_sub = p.add_subparsers(dest="demo_action", metavar="[env | stop]")
    p.set_defaults(demo_action=None)
    add(
        "env",
        cmd_demo,
        'Print the environment that reaches the running demo stack: eval "$(sf2pg demo env)".',
        demo_sub,
    )
    add("stop", cmd_demo, "Stop the demo stack that --keep-running (or sf2pg dev) left running.", demo_sub)
    p = add("dev", cmd_dev, "Set up the demo stack, then serve the Dagster UI on it (dg dev; needs the demo extra).")
    p.add_argument("--port", type=int, default=3000, help="Dagster UI port (default 3000)")
    return parser


def _quiet_warnings() -> None:
    """Dagster's beta/preview notices (backfill policies, partitioned checks) and platformdirs' runtime-dir
    notice say nothing a CLI user can act on; Dagster's own processes still show them."""
    warnings.filterwarnings("ignore", message=r".*is currently in (beta|preview)")
    warnings.filterwarnings("ignore", message=r"XDG_RUNTIME_DIR is not set")


def _self_explained(exc: Exception) -> int | None:
    """The exit code of an error whose message says everything (what, where, what to do), printed
    without a class name: 2 for a command line or an install to fix, 1 for a server to start or reach."""
    from sf2pg.cli.demo import DemoExtraMissing, DemoNotRunning
    from sf2pg.config.selection import SelectionError
    from sf2pg.load.postgres import PostgresUnreachable

    if isinstance(exc, SelectionError | DemoExtraMissing):
        return 2
    if isinstance(exc, PostgresUnreachable | DemoNotRunning):
        return 1
    return None


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
        explained = _self_explained(exc)
        err_console.print("[red]error:[/]", end=" ")
        err_console.print(
            str(exc) if explained else f"{type(exc).__name__}: {exc}", highlight=False, markup=False, soft_wrap=True
        )
        code = explained or 1
    sys.exit(code)


def run() -> None:
    """The ``sf2pg`` console script: ``main``, then an exit that skips the interpreter's teardown.

    Tearing down the connector, pandas and pyarrow modules takes about 0.3 s after the work is done;
    a command that started nothing of its own (no dev stack, no Dagster instance that may still write)
    flushes its output and logs, closes what it opened (already done by its context managers) and
    leaves at once. Tests call ``main`` and keep the normal exit.
    """
    try:
        main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if "dagster" in sys.modules or "sf2pg.devstack.emulator" in sys.modules:
            raise
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


if __name__ == "__main__":
    run()

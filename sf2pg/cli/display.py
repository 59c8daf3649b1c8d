"""What the CLI shows: live per-table progress of a load and the migration summary (``sf2pg migrate``, ``sf2pg demo``)."""

from __future__ import annotations

import datetime as dt
import os
import sys
import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from sf2pg.run import progress as progress_hook

PIPED_WIDTH = 160


def piped_width(stream: Any) -> int | None:
    """Output to a pipe or a log (not a terminal, no ``COLUMNS``) is not squeezed to rich's 80
    columns, where table and chunk names end in an ellipsis: it gets 160."""
    return None if os.environ.get("COLUMNS") or stream.isatty() else PIPED_WIDTH


console = Console(width=piped_width(sys.stdout))
err_console = Console(stderr=True, width=piped_width(sys.stderr))


class _LoadProgress:
    """Live per-table progress on a terminal; plain lines otherwise.

    A table's clock starts when its load starts (``progress.table_started``; without that event, when
    its first chunk began), so rows/s and the time columns count its own load, not the wait for the
    tables before it. Retries are printed as they are decided.

    The live display draws on its own copy of the terminal's file descriptor: while a step runs, Dagster
    points fd 1 at the step's compute log (mirroring it back later), and a display drawn through it
    would freeze until the step ended.
    """

    def __init__(self) -> None:
        self.live = console.is_terminal
        self.console = Console(file=os.fdopen(os.dup(console.file.fileno()), "w")) if self.live else console
        self.tasks: dict[str, Any] = {}
        self.chunks: dict[str, int] = {}
        self.rows: dict[str, int] = {}
        self.started: dict[str, float] = {}
        self.names: dict[tuple[str, ...], str] = {}  # asset key path -> table name, for retry events
        self.progress = Progress(
            TextColumn("[bold]{task.fields[table]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("chunks  {task.fields[rows]:>12,} rows  {task.fields[rate]:>10,.0f} rows/s"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            disable=not self.live,
        )

    def __enter__(self) -> _LoadProgress:
        self.progress.__enter__()
        self._unsubscribe = progress_hook.subscribe(self)
        return self

    def __exit__(self, *exc: object) -> None:
        self._unsubscribe()
        self.progress.__exit__(*exc)
        if self.console is not console:
            self.console.file.close()

    def on_plan(self, spec: Any, plan: Any) -> None:
        # the clock starts with the table's load (start=False), not now
        self.tasks[spec.name] = self.progress.add_task(
            "", total=len(plan.chunks), table=spec.name, rows=0, rate=0.0, start=False
        )
        self.chunks[spec.name] = len(plan.chunks)
        self.rows[spec.name] = 0
        self.names[tuple(spec.asset_key_path)] = spec.name
        if not self.live:
            console.print(
                f"planned {spec.name}: {len(plan.chunks)} chunk(s) ({len(plan.new_keys)} new) "
                f"with {plan.source_queries} source quer{'y' if plan.source_queries == 1 else 'ies'}"
            )

    def on_table_started(self, table: str, since: float | None = None) -> None:
        if table in self.started:
            return
        self.started[table] = since if since is not None else time.monotonic()
        if table in self.tasks:
            self.progress.start_task(self.tasks[table])
            task = next(t for t in self.progress.tasks if t.id == self.tasks[table])
            task.start_time = self.progress.get_time() - (time.monotonic() - self.started[table])
        if not self.live:
            console.print(f"loading {table}: {self.chunks.get(table, 0)} chunk(s)")

    def on_chunk(self, table: str, result: Any) -> None:
        now = time.monotonic()
        if table not in self.started:  # the loader sent no start: the table began when this chunk did
            self.on_table_started(table, since=now - result.seconds)
        self.rows[table] = self.rows.get(table, 0) + result.rows_copied
        rate = self.rows[table] / max(now - self.started[table], 1e-6)
        if table in self.tasks:
            self.progress.update(self.tasks[table], advance=1, rows=self.rows[table], rate=rate)
        if not self.live:
            console.print(
                f"{table}: chunk {result.key} {result.mode} {result.rows_copied} rows in {result.seconds:.2f}s"
            )

    def on_retry(self, event: progress_hook.RetryScheduled) -> None:
        table = self.names.get(event.asset_key) or ".".join(event.asset_key) or "a step"
        if table in self.tasks:  # the next attempt loads the run's chunks again: count and time it afresh
            self.started.pop(table, None)
            self.rows[table] = 0
            self.progress.reset(self.tasks[table], start=False, completed=0, rows=0, rate=0.0)
        at = (dt.datetime.now() + dt.timedelta(seconds=event.seconds)).strftime("%H:%M:%S")
        self.progress.console.print(
            f"↻ {table}: attempt {event.attempt} of {event.attempts} failed: {event.reason}; "
            f"attempt {event.attempt + 1} starts at {at} (in {event.seconds:.0f} s)",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )


def print_schema_changes(outcome: object) -> None:
    """One line per change a load made to the target's columns (or ignored), as the run reported it."""
    for line in str(outcome.metadata.get("schema_changes", "")).splitlines():  # type: ignore[attr-defined]
        console.print(
            f"schema: {outcome.spec.name}: {line.removeprefix('- ')}",  # type: ignore[attr-defined]
            highlight=False,
            markup=False,
            soft_wrap=True,
        )


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

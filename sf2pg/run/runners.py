"""Where a command's table runs execute: directly in this process, or wherever an executor says.

``sf2pg.run.commands`` decides what to load (plan, resume, windows); a *runner* loads one table's run of
contiguous chunks and reports what it did, a *registry* is where the table's chunks are known as
partitions, and an *executor* gives a command both. With a Dagster instance (``DAGSTER_HOME``), the
Dagster layer's executor (``sf2pg.dagster.runner``) makes runs Dagster jobs and partitions Dagster's,
so the UI shows them. Without one, Dagster would only keep them
in a throwaway instance, so the CLI skips it: ``DirectRunner`` calls the same engine the asset and its
IO manager call (``describe_load``, ``load_table``, the checks' comparisons), with the same retries,
progress events and ledger records, and the chunks' order is the ledger's (``LedgerRegistry``).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from sf2pg.config.model import TableSpec
from sf2pg.config.typemap import SourceColumn
from sf2pg.errors import RETRIES, InputError, retry_delay, retry_reason
from sf2pg.load import ledger
from sf2pg.load.job import describe_load, load_totals
from sf2pg.load.postgres import Connects
from sf2pg.load.table import ChunkLoadError, load_table
from sf2pg.plan.chunks import Chunk
from sf2pg.plan.planning import known_chunks
from sf2pg.reconcile.counts import compare_counts
from sf2pg.reconcile.fingerprints import fingerprint_chunks
from sf2pg.reconcile.verdicts import ROW_COUNT_CHECK, chunk_check_after_load
from sf2pg.run import progress
from sf2pg.source.snowflake_connection import SessionPool, SnowflakeSettings

log = logging.getLogger("sf2pg.run")


@dataclass(frozen=True)
class CheckOutcome:
    """One check evaluation of a run (a chunk check evaluates each chunk of the run)."""

    name: str
    passed: bool
    partition: str | None = None
    description: str = ""


@dataclass
class RunResult:
    """What one run of a table did: its totals (``load_totals``) and its checks' evaluations."""

    success: bool
    error: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    checks: list[CheckOutcome] = field(default_factory=list)


class Registry(Protocol):
    """Where a table's chunks are known as partitions, in the order runs take ranges of."""

    def order(self, spec: TableSpec) -> list[str]: ...
    def register(self, spec: TableSpec, chunks: Iterable[Chunk]) -> None: ...
    def report_loaded(self, spec: TableSpec) -> None: ...


class Runner(Protocol):
    """Loads one run of a table: ``keys`` are contiguous in the registry's ``order`` (``every``). The
    run checks its chunks; with ``check_table`` also the whole table's row count, which a command asks
    for in its last run of the table only (before it, chunks of later runs are still missing)."""

    def run(
        self,
        command: str,
        spec: TableSpec,
        keys: list[str],
        every: list[str],
        tags: Mapping[str, str],
        confirm_truncate: bool = False,
        check_table: bool = True,
    ) -> RunResult: ...


class LedgerRegistry:
    """The ledger's chunks in bound order: the partitions of a command run without Dagster."""

    def __init__(self, postgres: Connects) -> None:
        self.postgres = postgres

    def order(self, spec: TableSpec) -> list[str]:
        return [c.key for c in known_chunks(spec, self.postgres)]

    def register(self, spec: TableSpec, chunks: Iterable[Chunk]) -> None:
        """Nothing to do: planning recorded the chunks in the ledger."""

    def report_loaded(self, spec: TableSpec) -> None:
        """Nothing to do: the ledger is the record."""


class Executor(Protocol):
    """Where a command's runs execute: the registry its tables' chunks are known in, and its runner."""

    def registry(self, postgres: Connects) -> Registry: ...
    def runner(self, snowflake: SessionPool, postgres: Connects, run_id: str, log_level: str) -> Runner: ...


class DirectExecutor:
    """Runs in this process (``DirectRunner``), partitions in the ledger (``LedgerRegistry``)."""

    def registry(self, postgres: Connects) -> Registry:
        return LedgerRegistry(postgres)

    def runner(self, snowflake: SessionPool, postgres: Connects, run_id: str, log_level: str) -> Runner:
        return DirectRunner(snowflake, postgres, run_id)


@contextmanager
def snowflake_sessions(settings: SnowflakeSettings, run_id: str) -> Iterator[SessionPool]:
    """The command's Snowflake sessions: planning, every table's load and its checks share them."""
    pool = SessionPool(lambda: settings.connect(run_id))
    try:
        yield pool
    finally:
        pool.close()


class DirectRunner:
    """A table's run in this process, as the Dagster asset, IO manager and checks would do it.

    A failure that may pass is retried like the Dagster step (``sf2pg.errors.RETRIES``, announced to
    the progress listeners); bad input and chunks that failed for good are not. Ctrl-C stops it: the
    chunks in flight roll back, the committed ones stay."""

    def __init__(self, snowflake: SessionPool, postgres: Connects, run_id: str | None = None) -> None:
        self.snowflake = snowflake
        self.postgres = postgres
        self.run_id = run_id or uuid.uuid4().hex

    def run(
        self,
        command: str,
        spec: TableSpec,
        keys: list[str],
        every: list[str],
        tags: Mapping[str, str],
        confirm_truncate: bool = False,
        check_table: bool = True,
    ) -> RunResult:
        for attempt in range(1, RETRIES + 2):
            try:
                load = describe_load(spec, self.snowflake, keys, every, tags, self.run_id, confirm_truncate)
                progress.table_started(spec.name)
                summary = load_table(load, self.postgres, on_chunk=progress.reporter(spec.name), logger=log)
                break
            except InputError as exc:
                return RunResult(False, str(exc))
            except ChunkLoadError as exc:
                if exc.permanent or attempt > RETRIES:
                    return RunResult(False, _after(attempt, exc))
                self._wait(spec, attempt, exc)
            except Exception as exc:
                if attempt > RETRIES:
                    return RunResult(False, _after(attempt, exc))
                self._wait(spec, attempt, exc)
        result = RunResult(True, metadata=load_totals(load, summary))
        chunks = [c for c in load.chunks if not c.is_incremental]
        result.checks = self._checks(spec, chunks, load.source_columns, check_table)
        return result

    def _wait(self, spec: TableSpec, attempt: int, exc: BaseException) -> None:
        seconds, reason = retry_delay(attempt), retry_reason(exc)
        log.warning(
            f"{spec.name}: attempt {attempt} of {RETRIES + 1} failed ({reason}); "
            f"attempt {attempt + 1} starts in {seconds:.0f} s"
        )
        progress.retry_scheduled(
            progress.RetryScheduled(tuple(spec.asset_key_path), attempt, RETRIES + 1, seconds, reason)
        )
        time.sleep(seconds)

    def _checks(
        self, spec: TableSpec, chunks: list[Chunk], columns: list[SourceColumn], check_table: bool
    ) -> list[CheckOutcome]:
        """The checks a load runs (``chunk_check_after_load``), recorded in the ledger as the Dagster
        checks record them: a chunk found different is loaded again by the next migrate. ``columns``
        are the source's as the load described them a moment ago (not described twice more)."""
        name, depth = chunk_check_after_load(spec)
        with self.snowflake.get_connection() as sf, self.postgres.get_connection(spec.pg_database) as pg:
            outcomes = []
            if check_table:
                counts = compare_counts(sf, pg, spec, lambda: columns)
                outcomes.append(CheckOutcome(ROW_COUNT_CHECK, counts.passed, None, counts.summary()))
            if chunks:
                verdicts, _ = fingerprint_chunks(sf, pg, spec, columns, chunks, depth)
                ledger.record_checks(pg, spec.pg_schema, spec.pg_table, {v.key: v.passed for v in verdicts})
                outcomes += [CheckOutcome(name, v.passed, v.key, v.description()) for v in verdicts]
        return outcomes


def _after(attempt: int, exc: BaseException) -> str:
    """The failure's message; after retries, how many attempts it took."""
    return str(exc) if attempt == 1 else f"failed {attempt} times: {exc}"

"""What a reconciliation finds: the checks' names, and the verdicts of a chunk, a table's counts and a table."""

from __future__ import annotations

import datetime as dt
import decimal
from dataclasses import dataclass, field
from typing import Any, Literal

from sf2pg.config.model import TableSpec
from sf2pg.errors import InputError
from sf2pg.plan.chunks import naive_utc

Depth = Literal["rows", "cells"]  # what a chunk comparison reads: counts and bounds, or every cell

# the checks' names, in Dagster's UI and the CLI's output alike
ROW_COUNT_CHECK = "row_count"  # whole-table counts
ROWS_CHECK = "chunk_rows"  # per chunk: row counts and bounds
CHUNK_CHECK = "chunk_fingerprint"  # per chunk: every cell


def chunk_check_after_load(spec: TableSpec) -> tuple[str, Depth]:
    """The per-chunk check a load of the table runs, and its depth (``checks_after_load``)."""
    return (CHUNK_CHECK, "cells") if spec.checks_after_load == "cells" else (ROWS_CHECK, "rows")


class WatermarkError(InputError):
    """The ledger's watermark cannot be compared with the table's watermark column."""


@dataclass(frozen=True)
class Mismatch:
    """One measure of one chunk that differs between the sides."""

    column: str | None
    measure: str
    source: Any
    target: Any
    shows_values: bool = True

    def __str__(self) -> str:
        what = f"column {self.column}: {self.measure}" if self.column else self.measure
        if not self.shows_values:
            return f"{what} differs"
        return f"{what}: source {_shown(self.source)}, target {_shown(self.target)}"


@dataclass
class ChunkVerdict:
    """One chunk's comparison (over its settled rows when the source moves)."""

    key: str
    source_rows: int
    target_rows: int
    mismatches: list[Mismatch] = field(default_factory=list)
    watermark: str | None = None  # compared up to this watermark (the ledger's H), if set
    moving_keys: int = 0  # keys past H left out of the target side
    pending_deletes: int = 0  # target rows whose key Snowflake no longer holds (delete detection removes them)
    awaiting_reload: list[str] = field(default_factory=list)  # columns added since the chunk loaded

    @property
    def passed(self) -> bool:
        return not self.mismatches

    @property
    def columns(self) -> list[str]:
        """The columns that differ, in table order."""
        return list(dict.fromkeys(m.column for m in self.mismatches if m.column))

    def summary(self) -> str:
        """The mismatches in one line: the row counts when they differ (the columns' measures follow
        them then, so they are only counted), else each differing measure with its column."""
        if self.rows_differ:
            rows = f"rows: source {self.source_rows:,}, target {self.target_rows:,}"
            text = f"{rows}, and with them the measures of {len(self.columns)} column(s)" if self.columns else rows
        else:
            text = "; ".join(str(m) for m in self.mismatches)
        waiting = [c for c in self.awaiting_reload if c in self.columns] if not self.rows_differ else []
        if waiting:
            text += (
                f" ({', '.join(waiting)} added to the table after this chunk loaded: its unchanged rows hold NULL "
                "there until `sf2pg migrate` reloads it)"
            )
        return text

    @property
    def rows_differ(self) -> bool:
        return self.source_rows != self.target_rows

    def description(self) -> str:
        """The verdict as a check reports it: what was compared, and on failure what differs."""
        settled = f" (rows with watermark below {self.watermark})" if self.watermark is not None else ""
        if self.pending_deletes:
            settled += f"; {self.pending_deletes} row(s) deleted in Snowflake wait for delete detection"
        if self.passed:
            return f"the chunk matches its source{settled}"
        return f"chunk {self.key} differs from the source{settled}: {self.summary()} — re-materialize this partition"


@dataclass(frozen=True)
class RowCount:
    """Whole-table counts. With a watermark H, the source's settled rows and the rows past H."""

    source_rows: int  # settled rows (all rows without H)
    target_rows: int
    moving_rows: int = 0
    watermark: str | None = None
    deletes_pending: bool = False  # delete detection removes rows Snowflake deleted: more may be there meanwhile

    @property
    def passed(self) -> bool:
        if self.deletes_pending:
            return self.source_rows <= self.target_rows
        return self.source_rows <= self.target_rows <= self.source_rows + self.moving_rows

    def summary(self) -> str:
        if self.watermark is None:
            if self.passed:
                return f"source and target both have {self.target_rows:,} rows"
            more = "more" if self.target_rows > self.source_rows else "fewer"
            return (
                f"target has {abs(self.target_rows - self.source_rows):,} {more} rows than the source "
                f"({self.target_rows:,} vs {self.source_rows:,})"
            )
        settled = f"{self.source_rows:,} settled up to watermark {self.watermark}"
        if self.passed and self.deletes_pending:
            extra = max(self.target_rows - self.source_rows - self.moving_rows, 0)
            return (
                f"target has {self.target_rows:,} rows: at least the {self.source_rows:,} settled source rows "
                f"(watermark below {self.watermark}), {self.moving_rows:,} past it"
                + (f", and up to {extra:,} deleted in Snowflake that delete detection removes" if extra else "")
            )
        if self.passed:
            return (
                f"target has {self.target_rows:,} rows: between {self.source_rows:,} settled source rows "
                f"(watermark below {self.watermark}) and {self.source_rows + self.moving_rows:,} with the "
                f"{self.moving_rows:,} past it, as expected"
            )
        if self.target_rows < self.source_rows:
            return (
                f"target has {self.source_rows - self.target_rows:,} fewer rows than the source "
                f"({self.target_rows:,} vs {settled}; {self.moving_rows:,} past it)"
            )
        return (
            f"target has {self.target_rows - self.source_rows - self.moving_rows:,} more rows than the source "
            f"({self.target_rows:,} vs {settled} and {self.moving_rows:,} past it)"
        )


@dataclass
class TableVerdict:
    table: str
    source_rows: int
    target_rows: int
    chunks: list[ChunkVerdict] = field(default_factory=list)
    source_queries: int = 0
    moving_rows: int = 0
    watermark: str | None = None
    deletes_pending: bool = False

    @property
    def counts(self) -> RowCount:
        return RowCount(self.source_rows, self.target_rows, self.moving_rows, self.watermark, self.deletes_pending)

    @property
    def failed_chunks(self) -> list[ChunkVerdict]:
        return [c for c in self.chunks if not c.passed]

    @property
    def passed(self) -> bool:
        return self.counts.passed and not self.failed_chunks


def _shown(value: Any) -> str:
    if isinstance(value, decimal.Decimal):
        return format(value.normalize(), "f") if value == value.to_integral_value() else str(value)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat(sep=" ") if isinstance(value, dt.datetime) else value.isoformat()
    return "NULL" if value is None else str(value)


def comparable(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return naive_utc(value)
    if isinstance(value, int | float | decimal.Decimal) and not isinstance(value, bool):
        return decimal.Decimal(str(value)).normalize()
    return value

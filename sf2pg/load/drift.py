"""Schema drift: how a Snowflake table's columns changed since its previous load.

The previous load's columns are kept in the ledger (``table_state.source_columns``), so a change is
told from a choice: a target column wider than the map (or a bigint for an ``INT``) because the user
made it so is not drift, while a NUMBER(8,2) that became NUMBER(12,2) in Snowflake is. What each
change does to the target is decided in ``sf2pg.load.target``; this module only names the changes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

from sf2pg.config.typemap import SF_TEXT_MAX, SourceColumn, family, sf_type_text

ChangeKind = Literal["added", "widened", "narrowed", "retyped", "dropped"]
SAFE: tuple[ChangeKind, ...] = ("added", "widened")  # applied on their own; the others need the config's say


@dataclass(frozen=True)
class SourceChange:
    """One column that differs between the previous load's source and the current one."""

    kind: ChangeKind
    before: SourceColumn | None
    after: SourceColumn | None

    @property
    def name(self) -> str:
        return (self.after or self.before).name  # type: ignore[union-attr]


def source_changes(previous: list[SourceColumn], current: list[SourceColumn]) -> list[SourceChange]:
    """Changes from ``previous`` to ``current``, in the current column order (drops last). Columns are
    matched by their exact Snowflake name: a rename is a drop and an add."""
    before = {c.name: c for c in previous}
    changes = []
    for col in current:
        old = before.get(col.name)
        if old is None:
            changes.append(SourceChange("added", None, col))
        elif family(old) != family(col):
            changes.append(SourceChange("retyped", old, col))
        elif (kind := _shape_change(old, col)) is not None:
            changes.append(SourceChange(kind, old, col))
    now = {c.name for c in current}
    changes += [SourceChange("dropped", c, None) for c in previous if c.name not in now]
    return changes


def _shape_change(old: SourceColumn, new: SourceColumn) -> ChangeKind | None:
    """widened, narrowed, or None, for two columns of one family (NUMBER digits, VARCHAR lengths)."""
    if family(new) == "number":
        old_s, new_s = old.scale or 0, new.scale or 0
        old_i, new_i = (old.precision or 38) - old_s, (new.precision or 38) - new_s
        if (old_i, old_s) == (new_i, new_s):
            return None
        return "widened" if new_i >= old_i and new_s >= old_s else "narrowed"
    if family(new) != "text":
        return None
    old_len, new_len = old.length or SF_TEXT_MAX, new.length or SF_TEXT_MAX
    if old_len == new_len:
        return None
    return "widened" if new_len > old_len else "narrowed"


@dataclass(frozen=True)
class SchemaChange:
    """What a source change did to the target: reported by the CLI, in Dagster metadata and the ledger."""

    kind: ChangeKind
    column: str  # the Snowflake name
    target: str | None  # the PostgreSQL column
    before: str | None  # Snowflake type before, e.g. NUMBER(8,2)
    after: str | None
    applied: bool  # False: ignored (``unsafe_schema_changes: ignore``); the target was left as it was
    detail: str  # what was done, e.g. "numeric(8,2) -> numeric(12,2)"

    def __str__(self) -> str:
        types = " -> ".join(t for t in (self.before, self.after) if t)
        head = f"{self.kind} column {self.column!r} ({types})"
        return f"{head}: {self.detail}" if self.applied else f"ignored: {head}: {self.detail}"


def describe(change: SourceChange, target: str | None, applied: bool, detail: str) -> SchemaChange:
    """The report of a source change."""
    return SchemaChange(
        change.kind,
        change.name,
        target,
        sf_type_text(change.before) if change.before else None,
        sf_type_text(change.after) if change.after else None,
        applied,
        detail,
    )


def to_json(columns: list[SourceColumn]) -> list[dict]:
    """The source's columns as the ledger keeps them."""
    return [asdict(c) for c in columns]


def from_json(data: list[dict]) -> list[SourceColumn]:
    return [SourceColumn(**{k: v for k, v in c.items() if k in SourceColumn.__dataclass_fields__}) for c in data]


def columns_not_seen(previous: list[SourceColumn] | None, current: list[SourceColumn]) -> list[str]:
    """Source columns the previous load did not have (none before the first recorded load)."""
    if previous is None:
        return []
    known = {c.name for c in previous}
    return [c.name for c in current if c.name not in known]

"""The whole-command part's contenders: what each is called, which group (and so which baseline) it
belongs to, and every round of it, with whether the round counted and why not."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from sf2pg.bench.processes import Run, Summary


@dataclass
class Contender:
    """One timed command and every round of it; a round counts when it ran cleanly and its target matched."""

    key: str
    label: str
    group: str
    runs: list[Run] = field(default_factory=list)
    counted: list[bool] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # per round: the content check, or why it did not count
    missed: list[str] = field(default_factory=list)  # why a round did not run it
    skipped: str = ""  # why it never ran

    def add(self, run: Run, counted: bool, note: str = "") -> None:
        self.runs.append(run)
        self.counted.append(counted and run.ok)
        if not run.ok:
            tail = " | ".join(run.output.strip().splitlines()[-3:])
            note = f"{'timed out' if run.timed_out else f'exit {run.exit_code}'}: {tail}"
        elif not counted:
            note = f"{run.seconds:.2f}s, not counted: {note}"
        self.notes.append(note)

    def summary(self) -> Summary | None:
        return Summary.of([r for r, counted in zip(self.runs, self.counted, strict=True) if counted])

    def missing(self) -> str:
        """Why this contender has no figure."""
        if self.skipped:
            return self.skipped
        if not self.runs:
            return self.missed[0] if self.missed else "not run"
        return "no round counted: " + (next((n for n in self.notes if n), "") or "?")

    def as_json(self) -> dict[str, Any]:
        summary = self.summary()
        return {
            "label": self.label,
            "group": self.group,
            "skipped": self.skipped,
            "missed_rounds": self.missed,
            "summary": asdict(summary) if summary else None,
            "rounds": [
                {**asdict(r), "output": r.output[-600:] if not r.ok else "", "counted": c, "note": n}
                for r, c, n in zip(self.runs, self.counted, self.notes, strict=True)
            ],
        }


def contenders(rows: int) -> dict[str, Contender]:
    """Every contender, in the order the table shows them (each group's baseline first)."""
    per_chunk = max(rows // 8, 100)
    table = [
        ("read_all", "read all rows with the connector (baseline)", "full load"),
        ("migrate_default", "sf2pg migrate, default config", "full load"),
        ("migrate_tuned", f"sf2pg migrate, rows_per_chunk {per_chunk:,} (8 chunks, 4 threads)", "full load"),
        ("sling_full", "Sling full refresh", "full load"),
        ("dlt_full", "dlt full load (sql_database, pyarrow backend, insert_values)", "full load"),
        ("read_changed", "read the changed rows with the connector (baseline)", "sync"),
        ("sync_changed", "sf2pg sync of the changed rows", "sync"),
        ("sync_noop", "sf2pg sync with nothing to do", "sync"),
        ("sling_incremental", "Sling incremental", "sync"),
        ("bare_start", 'python -c "import psycopg, pyarrow" (baseline)', "start"),
        ("cli_help", "sf2pg --help", "start"),
        ("cli_validate", "sf2pg validate", "start"),
        ("cli_status", "sf2pg status", "start"),
    ]
    return {key: Contender(key, label, group) for key, label, group in table}


BASELINES = {"full load": "read_all", "sync": "read_changed", "start": "bare_start"}

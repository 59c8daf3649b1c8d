"""The issue's targets for whole commands, each a bound on the ratio of two contenders' times.

A ratio is the contender's best time over its baseline's best time (both measured in the same run,
in interleaved rounds); the ratio of the medians is reported beside it. A target is met when the
ratio of the best times keeps its bound, as every target in docs/PERFORMANCE.md is judged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sf2pg.bench.processes import Summary

START_BOUND = 3.0  # status, validate and --help against a bare `python -c "import psycopg, pyarrow"`
SYNC_BOUND = 2.5  # sync of the changed rows against reading just those rows
NOOP_BOUND = SYNC_BOUND / 2  # "a no-op sync well under that": taken as at most half the sync bound
MIGRATE_BOUND = 1.5  # migrate with the default config against reading all rows
SLING_FACTOR = 2.0  # migrate at least this many times faster than Sling's full refresh


@dataclass(frozen=True)
class Target:
    """``contender / baseline`` must stay at or below ``at_most`` (or, with ``at_least``, at or above it)."""

    label: str
    contender: str
    baseline: str
    at_most: float | None = None
    at_least: float | None = None

    def bound(self) -> str:
        return f"≤ {self.at_most:g}x" if self.at_most is not None else f"≥ {self.at_least:g}x"

    def keeps(self, ratio: float) -> bool:
        if self.at_most is not None and ratio > self.at_most:
            return False
        return not (self.at_least is not None and ratio < self.at_least)


TARGETS = [
    Target("sf2pg --help vs a bare start", "cli_help", "bare_start", at_most=START_BOUND),
    Target("sf2pg validate vs a bare start", "cli_validate", "bare_start", at_most=START_BOUND),
    Target("sf2pg status vs a bare start", "cli_status", "bare_start", at_most=START_BOUND),
    Target("sf2pg sync of the changed rows vs reading them", "sync_changed", "read_changed", at_most=SYNC_BOUND),
    Target(
        "sf2pg sync with nothing to do vs reading the changed rows", "sync_noop", "read_changed", at_most=NOOP_BOUND
    ),
    Target("sf2pg migrate (default config) vs reading all rows", "migrate_default", "read_all", at_most=MIGRATE_BOUND),
    Target(
        "Sling full refresh vs sf2pg migrate, default config (migrate 2x faster)",
        "sling_full",
        "migrate_default",
        at_least=SLING_FACTOR,
    ),
]


@dataclass(frozen=True)
class Verdict:
    """A target's outcome: met, not met, or not measured (and why)."""

    target: Target
    ratio: float | None = None
    median_ratio: float | None = None
    why: str = ""

    @property
    def status(self) -> str:
        if self.ratio is None:
            return "not measured"
        return "met" if self.target.keeps(self.ratio) else "not met"


def ratio(summaries: Mapping[str, Summary | None], contender: str, baseline: str) -> tuple[float, float] | None:
    """Best over best and median over median, when both were measured."""
    a, b = summaries.get(contender), summaries.get(baseline)
    if a is None or b is None:
        return None
    return a.best_s / b.best_s, a.median_s / b.median_s


def evaluate(summaries: Mapping[str, Summary | None], missing: Mapping[str, str]) -> list[Verdict]:
    """Every target against this run's summaries; ``missing`` says why a contender has none."""
    verdicts = []
    for target in TARGETS:
        both = ratio(summaries, target.contender, target.baseline)
        if both is None:
            absent = [k for k in (target.contender, target.baseline) if summaries.get(k) is None]
            why = "; ".join(f"{k}: {missing.get(k, 'not measured')}" for k in absent)
            verdicts.append(Verdict(target, why=why))
        else:
            verdicts.append(Verdict(target, both[0], both[1]))
    return verdicts

"""The issue's targets: which ratio each one bounds, and when it is met, not met or not measured."""

from __future__ import annotations

from sf2pg.bench.processes import Summary
from sf2pg.bench.targets import NOOP_BOUND, SYNC_BOUND, TARGETS, Target, evaluate, ratio


def timed(best: float, median: float | None = None) -> Summary:
    return Summary(best, best if median is None else median, best, [best])


def test_a_target_bounds_the_ratio_of_the_best_times_and_reports_the_medians_beside():
    summaries = {"migrate_default": timed(3.0, 4.0), "read_all": timed(2.0, 2.0)}
    assert ratio(summaries, "migrate_default", "read_all") == (1.5, 2.0)
    [verdict] = [v for v in evaluate(summaries, {}) if v.target.contender == "migrate_default"]
    assert verdict.status == "met" and verdict.ratio == 1.5 and verdict.median_ratio == 2.0  # the bound itself keeps


def test_at_most_and_at_least_bounds():
    slower = Target("x", "a", "b", at_most=3.0)
    assert slower.keeps(3.0) and not slower.keeps(3.01)
    faster = Target("y", "sling_full", "migrate_default", at_least=2.0)
    assert faster.keeps(2.0) and not faster.keeps(1.99)
    assert (slower.bound(), faster.bound()) == ("≤ 3x", "≥ 2x")


def test_sling_must_take_at_least_twice_as_long_as_migrate():
    summaries = {"sling_full": timed(11.0), "migrate_default": timed(6.0)}
    [verdict] = [v for v in evaluate(summaries, {}) if v.target.contender == "sling_full"]
    assert verdict.status == "not met" and round(verdict.ratio, 2) == 1.83
    summaries["migrate_default"] = timed(5.5)
    [verdict] = [v for v in evaluate(summaries, {}) if v.target.contender == "sling_full"]
    assert verdict.status == "met"


def test_a_missing_contender_is_not_measured_and_says_why():
    verdicts = evaluate({"migrate_default": timed(5.0)}, {"sling_full": "no peers virtualenv"})
    [sling] = [v for v in verdicts if v.target.contender == "sling_full"]
    assert sling.status == "not measured" and sling.ratio is None
    assert "sling_full: no peers virtualenv" in sling.why
    assert all(v.status == "not measured" for v in verdicts)  # no baseline was measured either


def test_the_issue_targets_are_all_there():
    bounds = {(t.contender, t.baseline): t.at_most or t.at_least for t in TARGETS}
    assert bounds == {
        ("cli_help", "bare_start"): 3.0,
        ("cli_validate", "bare_start"): 3.0,
        ("cli_status", "bare_start"): 3.0,
        ("sync_changed", "read_changed"): SYNC_BOUND,
        ("sync_noop", "read_changed"): NOOP_BOUND,
        ("migrate_default", "read_all"): 1.5,
        ("sling_full", "migrate_default"): 2.0,
    }
    assert SYNC_BOUND == 2.5 and NOOP_BOUND < SYNC_BOUND

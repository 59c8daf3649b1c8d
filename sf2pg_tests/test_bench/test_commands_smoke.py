"""The whole-command part end to end at a toy size: every sf2pg command runs as a process, every load
is checked against the source, the targets are judged and the JSON is written.

About a minute even at 2,000 rows (each sf2pg process starts Dagster), so it runs only when asked:
``SF2PG_BENCH_SMOKE=1 pytest sf2pg_tests/test_bench``; with ``SF2PG_BENCH_PEERS`` set, the peers too.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from sf2pg.bench.commands import Options, run_commands
from sf2pg.bench.targets import TARGETS
from sf2pg_tests.harness import Stack

pytestmark = pytest.mark.skipif(
    not os.environ.get("SF2PG_BENCH_SMOKE"), reason="a minute of subprocesses: set SF2PG_BENCH_SMOKE=1 to run it"
)


def test_a_toy_run_times_every_command_checks_every_load_and_writes_its_results(stack: Stack, tmp_path: Path):
    peers = os.environ.get("SF2PG_BENCH_PEERS")
    options = Options(
        rows=2_000, rounds=1, changed=100, peers=peers, pg_env=dict(stack.pg_env),
        state=tmp_path / "state", results=tmp_path / "results", timeout=300,
    )  # fmt: skip
    results = run_commands(options, None)
    [written] = (tmp_path / "results").glob("commands-*.json")
    assert json.loads(written.read_text())["targets"] == results["targets"]
    contenders = results["contenders"]
    ours = ["read_all", "migrate_default", "migrate_tuned", "read_changed", "sync_changed", "sync_noop"]
    ours += ["bare_start", "cli_help", "cli_validate", "cli_status"]
    for key in ours:
        assert contenders[key]["summary"], (key, contenders[key]["rounds"])
    for key in ("migrate_default", "migrate_tuned", "sync_changed"):
        assert contenders[key]["rounds"][0]["note"].startswith("exact (2,"), contenders[key]["rounds"]
    for key in ("sling_full", "sling_incremental", "dlt_full"):
        assert contenders[key]["summary"] or (not peers and "no peers virtualenv" in contenders[key]["skipped"])
    assert [t["target"] for t in results["targets"]] == [t.label for t in TARGETS]
    assert {t["status"] for t in results["targets"]} <= {"met", "not met", "not measured"}
    machine = results["machine"]
    assert machine["cpus"] and machine["commit"] and len(machine["load_average"]) == 3
    assert machine["versions"]["postgresql"] and results["changed_rows"] == {"updates": 50, "inserts": 50}

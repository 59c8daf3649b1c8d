"""A snapshot of the asset graph the demo config gives, so a change to it shows up in review.

Regenerate after an intended change: ``SF2PG_UPDATE_SNAPSHOTS=1 pytest sf2pg_tests/test_definitions_snapshot.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

from dagster import Definitions

from sf2pg.config.loading import load_config
from sf2pg.dagster.definitions import build_definitions

REPO = Path(__file__).resolve().parents[1]
SNAPSHOT = Path(__file__).parent / "snapshots" / "definitions.txt"


def _partitions(partitions_def: object) -> str:
    if partitions_def is None:
        return "unpartitioned"
    name = getattr(partitions_def, "name", None)
    return f"{type(partitions_def).__name__}({name})" if name else type(partitions_def).__name__


def render(defs: Definitions) -> str:
    """Asset keys with their partitions, group, pools and backfill policy; checks with their flags;
    sensors with what they target; jobs. Sorted, one line each: a diff reads as the change."""
    graph = defs.resolve_asset_graph()
    lines = []
    for key in sorted(graph.get_all_asset_keys()):
        node = graph.get(key)
        lines.append(
            f"asset {key.to_user_string()}: partitions={_partitions(node.partitions_def)} group={node.group_name} "
            f"pools={','.join(sorted(node.pools or []))} backfill={node.backfill_policy}"
        )
    for check_key in sorted(graph.asset_check_keys, key=lambda k: (k.asset_key.to_user_string(), k.name)):
        spec = graph.get_check_spec(check_key)
        lines.append(
            f"check {check_key.asset_key.to_user_string()}:{check_key.name}: blocking={spec.blocking} "
            f"partitioned={spec.partitions_def is not None}"
        )
    for sensor in sorted(defs.sensors or [], key=lambda s: s.name):
        selection = sensor.asset_selection
        targets = sorted(k.to_user_string() for k in selection.resolve(graph)) if selection is not None else []
        jobs = sorted(j.name for j in sensor.jobs) if sensor.has_jobs else []
        lines.append(
            f"sensor {sensor.name}: assets={','.join(targets)} jobs={','.join(jobs)} "
            f"default={sensor.default_status.value} every={sensor.minimum_interval_seconds}s"
        )
    for job in sorted(defs.jobs or [], key=lambda j: j.name):
        lines.append(f"job {job.name}")
    return "\n".join(lines) + "\n"


def test_the_demo_configs_definitions_match_the_committed_snapshot():
    shown = render(build_definitions(load_config(REPO / "config" / "config.json")))
    if os.environ.get("SF2PG_UPDATE_SNAPSHOTS"):
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(shown)
    expected = SNAPSHOT.read_text() if SNAPSHOT.exists() else ""
    assert shown == expected, (
        f"the definitions differ from {SNAPSHOT.relative_to(REPO)}; if the change is intended, regenerate it with "
        "`SF2PG_UPDATE_SNAPSHOTS=1 pytest sf2pg_tests/test_definitions_snapshot.py` and commit the diff"
    )

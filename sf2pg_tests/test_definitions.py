"""The code location as Dagster loads it: one asset per enabled table, checks, the planning job."""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

from dagster import AssetKey, Definitions, in_process_executor

REPO = Path(__file__).resolve().parents[1]


def load_definitions():
    os.environ["SF2PG_CONFIG"] = str(REPO / "config" / "config.json")
    try:
        import sf2pg.definitions

        return importlib.reload(sf2pg.definitions).defs
    finally:
        del os.environ["SF2PG_CONFIG"]


def test_the_demo_config_gives_one_asset_per_enabled_table():
    defs = load_definitions()
    Definitions.validate_loadable(defs)  # what `dagster dev` does with the code location
    keys = sorted(k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys())
    assert keys == [
        "analytics/all_types",
        "analytics/daily_metrics",
        "analytics/dim_providers",
        "analytics/fact_visits",
    ]  # analytics/legacy_audit is disabled


def test_each_asset_has_its_checks_partitions_and_single_run_backfills():
    defs = load_definitions()
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.partitions_def is not None
        assert node.backfill_policy is not None and node.backfill_policy.max_partitions_per_run is None
        checks = {c.name for c in graph.get_check_keys_for_assets([key])}
        assert checks == {"row_count", "chunk_rows", "chunk_fingerprint"}
    assert graph.get(AssetKey(["analytics", "fact_visits"])).group_name == "analytics"
    assert defs.resolve_job_def("plan_chunks") is not None


def test_a_run_executes_its_steps_in_the_run_worker_not_a_process_each():
    defs = load_definitions()
    for job in (defs.resolve_implicit_global_asset_job_def(), defs.resolve_job_def("plan_chunks")):
        assert job.executor_def.name == in_process_executor.name, job.name


def test_dagster_validates_the_workspace_from_the_repository_root_with_no_environment_set():
    """A Dagster user's first command: no DAGSTER_HOME, no DAGSTER_PG_*, no connections. The repository's
    instance settings are not at the root, so Dagster uses a throwaway instance instead of failing."""
    assert not (REPO / "dagster.yaml").exists()
    env = {k: v for k, v in os.environ.items() if not re.match(r"(DAGSTER|PG|SNOWFLAKE|SF2PG)", k)}
    result = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "All code locations passed validation" in output
    # sf2pg's definitions raise no beta or preview notices a user could do nothing about
    assert "BetaWarning" not in output and "PreviewWarning" not in output, output


def test_the_code_location_and_the_component_build_from_one_place():
    import sf2pg.dagster.components.snowflake_to_postgres as component
    import sf2pg.definitions

    assert sf2pg.definitions.build_definitions is component.build_definitions


def test_loading_the_code_location_connects_nothing_and_leaves_the_snowflake_connector_unimported():
    """Every Dagster process (code server, run worker, daemon) loads it: the connector (0.5 s) waits for
    the first session."""
    probe = "import sys, sf2pg.definitions; print('snowflake.connector' in sys.modules)"
    env = {**os.environ, "SF2PG_CONFIG": str(REPO / "config" / "config.json")}
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr

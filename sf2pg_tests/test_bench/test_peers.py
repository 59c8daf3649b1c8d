"""Finding the peers outside sf2pg's environment, skipping them with a reason, and their connections."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from sf2pg.bench import peers


@pytest.fixture(autouse=True)
def no_sling_binary(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLING_BINARY", raising=False)


def test_without_a_peers_virtualenv_both_are_skipped_saying_how_to_get_one():
    found = peers.find_peers(None)
    assert found.sling is None and found.dlt_python is None
    for reason in (found.sling_missing, found.dlt_missing):
        assert "no peers virtualenv" in reason and peers.PEERS_ENV in reason and "--setup-peers" in reason


def test_a_folder_that_is_no_virtualenv_is_named(tmp_path: Path):
    found = peers.find_peers(str(tmp_path))
    assert found.sling is None and found.dlt_python is None
    assert str(tmp_path) in found.dlt_missing and "not a virtualenv" in found.sling_missing


def test_sling_is_found_in_its_binary_package_and_dlt_is_skipped_when_it_does_not_import(tmp_path: Path):
    venv = tmp_path / "peers"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)  # a python without dlt
    binary = venv / "lib" / "python3.11" / "site-packages" / "sling_linux_amd64" / "bin" / "sling-linux-amd64"
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\necho 'Version: 1.4.11'\n")
    binary.chmod(0o755)
    found = peers.find_peers(str(venv))
    assert found.sling == binary
    assert found.dlt_python is None and "dlt cannot be imported" in found.dlt_missing
    assert peers.versions(found) == {"sling": "1.4.11"}


def test_sling_binary_overrides_the_virtualenv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SLING_BINARY", "/opt/sling")
    found = peers.find_peers(None)
    assert found.sling == Path("/opt/sling") and not found.sling_missing


def test_sling_connections_come_from_the_same_settings_as_sf2pgs(tmp_path: Path):
    base = {
        "SNOWFLAKE_ACCOUNT": "fakesnow", "SNOWFLAKE_USER": "fake", "SNOWFLAKE_PASSWORD": "p@ss/word",
        "SNOWFLAKE_HOST": "127.0.0.1", "SNOWFLAKE_PORT": "8765", "SNOWFLAKE_PROTOCOL": "http",
        "PGHOST": "127.0.0.1", "PGPORT": "5433", "PGUSER": "postgres",
    }  # fmt: skip
    env = peers.sling_env(base, "bench", tmp_path)
    assert env["SF2PG_BENCH_SF"] == (
        "snowflake://fake:p%40ss%2Fword@127.0.0.1:8765/BENCH_DB?schema=PUBLIC&account=fakesnow&use_bulk=false&protocol=http"
    )
    assert env["SF2PG_BENCH_PG"] == "postgresql://postgres@127.0.0.1:5433/bench?sslmode=disable"
    assert env["SLING_HOME_DIR"] == str(tmp_path)
    with_ssl = peers.sling_env({**base, "PGSSLMODE": "require", "PGPASSWORD": "x"}, "bench", tmp_path)
    assert with_ssl["SF2PG_BENCH_PG"] == "postgresql://postgres:x@127.0.0.1:5433/bench?sslmode=require"
    assert "sslmode=disable" in peers.sling_env({**base, "PGSSLMODE": "prefer"}, "bench", tmp_path)["SF2PG_BENCH_PG"]


def test_sling_runs_full_refresh_or_incremental_by_key_and_watermark():
    full = peers.sling_argv(Path("/s"), "sling.cmd_events", incremental=False)
    assert full[-2:] == ["--mode", "full-refresh"] and "PUBLIC.CMD_EVENTS" in full
    incremental = peers.sling_argv(Path("/s"), "sling.cmd_events", incremental=True)
    assert incremental[-6:] == ["--mode", "incremental", "--primary-key", "ID", "--update-key", "UPDATED_AT"]


def test_dlt_runs_in_its_own_environment():
    env = peers.dlt_env({"PYTHONPATH": "/work/sf2pg", "VIRTUAL_ENV": "/v", "PGHOST": "h"})
    assert env == {"PGHOST": "h", "RUNTIME__DLTHUB_TELEMETRY": "false"}
    argv = peers.dlt_argv(Path("/peers/bin/python"), "bench", "dlt", Path("/p"))
    assert argv[:2] == ["/peers/bin/python", "-c"] and "sql_database" in argv[2]
    assert argv[3:] == ["bench", "dlt", "/p", "BENCH_DB", "PUBLIC", "CMD_EVENTS"]
    assert os.path.basename(argv[0]) == "python"

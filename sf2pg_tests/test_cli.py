"""The sf2pg command line, run as a user would: exit codes and what it prints."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sf2pg.cli import main as cli
from sf2pg.cli.main import main
from sf2pg_tests.harness import World
from sf2pg_tests.test_load.test_migrate import all_types_config, seed_all_types

REPO = Path(__file__).resolve().parents[1]


def sf2pg(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sf2pg.cli", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, **(env or {}), "COLUMNS": "200"},
        timeout=300,
    )


def run_cli(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    out = capsys.readouterr()
    return exit_info.value.code, out.out + out.err


def write_config(tmp_path: Path, raw: dict) -> str:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(raw))
    return str(path)


def test_every_subcommand_explains_itself():
    for command in ("validate", "plan", "migrate", "sync", "verify", "status", "restore-indexes", "demo", "dev"):
        result = sf2pg(command, "--help")
        assert result.returncode == 0, result.stderr
        assert "usage: sf2pg" in result.stdout and len(result.stdout.splitlines()) > 3
        assert "--config PATH" in result.stdout  # the global option is accepted after every command


def test_the_version_is_the_installed_packages(capsys):
    from importlib.metadata import version

    code, out = run_cli(capsys, "--version")
    assert code == 0 and out.strip() == f"sf2pg {version('sf2pg')}"


def test_config_works_the_same_before_and_after_the_command(tmp_path: Path, capsys):
    bad = write_config(tmp_path, {"sources": [{"source_name": "x", "tables": [{"source": "T"}]}]})
    for config in ("config/example.full.json", bad):
        before = run_cli(capsys, "--config", config, "validate")
        after = run_cli(capsys, "validate", "--config", config)
        assert before == after
    assert before[0] == 2 and "sources[0].source_sf_database: is required" in before[1]
    assert run_cli(capsys, "validate", "--config", "config/example.full.json")[0] == 0
    # given after the command, it wins over one given before (the nearer one)
    code, out = run_cli(capsys, "--config", bad, "validate", "--config", "config/example.full.json")
    assert code == 0 and "example.full.json" in out


def test_a_disabled_table_named_with_t_says_it_is_disabled_and_where(capsys):
    code, out = run_cli(capsys, "plan", "--no-register", "-t", "legacy_audit")  # disabled in config/config.json
    assert code == 2
    assert "table analytics.legacy_audit is disabled" in out and 'sources[0].tables[4] has "enabled": false' in out
    assert "invalid config" not in out


def test_a_t_that_names_no_table_is_a_usage_error_with_a_did_you_mean(capsys):
    code, out = run_cli(capsys, "migrate", "-t", "fact_visit")
    assert code == 2
    assert "-t fact_visit: no table of that name" in out and "did you mean 'fact_visits'?" in out
    assert "invalid config" not in out
    code, out = run_cli(capsys, "verify", "analytic")
    assert code == 2 and "no source named 'analytic'" in out and "did you mean 'analytics'?" in out


def test_a_mistyped_command_or_option_is_a_usage_error_that_names_the_one_meant(capsys):
    code, out = run_cli(capsys, "migrat")
    assert code == 2 and "did you mean 'migrate'?" in out, out
    code, out = run_cli(capsys, "migrate", "--confg", "x.json", "--relaod")
    assert code == 2 and "did you mean '--config' for '--confg', '--reload' for '--relaod'?" in out, out
    code, out = run_cli(capsys, "migrate", "--xyzzy")
    assert code == 2 and "unrecognized arguments: --xyzzy" in out and "did you mean" not in out, out


def test_an_unreachable_postgresql_fails_a_load_at_once_naming_host_and_port(
    world: World, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
):
    config = write_config(tmp_path, world.config([{"source": "ANY"}]))
    monkeypatch.setenv("PGHOST", "127.0.0.1")
    monkeypatch.setenv("PGPORT", "9")  # nothing listens there
    for command in ("migrate", "sync", "verify", "status"):
        t0 = time.monotonic()
        code, out = run_cli(capsys, "--config", config, command)
        assert time.monotonic() - t0 < 5, command  # no retries, no planning, before any Dagster run
        assert code == 1, out
        assert f"error: cannot connect to PostgreSQL at 127.0.0.1:9 (database '{world.pg_database}'" in out
        assert "Connection refused" in out and "Traceback" not in out


def test_a_malformed_config_gives_one_line_per_problem_and_a_nonzero_exit(tmp_path: Path):
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps({"sources": [{"source_name": "x", "tables": [{"source": "T", "chunking_column": ["A"]}]}]})
    )
    result = sf2pg("--config", str(bad), "validate")
    assert result.returncode == 2
    assert "sources[0].source_sf_database: is required" in result.stderr
    assert "sources[0].tables[0].chunking_column: unknown key (hint: did you mean `chunking_columns`?)" in result.stderr
    assert "Traceback" not in result.stderr


def test_invalid_json_and_missing_files_are_named(tmp_path: Path):
    broken = tmp_path / "broken.json"
    broken.write_text('{"sources": [}')
    result = sf2pg("--config", str(broken), "validate")
    assert result.returncode == 2 and "line 1, column 14" in result.stderr
    result = sf2pg("validate", env={"SF2PG_CONFIG": str(tmp_path / "nope.json")})
    assert result.returncode == 2 and "nope.json" in result.stderr and "SF2PG_CONFIG" in result.stderr


def test_the_shipped_configs_validate():
    assert sf2pg("validate").returncode == 0
    assert sf2pg("--config", "config/example.full.json", "validate").returncode == 0


def test_validate_connect_names_missing_tables_and_columns(world: World, tmp_path: Path, capsys):
    seed_all_types(world, 50)
    raw = all_types_config(world)
    raw["sources"][0]["tables"][0]["uniqueness_columns"] = ["NO_SUCH_COLUMN"]
    raw["sources"][0]["tables"].append({"source": "MISSING_TABLE"})
    code, out = run_cli(capsys, "--config", write_config(tmp_path, raw), "validate", "--connect")
    assert code == 1
    assert "sources[0].tables[0].uniqueness_columns" in out and "'NO_SUCH_COLUMN'" in out
    assert "sources[0].tables[1].source" in out and "MISSING_TABLE" in out


@pytest.mark.parametrize("kind", ["NUMBER(12,2)", "FLOAT", "VARCHAR", "BOOLEAN"])
def test_a_watermark_no_window_can_step_exactly_is_refused_before_anything_is_written(
    world: World, tmp_path: Path, capsys, kind: str
):
    table = f'"{world.sf_database}"."PUBLIC"."W"'
    value = {"VARCHAR": "'v' || SEQ4()", "BOOLEAN": "SEQ4() > 5"}.get(kind, "SEQ4() + 0.25")
    world.sf_exec(
        f"CREATE TABLE {table} (ID NUMBER(18,0), M {kind})",
        f"INSERT INTO {table} SELECT SEQ4(), {value} FROM TABLE(GENERATOR(ROWCOUNT => 20))",
    )
    spec = {"source": "W", "chunking_columns": ["ID"], "chunking_column_types": ["id"], "uniqueness_columns": ["ID"]}
    config = write_config(tmp_path, world.config([{**spec, "source_watermark": "M"}]))
    said = "sources[0].tables[0].source_watermark: watermark column 'M' is"
    for command in ("validate --connect", "migrate"):
        code, out = run_cli(capsys, "--config", config, *command.split())
        assert code == 1 and said in " ".join(out.split()) and "a DATE or an integer NUMBER" in out, out
    assert world.pg_query("SELECT to_regclass('tgt.w') IS NULL") == [(True,)]


def test_a_target_postgresql_refuses_is_named_as_such_by_validate_and_fails_migrate_without_retries(
    world: World, tmp_path: Path, capsys
):
    seed_all_types(world, 20)
    world.pg_query("CREATE SCHEMA tgt")
    world.pg_query("CREATE VIEW tgt.all_types AS SELECT 1::bigint AS id")  # not a table sf2pg can load into
    code, out = run_cli(capsys, "--config", write_config(tmp_path, all_types_config(world)), "validate", "--connect")
    flat = " ".join(out.split())
    assert code == 1 and "Snowflake is not reachable" not in flat, out
    assert "sources[0].tables[0] (src.all_types): PostgreSQL refuses the target table:" in flat, out
    t0 = time.monotonic()
    code, out = run_cli(capsys, "--config", write_config(tmp_path, all_types_config(world)), "migrate")
    flat = " ".join(out.split())
    assert code == 1 and "(sources[0].tables[0]): PostgreSQL refuses the target table:" in flat, out
    assert "attempt" not in flat and time.monotonic() - t0 < 5  # not retried: it cannot pass


def test_validate_connect_names_a_source_filter_snowflake_cannot_evaluate(world: World, tmp_path: Path, capsys):
    seed_all_types(world, 20)
    raw = all_types_config(world)
    raw["sources"][0]["tables"][0]["source_filter"] = "NO_SUCH_COLUMN > 0"
    code, out = run_cli(capsys, "--config", write_config(tmp_path, raw), "validate", "--connect")
    flat = " ".join(out.split())
    assert code == 1 and "sources[0].tables[0].source_filter: Snowflake cannot evaluate it" in flat, out
    assert "NO_SUCH_COLUMN" in flat


def test_migrate_verify_and_status_from_the_command_line(
    world: World, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
):
    seed_all_types(world, 700)
    config = write_config(tmp_path, all_types_config(world))
    code, out = run_cli(capsys, "--config", config, "validate", "--connect")
    assert code == 0, out
    code, out = run_cli(capsys, "--config", config, "plan", "--no-register")
    assert code == 0 and "estimated rows" in out
    code, out = run_cli(capsys, "--config", config, "migrate", "src")
    assert code == 0, out
    assert "src.all_types" in out and "ok" in out
    code, out = run_cli(capsys, "--config", config, "verify")
    assert code == 0 and "match" in out, out
    code, out = run_cli(capsys, "--config", config, "status", "--json")
    [row] = json.loads(out)
    assert row["status"] == "completed" and row["total_rows_copied"] == 701 and row["target_rows"] == 701
    world.pg_query("DELETE FROM tgt.all_types WHERE id = 5")
    code, out = run_cli(capsys, "--config", config, "verify")
    assert code == 1 and "✗ src.all_types chunk 20" in out and "rows: source" in out
    # status names the table as migrate and verify do, and counts what the target holds now
    monkeypatch.setattr(cli.console, "_width", 200)  # one table row per line
    code, out = run_cli(capsys, "--config", config, "status")
    [line] = [line for line in out.splitlines() if "src.all_types" in line]
    assert f"{world.pg_database}.tgt.all_types" in line and " 700 " in line and "completed" in line


def test_migrate_exits_nonzero_when_a_table_fails(world: World, tmp_path: Path, capsys):
    raw = world.config([{"source": "DOES_NOT_EXIST"}])
    code, out = run_cli(capsys, "--config", write_config(tmp_path, raw), "migrate")
    assert code != 0
    assert "DOES_NOT_EXIST" in out and "sources[0].tables[0]" in out


def test_validate_connect_finds_a_target_column_that_cannot_hold_the_source_and_changes_nothing(
    world: World, tmp_path: Path, capsys
):
    seed_all_types(world, 50)
    world.pg_query("CREATE SCHEMA tgt")
    world.pg_query("CREATE TABLE tgt.all_types (id bigint, v integer)")
    code, out = run_cli(capsys, "--config", write_config(tmp_path, all_types_config(world)), "validate", "--connect")
    assert code == 1
    assert "sources[0].tables[0]" in out and "'V'" in out and "cannot hold" in out
    # a dry run: no index, table or ledger was created by the check
    assert world.pg_query("SELECT count(*) FROM pg_indexes WHERE schemaname = 'tgt'") == [(0,)]
    assert world.pg_query("SELECT to_regclass('migration_status.chunk_state') IS NULL") == [(True,)]


def test_rows_per_second_are_measured_over_each_tables_own_load(monkeypatch: pytest.MonkeyPatch):
    from sf2pg.config.loading import parse_config

    raw = {
        "sources": [
            {
                "source_name": "src",
                "source_sf_database": "DB",
                "source_sf_schema": "PUBLIC",
                "target_pg_database": "tgt",
                "target_pg_schema": "tgt",
                "tables": [{"source": "FIRST"}, {"source": "SECOND"}],
            }
        ]
    }
    first, second = parse_config(raw).tables()

    class Plan:
        chunks, new_keys, source_queries = ["c1", "c2"], [], 1

    class Chunk:
        def __init__(self, rows: int, seconds: float) -> None:
            self.key, self.mode, self.rows_copied, self.seconds = "c", "copy", rows, seconds

    now = [1000.0]
    monkeypatch.setattr(cli.time, "monotonic", lambda: now[0])
    display = cli._LoadProgress()
    display.on_plan(first, Plan())  # both tables are planned before either loads
    display.on_plan(second, Plan())
    now[0] += 60  # the first table loads for a minute
    display.on_chunk(first.name, Chunk(30_000, 60))
    now[0] += 1
    display.on_table_started(second.name)  # the loader's event, when it sends one
    now[0] += 2
    display.on_chunk(second.name, Chunk(1_000, 2))
    now[0] += 2  # no start event: the clock starts when the first chunk began
    third = cli._LoadProgress()
    third.on_plan(first, Plan())
    third.on_chunk(first.name, Chunk(2_000, 4))
    rates = [t.fields["rate"] for t in [*display.progress.tasks, *third.progress.tasks]]
    assert rates == [pytest.approx(500), pytest.approx(500), pytest.approx(500)]  # not 1,000 rows / 63 s
    assert [t.completed for t in display.progress.tasks] == [1, 1]


_WITHOUT_DAGSTER = """
import sys
from sf2pg.cli.main import main  # main, not the console script's run(): that one leaves by os._exit
sys.argv = ["sf2pg", *sys.argv[1:]]
try:
    main()
except SystemExit as exc:
    code = exc.code
print("dagster imported" if any(m.split(".")[0] == "dagster" for m in sys.modules) else "dagster not imported")
sys.exit(code)
"""


def test_commands_without_dagster_home_load_and_check_without_importing_dagster(world: World, tmp_path: Path):
    """Without DAGSTER_HOME a Dagster instance would be thrown away with the process: the CLI runs its
    loads directly through the same engine, with the same checks and ledger, and never pays Dagster's
    start-up."""
    seed_all_types(world, 300)
    raw = all_types_config(world)
    raw["sources"][0]["tables"][0]["source_watermark"] = "TS_NTZ"
    config = write_config(tmp_path, raw)
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-c", _WITHOUT_DAGSTER, "--config", config, *args],
            capture_output=True, text=True, cwd=REPO, env={**env, "COLUMNS": "200"}, timeout=300,
        )  # fmt: skip

    for args in (("migrate",), ("sync",), ("verify",), ("status",)):
        result = run(*args)
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.rstrip().endswith("dagster not imported"), (args, result.stdout)
    world.pg_query("UPDATE tgt.all_types SET n_int = n_int + 1 WHERE id = 7")  # one changed cell: verify sees it
    result = run("verify")
    assert result.returncode == 1 and "src.all_types" in result.stderr + result.stdout
    assert world.pg_query("SELECT count(*) FROM tgt.all_types") == [(301,)]
    states = world.pg_query("SELECT DISTINCT status FROM migration_status.chunk_state")
    assert states == [("completed",)]

